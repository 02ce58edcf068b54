"""streams.yaml: which streams exist, and how each is paced, checked before anything runs.

File format::

    streams:
      - name: soss-nominal                # slug: [a-z0-9][a-z0-9_-]{0,63}
        observation: jw09999-o001_niriss_clear-gr700xd-substrip256
        profile: nominal                  # a profile name of profiles.yaml
        family: spectra                   # spectra | images
        pacing: {mode: rate, rate: 2}     # rate | cadence (speed, gap_cap_s) | asap
        tick_seconds: 30                  # the sensor's interval (default 30)
        window: 60                        # packets per run (default rate x tick)
        loop: true                        # start again at seq 0 after the last packet
        start: 2026-01-01T00:00:00Z       # optional absolute start of window 0

``tick_seconds`` defaults to 30 s, the interval at which the Dagster daemon
evaluates sensors anyway; a smaller value must be written explicitly, must be
at least 1 s and is meant for tests and demos. In ``rate`` mode a window
lasts ``window / rate`` seconds; when ``window`` is omitted it is
``rate * tick_seconds``, which must then be a whole number so that windows
start exactly one tick apart. ``cadence`` and ``asap`` need an explicit
``window``.

Every error is a :class:`StreamConfigError` naming the file, the stream and
the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import yaml

from hwosim_assets.stream.pacing import MODES, Pacing
from hwosim_assets.stream.schema import FAMILIES, SLUG

STREAM_KEYS = {"name", "observation", "profile", "family", "pacing", "tick_seconds", "window", "loop", "start", "description"}
PACING_KEYS = {"mode", "rate", "speed", "gap_cap_s"}
DEFAULT_TICK_SECONDS = 30.0
MIN_TICK_SECONDS = 1.0


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

    @property
    def window_seconds(self) -> float | None:
        """Scheduled length of one window in rate mode (= tick_seconds by default), else None."""
        return self.window / self.pacing.rate if self.pacing.mode == "rate" else None

    def window_start_time(self, window_index: int, stream_start: float) -> float:
        """Absolute due time of window ``window_index``'s first packet (rate mode: exact, no drift).

        In cadence mode windows are chained: use the previous window's
        ``WindowReport.next_start_time``. In asap mode there is no schedule.
        """
        if self.pacing.mode != "rate":
            raise ValueError(f"stream {self.name}: window start times are only fixed in rate mode")
        return stream_start + window_index * self.window / self.pacing.rate


def default_streams_path() -> Path:
    return Path(str(resources.files("hwosim_assets") / "defaults" / "streams.yaml"))


def load_streams(path: str | Path | None = None, known_profiles: set[str] | None = None) -> dict[str, StreamSpec]:
    """Read and validate streams.yaml (the packaged default when ``path`` is None)."""
    path = Path(path) if path else default_streams_path()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise StreamConfigError(f"{path}: cannot read: {error}") from None
    if not isinstance(doc, dict) or set(doc) != {"streams"} or not isinstance(doc["streams"], list):
        raise StreamConfigError(f"{path}: expected a top-level 'streams:' list and nothing else")
    specs: dict[str, StreamSpec] = {}
    for i, entry in enumerate(doc["streams"]):
        spec = _parse(path, i, entry, known_profiles)
        if spec.name in specs:
            raise StreamConfigError(f"{path}: stream {spec.name!r}: field name: duplicate stream name")
        specs[spec.name] = spec
    return specs


def _parse(path: Path, index: int, entry, known_profiles: set[str] | None) -> StreamSpec:
    label = entry.get("name", f"#{index}") if isinstance(entry, dict) else f"#{index}"

    def fail(field: str, problem: str):
        raise StreamConfigError(f"{path}: stream {label!r}: field {field}: {problem}")

    if not isinstance(entry, dict):
        fail("-", "each stream must be a mapping")
    for key in entry:
        if key not in STREAM_KEYS:
            fail(key, f"unknown key (known: {', '.join(sorted(STREAM_KEYS))})")
    for key in ("name", "observation", "profile", "family", "pacing"):
        if key not in entry:
            fail(key, "missing")

    name = entry["name"]
    if not isinstance(name, str) or not SLUG.match(name):
        fail("name", f"{name!r} is not a slug matching {SLUG.pattern}")
    observation = entry["observation"]
    if not isinstance(observation, str) or not observation.strip():
        fail("observation", "must be an observation id")
    profile = entry["profile"]
    if not isinstance(profile, str) or not SLUG.match(profile):
        fail("profile", f"{profile!r} is not a slug matching {SLUG.pattern}")
    if known_profiles is not None and profile not in known_profiles:
        fail("profile", f"unknown profile {profile!r} (known: {', '.join(sorted(known_profiles))})")
    family = entry["family"]
    if family not in FAMILIES:
        fail("family", f"{family!r} is not one of {', '.join(FAMILIES)}")

    pacing = _parse_pacing(entry["pacing"], fail)

    tick = entry.get("tick_seconds", DEFAULT_TICK_SECONDS)
    if not _is_number(tick) or not math.isfinite(tick) or tick < MIN_TICK_SECONDS:
        fail("tick_seconds", f"{tick!r} must be a number >= {MIN_TICK_SECONDS:g} (default {DEFAULT_TICK_SECONDS:g})")

    window = entry.get("window")
    if window is None:
        if pacing.mode != "rate":
            fail("window", f"required with pacing mode {pacing.mode}")
        exact = pacing.rate * tick
        window = round(exact)
        if window < 1 or abs(window - exact) > 1e-9 * max(1.0, exact):
            fail("window", f"rate x tick_seconds = {exact:g} is not a whole number of packets; set window")
    elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
        fail("window", f"{window!r} must be a positive integer (packets per run)")

    loop = entry.get("loop", False)
    if not isinstance(loop, bool):
        fail("loop", f"{loop!r} must be true or false")

    start = entry.get("start")
    if start is not None:
        start = _parse_time(start, fail)

    description = entry.get("description", "")
    if not isinstance(description, str):
        fail("description", "must be text")

    return StreamSpec(
        name=name,
        observation=observation,
        profile=profile,
        family=family,
        pacing=pacing,
        tick_seconds=float(tick),
        window=int(window),
        loop=loop,
        start=start,
        description=description,
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_pacing(block, fail) -> Pacing:
    if not isinstance(block, dict):
        fail("pacing", "must be a mapping with 'mode'")
    for key in block:
        if key not in PACING_KEYS:
            fail(f"pacing.{key}", f"unknown key (known: {', '.join(sorted(PACING_KEYS))})")
    mode = block.get("mode")
    if mode not in MODES:
        fail("pacing.mode", f"{mode!r} is not one of {', '.join(MODES)}")
    rate = block.get("rate")
    if mode == "rate":
        if rate is None:
            fail("pacing.rate", "required with mode rate (packets per second)")
        if not _is_number(rate) or not math.isfinite(rate) or rate <= 0:
            fail("pacing.rate", f"{rate!r} must be a positive number of packets per second")
    elif rate is not None:
        fail("pacing.rate", f"only used with mode rate, not {mode}")
    speed = block.get("speed", 1.0)
    if not _is_number(speed) or not math.isfinite(speed) or speed <= 0:
        fail("pacing.speed", f"{speed!r} must be a positive number")
    gap_cap = block.get("gap_cap_s")
    if gap_cap is not None and (not _is_number(gap_cap) or not math.isfinite(gap_cap) or gap_cap < 0):
        fail("pacing.gap_cap_s", f"{gap_cap!r} must be a number of seconds >= 0")
    return Pacing(
        mode=mode,
        rate=float(rate) if rate is not None else None,
        speed=float(speed),
        gap_cap_s=float(gap_cap) if gap_cap is not None else None,
    )


def _parse_time(value, fail) -> float:
    if isinstance(value, datetime):  # YAML timestamps arrive parsed
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            fail("start", f"{value!r} is not an ISO 8601 time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
