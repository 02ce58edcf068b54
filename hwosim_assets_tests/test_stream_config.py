"""streams.yaml is validated, and every error names the file, the stream and the field."""

import textwrap

import pytest

from hwosim_assets.stream.config import StreamConfigError, load_streams

GOOD = """
streams:
  - name: soss-fast
    observation: jw09999-o001_t001_niriss_clear-gr700xd
    profile: nominal
    family: spectra
    pacing: {mode: rate, rate: 2.5}
    tick_seconds: 2
    loop: true
    start: 2026-01-01T00:00:00Z
  - name: tiles-cadence
    observation: jw09999-o002_t001_nircam_f200w
    profile: harsh
    family: images
    pacing: {mode: cadence, speed: 20, gap_cap_s: 60}
    window: 100
"""


def write(tmp_path, text):
    path = tmp_path / "streams.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_packaged_default_has_the_sample_stream():
    specs = load_streams(known_profiles={"nominal"})
    spec = next(s for s in specs.values() if s.observation == "jw09999-o001_niriss_clear-gr700xd-substrip256")
    assert spec.profile == "nominal" and spec.tick_seconds == 30 and spec.family == "spectra"
    assert spec.window == spec.pacing.rate * spec.tick_seconds


def test_good_file(tmp_path):
    specs = load_streams(write(tmp_path, GOOD), known_profiles={"nominal", "harsh"})
    fast, tiles = specs["soss-fast"], specs["tiles-cadence"]
    assert fast.window == 5 and fast.window_seconds == 2.0 and fast.loop
    assert fast.start == 1767225600.0
    assert fast.window_start_time(3, 1000.0) == 1006.0
    assert tiles.tick_seconds == 30 and tiles.pacing.speed == 20 and tiles.window == 100


