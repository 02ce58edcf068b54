"""The offline sample products: valid JWST-like FITS, deterministic, honest about
being simulated, and carrying the physics they claim (a transit, photon noise,
a star field)."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.ingest import sample
from hwosim_assets.ingest.products import identify
from hwosim_assets.records import CATALOG_SCHEMA

PRIMARY_KEYS = (
    "TELESCOP",
    "INSTRUME",
    "DETECTOR",
    "FILTER",
    "PUPIL",
    "PROGRAM",
    "OBSERVTN",
    "VISIT",
    "OBS_ID",
    "TARGNAME",
    "TARG_RA",
    "TARG_DEC",
    "EXPSTART",
    "EXPMID",
    "EXPEND",
    "EFFINTTM",
    "NINTS",
    "FILENAME",
    "DATAMODL",
    "CAL_VER",
    "DATE",
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return sample.write_sample_products(tmp_path_factory.mktemp("sample"))


def test_sample_files_are_valid_jwst_like_fits(written):
    assert [p.name for p in written] == sorted(sample.SAMPLE_PRODUCTS)
    for path in written:
        with fits.open(path) as hdul:
            hdul.verify("exception")
            header = hdul[0].header
            assert all(key in header for key in PRIMARY_KEYS), [k for k in PRIMARY_KEYS if k not in header]
            assert header["TELESCOP"] == "JWST"
            assert header["PROGRAM"] == sample.SAMPLE_PROGRAM and len(header["PROGRAM"]) == 5
            assert header["FILENAME"] == path.name
            assert header["EXPSTART"] < header["EXPMID"] < header["EXPEND"]
            names = [hdu.name for hdu in hdul]
            if path.name.endswith("_x1dints.fits"):
                assert names.count("EXTRACT1D") == header["NINTS"] and names[-1] == "INT_TIMES"
                assert [hdu.ver for hdu in hdul if hdu.name == "EXTRACT1D"] == list(range(1, header["NINTS"] + 1))
                assert hdul[1].columns["DQ"].format == "J" and hdul[1].data["DQ"].dtype == np.uint32
            else:
                assert names[:4] == ["PRIMARY", "SCI", "ERR", "DQ"]
                assert hdul["SCI"].header["BUNIT"] == "MJy/sr"
                assert (hdul["SCI"].data.dtype, hdul["DQ"].data.dtype) == (np.dtype(">f4"), np.dtype("uint32"))


def test_headers_say_simulated(written):
    for path in written:
        header = fits.getheader(path)
        assert header["HWOSIM"] == "SIMULATED"
        assert header["ORIGIN"] == "HWOSIM"
        assert "not real JWST data" in " ".join(str(c) for c in header["COMMENT"])


def test_bytes_are_deterministic(written, tmp_path):
    sample.sample_bytes.cache_clear()  # make them again from scratch
    again = sample.write_sample_products(tmp_path)
    for first, second in zip(written, again, strict=False):
        assert first.read_bytes() == second.read_bytes(), first.name
    cube = sample.hdul_bytes(sample.make_image(40, 50, nints=2))
    assert cube == sample.hdul_bytes(sample.make_image(40, 50, nints=2))
    assert sample.x1dints_bytes(5, 20) == sample.x1dints_bytes(5, 20)
    assert sample.x1dints_bytes(5, 20) != sample.x1dints_bytes(5, 20, seed=2)


def test_catalog_matches_the_files(written):
    catalog = sample.sample_catalog()
    assert catalog.schema == pl.Schema(CATALOG_SCHEMA)
    assert catalog["filename"].to_list() == [p.name for p in written]
    for row, path in zip(catalog.iter_rows(named=True), written, strict=False):
        data = path.read_bytes()
        assert row["size"] == len(data)
        assert row["checksum"] == hashlib.sha256(data).hexdigest()
        assert row["data_uri"] == f"sample://{path.name}"
        assert row["product_type"] == path.name.rsplit("_", 1)[1].removesuffix(".fits") == identify(path).product_type
        assert row["obs_id"] == identify(path).obs_id  # the same id scheme as the MAST and files sources
        assert (row["source"], row["simulated"], row["program"]) == ("sample", True, "09999")
    assert set(catalog["obs_id"]) == {sample.SPECTRA_OBS_ID, sample.IMAGE_OBS_ID}
    assert set(catalog.filter(pl.col("obs_id") == sample.SPECTRA_OBS_ID)["product_type"]) == {"x1dints"}


def test_write_is_atomic_and_rejects_unknown_names(tmp_path):
    name = sorted(sample.SAMPLE_PRODUCTS)[1]
    (tmp_path / name).write_bytes(b"stale")
    path = sample.write_sample_product(name, tmp_path)
    assert path.read_bytes() == sample.sample_bytes(name)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind
    with pytest.raises(KeyError, match="jw00001_nope_cal.fits"):
        sample.write_sample_product("jw00001_nope_cal.fits", tmp_path)


def _light_curves(hdul: fits.HDUList) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mid times, wavelength, flux, error, dq) as (n_int,) (n_wl,) and (n_int, n_wl) arrays."""
    tables = [hdu.data for hdu in hdul if hdu.name == "EXTRACT1D"]
    stack = {c: np.array([t[c] for t in tables]) for c in ("FLUX", "FLUX_ERROR", "DQ")}
    times = np.asarray(hdul["INT_TIMES"].data["int_mid_MJD_UTC"])
    return times, np.asarray(tables[0]["WAVELENGTH"]), stack["FLUX"], stack["FLUX_ERROR"], stack["DQ"]


