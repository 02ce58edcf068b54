"""What a stream's sensor asks for next: a pure function of the stream, its
cursor, what is committed, the runs in flight and the clock. No Dagster, no I/O.

A live stream must hold its rate although the daemon ticks irregularly and a
run takes seconds to start. So, in ``rate`` mode:

* Windows are due on one absolute clock: window ``n`` at
  ``t0 + n * window / rate``; they abut, and nothing ever shifts them.
* Runs are requested *ahead*: once a window not yet requested is due before
  ``now + lead_s``, one run is requested for it and the windows after it,
  about ``run_seconds`` of them (``spec.windows_per_run``), so that a run is
  already started and waiting when its first window is due. ``lead_s``
  covers the longest gap between two ticks plus the launch latency measured
  on this machine (see :func:`lead_seconds`). Starting a run costs seconds of
  CPU, so runs are long and few; windows stay on their clock whatever the
  run boundaries. Run boundaries of different streams are spread over the
  run period (a phase from the stream's name), so that streams started
  together do not launch their runs together.
* A tick that finds several windows due asks for them in **one** run: after
  downtime, that run delivers every overdue packet at once (stamped with its
  scheduled time, so lateness records the outage) and then paces the rest.
  The lag drains instead of being carried.
* The committed offset in the stream database is the single source of truth
  for what was delivered: a sensor that lost its cursor (or a second demo)
  continues after the last committed window, the next one due one lead from
  now. When nothing is in flight but windows that were
  requested are not delivered (a run failed or its process died), the next
  request starts again from the first undelivered window, with a new run key;
  after ``max_retries`` failed attempts at the same window the stream stops
  and says so. A run still marked in flight whose windows are long overdue
  (``stale_s``) no longer blocks new requests, nor do runs that were in
  flight when the stream stopped committing (nothing for the stall limit
  while a window is that overdue: killed with the daemon, which the instance
  cannot tell); the writer's exactly-once offsets make a late duplicate run
  harmless.

``cadence`` streams chain each window from the previous one's end (the gap
to the next packet is only known then), and ``asap`` streams have no clock:
both request one run at a time, after the previous one finished.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field

from hwosim_assets.stream.config import StreamSpec

DEFAULT_LAUNCH_S = 5.0  # assumed run launch latency until one has been measured
DAEMON_LOOP_S = 5.0  # the sensor daemon's own loop may add up to this to a tick interval
MAX_RETRIES = 3  # failed attempts at one window before the stream stops
MAX_IN_FLIGHT = 6  # runs of one stream waiting or writing at once


@dataclass(frozen=True)
class Cursor:
    """The sensor's own state, kept by Dagster between ticks (as JSON)."""

    start_time: float | None = None  # t0: due time of window 0's first packet (UTC epoch s)
    next_window: int = 0  # first window not requested yet
    retry_window: int | None = None  # a window being requested again after a failed or lost run
    attempts: int = 0  # how often retry_window was requested again

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        raw = json.loads(text)
        known = {k: raw[k] for k in ("start_time", "next_window", "retry_window", "attempts") if k in raw}
        if "window" in raw and "next_window" not in raw:  # the cursor of earlier versions
            known["next_window"] = raw["window"]
        return cls(**known)


@dataclass(frozen=True)
class Flight:
    """A run of the stream that has not finished: the windows it replays and when it was created."""

    first: int
    last: int
    created: float  # UTC epoch s


@dataclass(frozen=True)
class Request:
    """Replay windows ``first``..``last`` (inclusive) in one run."""

    first: int
    last: int
    start_time: float  # due time of the first window's first packet (UTC epoch s)
    run_key: str
    overdue: int  # windows in the request whose last packet was already due


@dataclass(frozen=True)
class Decision:
    request: Request | None
    skip: str | None
    cursor: Cursor
    lag_s: float  # how far past its end the first undelivered window is, seconds (0 when on time)
    in_flight: int = 0
    notes: list[str] = field(default_factory=list)


def stream_phase(name: str, period: int) -> int:
    """A stable offset in [0, period) from the stream's name: where its run boundaries fall."""
    return zlib.crc32(name.encode()) % period if period > 1 else 0


def lead_seconds(spec: StreamSpec, launch_latencies: list[float]) -> float:
    """How far ahead of its due time a window is requested.

    The next tick may come up to one tick interval plus one daemon loop
    later, and a run then needs its launch latency to start: the worst of
    the recently measured ones (or :data:`DEFAULT_LAUNCH_S`), with 50 % margin.
    """
    launch = max(launch_latencies) if launch_latencies else DEFAULT_LAUNCH_S
    return spec.tick_seconds + DAEMON_LOOP_S + 1.5 * launch


def window_due(spec: StreamSpec, t0: float, window: int) -> float:
    """Rate mode: the due time of window ``window``'s first packet."""
    return spec.window_start_time(window, t0)


