"""The perturbations in physical units on the real MIRI LRS x1dints of
WASP-39 (shared/data/jwst) and the sample products: the issue's acceptance
figures under ``nominal``, the electron scale, the stages, in-band DQ, and
coherent spectra."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import polars as pl
import pytest

from hwosim_assets.ingest.fits_reader import header_facts, read_family
from hwosim_assets.perturb import ELEMENT_KINDS, load_profiles, parse_profiles, perturb_parquet, perturb_spectra
from hwosim_assets.perturb.dq import DEAD, DO_NOT_USE, DROPOUT, JUMP_DET, SATURATED
from hwosim_assets.perturb.exposure import Exposure, exposures, pick
from hwosim_assets.perturb.fidelity import MIRI, cosmic_expected, products
from hwosim_assets.perturb.rng import Stream
from hwosim_assets_tests.mast_server import REAL_JWST_DIR

SEEDS = range(20)


@cache
def miri():
    path = REAL_JWST_DIR / MIRI
    if not path.is_file():
        pytest.skip(f"the real MIRI LRS x1dints is not in {REAL_JWST_DIR}")
    return read_family("spectra", [path], 128), pick(exposures(header_facts([path])))


def prof(text: str):
    return parse_profiles(f"profiles:\n  p:\n{text}")["p"]


def kind(name: str, level: int, stage: str = "archive"):
    return prof(f"    stage: {stage}\n    kinds: {{{name}: {level}}}\n")


@cache
def nominal_runs():
    table, exposure = miri()
    profile = load_profiles()["nominal"]
    return [
        perturb_spectra(table, profile, observation="jw02783-o002", seed=s, exposures=exposure, trace=True)
        for s in SEEDS
    ]


def test_the_product_supplies_electrons_seconds_and_detector():
    table, exposure = miri()
    assert exposure.detector.name == "MIRIMAGE" and exposure.seconds == pytest.approx(15.904)
    assert exposure.groups == 100 and exposure.detector.pixel_um == 25.0
    result = perturb_spectra(table, kind("read_noise", 1), observation="o", seed=1, exposures=exposure)
    assert set(result.scale_sources) == {"poisson"}  # N = F^2 / VAR_POISSON, from the product itself
    flux, var_p, err = (table[c].to_numpy() for c in ("flux", "flux_var_poisson", "flux_error"))
    ok = (flux > 0) & (var_p > 0)
    err_e = err[ok] / (var_p[ok] / flux[ok])
    assert 100 < np.median(err_e) < 1000  # hundreds of electrons per channel, not the old 16 e- convention


def test_nominal_moves_at_most_one_percent_of_finite_elements_by_more_than_5_err():
    table, _ = miri()
    flux, err = table["flux"].to_numpy(), table["flux_error"].to_numpy()
    finite = np.isfinite(flux) & (err > 0)
    moved = []
    for result in nominal_runs():
        after = result.data["flux"].to_numpy()
        ok = finite & np.isfinite(after)
        moved.append((np.abs(after - flux)[ok] > 5 * err[ok]).mean())
    assert np.mean(moved) <= 0.01, moved


def test_nominal_read_noise_is_what_the_profile_declares():
    """Added scatter / ERR as declared: excess x sqrt(VAR_RNOISE) per channel, within 20 %."""
    table, _ = miri()
    excess = load_profiles()["nominal"].resolved["read_noise"]["excess"]
    declared = excess * np.sqrt(table["flux_var_rnoise"].to_numpy())
    err = table["flux_error"].to_numpy()
    use = np.isfinite(declared) & (declared > 0) & (err > 0)
    measured = np.concatenate([(r.deltas["read_noise"] / err)[use] for r in nominal_runs()])
    target = np.sqrt(np.mean((declared[use] / err[use]) ** 2))
    assert np.std(measured) == pytest.approx(target, rel=0.2)
    assert np.std(measured) == pytest.approx(target, rel=0.05)  # in fact much closer


def test_nominal_cosmic_ray_channels_follow_rate_area_and_effinttm():
    table, exposure = miri()
    product = next(p for p in products().values() if p.name.startswith("MIRI"))
    rate = load_profiles()["nominal"].resolved["cosmic_rays"]
    expected = cosmic_expected(product, rate).sum() * len(SEEDS)
    bit = 1 << ELEMENT_KINDS["cosmic_rays"].bit
    touched = sum(int(((r.truth["truth"].to_numpy() & bit) > 0).sum()) for r in nominal_runs())
    assert touched == pytest.approx(expected, rel=0.2)
    # 2.3 /cm^2/s x 25 um pixels x ~12 pixels x 15.9 s: about one channel per integration, not 6 %
    assert 0.5 < touched / len(SEEDS) / table["seq"].n_unique() < 2.0


def test_nominal_err_matches_the_added_noise():
    """Reduced chi-square of the added noise against the growth of ERR: 1 +- 0.1
    (sub-threshold cosmic-ray residuals, unknown to the pipeline, and channels
    that lost a dead pixel's share are outliers, not noise, and are left out)."""
    table, _ = miri()
    flux, err = table["flux"].to_numpy(), table["flux_error"].to_numpy()
    seq = table["seq"].to_numpy()
    cr = 1 << ELEMENT_KINDS["cosmic_rays"].bit
    chi = []
    for r in nominal_runs():
        after_err, dq = r.data["flux_error"].to_numpy(), r.data["dq"].to_numpy()
        noise = sum(
            r.deltas[k]
            for k in ("read_noise", "striping_1f", "shot_noise", "hot_pixels", "cosmic_rays")
            if k in r.deltas
        )
        gain = 1 + r.summary.filter(pl.col("kind") == "gain_drift").sort("seq")["magnitude"].to_numpy()[seq]
        added = after_err**2 - (err * gain) ** 2
        residual = ((r.truth["truth"].to_numpy() & cr) > 0) & ((dq & JUMP_DET) == 0)
        use = np.isfinite(flux) & np.isfinite(r.data["flux"].to_numpy()) & ~residual & ((dq & DEAD) == 0) & (added > 0)
        chi.append(np.mean(noise[use] ** 2 / added[use]))
    assert np.mean(chi) == pytest.approx(1.0, abs=0.1), chi


def test_live_hits_land_at_full_charge_archive_hits_are_flagged_and_noisier():
    """live: a hit adds its ~5200 e- (about 16 ERR here, not 325); archive: the
    jump step (4 sigma of a group difference) catches those hits: JUMP_DET, no
    charge left, ERR grown by the split ramp's read noise."""
    table, exposure = miri()
    flux, var_p, err = (table[c].to_numpy() for c in ("flux", "flux_var_poisson", "flux_error"))
    per_electron = var_p / flux
    bit = 1 << ELEMENT_KINDS["cosmic_rays"].bit
    charges, flagged, grown = [], [], []
    for s in range(10):
        live = perturb_spectra(table, kind("cosmic_rays", 3, "live"), observation="o", seed=s, exposures=exposure)
        hit = (live.truth["truth"].to_numpy() & bit) > 0
        charges.append(((live.data["flux"].to_numpy() - flux) / per_electron)[hit])
        archive = perturb_spectra(table, kind("cosmic_rays", 3), observation="o", seed=s, exposures=exposure)
        hit = (archive.truth["truth"].to_numpy() & bit) > 0
        flagged.append((archive.data["dq"].to_numpy()[hit] & JUMP_DET) > 0)
        grown.append(archive.data["flux_error"].to_numpy()[hit] > err[hit])
    charges = np.concatenate(charges)
    assert np.mean(charges[np.isfinite(charges)]) == pytest.approx(
        5200, rel=0.2
    )  # large events add to the mean a little
    assert np.concatenate(flagged).mean() > 0.95 and np.concatenate(grown).mean() > 0.95
    assert (live.data["dq"].to_numpy() == table["dq"].to_numpy()).all()  # raw-like: no calibration flags


def test_in_band_dq_uses_the_jwst_values_where_the_pipeline_would_notice():
    table, exposure = miri()
    dead = perturb_spectra(table, kind("dead_columns", 5), observation="o", seed=1, exposures=exposure).data
    gone = (dead["dq"].to_numpy() & (DEAD | DO_NOT_USE)) == DEAD | DO_NOT_USE
    assert gone.any() and np.isnan(dead["flux"].to_numpy()[gone]).all()  # NaN, never 0 Jy
    assert not (dead["flux"].to_numpy() == 0).any()
    long = products()["long series (synthetic, MIRI facts)"]
    drop = perturb_spectra(long.table, kind("dropouts", 5), observation="o", seed=3, exposures=long.exposure).data
    lost = (drop["dq"].to_numpy() & (DROPOUT | DO_NOT_USE)) == DROPOUT | DO_NOT_USE
    assert lost.any() and np.isnan(drop["flux"].to_numpy()[lost]).all()
    assert (np.isnan(drop["flux"].to_numpy()) == (lost | np.isnan(long.table["flux"].to_numpy()))).all()
    soss = products()["NIRISS SOSS x1dints (sample)"]
    facts = dataclasses.replace(soss.exposure, ngroups=20)  # the sample has no NGROUPS: give its ramps 20 groups
    sat = perturb_spectra(soss.table, kind("saturation", 4), observation="o", seed=1, exposures=facts).data
    flagged = (sat["dq"].to_numpy() & SATURATED) > 0
    assert flagged.any()
    kept = flagged & np.isfinite(
        sat["flux"].to_numpy()
    )  # fitted from the groups before saturation: value kept, noisier
    assert kept.any() and (sat["flux_error"].to_numpy()[kept] > soss.table["flux_error"].to_numpy()[kept]).all()
    two = perturb_spectra(soss.table, kind("saturation", 4), observation="o", seed=1, exposures=soss.exposure).data
    lost = (
        two["dq"].to_numpy() & SATURATED
    ) > 0  # two groups (the sample's default): saturated in the second, no slope
    assert (
        lost.any()
        and ((two["dq"].to_numpy()[lost] & DO_NOT_USE) > 0).all()
        and np.isnan(two["flux"].to_numpy()[lost]).all()
    )


def test_spectra_keep_their_wavelength_grid_while_the_flux_moves():
    table, exposure = miri()
    result = perturb_spectra(table, kind("spectral_shift", 5), observation="o", seed=2, exposures=exposure)
    assert result.data["wavelength"].equals(table["wavelength"])
    assert not result.data["flux"].equals(table["flux"])
    assert (np.isnan(result.data["flux"].to_numpy()) == np.isnan(table["flux"].to_numpy())).all()


def test_one_over_f_runs_along_the_detectors_lines():
    """NIRISS (column stripes): each channel gets its own column's offset x NPIXELS.
    NIRCam (row stripes, the grism disperses along the fast-read rows): the
    aperture sums the same rows for every channel - one grey offset per integration.
    MIRI: no SIDECAR banding, untouched."""
    soss = products()["NIRISS SOSS x1dints (sample)"]
    table = soss.table
    flux, var_p = table["flux"].to_numpy(), table["flux_var_poisson"].to_numpy()
    per_e = var_p / flux
    npix = table["npixels"].to_numpy()
    runs = {}
    for detector in ("NIS", "NRCA5", "MIRIMAGE"):
        facts = Exposure(
            detector_name=detector,
            product_type="x1dints",
            ngroups=soss.exposure.ngroups,
            effinttm=soss.exposure.effinttm,
        )
        runs[detector] = perturb_spectra(
            table, kind("striping_1f", 3), observation="o", seed=4, exposures=facts, trace=True
        )
    one = table["seq"].to_numpy() == 0
    same = one & (npix == np.median(npix[one])) & np.isfinite(per_e)
    columns = runs["NIS"].deltas["striping_1f"][same] / per_e[same]
    rows = runs["NRCA5"].deltas["striping_1f"][same] / per_e[same]
    assert np.std(columns) > 0.3 * np.abs(columns).mean()  # channel to channel
    assert np.std(rows) < 1e-6 * np.abs(rows).mean()  # one value for the integration
    assert not np.nan_to_num(runs["MIRIMAGE"].deltas["striping_1f"]).any()


def test_gaussian_noise_has_true_tails():
    """16.8 M table draws: the counts beyond 4 and 4.5 sigma match the normal
    tail (a 16-bit table alone would stop at 4.3 sigma)."""
    from math import erfc, sqrt

    x = Stream(20261129, np.arange(4)).normal_f32(1 << 22).ravel()
    for k in (4.0, 4.5):
        assert (np.abs(x) > k).sum() == pytest.approx(x.size * erfc(k / sqrt(2)), rel=0.25)
    assert np.abs(x).max() > 4.6


def test_the_exact_tail_is_normal_out_to_six_sigma():
    """What the table's tail markers are redrawn from: 4 M draws beyond 3.67
    sigma follow the normal tail at 4.5, 5, 5.5 and 6 sigma (~32 expected
    beyond 6), the issue's 'true tails at least to 6 sigma'."""
    from math import erfc, sqrt

    from hwosim_assets.perturb.rng import exact_tail, tail_start

    a = tail_start()
    x = exact_tail(Stream(20261130, np.arange(8)).uniform(500_000 * 8).reshape(-1, 8))
    assert x.min() >= a
    for k, rel in ((4.5, 0.02), (5.0, 0.05), (5.5, 0.2), (6.0, 0.6)):
        expected = x.size * erfc(k / sqrt(2)) / erfc(a / sqrt(2))
        assert (x > k).sum() == pytest.approx(expected, rel=rel), k


def test_real_product_is_the_same_chunked_or_whole(tmp_path):
    table, exposure = miri()
    profile = load_profiles()["degraded"]
    whole = perturb_spectra(table, profile, observation="o", seed=9, exposures=exposure)
    src = tmp_path / "bronze.parquet"
    table.write_parquet(src)
    perturb_parquet(
        src,
        tmp_path / "d.parquet",
        tmp_path / "t.parquet",
        "spectra",
        profile,
        "o",
        9,
        batch_rows=500,
        exposures=exposure,
    )
    assert pl.read_parquet(tmp_path / "d.parquet").equals(whole.data)
    assert pl.read_parquet(tmp_path / "t.parquet").equals(whole.truth)


def test_pointing_jitter_moves_the_scene_not_the_noise():
    """Bilinear resampling alone would lower the sky's scatter (~0.8x at half a
    pixel); the kind restores the averaged-away noise, so the scatter still
    matches the unchanged ERR."""
    from hwosim_assets.perturb.engine import perturb_tile_stack

    sample = products()["NIRCam cal (sample)"]
    sci, err, _ = sample.images
    ratios = []
    for s in range(6):
        a, e = sci.copy(), err.copy()
        perturb_tile_stack(
            a,
            e,
            seq=[0],
            frame=[s],
            y0=[0],
            x0=[0],
            event_time=[60000.0],
            profile=kind("pointing_jitter", 5),
            observation="o",
            seed=s,
            exposures=sample.exposure,
        )
        assert np.array_equal(e, err, equal_nan=True)
        level = np.nanmedian(sci[0])
        sky = np.abs(sci[0] - level) < 3 * np.nanmedian(err[0])  # background pixels (the border is NaN) ...
        for dy in (-2, -1, 0, 1, 2):  # ... two pixels away from any star, which may move there
            for dx in (-2, -1, 0, 1, 2):
                sky = sky & np.roll(sky, (dy, dx), axis=(0, 1))
        ratios.append(np.nanstd(a[0][sky]) / np.nanstd(sci[0][sky]))
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.05)


