"""One window of a stream's packets, faulted, paced and written exactly once.

A stream's source is the perturbed table of its observation x profile, its
packets in ``seq`` order. Window ``w`` covers source positions
``[w * window, (w + 1) * window)``; a position counts over laps in a looping
stream (``seq = position % n_packets``, ``lap = position // n_packets``), so
consecutive windows abut with no gap or overlap, across the wrap too.

A replay run (:func:`hwosim_assets.stream.runs.replay_run`, launched by the
stream's sensor for the windows its schedule says are due) prepares all its
windows first (:func:`prepare_window`: rows, fault plan, due times; no
database), then delivers them as one paced sequence (:func:`deliver`): the
pacer releases each packet at its due time and a committing thread opens
each window (:func:`open_window`) and writes the released packets with
their offsets. A single window: :func:`replay_window`.

A rerun of a window continues after its committed offset (the plan is
deterministic, so the remaining deliveries are the same), which makes a run
killed with SIGKILL safe to rerun. A rerun of a finished window writes nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import sqlalchemy as sa

from hwosim_assets.records import FAMILIES, PIXEL_DTYPES
from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.faults import DeliveryPlan, plan_window
from hwosim_assets.stream.pacing import Pacer, pace_stats, schedule_offsets, window_duration
from hwosim_assets.stream.writer import Committed, StreamStateError, StreamWriter, in_transaction, insert_if_absent

IMAGE_DTYPE = ",".join(PIXEL_DTYPES[p] for p in ("sci", "err", "dq"))


@dataclass(frozen=True)
class WindowBounds:
    """The source positions one window covers (``stop`` is where the next window starts)."""

    window_index: int
    start: int
    stop: int
    n_packets: int
    loop: bool

    @property
    def positions(self) -> np.ndarray:
        return np.arange(self.start, self.stop, dtype=np.int64)

    @property
    def seq_index(self) -> np.ndarray:
        """Index into the source packets sorted by seq."""
        return self.positions % self.n_packets if self.n_packets else self.positions

    @property
    def laps(self) -> np.ndarray:
        return self.positions // self.n_packets if self.n_packets else np.zeros(0, dtype=np.int64)

    @property
    def exhausted(self) -> bool:
        """True when this window reaches the end of a non-looping source (no more windows after it)."""
        return not self.loop and self.stop >= self.n_packets


def window_bounds(spec: StreamSpec, window_index: int, n_packets: int) -> WindowBounds:
    """Positions of window ``window_index`` over a source of ``n_packets`` packets.

    Non-looping streams end: windows past the end are empty, the last one may
    be short. Looping streams wrap into the next lap.
    """
    if window_index < 0:
        raise ValueError("window_index must be >= 0")
    start, stop = window_index * spec.window, (window_index + 1) * spec.window
    if not spec.loop or n_packets == 0:
        start, stop = min(start, n_packets), min(stop, n_packets)
    return WindowBounds(window_index, start, stop, n_packets, spec.loop)


def window_packets(
    spec: StreamSpec, table: pl.DataFrame, window_index: int, seqs: pl.Series | None = None
) -> pl.DataFrame:
    """The rows of ``table`` (a perturbed table) for one window, in delivery order, with ``lap`` and ``position``.

    ``seqs`` (the table's packet numbers, unique and sorted) may be passed by
    a caller that takes several windows from one table."""
    seqs = table["seq"].unique().sort() if seqs is None else seqs
    bounds = window_bounds(spec, window_index, len(seqs))
    chosen = pl.DataFrame(
        {"seq": seqs.gather(bounds.seq_index), "lap": bounds.laps, "position": bounds.positions},
        schema={"seq": pl.Int64, "lap": pl.Int64, "position": pl.Int64},
    )
    rows = chosen.join(table, on="seq", how="inner", maintain_order="left")
    return rows.sort(["position", "channel"] if "channel" in rows.columns else "position", maintain_order=True)


@dataclass
class WindowReport:
    """What one replay run did (rows and packets are this run's; offsets are the window's)."""

    stream: str
    window_index: int
    rows_written: int = 0
    packets_delivered: int = 0  # deliveries written by this run (duplicates count twice)
    packets_in_window: int = 0  # source packets of the window
    planned_deliveries: int = 0  # deliveries the fault plan makes of them
    drops: int = 0
    duplicates: int = 0
    reordered: int = 0
    outage_held: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    resumed_from_offset: int | None = None  # set when a rerun continued a partial window
    already_committed: bool = False  # the window was complete before this run
    achieved_rate: float = 0.0
    lateness_p50: float = 0.0
    lateness_p99: float = 0.0
    lateness_max: float = 0.0
    retries: int = 0  # connection-loss retries of the writer
    next_start_time: float | None = None  # due time of the next window's first packet
    wall_seconds: float = 0.0
    truth: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    commit_lag_p99: float = 0.0  # seconds from release (emitted_time) to the commit that made a packet visible
    scheduled: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # due times of what was written
    emitted: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # when each was released
    committed_at: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # when its commit returned

    def metadata(self) -> dict:
        """Plain values for Dagster materialization metadata."""
        return {k: v for k, v in self.__dict__.items() if k not in ("truth", "scheduled", "emitted", "committed_at")}


def register_stream(
    engine: sa.Engine,
    spec: StreamSpec,
    profile_hash: str,
    status: str = "registered",
    source_packets: int | None = None,
) -> None:
    """Insert or update the stream's row in ``hwosim_streams`` (safe when runs race to do it)."""
    s = schema.streams
    now = time.time()
    values = dict(
        observation=spec.observation,
        profile=spec.profile,
        profile_hash=profile_hash,
        family=spec.family,
        pacing=json.dumps(
            {**spec.pacing.as_dict(), "tick_seconds": spec.tick_seconds, "window": spec.window, "loop": spec.loop}
        ),
        status=status,
        updated=now,
    )
    if source_packets is not None:
        values["source_packets"] = source_packets

    def upsert(conn: sa.Connection) -> None:
        insert_if_absent(conn, s, name=spec.name, created=now, **values)
        conn.execute(s.update().where(s.c.name == spec.name).values(**values))

    in_transaction(engine, upsert)


def stream_status(engine: sa.Engine, stream: str) -> str | None:
    """The stream's status in ``hwosim_streams`` (registered, running, idle, finished), None if unknown."""
    s = schema.streams
    with engine.connect() as conn:
        return conn.execute(sa.select(s.c.status).where(s.c.name == stream)).scalar()


def resume_point(engine: sa.Engine, stream: str) -> Committed | None:
    """The committed state of ``stream`` (None if it never delivered).

    ``state.next_window`` is the window to run next: the same window again if
    it is incomplete (a crashed run), else the one after.
    """
    writer = StreamWriter(engine, stream, "spectra", method="insert")  # family is irrelevant for reading
    try:
        return writer.committed()
    finally:
        writer.close()


@dataclass(frozen=True)
class _WindowPackets:
    """A window's rows and, per packet (in window order), its seq, lap, position, event time,
    first row and row count."""

    rows: pl.DataFrame
    seq: np.ndarray
    lap: np.ndarray
    position: np.ndarray
    event_time: np.ndarray
    row_start: np.ndarray
    row_count: np.ndarray


def _packets_of(df: pl.DataFrame, spec: StreamSpec, window_index: int) -> _WindowPackets:
    """The per-packet arrays of a window's rows."""
    if "position" not in df.columns:
        df = df.with_columns(
            (pl.col("seq").rle_id() + window_index * spec.window).cast(pl.Int64).alias("position"),
            pl.lit(0, dtype=pl.Int64).alias("lap"),
        )
    position = df["position"].to_numpy()
    starts = np.flatnonzero(np.diff(position, prepend=position[0] - 1) != 0) if len(position) else np.zeros(0, int)
    counts = np.diff(np.append(starts, len(position)))
    return _WindowPackets(
        rows=df,
        seq=df["seq"].to_numpy()[starts],
        lap=df["lap"].to_numpy()[starts],
        position=position[starts],
        event_time=df["event_time"].to_numpy()[starts],
        row_start=starts,
        row_count=counts,
    )


@dataclass
class PreparedWindow:
    """One window ready to deliver: its rows, fault plan and due times, before any database work.

    Preparing is pure (deterministic from the spec, rows, seed and profile),
    so a run prepares all its windows before the first is due and a window
    boundary never waits for planning.
    """

    spec: StreamSpec
    report: WindowReport
    packets: _WindowPackets
    df: pl.DataFrame  # the window's rows, the stream columns of its family
    plan: DeliveryPlan
    next_position: int  # source position where the next window starts
    start_time: float  # due time of the window's first packet (UTC epoch seconds)

    @property
    def window_index(self) -> int:
        return self.report.window_index

    @property
    def scheduled(self) -> np.ndarray:
        return self.start_time + self.plan.due_s


def prepare_window(
    spec: StreamSpec,
    packets: pl.DataFrame,
    *,
    window_index: int,
    start_time: float,
    stream_faults: dict[str, dict[str, float]],
    seed: int,
    profile_hash: str,
) -> PreparedWindow:
    """Plan one window of ``packets`` (its rows, as from :func:`window_packets`): pacing offsets,
    stream faults and due times from ``start_time``."""
    report = WindowReport(stream=spec.name, window_index=window_index)
    window = _packets_of(packets, spec, window_index)
    seq, lap, position, event_time = window.seq, window.lap, window.position, window.event_time
    n = len(seq)
    report.packets_in_window = n
    due = schedule_offsets(spec.pacing, n, event_time)
    report.next_start_time = start_time + window_duration(spec.pacing, n, event_time)
    plan = plan_window(
        seq,
        lap,
        due,
        stream_faults,
        seed=seed,
        profile_hash=profile_hash,
        observation=spec.observation,
        event_time_mjd=event_time,
        speed=spec.pacing.speed if spec.pacing.mode == "cadence" else None,
    )
    kinds = plan.truth["kind"]
    report.planned_deliveries = len(plan)
    report.drops = int((kinds == "packet_loss").sum())
    report.duplicates = int((kinds == "duplicates").sum())
    report.reordered = int((kinds == "reordering").sum())
    report.outage_held = int((kinds == "outage").sum())
    next_position = int(position[-1]) + 1 if n else (window_index + 1) * spec.window
    df = window.rows[list(FAMILIES[spec.family].stream_columns)]
    return PreparedWindow(spec, report, window, df, plan, next_position, start_time)


def open_window(writer: StreamWriter, w: PreparedWindow) -> Committed:
    """Open ``w`` in the stream database (or find it opened) and return the committed state;
    the report gets the window's offsets and truth, or ``already_committed``."""
    report, plan = w.report, w.plan
    state = writer.open_window(
        window=w.window_index, n_deliveries=len(plan), next_seq_position=w.next_position, truth=plan.truth
    )
    if state.window == w.window_index:
        report.first_offset = state.window_first_offset
        report.last_offset = state.window_first_offset + len(plan) - 1 if len(plan) else None
        report.truth = plan.truth.with_columns(
            pl.lit(w.spec.name).alias("stream"),
            pl.lit(w.window_index, dtype=pl.Int64).alias("window"),
            (pl.col("delivery") + state.window_first_offset).alias("offset"),
        ).drop("delivery")
        if state.window_first_offset < state.next_offset < state.window_end_offset:
            report.resumed_from_offset = state.next_offset
    # an old window, or this one finished before (nothing to write; an empty
    # window of an exhausted source completes on opening)
    report.already_committed = state.window > w.window_index or (state.window_complete and len(plan) > 0)
    return state


def replay_window(
    engine: sa.Engine,
    spec: StreamSpec,
    packets: pl.DataFrame,
    *,
    window_index: int,
    start_time: float,
    stream_faults: dict[str, dict[str, float]],
    seed: int,
    profile_hash: str,
    pace: bool = True,
    writer_method: str = "auto",
    max_batch_rows: int = 50_000,
    writer: StreamWriter | None = None,
) -> WindowReport:
    """Replay one window of ``packets`` (rows of the window, as from :func:`window_packets`).

    Due times are ``start_time`` (UTC epoch seconds) plus the pacing offsets
    plus the fault delays; ``pace=False`` writes as fast as possible (the
    scheduled times are still recorded). Rows are written in batches of what
    is due, each committed with the offset. The stream's registry row is
    created or updated (status ``running``, then ``idle``). ``report.truth``
    holds the window's stream-fault truth with absolute offsets (also stored
    in ``hwosim_truth_stream_faults``), for the caller to keep in the lake.
    ``writer`` is the caller's (kept open), else one of the window's own.
    A run of several windows delivers them together (:func:`deliver`).
    """
    began = time.perf_counter()
    w = prepare_window(
        spec,
        packets,
        window_index=window_index,
        start_time=start_time,
        stream_faults=stream_faults,
        seed=seed,
        profile_hash=profile_hash,
    )
    register_stream(engine, spec, profile_hash, status="running")
    own_writer = writer is None
    writer = writer or StreamWriter(engine, spec.name, spec.family, method=writer_method)
    try:
        deliver(writer, [w], opened=open_window(writer, w), pace=pace, max_batch_rows=max_batch_rows)
    finally:
        if own_writer:
            writer.close()
    register_stream(engine, spec, profile_hash, status="idle")
    w.report.wall_seconds = time.perf_counter() - began
    return w.report


class _Committer:
    """Commits released packets in order, in a thread of its own, coalescing what queued up.

    The pacer releases packets at their due times and stamps them with the
    release time (``emitted_time``); it never waits for the database. While
    one commit is in flight, later releases queue up and go in the next
    commit together, so the commit rate adapts to the sink: at 5,000 packets/s
    a commit takes ~20 packets, and a slow fsync delays visibility, not the
    schedule. What the database adds is measured apart: ``committed_at`` is
    when each packet's commit returned (reported as the commit lag). The
    queue is bounded (``max_queued`` packets): a sink slower than the stream
    for long makes the pacer wait, and lateness shows it.
    """

    def __init__(self, commit: Callable[[int, int], None], max_queued: int):
        self.commit, self.max_queued = commit, max_queued
        self.pending: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.closed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="hwosim-committer", daemon=True)
        self.thread.start()

    def release(self, i: int, j: int) -> None:
        with self.cond:
            while self.pending and self.pending[-1][1] - self.pending[0][0] >= self.max_queued and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            self.pending.append((i, j))
            self.cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.closed:
                    self.cond.wait()
                if not self.pending:
                    return
                i, j = self.pending[0][0], self.pending[-1][1]  # everything released so far, contiguous
                self.pending.clear()
                self.cond.notify_all()
            try:
                self.commit(i, j)
            except BaseException as error:  # noqa: BLE001 - handed to the pacer's thread
                with self.cond:
                    self.error = error
                    self.cond.notify_all()
                return

    def close(self) -> None:
        """Wait for every released packet to be committed; raise what a commit raised."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join()
        if self.error is not None:
            raise self.error


class WindowTakenError(StreamStateError):
    """A later run has this window (this run stalled past the stall limit): the run stops here."""

    def __init__(self, window_index: int, message: str):
        super().__init__(message)
        self.window_index = window_index


def deliver(
    writer: StreamWriter,
    windows: list[PreparedWindow],
    *,
    opened: Committed | None = None,
    pace: bool = True,
    max_batch_rows: int = 50_000,
    before_first: Callable[[], object] | None = None,
    after_window: Callable[[PreparedWindow], None] | None = None,
) -> None:
    """Deliver consecutive windows of one stream: one pacer, one committing thread.

    The pacer releases every delivery at its due time, across window
    boundaries, and never waits for the database. The committing thread
    opens each window when it reaches it, writes what was released in
    batches, each with its offsets, and calls ``after_window`` (retention)
    when a window is complete. ``opened`` is the first window's state when
    the caller opened it already (a rerun continues after its committed
    offset); ``before_first`` runs in the committing thread before it opens
    the first window (waiting for the run before to commit its last one).
    So a window boundary, within a run or between runs, costs the schedule
    nothing: under load a commit can take a second, and when the next
    window waited for it, its first packets were late by as much (p99 of a
    20/s stream beside eleven others: 1.4 s).

    A window that a later run has raises :class:`WindowTakenError`; the
    reports of the windows before it are complete.
    """
    if not windows:
        return
    image_dtype = IMAGE_DTYPE if windows[0].spec.family == "images" else None
    max_rows = max((int(w.packets.row_count.max()) for w in windows if len(w.packets.row_count)), default=1)
    max_batch = max(1, max_batch_rows // max(1, max_rows))
    sizes = [len(w.plan) for w in windows]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    scheduled = np.concatenate([w.scheduled for w in windows])
    emitted = np.full(len(scheduled), np.nan)
    committed_at = np.full(len(scheduled), np.nan)
    states: list[Committed | None] = [opened] + [None] * (len(windows) - 1)
    skip = [0] * len(windows)  # per window: deliveries committed before this run got to them
    counters: dict[int, tuple[int, int]] = {}

    def ready(k: int) -> Committed:
        state = states[k]
        if state is None:
            if k == 0 and before_first is not None:
                before_first()
            state = states[k] = open_window(writer, windows[k])
            if k > 0 and state.window > windows[k].window_index:
                raise WindowTakenError(k, f"stream {writer.stream}: window {windows[k].window_index} was taken")
        if k not in counters:
            done = state.next_offset - state.window_first_offset if state.window == windows[k].window_index else 0
            skip[k] = sizes[k] if windows[k].report.already_committed else max(0, done)
            counters[k] = (writer.packets_written, writer.retries)
        return state

    def finish(k: int) -> None:
        w, lo, hi = windows[k], int(bounds[k]) + skip[k], int(bounds[k + 1])
        r = w.report
        r.scheduled, r.emitted, r.committed_at = scheduled[lo:hi], emitted[lo:hi], committed_at[lo:hi]
        packets_before, retries_before = counters[k]
        r.packets_delivered = writer.packets_written - packets_before  # what this run committed itself
        r.retries = writer.retries - retries_before
        stats = pace_stats(r.scheduled, r.emitted)
        r.achieved_rate, r.lateness_max = stats.achieved_rate, stats.lateness_max
        r.lateness_p50, r.lateness_p99 = stats.lateness_p50, stats.lateness_p99
        lag = r.committed_at - r.emitted
        r.commit_lag_p99 = float(np.nanpercentile(lag, 99)) if np.isfinite(lag).any() else 0.0
        if after_window is not None:
            after_window(w)

    at = [0]  # the window the committing thread is in

    def commit(i: int, j: int) -> None:
        """Commit the released deliveries [i, j) (indices over all the windows), window by window."""
        while at[0] < len(windows):
            k = at[0]
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if lo >= j and lo < hi:
                return  # nothing of window k released yet
            state, w = ready(k), windows[k]
            stop = min(j, hi)
            for a in range(max(i, lo + skip[k]), stop, max_batch):  # at most max_batch_rows rows a transaction
                b = min(a + max_batch, stop)
                offsets = state.window_first_offset + np.arange(a - lo, b - lo)
                packets = w.plan.packet[a - lo : b - lo]
                rows = _rows(w.df, w.packets, packets, offsets, scheduled[a:b], emitted[a:b], image_dtype)
                try:
                    w.report.rows_written += writer.write_batch(
                        rows, window=w.window_index, end_offset=int(offsets[-1]) + 1
                    )
                except StreamStateError as error:
                    raise WindowTakenError(k, str(error)) from error
                committed_at[a:b] = time.time()
            if stop < hi:
                return
            finish(k)
            at[0] = k + 1

    if opened is not None:
        ready(0)  # what the caller's opening found committed already is not released again
    first = skip[0]
    committer = _Committer(commit, max_queued=max(max_batch, 1000))
    try:
        if pace:
            for i, j, now in Pacer().batches(scheduled[first:], max_batch=max_batch):
                emitted[first + i : first + j] = now
                committer.release(first + i, first + j)
        else:
            for i in range(first, len(scheduled), max_batch):
                j = min(i + max_batch, len(scheduled))
                emitted[i:j] = time.time()
                committer.release(i, j)
        committer.release(len(scheduled), len(scheduled))  # the end: windows with nothing left to write
    finally:
        committer.close()


# Per-batch frames are built with eager polars calls (indexing, hstack): the
# expression engine costs ~60 us per call, which adds up at one commit per packet.


def _rows(
    df: pl.DataFrame,
    window: _WindowPackets,
    packets: np.ndarray,
    offsets: np.ndarray,
    scheduled: np.ndarray,
    emitted: np.ndarray,
    image_dtype: str | None,
) -> pl.DataFrame:
    """The rows of ``packets`` (indices into the window's packets) with their delivery columns: every
    row of each packet (a spectrum's channels; an image tile is one row, given ``image_dtype``)."""
    counts = window.row_count[packets]
    first_row_of_packet = np.repeat(np.cumsum(counts) - counts, counts)
    idx = np.repeat(window.row_start[packets], counts) + (np.arange(counts.sum()) - first_row_of_packet)
    delivery = [
        pl.Series("offset", np.repeat(offsets, counts), dtype=pl.Int64),
        pl.Series("lap", np.repeat(window.lap[packets], counts), dtype=pl.Int32),
        pl.Series("scheduled_time", np.repeat(scheduled, counts), dtype=pl.Float64),
        pl.Series("emitted_time", np.repeat(emitted, counts), dtype=pl.Float64),
    ]
    if image_dtype is not None:
        delivery.append(pl.Series("dtype", [image_dtype] * len(idx), dtype=pl.Utf8))
    return df[idx].hstack(delivery)
