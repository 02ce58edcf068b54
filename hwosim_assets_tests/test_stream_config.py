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


@pytest.mark.parametrize("text, stream, field, problem", [
    (swap("profile: nominal", "profile: nomnal"), "soss-fast", "profile", "unknown profile 'nomnal'"),
    (swap("rate: 2.5", "rate: -2"), "soss-fast", "pacing.rate", "positive"),
    (swap("loop: true", "looping: true"), "soss-fast", "looping", "unknown key"),
    (swap("speed: 20", "speed: 20, jitter: 1"), "tiles-cadence", "pacing.jitter", "unknown key"),
    (swap("name: soss-fast", "name: Soss Fast!"), "Soss Fast!", "name", "not a slug"),
    (swap("name: tiles-cadence", "name: soss-fast"), "soss-fast", "name", "duplicate"),
    (swap("tick_seconds: 2", "tick_seconds: 0.5"), "soss-fast", "tick_seconds", ">= 1"),
    (swap("rate: 2.5}", "rate: 0.3}"), "soss-fast", "window", "not a whole number"),
    (swap("    window: 100\n", ""), "tiles-cadence", "window", "required"),
    (swap("family: images", "family: cubes"), "tiles-cadence", "family", "not one of"),
    (swap("start: 2026-01-01T00:00:00Z", "start: yesterday"), "soss-fast", "start", "ISO 8601"),
])
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
    with pytest.raises(StreamConfigError, match="top-level 'streams:'"):
        load_streams(write(tmp_path, "stream: []"))