def swap(old, new):
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize(
    "text, stream, field, problem",
    [
        (swap("profile: nominal", "profile: nomnal"), "soss-fast", "profile", "unknown profile 'nomnal'"),
        (
            swap("rate: 2.5", "rate: -2"),
            "soss-fast",
            "pacing.rate",
            "must be a number of packets per second in [0.001, 100000]",
        ),
        (swap("loop: true", "looping: true"), "soss-fast", "looping", "unknown key 'looping' (did you mean 'loop'?)"),
        (swap("speed: 20", "speed: 20, jitter: 1"), "tiles-cadence", "pacing.jitter", "unknown key"),
        (swap("name: soss-fast", "name: Soss Fast!"), "Soss Fast!", "name", "must be a slug"),
        (swap("name: tiles-cadence", "name: soss-fast"), "soss-fast", "name", "duplicate"),
        (
            swap("tick_seconds: 2", "tick_seconds: 0.5"),
            "soss-fast",
            "tick_seconds",
            "must be a number of seconds in [1, 86400]",
        ),
        (swap("rate: 2.5}", "rate: 0.3}"), "soss-fast", "window", "not a whole number"),
        (swap("    window: 100\n", ""), "tiles-cadence", "window", "required"),
        (
            swap("family: images", "family: cubes"),
            "tiles-cadence",
            "family",
            "must be one of 'spectra' or 'images', got 'cubes'",
        ),
        (swap("start: 2026-01-01T00:00:00Z", "start: yesterday"), "soss-fast", "start", "ISO 8601"),
        # what used to load and fail (or misbehave) later
        (swap("name: soss-fast", 'name: "abc\\n"'), "abc\n", "name", "must be a slug"),
        (swap("profile: nominal", 'profile: "nominal\\n"'), "soss-fast", "profile", "must be a profile name"),
        (
            swap("niriss_clear-gr700xd", 'niriss\\0"'.replace('"', "")),
            "soss-fast",
            "observation",
            "must be an observation id",
        ),
        (
            swap("jw09999-o001_t001_niriss_clear-gr700xd", '"jw\\n01"'),
            "soss-fast",
            "observation",
            "must be an observation id",
        ),
        (
            swap("jw09999-o001_t001_niriss_clear-gr700xd", "j" * 129),
            "soss-fast",
            "observation",
            "of at most 128 characters",
        ),
        (
            swap("jw09999-o001_t001_niriss_clear-gr700xd", "JW09999-O001"),
            "soss-fast",
            "observation",
            "must be an observation id",
        ),
        (
            swap("window: 100", f"window: {2**63}"),
            "tiles-cadence",
            "window",
            "an integer 1-1000000, got 9223372036854775808",
        ),
        (swap("window: 100", "window: 1.0e+21"), "tiles-cadence", "window", "an integer 1-1000000, got 1e+21"),
        (swap("window: 100", "window: 100.0"), "tiles-cadence", "window", "an integer 1-1000000, got 100.0"),
        (swap("window: 100", "window: true"), "tiles-cadence", "window", "an integer 1-1000000, got True"),
        (swap("rate: 2.5", "rate: 1.0e-300"), "soss-fast", "pacing.rate", "in [0.001, 100000], got 1e-300"),
        (swap("rate: 2.5", "rate: .nan"), "soss-fast", "pacing.rate", "got nan"),
        (swap("rate: 2.5", "rate: '2.5'"), "soss-fast", "pacing.rate", "got '2.5'"),
        (swap("tick_seconds: 2", "tick_seconds: .inf"), "soss-fast", "tick_seconds", "got inf"),
        (
            swap("rate: 2.5}", "rate: 100000}").replace("tick_seconds: 2\n", "tick_seconds: 20\n"),
            "soss-fast",
            "window",
            "rate x tick_seconds = 2e+06 packets is more than 1,000,000; set window",
        ),
        (swap("speed: 20", "speed: 0"), "tiles-cadence", "pacing.speed", "speed-up factor"),
        (swap("loop: true", "loop: 1"), "soss-fast", "loop", "must be true or false, got 1"),
        (
            swap("loop: true", "loop: true\n    loop: false"),
            "#0",
            "loop",
            "duplicate key 'loop' at line 10 (first at line 9)",
        ),
        (
            swap("pacing: {mode: cadence, speed: 20, gap_cap_s: 60}", "pacing: {mode: cadence, rate: 2}"),
            "tiles-cadence",
            "pacing.rate",
            "only used with mode rate",
        ),
        (swap("start: 2026-01-01T00:00:00Z", "start: 2026-13-01"), "soss-fast", "start", "ISO 8601"),
        (swap("start: 2026-01-01T00:00:00Z", "start: 0"), "soss-fast", "start", "must be an ISO 8601 time, got 0"),
        (swap("    loop: true\n", "    description: [a]\n"), "soss-fast", "description", "must be text"),
    ],
)
def test_errors_name_file_stream_and_field(tmp_path, text, stream, field, problem):
    path = write(tmp_path, text)
    with pytest.raises(StreamConfigError) as error:
        load_streams(path, known_profiles={"nominal", "harsh"})
    message = str(error.value)
    assert str(path) in message and f"stream {stream!r}" in message and f"field {field}:" in message
    assert problem in message
    assert isinstance(error.value, ValueError)


def test_unreadable_or_malformed_files(tmp_path):
    with pytest.raises(StreamConfigError, match="cannot read"):
        load_streams(tmp_path / "missing.yaml")
    with pytest.raises(StreamConfigError, match=r"unknown top-level key 'stream' \(did you mean 'streams'\?\)"):
        load_streams(write(tmp_path, "stream: []"))
    with pytest.raises(StreamConfigError, match="top-level 'streams:' list and nothing else, got"):
        load_streams(write(tmp_path, "- streams\n"))
    with pytest.raises(StreamConfigError, match=r"streams: expected a list, got \{\}"):
        load_streams(write(tmp_path, "streams: {}"))
    with pytest.raises(StreamConfigError, match=r"stream '#0': expected a mapping, got 'x'"):
        load_streams(write(tmp_path, "streams: [x]"))


def test_a_second_streams_key_is_an_error_not_an_empty_file(tmp_path):
    path = write(tmp_path, GOOD + "streams: []\n")
    with pytest.raises(StreamConfigError, match=r"streams: duplicate key 'streams' at line 17 \(first at line 2\)"):
        load_streams(path)


def test_an_empty_list_is_no_streams(tmp_path):
    assert load_streams(write(tmp_path, "streams: []\n")) == {}
