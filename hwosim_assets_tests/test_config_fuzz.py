"""Fuzzed profiles.yaml and streams.yaml: a clear error naming the file, or a configuration that works.

Each example mutates a valid file - a value replaced by a hostile one (wrong
type, out of bounds, 400-digit integer, NaN, control characters, unicode), a
key removed or added, or the text itself edited (a line repeated, cut, a
character changed, an alias bomb or 5,000 levels of nesting pasted in) - and
loads it. The only outcomes allowed are a ProfileError / StreamConfigError
whose every line starts with the file's path, or a valid configuration: every
profile hashes and plans its stream faults; every stream passes the stream
tables' name check and replays window 0 (bounds, schedule, fault plan).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwosim_assets.perturb import ProfileError, load_profiles
from hwosim_assets.perturb.profiles import DEFAULT_PROFILES
from hwosim_assets.stream.config import StreamConfigError, load_streams
from hwosim_assets.stream.faults import plan_window
from hwosim_assets.stream.pacing import schedule_offsets, window_duration
from hwosim_assets.stream.replay import window_bounds
from hwosim_assets.stream.schema import check_slug

STREAMS = """\
streams:
  - name: soss-fast
    observation: jw09999-o001_t001_niriss_clear-gr700xd
    profile: nominal
    family: spectra
    pacing: {mode: rate, rate: 2.5}
    tick_seconds: 2
    loop: true
    start: 2026-01-01T00:00:00Z
    description: fast
  - name: tiles-cadence
    observation: jw09999-o002_t001_nircam_f200w
    profile: level-5
    family: images
    pacing: {mode: cadence, speed: 20, gap_cap_s: 60}
    window: 100
    loop: true
  - name: dump
    observation: jw09999-o002_t001_nircam_f200w
    profile: storm
    family: images
    pacing: {mode: asap}
    window: 7
"""
PROFILES = DEFAULT_PROFILES.read_text()
EVERY_KIND_OF_NUMBER = """\
version: 1
profiles:
  a: {all: 2}
  b:
    kinds:
      read_noise: 3
      dropouts: {level: 5, params: {mean_burst: 40}}
      saturation: {params: {well_fraction: 0.7, core_fraction: 0.4}}
      packet_loss: {params: {p_loss: 0.1, mean_burst: 3}}
      reordering: {level: 2, params: {max_delay_packets: 4}}
      latency_jitter: {params: {sigma_s: 0.5}}
      outage: {level: 1, params: {rate_per_hour: 2, duration_s: 30}}
"""
PASTES = [
    "a: &a [x,x,x,x,x,x,x,x,x]\n"
    + "".join(f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=False)),
    "[" * 5000 + "]" * 5000,
    "{a: " * 5000 + "1" + "}" * 5000,
    "9" * 400,
    "9" * 5000,
    "-" + "9" * 400 + ".5e9999",
    ".inf",
    ".nan",
    "!!python/object/apply:os.system [echo]",
    '"\\0\\x85\\u2028"',
    "*x",
    "&x y",
    "? [a]\n: b",
    "\t",
]
EDGES = [
    0,
    -1,
    0.0,
    1.0,
    1e-300,
    1e-3,
    0.999999,
    1e5,
    1_000_000,
    1_000_001,
    2**63,
    10**400,
    1e21,
    1e308,
    float("inf"),
    float("nan"),
    True,
    "1",
]
HOSTILE = st.one_of(
    st.sampled_from(
        [
            True,
            False,
            None,
            0,
            -1,
            1,
            5,
            6,
            0.5,
            1.0,
            2**63,
            2**64,
            10**400,
            -(10**400),
            1e308,
            float("inf"),
            float("-inf"),
            float("nan"),
            1e-300,
            "",
            "abc\n",
            "a\x00b",
            "é",
            "x" * 5000,
            "nominal",
            "level-5",
            "rate",
            "cadence",
            "asap",
            "spectra",
            "2026-01-01",
            "1.5",
            [],
            {},
            [1],
            {"level": 3},
            {"params": {}},
            {"mode": "rate", "rate": 1},
            {"level": 2, "params": {"p_loss": 0.99}},
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(0, 6), max_size=3),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "version",
            "profiles",
            "description",
            "all",
            "kinds",
            "level",
            "params",
            "noise",
            "read_noise",
            "p_loss",
            "streams",
            "name",
            "observation",
            "profile",
            "family",
            "pacing",
            "mode",
            "rate",
            "speed",
            "gap_cap_s",
            "tick_seconds",
            "window",
            "loop",
            "start",
            "Name",
            "<<",
            1,
            True,
            None,
            "",
        ]
    ),
    st.text(max_size=8),
)


class PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # a value used twice is written twice, not as an alias
        return True


def every_path(node, prefix=()):
    """The path (keys and list positions) to every value in a document."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from every_path(value, prefix + (key,))
    elif isinstance(node, list):
        for position, value in enumerate(node):
            yield from every_path(value, prefix + (position,))


def _at(document, path):
    for step in path:
        document = document[step]
    return document


