"""The scorecards stage as Dagster runs it: a backfill over level-0 ... level-5 scores every model of
models.yaml (a failing one included, recorded and flagged, the others scored), rows in the lake and in
hwosim_scores; robustness gathers them, sweeps the rate live and shows its plot inline."""

from __future__ import annotations

import base64
import io

import dagster as dg
import matplotlib.pyplot as plt
import polars as pl
import pytest

from hwosim_assets import plots
from hwosim_assets.defs.lake.layout import ROBUSTNESS_KEY, bronze_key, perturbed_key, plot_key, score_key, truth_key
from hwosim_assets.defs.resources import HwosimConfig, resources_from_settings
from hwosim_assets.evaluate import store
from hwosim_assets.perturb import load_profiles, perturb_spectra
from hwosim_assets.settings import Settings
from hwosim_assets_tests import scoring_data
from hwosim_assets_tests.pipeline import checks_passed, failure, materialize

MODELS = """
version: 1
models:
  - name: sigma-clip
    model: hwosim_assets.evaluate.baselines:SigmaClipFlagger
    baseline: true
  - name: stream-health
    model: hwosim_assets.evaluate.baselines:StreamHealthDetector
    baseline: true
  - name: fragile
    model: hwosim_assets_tests.scoring_models:Raises
    params: {at: 7}
rates: {per_second: [100, 2000], profile: level-2, packets: 40}
"""
LEVELS = [f"level-{n}" for n in range(6)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A lake holding the sample time series' bronze table and its level-N partitions, as the
    upstream assets leave them; the instance knows the partitions."""
    home = tmp_path_factory.mktemp("hwosim")
    (home / "models.yaml").write_text(MODELS)
    settings = Settings.from_env({"HWOSIM_HOME": str(home), "HWOSIM_MODELS": str(home / "models.yaml")})
    resources = resources_from_settings(settings)
    lake = resources["lake"]
    obs_id, clean = scoring_data.sample_bronze("spectra")
    lake.write_parquet(bronze_key("spectra", obs_id), clean)
    profiles = load_profiles()
    for name in LEVELS:
        result = perturb_spectra(clean, profiles[name], observation=obs_id, seed=settings.seed)
        lake.write_parquet(truth_key("spectra", name, obs_id), result.truth)
        lake.write_parquet(perturbed_key("spectra", name, obs_id), result.data)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("spectra_observations", [obs_id])
    instance.add_dynamic_partitions("profiles", LEVELS)
    return resources, instance, obs_id


def test_a_backfill_over_the_levels_scores_every_model_and_records_the_failing_one(setup):
    resources, instance, obs_id = setup
    for name in LEVELS:
        key = dg.MultiPartitionKey({"observation": obs_id, "profile": name})
        result = materialize("scorecards_spectra", resources, instance, key)
        assert result.success  # a failing model does not fail the run...
        assert checks_passed(result) == {"every_model_scored": False}  # ...it is flagged
        [event] = result.get_asset_materialization_events()
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        assert meta["scored"] == 2 and meta["failed"] == 1
        assert "| fragile | failed |" in meta["models"].replace("  ", " ") or "fragile" in meta["models"]
    lake = resources["lake"]
    rows = lake.read_parquet(score_key("spectra", "level-3", obs_id))
    fragile = rows.filter(pl.col("model") == "fragile")
    assert fragile["status"].unique().to_list() == ["failed"]
    assert "model 'fragile' (hwosim_assets_tests.scoring_models:Raises) raised ValueError" in fragile["error"][0]
    assert "at packet seq=7" in fragile["error"][0]
    assert rows.filter(pl.col("model") == "sigma-clip", pl.col("metric") == "flags.f1")["value"][0] > 0
    sql = store.read(resources["stream_db"].engine(), model="sigma-clip", metric="flags.error")
    assert sorted(sql["level"].to_list()) == list(range(6))  # one row per level: reruns replace, never double
    assert sql["profile_hash"].n_unique() == 6 and sql["seed"].unique().to_list() == [20261124]


def test_robustness_gathers_the_curves_sweeps_the_rate_and_shows_the_plot(setup):
    resources, instance, obs_id = setup
    result = materialize("robustness", resources, instance)
    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert "sigma-clip" in meta["summary"] and "100" in meta["rates"] and "2000" in meta["rates"]
    # the full figure in the lake, where the metadata's link points
    lake = resources["lake"]
    key = plot_key("robustness", "robustness")
    full = lake.read_bytes(key)
    assert full.startswith(b"\x89PNG\r\n\x1a\n") and meta["plot"] == lake.uri(key)
    # the UI shows a small copy inline: a markdown image whose data: URL decodes to a PNG
    assert meta["plot_preview"].startswith("![")
    encoded = meta["plot_preview"].split("data:image/png;base64,", 1)[1].rstrip(")")
    small = plt.imread(io.BytesIO(base64.b64decode(encoded)), format="png")
    assert small.shape[1] <= plots.PREVIEW_WIDTH and len(encoded) < min(len(full), 100_000)
    summary = lake.read_parquet(ROBUSTNESS_KEY)
    flags = summary.filter(pl.col("model") == "sigma-clip", pl.col("kind") == "flags").row(0, named=True)
    assert flags["mce_pct"] == pytest.approx(100.0) and flags["level_0"] == 0.0 and flags["level_5"] > flags["level_1"]
    live = store.read(resources["stream_db"].engine(), mode="live", metric="live.within_cadence")
    assert sorted(set(live["rate"].to_list())) == [100.0, 2000.0] and set(live["model"]) >= {
        "sigma-clip",
        "stream-health",
    }


def test_a_bad_models_file_fails_the_run_naming_file_and_field(tmp_path, setup):
    resources, instance, obs_id = setup
    bad = tmp_path / "models.yaml"
    bad.write_text("version: 1\nmodels:\n  - name: x\n    model: not-a-reference\n")
    hw = resources["hwosim"]
    broken = {**resources, "hwosim": HwosimConfig(seed=hw.seed, models_path=str(bad))}
    key = dg.MultiPartitionKey({"observation": obs_id, "profile": "level-0"})
    result = materialize("scorecards_spectra", broken, instance, key, raise_on_error=False)
    message = failure(result, "scorecards_spectra")
    assert f"{bad}: model 'x': field model: must be package.module:factory" in message
