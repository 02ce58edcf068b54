"""streams.yaml: which streams exist, and how each is paced, checked before anything runs.

File format::

    streams:
      - name: soss-nominal                # slug: [a-z0-9][a-z0-9_-]{0,63}
        observation: jw09999-o001_niriss_clear-gr700xd-substrip256   # [a-z0-9][a-z0-9._+-]{0,127}
        profile: nominal                  # a profile name of profiles.yaml
        family: spectra                   # spectra | images
        pacing: {mode: rate, rate: 2}     # rate (0.001-100000 packets/s) | cadence (speed, gap_cap_s) | asap
        tick_seconds: 30                  # the sensor's interval (default 30, 1 s to 1 day)
        window: 60                        # packets per window (default rate x tick; at most 1,000,000)
        run_seconds: 60                   # rate mode: each run replays this many seconds of windows (default 60)
        loop: true                        # start again at seq 0 after the last packet
        start: 2026-01-01T00:00:00Z       # optional absolute start of window 0
        retain: {hours: 6}                # optional: keep only the last 6 hours (or {laps: N}) of rows

``tick_seconds`` defaults to 30 s: how often the stream's sensor looks at
the clock. In ``rate`` mode a window lasts ``window / rate`` seconds; when
``window`` is omitted it is ``rate * tick_seconds``, which must then be a
whole number so that windows start exactly one tick apart. ``cadence`` and
``asap`` need an explicit ``window``.

``run_seconds`` (rate mode, default 60) is how much of the stream one Dagster
run replays: a run costs several CPU-seconds to start (a Python process that
loads the code location), so a run covers whole windows for about this long,
and is requested ahead of its first window's due time. Windows stay on one
absolute clock whatever the run boundaries. Below 10 s a 2-core machine
cannot launch runs as fast as streams need them; such a value is accepted
for tests, and the stream's sensor warns.

The bounds keep every accepted stream replayable: a window of more than a
million packets or a rate outside 0.001-100,000 packets/s is refused here
rather than failing (or giving empty windows) at run time. The file is read
by :mod:`hwosim_assets.userconfig` (no aliases, no duplicate keys) and
checked by the strict models below; every error is a
:class:`StreamConfigError` naming the file, the stream and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from hwosim_assets.records import FamilyName
from hwosim_assets.stream.pacing import Mode, Pacing
from hwosim_assets.stream.schema import OBSERVATION, SLUG
from hwosim_assets.userconfig import (
    Omittable,
    StrictModel,
    integer_checks,
    load_file,
    number_checks,
    rule_error,
    text_checks,
)

DEFAULT_TICK_SECONDS = 30.0
DEFAULT_RUN_SECONDS = 60.0
MIN_TICK_SECONDS = 1.0
MAX_TICK_SECONDS = 86_400.0
MIN_RATE, MAX_RATE = 1e-3, 1e5  # packets per second
MAX_WINDOW = 1_000_000  # packets per run
MAX_STREAMS = 1000


class StreamConfigError(ValueError):
    """A streams.yaml that cannot be used; the message names file, stream and field."""


@dataclass(frozen=True)
class StreamSpec:
    """One configured stream."""

    name: str
    observation: str
    profile: str
    family: str
    pacing: Pacing
    tick_seconds: float = DEFAULT_TICK_SECONDS
    window: int = 0  # packets per run (resolved: never 0 after loading)
    loop: bool = False
    start: float | None = None  # UTC epoch seconds of window 0's first packet
    description: str = ""
    retain_laps: int | None = None  # keep the rows of the last N laps only
    retain_hours: float | None = None  # keep the rows emitted in the last N hours only
    run_seconds: float = DEFAULT_RUN_SECONDS  # rate mode: seconds of windows one run replays

    @property
    def windows_per_run(self) -> int:
        """Rate mode: whole windows one run replays, about ``run_seconds`` (at least one)."""
        if self.pacing.mode != "rate":
            return 1
        return max(1, round(self.run_seconds / (self.window / self.pacing.packets_per_second())))

    @property
    def window_seconds(self) -> float | None:
        """Scheduled length of one window in rate mode (= tick_seconds by default), else None."""
        return self.window / self.pacing.packets_per_second() if self.pacing.mode == "rate" else None

    @property
    def stall_seconds(self) -> float:
        """How long a stream may commit nothing while a window is that overdue before its run is
        presumed stopped (by the next run, and by the sensor): two windows, at least 10 s."""
        return max(10.0, 2 * (self.window_seconds or 0.0))

    def window_start_time(self, window_index: int, stream_start: float) -> float:
        """Absolute due time of window ``window_index``'s first packet (rate mode: exact, no drift).

        In cadence mode windows are chained: use the previous window's
        ``WindowReport.next_start_time``. In asap mode there is no schedule.
        """
        if self.pacing.mode != "rate":
            raise ValueError(f"stream {self.name}: window start times are only fixed in rate mode")
        return stream_start + window_index * self.window / self.pacing.packets_per_second()


def default_streams_path() -> Path:
    return Path(str(resources.files("hwosim_assets") / "defaults" / "streams.yaml"))


def load_streams(path: str | Path | None = None, known_profiles: set[str] | None = None) -> dict[str, StreamSpec]:
    """Read and validate streams.yaml (the packaged default when ``path`` is None)."""
    path = Path(path) if path else default_streams_path()
    parsed, document = load_file(
        path, StreamsFile, StreamConfigError, "streams", "stream", "a top-level 'streams:' list and nothing else"
    )
    specs: dict[str, StreamSpec] = {}
    for entry in parsed.streams:
        where = f"{path}: stream {entry.name!r}"
        if entry.name in specs:
            raise StreamConfigError(f"{where}: field name: duplicate stream name")
        if known_profiles is not None and entry.profile not in known_profiles:
            known = ", ".join(sorted(known_profiles))
            raise StreamConfigError(f"{where}: field profile: unknown profile {entry.profile!r} (known: {known})")
        specs[entry.name] = entry.spec()
    return specs


# The file's schema. A field that defaults to None may be left out, but not
# given as null: defaults are not validated, values are.

Text = Annotated[str, *text_checks()]


def _iso_time(value: Any) -> Any:
    """ISO 8601 text to a datetime (YAML timestamps are read as text)."""
    if not isinstance(value, str):
        return value  # refused by the datetime type
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError("value", "must be an ISO 8601 time such as 2026-01-01T00:00:00Z") from None


# Annotated[..., *checks] rather than text()/number()/integer(): the same types, readable by the type checker.
StreamName = Annotated[
    str, *text_checks("a slug: a-z or 0-9, then up to 63 of a-z, 0-9, '_' and '-'", pattern=SLUG, max_length=64)
]
ObservationId = Annotated[
    str,
    *text_checks(
        "an observation id: a-z or 0-9, then up to 127 of a-z, 0-9, '.', '_', '+' and '-'",
        pattern=OBSERVATION,
        max_length=128,
    ),
]
ProfileName = Annotated[str, *text_checks("a profile name (a slug)", pattern=SLUG, max_length=64)]
Rate = Annotated[float, *number_checks(MIN_RATE, MAX_RATE, "a number of packets per second")]
Speed = Annotated[float, *number_checks(1e-3, 1e6, "a speed-up factor")]
GapCap = Annotated[float, *number_checks(0, 1e7, "a number of seconds")]
TickSeconds = Annotated[float, *number_checks(MIN_TICK_SECONDS, MAX_TICK_SECONDS, "a number of seconds")]
Window = Annotated[int, *integer_checks(1, MAX_WINDOW, "a number of packets per run")]
Time = Annotated[datetime, BeforeValidator(_iso_time)]
Laps = Annotated[int, *integer_checks(1, 1_000_000, "a number of laps")]
Hours = Annotated[float, *number_checks(1e-3, 1e6, "a number of hours")]
RunSeconds = Annotated[float, *number_checks(1.0, 86_400.0, "a number of seconds")]


class PacingBlock(StrictModel):
    """``pacing:``; ``rate`` is given in rate mode and only then."""

    mode: Mode
    rate: Omittable[Rate] = None
    speed: Speed = 1.0
    gap_cap_s: Omittable[GapCap] = None

    @model_validator(mode="after")
    def _rate_only_in_rate_mode(self) -> Self:
        if self.mode == "rate" and self.rate is None:
            raise rule_error("required with mode rate (packets per second)", "rate")
        if self.mode != "rate" and self.rate is not None:
            raise rule_error(f"only used with mode rate, not {self.mode}", "rate")
        return self


class RetainBlock(StrictModel):
    """``retain:``: how much of a stream's rows the database keeps (a looping stream never ends)."""

    laps: Omittable[Laps] = None
    hours: Omittable[Hours] = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.laps is None) == (self.hours is None):
            raise rule_error("give either laps or hours", "laps")
        return self


