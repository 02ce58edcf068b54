"""`hwosim score` on what goes wrong: a bad reference, a model that raises, a stream of another
observation - each a clear message and a non-zero exit, the failure stored like any scorecard."""

import pytest
from click.testing import CliRunner

from hwosim_assets import cli
from hwosim_assets.defs.lake.layout import bronze_key
from hwosim_assets.evaluate import store
from hwosim_assets.settings import Settings
from hwosim_assets.stream.writer import make_engine
from hwosim_assets_tests import scoring_data


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / ".hwosim"
    obs_id, clean = scoring_data.sample_bronze("spectra")
    target = home / "lake" / bronze_key("spectra", obs_id)
    target.parent.mkdir(parents=True)
    clean.write_parquet(target)
    for name in Settings.__dataclass_fields__:
        monkeypatch.delenv(f"HWOSIM_{name.upper()}", raising=False)
    monkeypatch.setenv("HWOSIM_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home, obs_id


def score(*args):
    return CliRunner().invoke(cli.main, ["score", *args], catch_exceptions=False)


def test_a_bad_reference_fails_before_any_data_is_read(home):
    result = score("--model", "nowhere.models:Mine", "--observation", "whatever", "--profile", "level-1")
    assert (
        result.exit_code == 1 and "model 'Mine' (nowhere.models:Mine): cannot import 'nowhere.models'" in result.output
    )
    result = score("--model", "nowhere", "--observation", "whatever", "--profile", "level-1")
    assert result.exit_code == 1 and "is not of the form package.module:factory" in result.output


def test_a_model_that_raises_prints_its_packet_exits_1_and_is_stored(home):
    path, obs_id = home
    result = score(
        "--model",
        "hwosim_assets_tests.scoring_models:Raises",
        "--param",
        "at=5",
        "--name",
        "fragile",
        "--observation",
        obs_id,
        "--profile",
        "level-1",
    )
    assert result.exit_code == 1
    assert "FAILED: model 'fragile' (hwosim_assets_tests.scoring_models:Raises) raised ValueError" in result.output
    assert "at packet seq=5 lap=0" in result.output
    rows = store.read(make_engine(f"sqlite:///{path / 'streams.db'}"), model="fragile")
    assert rows["status"].to_list() == ["failed"] * len(rows) and len(rows) >= 1


def test_unknown_observation_profile_and_params_are_usage_errors(home):
    _, obs_id = home
    result = score(
        "--model",
        "hwosim_assets.evaluate.baselines:SigmaClipFlagger",
        "--observation",
        "jw00000-o000_nothing",
        "--profile",
        "level-1",
    )
    assert result.exit_code == 1 and "has no bronze table" in result.output
    result = score(
        "--model", "hwosim_assets.evaluate.baselines:SigmaClipFlagger", "--observation", obs_id, "--profile", "level-9"
    )
    assert result.exit_code == 1 and "no profile 'level-9'" in result.output
    result = score(
        "--model",
        "hwosim_assets.evaluate.baselines:SigmaClipFlagger",
        "--param",
        "oops",
        "--observation",
        obs_id,
        "--profile",
        "level-1",
    )
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
