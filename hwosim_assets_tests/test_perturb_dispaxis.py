"""2-D spectra follow their dispersion direction (DISPAXIS of the SCI header:
1 = x, 2 = y; missing = x): the real NIRSpec s2d, and the same product
transposed into a DISPAXIS = 2 one (as MIRI LRS slit s2d products are
dispersed along y), perturbed under the same seed."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.ingest.fits_reader import header_facts, read_family
from hwosim_assets.perturb import parse_profiles, perturb_images, perturb_spectra
from hwosim_assets.perturb.batch import MIN_SNR, Batch
from hwosim_assets.perturb.exposure import Exposure, exposures, pick
from hwosim_assets.perturb.fidelity import products
from hwosim_assets_tests.mast_server import REAL_JWST_DIR

S2D = "jw01492-o005_s00004_nirspec_f100lp-g140m-s1600a1-sub2048_s2d.fits"
WHOLE = 4096  # tile size: each product is one tile, so both layouts are one packet


def real_s2d() -> Path:
    path = REAL_JWST_DIR / S2D
    if not path.is_file():
        pytest.skip(f"the real NIRSpec s2d is not in {REAL_JWST_DIR}")
    return path


def transposed(src: Path, dst: Path) -> Path:
    """``src`` with x and y swapped in every image plane (SCI, ERR, WHT, CON,
    VAR_*; DQ and WAVELENGTH where present) and DISPAXIS = 2 in the SCI header."""
    with fits.open(src) as hdul:
        for hdu in hdul:
            if isinstance(hdu, fits.ImageHDU) and hdu.data is not None and hdu.data.ndim >= 2:
                hdu.data = np.ascontiguousarray(np.swapaxes(hdu.data, -1, -2))
        hdul["SCI"].header["DISPAXIS"] = 2
        hdul.writeto(dst)
    return dst


def profile(**params: float):
    shift = {"offset_px": 0.0, "slope_px_per_hour": 0.0, "jitter_px": 0.0, **params}
    text = ", ".join(f"{k}: {v}" for k, v in shift.items())
    return parse_profiles(f"profiles:\n  p:\n    kinds:\n      spectral_shift: {{params: {{{text}}}}}\n")["p"]


def planes(result_table: pl.DataFrame, name: str) -> np.ndarray:
    (row,) = result_table.iter_rows(named=True)  # one tile: the whole product
    return np.frombuffer(row[name], dtype="<f4").reshape(row["ny"], row["nx"])


@cache
def both(tmp: Path) -> dict[int, tuple[pl.DataFrame, dict[str, Exposure]]]:
    src = real_s2d()
    paths = {1: src, 2: transposed(src, tmp / ("t_" + src.name))}
    return {
        axis: (read_family("images", [path], WHOLE), exposures(header_facts([path]))) for axis, path in paths.items()
    }


def test_dispaxis_is_a_header_fact_with_x_as_the_default(tmp_path):
    products_ = both(tmp_path)
    assert pick(products_[1][1]).dispaxis == 1 and pick(products_[1][1]).dispersion_axis == 1
    assert pick(products_[2][1]).dispaxis == 2 and pick(products_[2][1]).dispersion_axis == 2
    assert Exposure().dispersion_axis == 1  # no DISPAXIS: along x, as for NIRSpec
    assert Exposure(dispaxis=3).dispersion_axis == 1  # not a direction: the default
    table, _ = products_[2]
    assert (table["ny"][0], table["nx"][0]) == (1426, 25)  # dispersed along y now


def test_a_whole_pixel_shift_of_the_transposed_product_is_the_transposed_shift(tmp_path):
    """Same seed, same packet: shifting the DISPAXIS = 2 product along y gives
    exactly the transpose of shifting the DISPAXIS = 1 product along x - flux,
    ERR and variances (a whole-pixel shift averages nothing away, so no noise
    is restored and the comparison is exact). The s2d has no WAVELENGTH plane:
    its DISPAXIS makes it a 2-D spectrum."""
    out = {}
    for axis, (table, facts) in both(tmp_path).items():
        result = perturb_images(table, profile(offset_px=3.0), observation="o", seed=7, exposures=facts)
        out[axis] = (table, result)
    for name in ("sci", "err", "var_poisson", "var_rnoise"):
        before1, after1 = planes(out[1][0], name), planes(out[1][1].data, name)
        before2, after2 = planes(out[2][0], name), planes(out[2][1].data, name)
        assert np.array_equal(before2, before1.T, equal_nan=True)
        assert np.array_equal(after2, after1.T, equal_nan=True), name
    sci1, moved1 = planes(out[1][0], "sci"), planes(out[1][1].data, "sci")
    assert not np.array_equal(sci1, moved1, equal_nan=True)  # it did move
    inner = np.isfinite(sci1[:, :-3]) & np.isfinite(moved1[:, 3:])
    assert np.array_equal(moved1[:, 3:][inner], sci1[:, :-3][inner])  # by 3 px along x, for DISPAXIS 1


def fitted_shift(before: np.ndarray, after: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """(s_y, s_x): joint least squares of the change against the flux gradients,
    delta = -(s_y dF/dy + s_x dF/dx) (backward differences, as the bilinear
    resampling of a sub-pixel shift gives), on pixels of S/N > 5."""
    dy = before[1:, 1:] - before[:-1, 1:]
    dx = before[1:, 1:] - before[1:, :-1]
    delta = (after - before)[1:, 1:]
    use = np.isfinite(dy) & np.isfinite(dx) & np.isfinite(delta) & (before[1:, 1:] > 5 * err[1:, 1:])
    assert use.sum() > 1000
    (s_y, s_x), *_ = np.linalg.lstsq(-np.stack([dy[use], dx[use]], axis=1), delta[use], rcond=None)
    return float(s_y), float(s_x)


@pytest.mark.parametrize("axis", [1, 2])
def test_a_fractional_shift_moves_the_flux_along_the_dispersion_only(tmp_path, axis):
    """A 0.4 px shift (resampled, noise restored): 0.4 px along x and none
    along y for DISPAXIS 1; along y and none along x for DISPAXIS 2."""
    table, facts = both(tmp_path)[axis]
    result = perturb_images(table, profile(offset_px=0.4), observation="o", seed=3, exposures=facts)
    before, after, err = (
        planes(t, n).astype(np.float64) for t, n in ((table, "sci"), (result.data, "sci"), (table, "err"))
    )
    s_y, s_x = fitted_shift(before, after, err)
    along, across = (s_y, s_x) if axis == 2 else (s_x, s_y)
    assert along == pytest.approx(0.4, abs=0.04)
    assert abs(across) < 0.04


def test_the_electron_scale_is_per_line_of_constant_wavelength(tmp_path):
    """Per column for DISPAXIS 1, per row for DISPAXIS 2 - the same numbers."""
    scales = {}
    for axis, (table, facts) in both(tmp_path).items():
        exposure = pick(facts)
        sci, err, var = (planes(table, name)[None].copy() for name in ("sci", "err", "var_poisson"))
        ny, nx = sci.shape[1:]
        batch = Batch(
            family="images",
            value=sci,
            error=err,
            wavelength=None,
            seq=np.zeros(1, dtype=np.int64),
            epoch=np.zeros(1, dtype=np.int64),
            time_mjd=np.full(1, 60000.0),
            cols=np.arange(nx)[None],
            rows=np.arange(ny)[None],
            t_ref=60000.0,
            exposure=exposure,
            var_poisson=var,
        )
        assert batch.spectral_2d and batch.scale_source == "poisson"
        scales[axis] = batch.per_electron
    assert scales[1].shape == (1, 1, 1426) and scales[2].shape == (1, 1426, 1)
    assert np.array_equal(scales[2][0, :, 0], scales[1][0, 0, :])


def test_extracted_spectra_dispersed_along_y_get_their_stripes_along_or_across_it():
    """1/f of an extracted spectrum: a column-striped detector (NIRISS) puts a
    channel-by-channel offset on a spectrum dispersed along x (DISPAXIS 1) and
    a grey one - the same for every channel of an integration with the same
    NPIXELS - on one dispersed along y (DISPAXIS 2, as NIRISS GR150C)."""
    soss = products()["NIRISS SOSS x1dints (sample)"]
    assert soss.exposure.detector.stripes == "columns" and soss.exposure.dispersion_axis == 1
    text = "profiles:\n  p:\n    kinds: {striping_1f: 3}\n"
    prof = parse_profiles(text)["p"]
    spread = {}
    for axis in (1, 2):
        exposure = dataclasses.replace(soss.exposure, dispaxis=axis)
        result = perturb_spectra(soss.spectra, prof, observation="o", seed=5, exposures=exposure, trace=True)
        frame = soss.spectra.select("seq", "npixels").with_columns(
            pl.Series("offset", result.deltas["striping_1f"] / result_scale(result, soss.spectra))
        )
        bright = soss.spectra["flux"] > MIN_SNR * soss.spectra["flux_error"]  # their scale is VAR_POISSON / F
        frame = frame.filter(bright & pl.col("offset").is_finite() & (pl.col("npixels") > 0))
        spread[axis] = frame.group_by("seq", pl.col("npixels").round()).agg(pl.col("offset").std())["offset"]
    assert spread[1].drop_nulls().median() > 0  # channels differ
    assert spread[2].drop_nulls().max() < 1e-6 * max(spread[1].drop_nulls().median(), 1e-30)  # grey


def result_scale(result, table: pl.DataFrame) -> np.ndarray:
    """Data per electron of each element, as the kind used it: the trace of a
    kind that adds exactly one electron-scaled unit is not exposed, so the
    flux change's own per-element scale is recovered from VAR_POISSON / F."""
    flux, var = table["flux"].to_numpy(), table["flux_var_poisson"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((flux > 0) & (var > 0), var / flux, np.nan)