def test_two_d_spectra_move_along_the_dispersion_under_a_fixed_wavelength_plane():
    from hwosim_assets.perturb import perturb_images

    slit = sorted(REAL_JWST_DIR.glob("*nrs2_phot*.fits"))
    if not slit:
        pytest.skip("the real NIRSpec MSA slitlet is not there")
    table = read_family("images", slit, 64)
    facts = exposures(header_facts(slit))
    result = perturb_images(table, kind("spectral_shift", 5), observation="o", seed=1, exposures=facts)
    assert result.data["wavelength"].equals(table["wavelength"])
    before = np.frombuffer(b"".join(table["sci"].to_list()), dtype="<f4")
    after = np.frombuffer(b"".join(result.data["sci"].to_list()), dtype="<f4")
    assert (np.isnan(before) == np.isnan(after)).all() and not np.array_equal(before, after, equal_nan=True)
    assert result.scale_sources.keys() == {
        "poisson"
    }  # its VAR_POISSON plane, per column (flux calibration varies with wavelength)
    plain = products()["NIRCam cal (sample)"]  # an image without WAVELENGTH: nothing to shift
    a, e = plain.images[0].copy(), plain.images[1].copy()
    from hwosim_assets.perturb.engine import perturb_tile_stack

    perturb_tile_stack(
        a,
        e,
        seq=[0],
        frame=[0],
        y0=[0],
        x0=[0],
        event_time=[60000.0],
        profile=kind("spectral_shift", 5),
        observation="o",
        seed=1,
        exposures=plain.exposure,
    )
    assert np.array_equal(a, plain.images[0], equal_nan=True)