def decide(
    spec: StreamSpec,
    cursor: Cursor,
    *,
    now: float,
    delivered_next: int,
    in_flight: list[Flight],
    last_failed: str | None = None,
    finished: bool = False,
    lead_s: float = DEFAULT_LAUNCH_S,
    chained_start: float | None = None,
    max_windows: int = 1000,
    max_in_flight: int = MAX_IN_FLIGHT,
    max_retries: int = MAX_RETRIES,
    stale_s: float = 120.0,
    last_commit: float | None = None,
) -> Decision:
    """The next run request of a stream, or why there is none now.

    ``delivered_next`` is the window to run next according to the stream
    database (``Committed.next_window``, 0 if nothing was committed);
    ``in_flight`` the stream's runs that have not finished; ``last_failed``
    the status of its latest finished run when that was not a success;
    ``chained_start`` the ``next_start_time`` the previous window reported
    (cadence mode); ``last_commit`` when the stream last committed (its
    offsets row's ``updated``). See the module docstring for the rules.
    """
    if finished:
        return Decision(None, "finished: the stream has delivered its last packet (loop: false)", cursor, 0.0)
    rate_mode = spec.pacing.mode == "rate"
    window_s = spec.window_seconds or 0.0
    t0 = cursor.start_time
    if t0 is None:  # a new stream, or a cursor lost: continue after what is committed, one lead from now
        t0 = spec.start if spec.start is not None else now + lead_s - delivered_next * window_s
    # how far past its end the first undelivered window is (0 while the windows keep their schedule)
    lag = (
        max(0.0, now - window_due(spec, t0, delivered_next + 1)) if rate_mode and cursor.start_time is not None else 0.0
    )

    notes = []
    if rate_mode:  # a run whose windows are long overdue no longer counts as in flight
        live = [f for f in in_flight if window_due(spec, t0, f.last) + window_s + stale_s > now]
        # Nothing committed for the stall limit while the first undelivered window is that overdue:
        # the runs that were in flight then are dead (their processes went with the daemon's, or the
        # machine's), though the instance still has them as started. Runs requested since still count.
        stall_s = spec.stall_seconds  # as the runs themselves judge it (runs.wait_for_turn)
        if (
            last_commit is not None
            and cursor.start_time is not None
            and now - last_commit > stall_s
            and now > window_due(spec, t0, delivered_next) + stall_s
        ):
            dead = [f for f in live if f.created <= last_commit]
            if dead:
                live = [f for f in live if f.created > last_commit]
                notes.append(
                    f"{len(dead)} run(s) in flight but nothing committed for {now - last_commit:.0f} s "
                    f"while window {delivered_next} is overdue: presumed dead, replaying from the committed offset"
                )
    else:
        live = list(in_flight)
    if len(live) < len(in_flight) and not notes:
        notes.append(f"ignoring {len(in_flight) - len(live)} stale run(s)")

    def skip(reason: str) -> Decision:
        return Decision(None, reason, cursor, lag, len(live), notes)

    # Where the next request starts: normally after the last request; again
    # from the first undelivered window when requested windows were lost.
    first, retry_window, attempts = max(cursor.next_window, delivered_next), None, 0
    if not live and delivered_next < cursor.next_window:
        attempts = cursor.attempts + 1 if cursor.retry_window == delivered_next else 1
        if attempts > max_retries:
            return skip(
                f"stopped: window {delivered_next} failed {max_retries} times (last run {last_failed or 'lost'}); "
                "fix the cause, then re-execute the failed run from the UI or `hwosim stream reset`"
            )
        first, retry_window = delivered_next, delivered_next
        notes.append(f"window {delivered_next} was requested but not delivered ({last_failed or 'run lost'}): again")
    elif cursor.retry_window is not None and delivered_next <= cursor.retry_window:
        retry_window, attempts = cursor.retry_window, cursor.attempts  # still retrying: keep counting

    if len(live) >= max_in_flight:
        return skip(f"waiting: {len(live)} runs in flight")

    if rate_mode:
        horizon = math.floor((now + lead_s - t0) / window_s + 1e-9)  # last window due within the lead
        if horizon < first:
            return skip(f"window {first} due in {window_due(spec, t0, first) - now:.1f} s")
        # A run replays about run_seconds of windows: a batch once its first window is in reach.
        # Batches end on a grid shifted by a phase of the stream's own (from its name), so that
        # streams started together do not all launch their runs at the same moment.
        per_run = spec.windows_per_run
        batch_end = first + per_run - 1 - (first + stream_phase(spec.name, per_run)) % per_run
        last = min(max(horizon, batch_end), first + max_windows - 1)
        start = window_due(spec, t0, first)
        overdue = sum(1 for n in range(first, last + 1) if window_due(spec, t0, n + 1) <= now)
    else:
        if live:
            return skip(
                f"waiting: run for window {live[0].first} is in flight ({spec.pacing.mode} streams run one at a time)"
            )
        last = first if spec.pacing.mode == "cadence" else first + max_windows - 1
        start = (
            chained_start
            if (spec.pacing.mode == "cadence" and first > 0 and chained_start)
            else (t0 if first == 0 else now)
        )
        overdue = 0
    key = f"{spec.name}@{int(t0)}:{first}-{last}" + (f"#{attempts}" if retry_window is not None and attempts else "")
    request = Request(first=first, last=last, start_time=start, run_key=key, overdue=overdue)
    new_cursor = Cursor(
        start_time=t0, next_window=max(cursor.next_window, last + 1), retry_window=retry_window, attempts=attempts
    )
    return Decision(request, None, new_cursor, lag, len(live), notes)
