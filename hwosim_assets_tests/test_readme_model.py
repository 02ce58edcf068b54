"""The README's model example, as written: the class saved as my_model.py and the README's commands run
against the embedded default (a local lake holding the sample time series, SQLite), offline and live."""

import shlex
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwosim_assets import cli
from hwosim_assets.defs.lake.layout import bronze_key
from hwosim_assets.evaluate.model import forget_module
from hwosim_assets.perturb import load_profiles, perturb_spectra
from hwosim_assets.settings import Settings
from hwosim_assets.stream import load_streams, register_stream, schema
from hwosim_assets.stream.config import default_streams_path
from hwosim_assets.stream.replay import replay_window, window_packets
from hwosim_assets.stream.writer import make_engine
from hwosim_assets_tests import scoring_data
from hwosim_assets_tests.test_readme import generated


def block(name: str, language: str) -> str:
    text = generated(name)
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def demo_home(tmp_path, monkeypatch):
    """What `hwosim demo` leaves behind, as far as scoring needs it: the sample's bronze table in the
    lake, the demo's streams.yaml, and the current folder holding my_model.py."""
    home = tmp_path / ".hwosim"
    obs_id, clean = scoring_data.sample_bronze("spectra")
    target = home / "lake" / bronze_key("spectra", obs_id)
    target.parent.mkdir(parents=True)
    clean.write_parquet(target)
    streams = tmp_path / "streams.yaml"
    streams.write_text(default_streams_path().read_text() + cli.DEMO_STREAM_YAML.format(observation=obs_id))
    (tmp_path / "my_model.py").write_text(block("model-example", "python"))
    monkeypatch.chdir(tmp_path)
    for name in list(Settings.__dataclass_fields__):
        monkeypatch.delenv(f"HWOSIM_{name.upper()}", raising=False)
    monkeypatch.setenv("HWOSIM_HOME", str(home))
    monkeypatch.setenv("HWOSIM_STREAMS", str(streams))
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # the CLI puts the current folder first
    forget_module("my_model:RunningMedianFlagger")
    yield home, obs_id, clean
    forget_module("my_model:RunningMedianFlagger")


def test_the_example_is_a_class_of_about_twenty_lines():
    code = [line for line in block("model-example", "python").splitlines() if line.strip()]
    assert len(code) <= 22 and "def predict_one" in "\n".join(code)


def commands() -> list[list[str]]:
    lines = [line for line in block("model-commands", "bash").splitlines() if line.strip()]
    return [shlex.split(line)[1:] for line in lines]  # drop "hwosim"


def test_the_readme_commands_score_the_example_offline_live_and_over_the_levels(demo_home):
    home, obs_id, clean = demo_home
    offline, live, robustness = commands()
    runner = CliRunner()

    result = runner.invoke(cli.main, offline, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "model RunningMedianFlagger (my_model:RunningMedianFlagger" in result.output
    assert "under level-3" in result.output and "flags.f1" in result.output and "stored " in result.output

    # live: the demo's stream, replayed while the command follows it
    spec = load_streams(home.parent / "streams.yaml")["soss-demo"]
    profile = load_profiles()[spec.profile]
    perturbed = perturb_spectra(clean, profile, observation=obs_id, seed=Settings.from_env().seed).data
    engine = make_engine(f"sqlite:///{home / 'streams.db'}")
    schema.create_or_migrate(engine)
    register_stream(engine, spec, profile.config_hash)
    start = time.time() + 1.0

    def replay():  # window 0: 250 packets at 50/s (the command stops after 200)
        replay_window(
            engine,
            spec,
            window_packets(spec, perturbed, 0),
            window_index=0,
            stream_faults=profile.stream_faults,
            start_time=start,
            seed=Settings.from_env().seed,
            profile_hash=profile.config_hash,
        )

    producer = threading.Thread(target=replay, daemon=True)
    producer.start()
    result = runner.invoke(cli.main, live, catch_exceptions=False)
    producer.join()
    assert result.exit_code == 0, result.output
    assert "live from stream soss-demo" in result.output and "live.latency_ms_p99" in result.output
    assert "run.packets_delivered          200" in result.output.replace(",", "")

    result = runner.invoke(cli.main, robustness, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    print(result.output)
    assert "RunningMedianFlagger: error per level" in result.output and "keeping up, live" in result.output
    png = Path("robustness-RunningMedianFlagger.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (home / "lake" / "plots" / "robustness" / "RunningMedianFlagger.png").exists()
