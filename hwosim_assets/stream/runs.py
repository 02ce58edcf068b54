"""One replay run: windows ``first``..``last`` of a stream, in order, after the
run before it, each written exactly once, paced as one sequence (:func:`replay.deliver`).

Runs are requested ahead of their due time (``schedule.py``), so several runs
of one stream may exist at once; they write in window order:

* A run waits until the windows before its own are committed. It sleeps
  until shortly before its first window is due (cheap: no polling while the
  predecessor paces its own window), then watches the committed offset. If
  its first packet falls due while the run before is still committing its
  last ones, it paces on time all the same; its committing thread opens the
  window once they are in.
* If the predecessor stops moving (its process died, its run failed) while
  its window is overdue, this run takes over from the first undelivered
  window: the committed offset says exactly where, and the writer's offset
  claims make a late predecessor harmless.
* Packets already overdue when a run gets to them are delivered at once,
  stamped with their scheduled time, so a backlog drains in one run and the
  lateness records how late they were.

After each window the stream's retention (``retain`` in streams.yaml) drops
rows older than the kept laps or hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.pacing import pace_stats
from hwosim_assets.stream.replay import (
    PreparedWindow,
    WindowReport,
    WindowTakenError,
    deliver,
    open_window,
    prepare_window,
    register_stream,
    resume_point,
    window_bounds,
    window_packets,
)
from hwosim_assets.stream.writer import StreamStateError, StreamWriter, in_transaction

ON_TIME_S = 1.0  # a packet emitted more than this after its due time was part of a backlog


@dataclass
class RunReport:
    """What one run did, over all its windows; ``metadata()`` names carry units."""

    stream: str
    first_window: int  # as requested
    last_window: int
    target_rate: float | None  # packets per second (rate mode)
    windows: list[WindowReport] = field(default_factory=list)
    waited_s: float = 0.0  # waiting for the run before it
    took_over_from: int | None = None  # first undelivered window this run took over from a stalled run
    taken_over_at: int | None = None  # window from which a later run took this (stalled) run's windows
    exhausted: bool = False  # a non-looping stream delivered its last packet
    retained_rows_deleted: int = 0
    wall_s: float = 0.0

    def _concat(self, name: str) -> np.ndarray:
        arrays = [getattr(w, name) for w in self.windows if len(getattr(w, name))]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    def metadata(self) -> dict:
        """Figures for the Dagster materialization: counts, and times in the units their names say.

        Achieved rate counts only packets emitted on time (within
        ``ON_TIME_S`` of their due time): a backlog delivered at once after
        downtime is reported as ``backlog_packets``, not as a rate.
        """
        scheduled, emitted, committed = self._concat("scheduled"), self._concat("emitted"), self._concat("committed_at")
        done = ~np.isnan(emitted)
        scheduled, emitted = scheduled[done], emitted[done]
        commit_lag = committed[done] - emitted if len(committed) == len(done) else np.zeros(0)
        late = emitted - scheduled
        on_time = late < ON_TIME_S
        steady = pace_stats(scheduled[on_time], emitted[on_time]) if on_time.sum() > 1 else None
        rate = steady.achieved_rate if steady and np.isfinite(steady.achieved_rate) else None
        ms = lambda q: round(float(np.percentile(late, q)) * 1e3, 3) if len(late) else None  # noqa: E731
        sums = lambda name: sum(getattr(w, name) for w in self.windows)  # noqa: E731
        offsets = [w.first_offset for w in self.windows if w.first_offset is not None]
        lasts = [w.last_offset for w in self.windows if w.last_offset is not None]
        return {
            "windows": f"{self.windows[0].window_index}-{self.windows[-1].window_index}" if self.windows else "none",
            "packets_delivered": sums("packets_delivered"),
            "rows_written": sums("rows_written"),
            "target_rate_per_s": self.target_rate,
            "achieved_rate_per_s": round(rate, 3) if rate is not None else None,
            "backlog_packets": int((~on_time).sum()),
            "start_lag_s": round(float(late[0]), 3) if len(late) else None,
            "lateness_p50_ms": ms(50),
            "lateness_p99_ms": ms(99),
            "lateness_max_ms": round(float(late.max()) * 1e3, 3) if len(late) else None,
            # released -> visible to readers: what the database adds after the pacer released a packet
            "commit_lag_p99_ms": round(float(np.nanpercentile(commit_lag, 99)) * 1e3, 3)
            if np.isfinite(commit_lag).any()
            else None,
            "waited_s": round(self.waited_s, 3),
            "took_over_from_window": self.took_over_from,
            "taken_over_at_window": self.taken_over_at,
            "drops": sums("drops"),
            "duplicates": sums("duplicates"),
            "reordered": sums("reordered"),
            "outage_held": sums("outage_held"),
            "first_offset": offsets[0] if offsets else None,
            "last_offset": lasts[-1] if lasts else None,
            "already_committed": all(w.already_committed for w in self.windows),
            "retries": sums("retries"),
            "exhausted": self.exhausted,
            "retained_rows_deleted": self.retained_rows_deleted,
            "wall_s": round(self.wall_s, 3),
        }


@dataclass(frozen=True)
class Turn:
    """When a run may start: from ``window``; ``ready`` when it may open that window now (the
    windows before are committed, or were given up by a stalled run)."""

    window: int
    waited_s: float
    ready: bool


def wait_for_turn(
    engine: sa.Engine,
    spec: StreamSpec,
    first: int,
    start_time: float,
    *,
    stall_s: float | None = None,
    max_wait_s: float | None = None,
    take_over: bool = True,
    poll_s: float = 0.02,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Turn:
    """Wait until the windows before ``first`` are committed, or until ``first`` is due.

    Returns ``ready=False`` when ``first``'s first packet is due (``start_time``)
    while the run before is still committing, on time: the caller starts
    pacing and opens its window once the run before is done (waiting again
    with ``start_time=0``). When the run before stopped (nothing committed
    for ``stall_s`` while its window was overdue by as much), the turn starts
    from its first undelivered window, or, with ``take_over=False``, a
    StreamStateError says so. ``max_wait_s`` bounds the whole wait.
    """
    began = clock()
    window_s = spec.window_seconds
    stall_s = stall_s if stall_s is not None else spec.stall_seconds

    def due(n: int) -> float:
        return start_time + (n - first) * window_s if window_s else start_time

    state = resume_point(engine, spec.name)
    if (state.next_window if state else 0) >= first:
        return Turn(first, 0.0, True)
    if window_s:  # nothing to watch before the predecessor's last packet is near
        ahead = due(first) - 0.5 - clock()
        if ahead > 0:
            sleep(ahead)
    # the stall clock starts at the last commit, so a run launched after an outage that killed the
    # run before (its process went with the daemon's) takes over at once, not a stall limit later
    last_offset, last_change = (state.next_offset, state.updated) if state and state.updated else (None, clock())
    while True:
        state = resume_point(engine, spec.name)
        next_window = state.next_window if state else 0
        now = clock()
        if next_window >= first:
            return Turn(first, now - began, True)
        offset = state.next_offset if state else 0
        if offset != last_offset:
            last_offset, last_change = offset, now
        if now - last_change > stall_s and now > due(next_window) + stall_s:
            if not take_over:
                raise StreamStateError(
                    f"stream {spec.name}: the run before stopped in window {next_window} "
                    f"(nothing committed for {now - last_change:.0f} s); the next run takes its windows over"
                )
            return Turn(next_window, now - began, True)  # the run before stopped: take over its windows
        if next_window == first - 1 and now >= start_time > 0:
            return Turn(first, now - began, False)  # due now: pace on time, open once the run before is done
        if max_wait_s is not None and now - began > max_wait_s:
            raise StreamStateError(
                f"stream {spec.name}: window {next_window} is still not complete after {now - began:.0f} s, "
                f"so window {first} cannot start; its run may still be replaying: look at the stream's runs"
            )
        sleep(poll_s)


def replay_run(
    engine: sa.Engine,
    spec: StreamSpec,
    table: pl.DataFrame,
    *,
    first: int,
    last: int,
    start_time: float,
    stream_faults: dict[str, dict[str, float]],
    seed: int,
    profile_hash: str,
    pace: bool = True,
    max_wait_s: float | None = None,
    retain_laps: int | None = None,
    retain_hours: float | None = None,
) -> RunReport:
    """Replay windows ``first``..``last`` of ``table`` (the perturbed table) after the runs before.

    ``start_time`` is the due time of window ``first``'s first packet; in
    rate mode window ``n`` is due ``(n - first) * window / rate`` later, in
    cadence mode each window starts where the one before ended.
    """
    began = time.perf_counter()
    report = RunReport(spec.name, first, last, spec.pacing.rate if spec.pacing.mode == "rate" else None)
    seqs = table["seq"].unique().sort()
    register_stream(engine, spec, profile_hash, status="running", source_packets=len(seqs))
    writer = StreamWriter(engine, spec.name, spec.family)
    try:
        turn = wait_for_turn(engine, spec, first, start_time, max_wait_s=max_wait_s)
        report.waited_s = turn.waited_s
        if turn.window < first:
            report.took_over_from = turn.window
        # Every window planned before the first is due: a window boundary then waits for nothing.
        windows, window_start = [], start_time + (turn.window - first) * (spec.window_seconds or 0.0)
        for n in range(turn.window, last + 1):
            if spec.window_seconds:
                window_start = start_time + (n - first) * spec.window_seconds
            w = prepare_window(
                spec,
                window_packets(spec, table, n, seqs=seqs),
                window_index=n,
                start_time=window_start,
                stream_faults=stream_faults,
                seed=seed,
                profile_hash=profile_hash,
            )
            windows.append(w)
            window_start = w.report.next_start_time or window_start  # cadence: chained; asap: now-ish anyway
            if window_bounds(spec, n, len(seqs)).exhausted:
                report.exhausted = True
                break

        def retain(w: PreparedWindow) -> None:
            report.windows.append(w.report)
            if retain_laps is not None or retain_hours is not None:
                report.retained_rows_deleted += apply_retention(engine, spec, laps=retain_laps, hours=retain_hours)

        try:
            deliver(
                writer,
                windows,
                opened=open_window(writer, windows[0]) if turn.ready else None,
                pace=pace,
                # the run before is still committing its last packets: this run's pacer starts on time
                # all the same, and its committing thread opens the first window once they are in
                before_first=None if turn.ready else lambda: wait_for_turn(engine, spec, first, 0.0, take_over=False),
                after_window=retain,
            )
        except WindowTakenError as taken:
            state = resume_point(engine, spec.name)
            if state is None or state.window <= windows[taken.window_index].window_index:
                raise  # not taken by a later run: a real inconsistency
            # This run stalled (starved of CPU, suspended) for long enough that the next run took
            # its windows over (see wait_for_turn): the writer refused to write twice. Not an
            # error of the stream: end here and leave the windows to the run that has them.
            report.taken_over_at = windows[taken.window_index].window_index
            report.exhausted = False
    finally:
        writer.close()
    register_stream(engine, spec, profile_hash, status="finished" if report.exhausted else "idle")
    report.wall_s = time.perf_counter() - began
    return report


def _first_offset_where(
    conn: sa.Connection, table: sa.Table, stream: str, column: str, at_least: float, lo: int, hi: int
) -> int:
    """The smallest offset in [lo, hi) whose row has ``column >= at_least``, by bisection on the
    primary key: ``emitted_time`` and ``lap`` only grow with the offset (give or take a reordered
    packet), so no extra index is needed."""
    probe = sa.select(table.c[column]).where(table.c.stream == stream, table.c.offset >= sa.bindparam("o"))
    probe = probe.order_by(table.c.offset).limit(1)
    while lo < hi:
        mid = (lo + hi) // 2
        value = conn.execute(probe, {"o": mid}).scalar()
        if value is None or value >= at_least:
            hi = mid
        else:
            lo = mid + 1
    return lo


def apply_retention(engine: sa.Engine, spec: StreamSpec, *, laps: int | None = None, hours: float | None = None) -> int:
    """Delete the stream's rows older than its last ``laps`` laps or ``hours`` hours; return rows deleted.

    Consumers that lag further behind than that see the gap as missing
    offsets. The offsets table and the fault truth are kept.
    """
    table = schema.ROW_TABLES[spec.family]

    def cut_and_delete(conn: sa.Connection) -> int:
        lo = conn.execute(sa.select(sa.func.min(table.c.offset)).where(table.c.stream == spec.name)).scalar()
        hi = conn.execute(sa.select(sa.func.max(table.c.offset)).where(table.c.stream == spec.name)).scalar()
        if lo is None or hi is None:  # no rows (min and max are null together)
            return 0
        cut = lo
        if hours is not None:
            since = time.time() - hours * 3600
            cut = max(cut, _first_offset_where(conn, table, spec.name, "emitted_time", since, lo, hi + 1))
        if laps is not None:
            last = sa.select(table.c.lap).where(table.c.stream == spec.name, table.c.offset == hi)
            current = conn.execute(last).scalar()
            if current is not None:  # the newest row (its lap): gone only if deleted meanwhile
                cut = max(cut, _first_offset_where(conn, table, spec.name, "lap", current - laps + 1, lo, hi + 1))
        if cut <= lo:
            return 0
        return conn.execute(table.delete().where(table.c.stream == spec.name, table.c.offset < cut)).rowcount

    return in_transaction(engine, cut_and_delete)  # SQLite may be busy with other streams' commits: retried
