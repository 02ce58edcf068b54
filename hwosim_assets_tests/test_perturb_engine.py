"""Engine API: schemas and summaries, clear errors, and the streamed Parquet
path giving the same bytes as the in-memory one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hwosim_assets.perturb import (
    PerturbError,
    load_profiles,
    parse_profiles,
    perturb_images,
    perturb_parquet,
    perturb_spectra,
)
from hwosim_assets.perturb.engine import SUMMARY_SCHEMA
from hwosim_assets.perturb.kinds import ELEMENT_KINDS
from hwosim_assets.perturb.synthetic import image_table, spectra_table
from hwosim_assets.perturb.truth import tile_truth
from hwosim_assets.records import IMAGE_TILE_SCHEMA, SPECTRA_SCHEMA

OBS = "jw01366-o004"


def test_outputs_keep_schema_rows_and_order_and_truth_is_separate():
    profile = load_profiles()["degraded"]
    spectra = spectra_table(10, 50).sample(fraction=1.0, shuffle=True, seed=1)  # any row order
    result = perturb_spectra(spectra, profile, observation=OBS, seed=1)
    assert result.data.schema == pl.Schema(SPECTRA_SCHEMA)
    assert result.data.select("seq", "channel").equals(spectra.select("seq", "channel"))
    assert result.truth.columns == ["seq", "channel", "truth"] and result.truth["truth"].dtype == pl.UInt32
    assert result.truth.select("seq", "channel").equals(spectra.select("seq", "channel"))

    images = image_table(2, (100, 100), 32)
    result = perturb_images(images, profile, observation=OBS, seed=1)
    assert result.data.schema == pl.Schema(IMAGE_TILE_SCHEMA)
    assert result.data["seq"].equals(images["seq"])
    assert result.truth.columns == ["seq", "truth"] and result.truth["truth"].dtype == pl.Binary
    for row in result.data.head(5).iter_rows(named=True):
        mask = tile_truth(result.truth.filter(pl.col("seq") == row["seq"])["truth"][0], row["ny"], row["nx"])
        assert mask.shape == (row["ny"], row["nx"]) and mask.any()


def test_summary_has_one_row_per_packet_and_kind():
    profile = load_profiles()["nominal"]
    table = spectra_table(12, 40)
    result = perturb_spectra(table, profile, observation=OBS, seed=2)
    applied = [s.kind for s in profile.element_kinds if "spectra" in ELEMENT_KINDS[s.kind].families]
    assert len(applied) < len(profile.element_kinds)  # nominal's pointing jitter (1 mas) is for images only
    assert result.summary.schema == pl.Schema(SUMMARY_SCHEMA)
    assert len(result.summary) == 12 * len(applied)
    assert set(result.summary["kind"]) == set(applied) == set(result.fractions)
    assert (result.summary["elements"] == 40).all()
    cr = result.summary.filter(pl.col("kind") == "cosmic_rays")
    assert (cr["magnitude"] >= 0).all() and cr["params"][0].startswith('{"deposit_e"')
    for kind, fraction in result.fractions.items():
        assert fraction == result.summary.filter(pl.col("kind") == kind)["affected"].sum() / len(table)


def test_kinds_of_the_other_family_are_skipped():
    profile = parse_profiles("profiles:\n  p: {kinds: {pointing_jitter: 3, spectral_shift: 3}}\n")["p"]
    spectra = perturb_spectra(spectra_table(5, 20), profile, observation=OBS, seed=1)
    images = perturb_images(image_table(1, (64, 64), 32), profile, observation=OBS, seed=1)
    assert set(spectra.fractions) == {"spectral_shift"}
    # spectral_shift applies to images only where they are 2-D spectra (a WAVELENGTH plane): none here
    assert images.fractions["spectral_shift"] == 0 and set(images.fractions) == {"pointing_jitter", "spectral_shift"}
    assert images.fractions["pointing_jitter"] > 0


def test_expected_fractions_cover_applied_kinds():
    result = perturb_images(image_table(2, (128, 128), 64), load_profiles()["degraded"], observation=OBS, seed=3)
    assert set(result.expected_fractions) == set(result.fractions)
    assert result.expected_fractions["saturation"] is None  # depends on the scene
    assert result.expected_fractions["missing_values"].accepts(result.fractions["missing_values"])


@pytest.mark.parametrize("family", ["spectra", "images"])
def test_empty_table_and_missing_column_are_named(family):
    fn = perturb_spectra if family == "spectra" else perturb_images
    schema = SPECTRA_SCHEMA if family == "spectra" else IMAGE_TILE_SCHEMA
    profile = load_profiles()["nominal"]
    with pytest.raises(PerturbError, match=f"observation '{OBS}'.*empty"):
        fn(pl.DataFrame(schema=schema), profile, observation=OBS, seed=1)
    table = spectra_table(2, 5) if family == "spectra" else image_table(1, (32, 32), 32)
    with pytest.raises(PerturbError, match=f"observation '{OBS}'.*missing column 'event_time'"):
        fn(table.drop("event_time"), profile, observation=OBS, seed=1)


def test_bad_values_are_named():
    profile = load_profiles()["nominal"]
    bad = spectra_table(2, 5).with_columns(pl.lit("x").alias("flux"))
    with pytest.raises(PerturbError, match="column 'flux'"):
        perturb_spectra(bad, profile, observation=OBS, seed=1)
    short = image_table(1, (32, 32), 32).with_columns(pl.lit(b"\x00" * 8).alias("sci"))
    with pytest.raises(PerturbError, match="column 'sci' row 0 holds 8 bytes"):
        perturb_images(short, profile, observation=OBS, seed=1)
    with pytest.raises(PerturbError, match="seed"):
        perturb_spectra(spectra_table(2, 5), profile, observation=OBS, seed=-1)


def _same(result, data: pl.DataFrame, truth: pl.DataFrame, streamed) -> None:
    assert data.equals(result.data)
    assert truth.equals(result.truth)
    assert streamed.summary.equals(result.summary)
    assert streamed.fractions == result.fractions
    assert streamed.expected_fractions == result.expected_fractions
    assert streamed.data is None and streamed.rows == len(result.data)


@pytest.mark.parametrize("batch_rows", [37, 4096])
def test_streamed_parquet_equals_in_memory_spectra(tmp_path: Path, batch_rows: int):
    profile = load_profiles()["level-4"]
    table = spectra_table(40, 50)  # 2000 rows: 37-row batches cut packets in two
    src = tmp_path / "bronze.parquet"
    table.write_parquet(src, row_group_size=300)
    streamed = perturb_parquet(
        src, tmp_path / "p.parquet", tmp_path / "t.parquet", "spectra", profile, OBS, 5, batch_rows=batch_rows
    )
    result = perturb_spectra(table, profile, observation=OBS, seed=5)
    _same(result, pl.read_parquet(tmp_path / "p.parquet"), pl.read_parquet(tmp_path / "t.parquet"), streamed)


def test_streamed_parquet_equals_in_memory_images(tmp_path: Path):
    profile = load_profiles()["level-4"]
    table = image_table(3, (100, 100), 32)
    src = tmp_path / "bronze.parquet"
    table.write_parquet(src)
    streamed = perturb_parquet(
        src, tmp_path / "p.parquet", tmp_path / "t.parquet", "images", profile, OBS, 5, batch_rows=7
    )
    result = perturb_images(table, profile, observation=OBS, seed=5)
    _same(result, pl.read_parquet(tmp_path / "p.parquet"), pl.read_parquet(tmp_path / "t.parquet"), streamed)


def test_streamed_spectra_must_be_grouped_by_seq(tmp_path: Path):
    table = spectra_table(10, 20)
    src = tmp_path / "bronze.parquet"
    pl.concat([table.filter(pl.col("seq") >= 5), table.filter(pl.col("seq") < 5)]).write_parquet(src)
    with pytest.raises(PerturbError, match="grouped by 'seq'"):
        perturb_parquet(
            src,
            tmp_path / "p.parquet",
            tmp_path / "t.parquet",
            "spectra",
            load_profiles()["nominal"],
            OBS,
            1,
            batch_rows=50,
        )


def test_streamed_errors_are_named(tmp_path: Path):
    src = tmp_path / "bronze.parquet"
    spectra_table(2, 5).drop("flux").write_parquet(src)
    with pytest.raises(PerturbError, match="missing column 'flux'"):
        perturb_parquet(src, tmp_path / "p", tmp_path / "t", "spectra", load_profiles()["nominal"], OBS, 1)
    with pytest.raises(PerturbError, match="family"):
        perturb_parquet(src, tmp_path / "p", tmp_path / "t", "cubes", load_profiles()["nominal"], OBS, 1)


def test_drifts_follow_event_time_from_t_ref():
    """Linear gain drift: 1 + slope x hours since t_ref, exactly."""
    profile = parse_profiles(
        "profiles:\n  p:\n    kinds:\n      gain_drift: {params: {slope_per_hour: 0.01, settle_amplitude: 0, settle_tau_s: 600, walk_sigma: 0}}\n"
    )["p"]
    table = spectra_table(5, 10, cadence_s=3600.0)
    result = perturb_spectra(table, profile, observation=OBS, seed=1, t_ref=60000.0)
    ratio = (result.data["flux"] / table["flux"]).to_numpy().reshape(5, 10)
    assert np.allclose(np.nanmean(ratio, axis=1), 1 + 0.01 * np.arange(5))
    assert result.t_ref == 60000.0


def test_perturb_package_does_not_import_dagster():
    code = "import sys, hwosim_assets.perturb; assert not any(m.startswith('dagster') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bronze_read_from_sample_fits_products(tmp_path: Path):
    """The real bronze readers' tables (sample JWST-format products) perturb
    cleanly: schema kept, every change in the truth."""
    sample = pytest.importorskip("hwosim_assets.ingest.sample")
    reader = pytest.importorskip("hwosim_assets.ingest.fits_reader")
    from hwosim_assets.perturb.truth import uncovered_changes

    x1d = tmp_path / "jw09999001001_04101_00001-seg001_nis_x1dints.fits"
    sample.make_x1dints(12, 80).writeto(x1d)
    cal = tmp_path / "jw09999002001_02101_00001_nrca1_calints.fits"
    sample.make_image(100, 100, nints=2).writeto(cal)
    spectra = reader.read_spectra([x1d])
    images = reader.read_images([cal], tile_size=32)
    for name in ("nominal", "storm", "level-5"):
        profile = load_profiles()[name]
        result = perturb_spectra(spectra, profile, observation=OBS, seed=9)
        assert result.data.schema == spectra.schema
        assert uncovered_changes(spectra, result.data, result.truth, "spectra") == 0
        result = perturb_images(images, profile, observation=OBS, seed=9)
        assert result.data.schema == images.schema
        assert uncovered_changes(images, result.data, result.truth, "images") == 0


def _storm_batch(tiles: int, stage: str = "archive"):
    from hwosim_assets.perturb.batch import Batch

    rng = np.random.default_rng(5)
    sci = (1000 + 10 * rng.standard_normal((tiles, 128, 128))).astype(np.float32)
    sci[:, 60:64, 60:64] = 3e6  # a saturating star per tile
    err = np.sqrt(np.abs(sci)).astype(np.float32)
    k = np.arange(tiles)
    cols = np.arange(128)[None, :]
    return Batch(
        family="images",
        value=sci,
        error=err,
        wavelength=None,
        seq=k,
        epoch=k // 256,
        time_mjd=np.full(tiles, 60000.0),
        cols=(k % 16 * 128)[:, None] + cols,
        rows=(k // 16 % 16 * 128)[:, None] + cols,
        t_ref=60000.0,
        stage=stage,
        dq=np.zeros(sci.shape, np.uint32),
    )


def test_cosmic_rays_at_flare_rates_land_in_bounded_memory(monkeypatch):
    """At particle-event rates (storm: ~0.16 hits per pixel per frame) the hit
    arrays are built a few packets at a time: the same bytes as all at once,
    at a bounded peak (it grew with the rate: 730 MB for one 2048^2 frame)."""

    from hwosim_assets.perturb.draws import Draws
    from hwosim_assets.perturb.kinds import cosmic

    params = {"rate_cm2_s": 490.0, "deposit_e": 5200.0, "large_per_s": 0.1}
    draws = Draws(1, "ab", "obs", "cosmic_rays")
    peak, whole_peak = _parted_as_whole(
        monkeypatch,
        cosmic,
        "EVENT_BUDGET",
        (cosmic.EVENT_BUDGET, 1 << 40),
        lambda batch: cosmic.cosmic_rays(batch, params, draws),
    )
    assert peak < 120e6 < whole_peak, (peak, whole_peak)


def _parted_as_whole(monkeypatch, module, budget_name, budgets, apply):
    """Apply a kind to the same batch under a small and a huge ``budget``
    (parts of a few packets, and all at once): the same values, ERR, DQ,
    counts and truth either way; returns the two peaks of traced memory."""
    import tracemalloc

    runs = []
    for budget in budgets:
        monkeypatch.setattr(module, budget_name, budget)
        batch = _storm_batch(128)
        tracemalloc.start()
        effect = apply(batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        runs.append((batch, effect, peak))
    (parted, effect, peak), (whole, whole_effect, whole_peak) = runs
    for name in ("value", "error", "dq"):
        assert np.array_equal(getattr(parted, name), getattr(whole, name), equal_nan=True)
    assert np.array_equal(effect.counts(parted), whole_effect.counts(whole))
    truth, whole_truth = np.zeros(parted.value.shape, np.uint32), np.zeros(parted.value.shape, np.uint32)
    effect.mark(truth, 3)
    whole_effect.mark(whole_truth, 3)
    assert np.array_equal(truth, whole_truth) and truth.any()
    return peak, whole_peak


def test_hot_pixels_at_level_5_fractions_land_in_bounded_memory(monkeypatch):
    """12 % of the pixels defective (hot_pixels level 5): the per-defect arrays
    are built a few packets at a time - the same bytes as all at once, at a
    bounded peak (~300 MB for one 2048^2 frame all at once)."""

    from hwosim_assets.perturb.draws import Draws
    from hwosim_assets.perturb.kinds import detector

    params = {"hot_fraction": 0.06, "warm_fraction": 0.05, "dead_fraction": 0.01, "hot_e_s": 1.0, "warm_e_s": 0.1}
    draws = Draws(1, "ab", "obs", "hot_pixels")
    detector.defect_map(draws.key("observation"), tuple(sorted(params.items())))  # cached: not in the peak
    peak, whole_peak = _parted_as_whole(
        monkeypatch,
        detector,
        "DEFECT_BUDGET",
        (1 << 15, 1 << 40),  # ~16 tiles a part
        lambda batch: detector.hot_pixels(batch, params, draws),
    )
    assert peak < whole_peak / 2, (peak, whole_peak)


def test_dense_noise_and_saturation_make_no_full_size_float64_temporaries():
    """shot_noise and saturation work piece by piece: a 2048^2 frame's peak
    stays well under one float64 copy of it (32 MB; it was 139 MB each)."""
    import tracemalloc

    from hwosim_assets.perturb.draws import Draws
    from hwosim_assets.perturb.kinds import ELEMENT_KINDS

    for kind, params in (
        ("shot_noise", {"throughput": 0.5}),
        ("saturation", {"well_fraction": 0.5, "core_fraction": 0.3}),
    ):
        for stage in ("archive", "live"):
            batch = _storm_batch(256, stage)
            tracemalloc.start()
            effect = ELEMENT_KINDS[kind].apply(batch, params, Draws(1, "ab", "obs", kind))  # type: ignore[misc]
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert effect.counts(batch).sum() > 0
            assert peak < 16e6, (kind, stage, peak)


def test_jitter_noise_folded_into_read_noise_keeps_each_kinds_trace(monkeypatch):
    """With read noise in the run, the jitter's noise-restoring Gaussian is drawn
    in read_noise's field (summed variance): the same output with or without
    trace, the same truth and ERR as two separate fields, and each kind's
    traced change with the scatter it has when drawn apart."""
    from hwosim_assets.perturb import engine
    from hwosim_assets.perturb.engine import perturb_tile_stack

    profile = parse_profiles("profiles:\n  p: {kinds: {pointing_jitter: 5, read_noise: 5}}\n")["p"]
    rng = np.random.default_rng(3)
    n = 8
    sci = (1000 + 10 * rng.standard_normal((n, 128, 128))).astype(np.float32)
    err = np.full(sci.shape, 10.0, np.float32)
    meta = {
        "seq": np.arange(n),
        "frame": np.arange(n),  # one tile per frame: eight offsets
        "y0": np.zeros(n, int),
        "x0": np.zeros(n, int),
        "event_time": 60000.0 + np.arange(n) / 864,
    }

    def run(trace: bool):
        s, e = sci.copy(), err.copy()
        truth, result = perturb_tile_stack(s, e, **meta, profile=profile, observation=OBS, seed=1, trace=trace)
        return s, e, truth, result

    folded, traced = run(False), run(True)
    assert np.array_equal(folded[0], traced[0]) and np.array_equal(folded[1], traced[1])
    original = engine._Run.batch

    def unfolded_batch(self, **kwargs):
        batch = original(self, **kwargs)
        batch.fold_noise = False
        return batch

    monkeypatch.setattr(engine._Run, "batch", unfolded_batch)
    apart = run(True)
    assert not np.array_equal(apart[0], traced[0])  # another realisation...
    assert np.array_equal(apart[1], traced[1]) and np.array_equal(apart[2], traced[2])  # ...same ERR and truth
    inner = np.s_[:, 2:-2, 2:-2]  # away from the clamped tile edges
    for kind in ("pointing_jitter", "read_noise"):
        ours, theirs = traced[3].deltas[kind][inner], apart[3].deltas[kind][inner]
        assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.03), kind
    total = sum(traced[3].deltas.values())
    assert np.allclose(total, traced[0].astype(np.float64) - sci, atol=1e-3)


def test_cosmic_rays_in_parts_give_the_same_spectra(monkeypatch):
    """Spectra too: hits landed part by part (a tiny budget) are the same bytes."""
    from hwosim_assets.perturb.kinds import cosmic

    table = spectra_table(60, 100)
    profile = load_profiles()["storm"]
    results = []
    for budget in (1 << 40, 256):
        monkeypatch.setattr(cosmic, "EVENT_BUDGET", budget)
        results.append(perturb_spectra(table, profile, observation=OBS, seed=2))
    whole, parted = results
    assert whole.fractions["cosmic_rays"] > 0.1
    assert parted.data.equals(whole.data) and parted.truth.equals(whole.truth)
    assert parted.summary.equals(whole.summary)