def _depth(times, flux, channels):
    """Fractional dip of the summed flux at mid transit against the out-of-transit baseline."""
    dt = np.abs(times - times.mean())
    white = flux[:, channels].sum(axis=1)
    return 1 - white[dt < 0.02].mean() / white[dt > 0.08].mean()


def test_transit_is_visible_with_the_configured_depth():
    rp_rs = 0.1
    times, wavelength, flux, _, dq = _light_curves(sample.make_x1dints(160, 200, rp_rs=rp_rs))
    good = (dq == 0).all(axis=0)
    # Limb darkening makes the centre of the disc brighter than average, so
    # mid-transit depth is a little more than (Rp/R*)^2.
    assert 0.9 * rp_rs**2 < _depth(times, flux, good) < 1.4 * rp_rs**2


def test_transit_depth_has_the_atmospheric_feature():
    kwargs = dict(n_integrations=160, n_wavelengths=300, electrons_per_second=1e6)
    times, wavelength, flat, _, _ = _light_curves(sample.make_x1dints(feature_amplitude=0.0, **kwargs))
    _, _, featured, _, _ = _light_curves(sample.make_x1dints(feature_amplitude=0.3, **kwargs))
    band = (wavelength > 1.37) & (wavelength < 1.43)
    continuum = (wavelength > 2.3) & (wavelength < 2.6)
    assert _depth(times, featured, band) / _depth(times, flat, band) == pytest.approx(1.3**2, rel=0.08)
    assert _depth(times, featured, continuum) == pytest.approx(_depth(times, flat, continuum), rel=0.02)


def test_flux_error_matches_the_scatter():
    times, _, flux, error, dq = _light_curves(sample.make_x1dints(160, 300))
    out = np.abs(times - times.mean()) > 0.08  # flat baseline: scatter is all noise
    good = (dq == 0).all(axis=0)
    scatter = flux[out][:, good].std(axis=0, ddof=1)
    assert np.median(scatter / error[out][:, good].mean(axis=0)) == pytest.approx(1.0, abs=0.05)


def test_spectrum_has_nan_ends_and_flags():
    _, wavelength, flux, error, dq = _light_curves(sample.make_x1dints(4, 100))
    assert np.isnan(flux[:, [0, 1, -2, -1]]).all() and np.isnan(error[:, :2]).all()
    assert (dq[:, :2] == sample.DO_NOT_USE).all()
    assert ((dq & sample.HOT) != 0).all(axis=0).sum() == 3
    assert np.isfinite(flux[:, 2:-2]).all() and np.all(np.diff(wavelength) > 0)


def test_image_has_stars_sky_hot_pixels_and_reference_border():
    hdul = fits.HDUList.fromstring(sample.hdul_bytes(sample.make_image(128, 160)))
    sci, err, dq = hdul["SCI"].data, hdul["ERR"].data, hdul["DQ"].data
    assert sci.shape == err.shape == dq.shape == (128, 160)
    inner = np.s_[4:-4, 4:-4]
    assert np.isnan(sci[:4]).all() and np.isfinite(sci[inner]).all()
    assert (dq[:, :4] == sample.REFERENCE_PIXEL | sample.DO_NOT_USE).all()
    hot = (dq & sample.HOT) != 0
    sky = np.median(sci[inner])
    assert hot.sum() >= 1 and (sci[hot] > sky + 50 * np.median(err[inner])).all()
    stars = (sci[inner] > sky + 10 * err[inner]) & ~hot[inner]
    assert stars.sum() > 20  # bright PSF cores


def test_calints_noise_matches_err():
    hdul = sample.make_image(96, 96, nints=2, reference_border=0, hot_pixel_fraction=0)
    assert hdul[0].header["DATAMODL"] == "CubeModel" and hdul["SCI"].data.shape == (2, 96, 96)
    assert hdul["INT_TIMES"].data["integration_number"].tolist() == [1, 2]
    sci, err = hdul["SCI"].data.astype(float), hdul["ERR"].data.astype(float)
    pull = (sci[0] - sci[1]) / np.hypot(err[0], err[1])  # same scene, independent noise
    assert pull.std() == pytest.approx(1.0, abs=0.05)


def test_transit_light_curve_limits():
    z = np.array([0.0, 0.5, 1.2, 5.0])
    flux = sample.transit_light_curve(z, 0.1, 0.0, 0.0)  # no limb darkening: depth is exactly p^2
    assert flux[0] == pytest.approx(0.99) and flux[1] == pytest.approx(0.99)
    assert flux[2] == flux[3] == 1.0
    grazing = sample.transit_light_curve(np.linspace(0.85, 1.15, 61), 0.1, 0.3, 0.2)
    assert np.all(np.diff(grazing) >= 0)  # egress: flux only comes back