class StreamEntry(StrictModel):
    """One entry of ``streams:``."""

    name: StreamName
    observation: ObservationId
    profile: ProfileName
    family: FamilyName
    pacing: PacingBlock
    tick_seconds: TickSeconds = DEFAULT_TICK_SECONDS
    window: Omittable[Window] = None
    loop: bool = False
    start: Omittable[Time] = None
    description: Text = ""
    retain: Omittable[RetainBlock] = None
    run_seconds: RunSeconds = DEFAULT_RUN_SECONDS

    @model_validator(mode="after")
    def _window_is_known(self) -> Self:
        """Without ``window``, a rate stream replays rate x tick_seconds packets
        per run: a whole number, so that windows start exactly one tick apart."""
        if self.window is None:
            rate = self.pacing.rate
            if self.pacing.mode != "rate" or rate is None:  # (PacingBlock requires a rate in rate mode)
                raise rule_error(f"required with pacing mode {self.pacing.mode}", "window")
            exact = rate * self.tick_seconds
            if round(exact) < 1 or abs(round(exact) - exact) > 1e-9 * max(1.0, exact):
                problem = "is not a whole number of packets"
            elif round(exact) > MAX_WINDOW:
                problem = f"packets is more than {MAX_WINDOW:,}"
            else:
                return self
            raise rule_error(f"rate x tick_seconds = {exact:g} {problem}; set window", "window")
        return self

    def spec(self) -> StreamSpec:
        """The stream as the rest of the code uses it: window resolved, start in UTC epoch seconds."""
        pacing = Pacing(
            mode=self.pacing.mode, rate=self.pacing.rate, speed=self.pacing.speed, gap_cap_s=self.pacing.gap_cap_s
        )
        start = self.start
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return StreamSpec(
            name=self.name,
            observation=self.observation,
            profile=self.profile,
            family=self.family,
            pacing=pacing,
            tick_seconds=self.tick_seconds,
            window=self.window if self.window is not None else round(pacing.packets_per_second() * self.tick_seconds),
            loop=self.loop,
            start=start.timestamp() if start is not None else None,
            description=self.description,
            retain_laps=self.retain.laps if self.retain else None,
            retain_hours=self.retain.hours if self.retain else None,
            run_seconds=self.run_seconds,
        )


class StreamsFile(StrictModel):
    """The whole file."""

    key_word = "top-level key"

    streams: Annotated[list[StreamEntry], Field(max_length=MAX_STREAMS)]