def mutated(text: str, draw) -> str:
    """One mutation of a YAML file's data or text."""
    how = draw(st.sampled_from(["replace", "replace", "number", "remove", "add", "line", "cut", "character", "paste"]))
    if how in ("replace", "number", "remove", "add"):
        document = yaml.safe_load(text)
        paths = list(every_path(document))[1:]
        if how == "number":  # another plausible number where there was one: often still valid
            paths = [p for p in paths if type(_at(document, p)) in (int, float)]
        path = draw(st.sampled_from(paths))
        *parents, last = path
        target = copy.deepcopy(document)
        holder = target
        for step in parents:
            holder = holder[step]
        if how == "replace":
            holder[last] = draw(HOSTILE)
        elif how == "number":
            holder[last] = draw(
                st.one_of(
                    st.integers(-1, 100),
                    st.integers(-1, 2_000_000),
                    st.floats(-0.1, 2e6),
                    st.floats(0, 100),
                    st.sampled_from(EDGES),
                )
            )
        elif how == "remove":
            del holder[last]
        elif isinstance(holder[last], dict):
            holder[last][draw(KEYS)] = draw(HOSTILE)
        else:
            holder[last] = {draw(KEYS): holder[last]}
        return yaml.dump(target, Dumper=PlainDumper, allow_unicode=True, sort_keys=False)
    lines = text.splitlines(keepends=True)
    if how == "line":  # a line repeated elsewhere: duplicate keys, broken indentation
        line = draw(st.sampled_from(lines))
        lines.insert(draw(st.integers(0, len(lines))), line)
        return "".join(lines)
    if how == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if how == "character":
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.characters(codec="utf-8")) + text[at + 1 :]
    line = draw(st.integers(0, len(lines) - 1))  # paste: replace the value after a line's first ': '
    head, sep, _ = lines[line].partition(": ")
    lines[line] = head + (sep or ": ") + draw(st.sampled_from(PASTES)) + "\n"
    return "".join(lines)


def assert_clear(error: Exception, path: Path) -> None:
    message = str(error)
    assert message and len(message) < 5000, message
    for line in message.split("\n" + str(path))[1:]:
        assert line.startswith(": "), message
    assert message.startswith(f"{path}: "), message


def load_profiles_or_fail_clearly(path: Path) -> None:
    try:
        profiles = load_profiles(path)
    except ProfileError as error:
        assert_clear(error, path)
        return
    for profile in profiles.values():
        assert len(profile.config_hash) == 16
        plans(profile.stream_faults)


def load_streams_or_fail_clearly(path: Path) -> None:
    try:
        specs = load_streams(path, known_profiles={"nominal", "level-5", "storm"})
    except StreamConfigError as error:
        assert_clear(error, path)
        return
    faults = load_profiles()["level-5"].stream_faults
    for spec in specs.values():
        check_slug(spec.name)  # what the stream tables require of a name
        bounds = window_bounds(spec, 0, 50)
        event_times = 60000.0 + np.cumsum(np.full(len(bounds.positions), 2.0)) / 86400.0  # MJD, 2 s apart
        due = schedule_offsets(spec.pacing, len(bounds.positions), event_times)
        assert np.isfinite(due).all() and np.isfinite(window_duration(spec.pacing, len(due), event_times))
        if spec.pacing.mode == "rate":
            assert np.isfinite(spec.window_start_time(10**9, spec.start or 0.0))
        first = slice(0, 5000)  # the fault plan of the window's first packets (a full window may be 1,000,000)
        seq, lap = bounds.seq_index[first], bounds.laps[first]
        plan_window(seq, lap, due[first], faults, observation=spec.observation, **KEY)


PLANNED: set[str] = set()


def plans(stream_faults: dict) -> None:
    """Plan a looping window with these faults (once per distinct set: the plan is deterministic)."""
    if repr(stream_faults) not in PLANNED:
        positions = np.arange(120)
        plan_window(positions % 50, positions // 50, positions / 10.0, stream_faults, observation="o", **KEY)
        PLANNED.add(repr(stream_faults))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
KEY = dict(seed=1, profile_hash="0123456789abcdef")


@FUZZ
@given(data=st.data())
def test_fuzzed_profiles_fail_clearly_or_work(folder, data):
    path = folder / "profiles.yaml"
    path.write_text(mutated(PROFILES, data.draw), encoding="utf-8")
    load_profiles_or_fail_clearly(path)


@FUZZ
@given(data=st.data())
def test_fuzzed_streams_fail_clearly_or_replay(folder, data):
    path = folder / "streams.yaml"
    path.write_text(mutated(STREAMS, data.draw), encoding="utf-8")
    load_streams_or_fail_clearly(path)


@pytest.mark.parametrize("edge", EDGES, ids=repr)
def test_every_number_set_to_an_edge_value_fails_clearly_or_works(tmp_path, edge):
    """Not left to chance: each edge value in place of each number of both files."""
    for base, check in ((EVERY_KIND_OF_NUMBER, load_profiles_or_fail_clearly), (STREAMS, load_streams_or_fail_clearly)):
        document = yaml.safe_load(base)
        for path in every_path(document):
            if type(_at(document, path)) in (int, float):
                edited = copy.deepcopy(document)
                _at(edited, path[:-1])[path[-1]] = edge
                file = tmp_path / ("streams.yaml" if base is STREAMS else "profiles.yaml")
                file.write_text(yaml.dump(edited, Dumper=PlainDumper, sort_keys=False))
                check(file)
