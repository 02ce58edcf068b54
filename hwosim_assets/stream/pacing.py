"""When each packet is due, and a pacer that emits packets at those wall-clock times.

Every schedule is computed from one absolute start time: packet ``i`` is due
at ``start + f(i)``; nothing is ever "sleep for the period after each batch",
so the time spent writing never accumulates into drift.

* ``rate``: ``f(i) = i / rate`` (packets per second; fractional rates allowed).
* ``cadence``: the original observation cadence, ``f(i) = sum of the gaps
  between event times up to i / speed``, each gap capped at ``gap_cap_s``
  (seconds of observation time) so that a day-long pause between visits does
  not stall the stream.
* ``asap``: ``f(i) = 0``: everything is due at once and paced only by the sink.

The :class:`Pacer` sleeps until the next packet is due (``time.sleep``), hands over
every packet that is due at that moment as one batch, and stamps the batch
with the wall-clock time it was handed over (``emitted_time``). Packets whose
time has already passed (because the sink was slow, or a rerun starts late)
are emitted at once, together: the pacer never bursts faster than the
schedule allows, it only catches up with what is already due. Wall-clock
times are UTC epoch seconds from ``time.time()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

Mode = Literal["rate", "cadence", "asap"]
MODES: tuple[str, ...] = get_args(Mode)
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Pacing:
    """How a stream is paced (the ``pacing`` block of streams.yaml)."""

    mode: str = "rate"
    rate: float | None = None  # packets per second (mode=rate)
    speed: float = 1.0  # speed-up of the original cadence (mode=cadence)
    gap_cap_s: float | None = None  # cap on one gap of the original cadence, seconds

    def as_dict(self) -> dict:
        return {"mode": self.mode, "rate": self.rate, "speed": self.speed, "gap_cap_s": self.gap_cap_s}

    def packets_per_second(self) -> float:
        """The rate of ``rate`` mode; ValueError when none is set."""
        if self.rate is None:
            raise ValueError(f"pacing mode {self.mode!r} has no rate (packets per second)")
        return float(self.rate)


def schedule_offsets(pacing: Pacing, n: int, event_times_mjd: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Seconds after the window start at which each of ``n`` packets is due."""
    if pacing.mode == "rate":
        return np.arange(n, dtype=np.float64) / pacing.packets_per_second()
    if pacing.mode == "asap":
        return np.zeros(n)
    if pacing.mode == "cadence":
        return np.concatenate([[0.0], np.cumsum(_cadence_gaps(pacing, event_times_mjd, n))])[:n]
    raise ValueError(f"unknown pacing mode {pacing.mode!r}")


def _cadence_gaps(pacing: Pacing, event_times_mjd: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    if event_times_mjd is None or len(event_times_mjd) != n:
        raise ValueError("cadence pacing needs one event time per packet")
    gaps = np.diff(np.asarray(event_times_mjd, dtype=np.float64)) * SECONDS_PER_DAY
    gaps = np.clip(gaps, 0.0, None)  # event times out of order (a new lap): no negative waits
    if pacing.gap_cap_s is not None:
        gaps = np.minimum(gaps, pacing.gap_cap_s)
    return gaps / pacing.speed


def window_duration(pacing: Pacing, n: int, event_times_mjd: Sequence[float] | np.ndarray | None = None) -> float:
    """Seconds from this window's start to the next window's start.

    ``rate``: ``n / rate``, exactly, so windows abut. ``cadence``: the window's
    span plus one median gap (the gap to the next window's first packet is not
    known from this window alone). ``asap``: 0.
    """
    if pacing.mode == "rate":
        return n / pacing.packets_per_second()
    if pacing.mode == "asap" or n == 0:
        return 0.0
    gaps = _cadence_gaps(pacing, event_times_mjd, n)
    return float(gaps.sum() + (np.median(gaps) if len(gaps) else 0.0))


@dataclass
class PaceStats:
    """What the pacer achieved: rate and lateness (emitted minus scheduled), in seconds."""

    packets: int
    achieved_rate: float  # packets per second between the first and last emission
    lateness_p50: float
    lateness_p99: float
    lateness_max: float
    first_second_lateness: float  # mean lateness in the first second of the run
    last_second_lateness: float  # ... and in the last: their difference is drift

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def pace_stats(scheduled: np.ndarray, emitted: np.ndarray) -> PaceStats:
    """Achieved rate and lateness percentiles of one paced run."""
    n = len(scheduled)
    if n == 0:
        return PaceStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    late = emitted - scheduled
    span = float(emitted[-1] - emitted[0])
    # rate over the scheduled span of the packets: (n - 1) intervals
    rate = (n - 1) / span if span > 0 else float("inf")
    first = late[scheduled <= scheduled[0] + 1.0]
    last = late[scheduled >= scheduled[-1] - 1.0]
    return PaceStats(
        packets=n,
        achieved_rate=rate,
        lateness_p50=float(np.percentile(late, 50)),
        lateness_p99=float(np.percentile(late, 99)),
        lateness_max=float(late.max()),
        first_second_lateness=float(first.mean()),
        last_second_lateness=float(last.mean()),
    )


@dataclass
class Pacer:
    """Emits packets at absolute wall-clock times, in batches of what is due.

    ``spin_s`` is how long before the due time sleeping stops and busy-waiting
    starts. It is 0 by default: Linux sleeps overshoot by ~50-100 us, far
    below the lateness that matters here (milliseconds), while a busy-wait
    holds Python's GIL, and the commits run in another thread of the same
    process (replay._Committer): at 5,000 packets/s a 0.2 ms spin starved
    them to a fifth of their speed. ``clock``/``sleep`` can be replaced in tests.
    """

    spin_s: float = 0.0
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    emitted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scheduled: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def wait_until(self, due: float) -> float:
        """Return the clock once ``due`` has come (at once if it has passed)."""
        now = self.clock()
        remaining = due - now
        if remaining > self.spin_s:
            self.sleep(remaining - self.spin_s)
            now = self.clock()
        while now < due:
            now = self.clock()
        return now

    def batches(
        self, scheduled: Sequence[float] | np.ndarray, max_batch: int = 10_000
    ) -> Iterator[tuple[int, int, float]]:
        """Yield ``(start, stop, emitted_time)`` slices of ``scheduled`` (non-decreasing), each when due.

        A slice holds every packet due at the moment of emission (at most
        ``max_batch``). After the loop, :meth:`stats` reports the run.
        """
        due = np.asarray(scheduled, dtype=np.float64)
        self.scheduled = due
        self.emitted = np.full(len(due), np.nan)
        i, n = 0, len(due)
        while i < n:
            now = self.wait_until(due[i])
            j = min(int(np.searchsorted(due, now, side="right")), i + max_batch, n)
            j = max(j, i + 1)
            self.emitted[i:j] = now
            yield i, j, now
            i = j

    def stats(self) -> PaceStats:
        done = ~np.isnan(self.emitted)
        return pace_stats(self.scheduled[done], self.emitted[done])
