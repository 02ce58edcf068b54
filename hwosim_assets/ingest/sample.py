"""Offline sample products in JWST format, simulated by HWOsim (not real data).

The embedded environment and the tests need JWST products without the
network. Rather than ship binary files, we make them with our own code: the
same HDU layout and key headers as the pipeline's products, so the readers
and everything downstream run on exactly the code paths they use for MAST
data. Every product says loudly that it is simulated (``HWOSIM='SIMULATED'``,
``ORIGIN='HWOSIM'``, COMMENT cards, ``simulated=True`` in the catalog).

Bytes are deterministic: fixed seeds, a fixed DATE, no "now" anywhere, so the
catalog's size and SHA-256 are stable and ``raw_products`` can skip files it
already holds. (Floating-point maths may differ in the last bit between
machines; the checksum is always computed from the bytes this machine makes.)

Two observations of the made-up program 09999:

* ``jw09999-o001_niriss_clear-gr700xd-substrip256``: a NIRISS/SOSS-like time series
  (``x1dints``) of a transiting planet.
* ``jw09999-o002_nircam_clear-f200w``: NIRCam imaging of a star field,
  two dithered ``cal`` exposures.

``make_x1dints`` and ``make_image`` take sizes, so benchmarks and tests can
make products of any shape.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import inspect
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import erfa
import numpy as np
import polars as pl
from astropy.io import fits

from hwosim_assets.records import CATALOG_SCHEMA

SAMPLE_PROGRAM = "09999"  # JWST programs stop well below this; no real data can carry it
# Observation ids as products.observation_id derives them from the files' headers
# (as for every source; a test checks the two agree).
SPECTRA_OBS_ID = f"jw{SAMPLE_PROGRAM}-o001_niriss_clear-gr700xd-substrip256"
IMAGE_OBS_ID = f"jw{SAMPLE_PROGRAM}-o002_nircam_clear-f200w"

FILE_DATE = "2025-01-01T00:00:00.000"  # fixed, so the bytes do not depend on when they are made
CAL_VER = "0.0.0"  # valid format, but no jwst pipeline version ever was 0.0.0
SIMULATED_COMMENT = (
    "SIMULATED by HWOsim: not real JWST data. Layout and keywords follow JWST "
    "pipeline products; the values come from a simple physical model."
)

# JWST data-quality bits (jwst.datamodels.dqflags) used by the samples.
DO_NOT_USE = 1
JUMP_DET = 4
HOT = 2048
REFERENCE_PIXEL = 2**31  # the top bit: checks that uint32 DQ survives every hop

_TT_MINUS_UTC_S = 69.184  # 37 leap seconds + 32.184 s; valid for any date after 2017-01-01
_AU_LIGHT_S = 499.004783836  # light travel time over 1 au, seconds


# --- headers -----------------------------------------------------------------


def _iso(mjd: float) -> tuple[str, str]:
    """DATE-OBS and TIME-OBS for an MJD, without astropy.time (it may try to
    download leap-second tables, and we must stay offline and deterministic)."""
    t = dt.datetime(1858, 11, 17) + dt.timedelta(days=mjd)
    return t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S.%f")[:12]


@dataclass(frozen=True)
class Exposure:
    """Who, where and when of one exposure: what the primary header says."""

    observation: str  # "001"
    instrument: str  # INSTRUME
    detector: str
    filter: str
    pupil: str
    exp_type: str
    target: str
    ra: float
    dec: float
    expstart: float  # MJD UTC
    visit_group: str = "02"
    sequence: str = "1"
    activity: str = "01"
    exposure: int = 1
    segment: int | None = None  # x1dints of time series come in segments

    def filename(self, product_type: str) -> str:
        """File name in the JWST stage-2 scheme (jw<ppppp><ooo><vvv>_<gg><s><aa>_<eeeee>[-segNNN]_<det>_<type>)."""
        seg = f"-seg{self.segment:03d}" if self.segment is not None else ""
        return (
            f"jw{SAMPLE_PROGRAM}{self.observation}001_{self.visit_group}{self.sequence}{self.activity}"
            f"_{self.exposure:05d}{seg}_{self.detector.lower()}_{product_type}.fits"
        )


def _primary(
    exp: Exposure, product_type: str, datamodel: str, expend: float, nints: int, effinttm: float
) -> fits.PrimaryHDU:
    """A primary HDU with the keywords JWST products carry (and our simulated marker)."""
    date_obs, time_obs = _iso(exp.expstart)
    h = fits.Header()
    h["DATE"] = (FILE_DATE, "UTC date file created")
    h["ORIGIN"] = ("HWOSIM", "simulated by HWOsim, not STScI")
    h["HWOSIM"] = ("SIMULATED", "this file is simulated, not real JWST data")
    h["TIMESYS"] = ("UTC", "principal time system for time-related keywords")
    h["FILENAME"] = (exp.filename(product_type), "Name of the file")
    h["FILETYPE"] = ("calibrated", "Type of data in the file")
    h["DATAMODL"] = (datamodel, "Type of data model")
    h["TELESCOP"] = ("JWST", "Telescope used to acquire the data")
    h["CAL_VER"] = (CAL_VER, "no jwst pipeline run: simulated by HWOsim")
    h["PROGRAM"] = (SAMPLE_PROGRAM, "Program number")
    h["OBSERVTN"] = (exp.observation, "Observation number")
    h["VISIT"] = ("001", "Visit number")
    h["VISITGRP"] = (exp.visit_group, "Visit group identifier")
    h["SEQ_ID"] = (exp.sequence, "Parallel sequence identifier")
    h["ACT_ID"] = (exp.activity, "Activity identifier")
    h["EXPOSURE"] = (str(exp.exposure), "Exposure request number")
    h["OBS_ID"] = (
        f"V{SAMPLE_PROGRAM}{exp.observation}001P00000000{exp.visit_group}{exp.sequence}{exp.activity}",
        "Programmatic observation identifier",
    )
    h["TARGNAME"] = (exp.target, "Standard astronomical catalog name for target")
    h["TARG_RA"] = (exp.ra, "Target RA at mid time of exposure")
    h["TARG_DEC"] = (exp.dec, "Target Dec at mid time of exposure")
    h["INSTRUME"] = (exp.instrument, "Instrument used to acquire the data")
    h["DETECTOR"] = (exp.detector, "Name of detector used to acquire the data")
    h["FILTER"] = (exp.filter, "Name of the filter element used")
    h["PUPIL"] = (exp.pupil, "Name of the pupil element used")
    h["EXP_TYPE"] = (exp.exp_type, "Type of data in the exposure")
    h["TSOVISIT"] = (exp.exp_type in ("NIS_SOSS", "NRC_TSIMAGE"), "Time Series Observation visit indicator")
    h["DATE-OBS"] = (date_obs, "[yyyy-mm-dd] UTC date at start of exposure")
    h["TIME-OBS"] = (time_obs, "[hh:mm:ss.sss] UTC time at start of exposure")
    h["EXPSTART"] = (exp.expstart, "[d] exposure start time in MJD")
    h["EXPMID"] = ((exp.expstart + expend) / 2, "[d] exposure mid time in MJD")
    h["EXPEND"] = (expend, "[d] exposure end time in MJD")
    h["NINTS"] = (nints, "Number of integrations in exposure")
    h["INTSTART"] = (1, "Starting integration number in this segment")
    h["INTEND"] = (nints, "Ending integration number in this segment")
    h["EFFINTTM"] = (effinttm, "[s] Effective integration time")
    h["EFFEXPTM"] = (effinttm * nints, "[s] Effective exposure time")
    h.add_comment(SIMULATED_COMMENT)
    return fits.PrimaryHDU(header=h)


def _bjd_tdb(mjd_utc: np.ndarray, ra: float, dec: float) -> np.ndarray:
    """Barycentric MJD (TDB) for the target, as JWST's INT_TIMES gives it.

    TDB is taken as TT (they differ by < 2 ms) and the light-time correction
    uses the Earth's barycentric position (pyerfa's built-in ephemeris, no
    download); JWST sits ~0.01 au from the Earth, a few seconds at most.
    """
    mjd_tdb = np.asarray(mjd_utc, dtype=float) + _TT_MINUS_UTC_S / 86400.0
    _, pvb = erfa.epv00(2400000.5, mjd_tdb)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    toward = np.array([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    return mjd_tdb + (pvb["p"] @ toward) * _AU_LIGHT_S / 86400.0


def _int_times(start: np.ndarray, end: np.ndarray, ra: float, dec: float) -> fits.BinTableHDU:
    """The INT_TIMES table (column names as in stdatamodels' int_times schema)."""
    mid = (start + end) / 2
    cols = [fits.Column(name="integration_number", format="J", array=np.arange(1, len(start) + 1))]
    for label, values in (("start", start), ("mid", mid), ("end", end)):
        cols.append(fits.Column(name=f"int_{label}_MJD_UTC", format="D", array=values))
    for label, values in (("start", start), ("mid", mid), ("end", end)):
        cols.append(fits.Column(name=f"int_{label}_BJD_TDB", format="D", array=_bjd_tdb(values, ra, dec)))
    return fits.BinTableHDU.from_columns(cols, name="INT_TIMES")


# --- time-series spectra (x1dints) -------------------------------------------

# The classic EXTRACT1D columns (stdatamodels spectable.schema), in order.
SPEC_COLUMNS = (
    ("WAVELENGTH", ">f8", "um"),
    ("FLUX", ">f8", "Jy"),
    ("FLUX_ERROR", ">f8", "Jy"),
    ("FLUX_VAR_POISSON", ">f8", "Jy^2"),
    ("FLUX_VAR_RNOISE", ">f8", "Jy^2"),
    ("FLUX_VAR_FLAT", ">f8", "Jy^2"),
    ("SURF_BRIGHT", ">f8", "MJy/sr"),
    ("SB_ERROR", ">f8", "MJy/sr"),
    ("SB_VAR_POISSON", ">f8", "(MJy/sr)^2"),
    ("SB_VAR_RNOISE", ">f8", "(MJy/sr)^2"),
    ("SB_VAR_FLAT", ">f8", "(MJy/sr)^2"),
    ("DQ", ">u4", None),  # uint32: astropy writes TFORM 'J' with TZERO = 2**31, as the pipeline does
    ("BACKGROUND", ">f8", "MJy/sr"),
    ("BKGD_ERROR", ">f8", "MJy/sr"),
    ("BKGD_VAR_POISSON", ">f8", "(MJy/sr)^2"),
    ("BKGD_VAR_RNOISE", ">f8", "(MJy/sr)^2"),
    ("BKGD_VAR_FLAT", ">f8", "(MJy/sr)^2"),
    ("NPIXELS", ">f8", None),
)

# A few stellar lines (micron, fractional depth): Ca II, He I, Pa-beta, Pa-alpha, Br-gamma.
_STELLAR_LINES = ((0.8542, 0.25), (1.0830, 0.10), (1.2818, 0.20), (1.8751, 0.25), (2.1655, 0.15))


def stellar_spectrum(wavelength_um: np.ndarray, teff: float = 5500.0, peak_jy: float = 0.4) -> np.ndarray:
    """A blackbody F_nu (Jy) scaled to ``peak_jy`` with Gaussian absorption lines."""
    nu = 2.99792458e14 / wavelength_um  # Hz
    x = 6.62607015e-34 * nu / (1.380649e-23 * teff)
    bb = nu**3 / np.expm1(x)
    flux = peak_jy * bb / bb.max()
    for center, depth in _STELLAR_LINES:
        flux *= 1.0 - depth * np.exp(-0.5 * ((wavelength_um - center) / 0.004) ** 2)
    return flux


def transit_light_curve(z: np.ndarray, p: np.ndarray, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Relative flux of a star with quadratic limb darkening occulted by a planet.

    Small-planet approximation (in the spirit of Mandel & Agol 2002, sec. 5):
    flux lost = occulted area (exact circle overlap) x the stellar intensity
    at the occulted spot, over the disc-integrated intensity pi(1 - u1/3 - u2/6).
    During ingress and egress the spot is taken midway between the planet's
    inner edge and the limb, so the curve is continuous. Good to a few percent
    of the depth for p ~ 0.1, which is plenty for test data.

    ``z`` is the centre-to-centre distance and ``p`` the radius ratio, both in
    stellar radii; arrays broadcast.
    """
    z, p = np.broadcast_arrays(np.abs(np.asarray(z, dtype=float)), np.asarray(p, dtype=float))
    area = np.zeros(z.shape)
    inside = z <= 1 - p
    area[inside] = np.pi * p[inside] ** 2
    edge = (z > 1 - p) & (z < 1 + p)
    ze, pe = z[edge], p[edge]
    k0 = np.arccos(np.clip((pe**2 + ze**2 - 1) / (2 * pe * ze), -1, 1))
    k1 = np.arccos(np.clip((1 - pe**2 + ze**2) / (2 * ze), -1, 1))
    area[edge] = pe**2 * k0 + k1 - 0.5 * np.sqrt(np.clip(4 * ze**2 - (1 + ze**2 - pe**2) ** 2, 0, None))
    r = np.clip(np.minimum(z, (z - p + 1) / 2), 0, 1)
    one_minus_mu = 1 - np.sqrt(1 - r**2)
    intensity = 1 - u1 * one_minus_mu - u2 * one_minus_mu**2
    return 1 - area * intensity / (np.pi * (1 - u1 / 3 - u2 / 6))


def x1dints_bytes(
    n_integrations: int = 200,
    n_wavelengths: int = 500,
    *,
    rp_rs: float = 0.1,
    feature_amplitude: float = 0.06,
    impact: float = 0.3,
    a_rs: float = 10.0,
    period_days: float = 3.5,
    exposure_hours: float = 6.0,
    electrons_per_second: float = 2000.0,
    wavelength_range: tuple[float, float] = (0.85, 2.83),
    seed: int = 1,
    exposure: Exposure | None = None,
) -> bytes:
    """A NIRISS/SOSS-like ``x1dints`` product of a transiting planet, as FITS bytes.

    Classic layout: PRIMARY, one EXTRACT1D table per integration (EXTVER and
    INT_NUM = integration number), INT_TIMES. The real ASDF extension is left
    out: it serialises the jwst data model, which we do not use or fake.

    Signal: ``stellar_spectrum`` x ``transit_light_curve`` with the transit
    mid-exposure, the radius ratio growing by ``feature_amplitude`` (relative)
    in a water-like band at 1.4 um, and limb darkening weakening with
    wavelength. Noise: Gaussian photon + read noise, with FLUX_ERROR and the
    FLUX_VAR_* columns equal to the variances actually drawn from. DQ: the two
    bins at each end are NaN and DO_NOT_USE (the ends of a real order are),
    three bins are HOT in every integration, and ~0.1% of elements carry
    JUMP_DET.

    Why bytes: astropy spends ~20 ms building and writing each table HDU
    (column objects, config look-ups), i.e. seconds per sample. So astropy
    makes the EXTRACT1D header once and we lay the rows down ourselves: a
    FITS binary table is exactly the packed big-endian rows, padded to 2880
    bytes. The tests read the result back with astropy.
    """
    exp = exposure or SAMPLE_EXPOSURES["spectra"]
    rng = np.random.default_rng(seed)
    n_int, n_wl = int(n_integrations), int(n_wavelengths)

    int_days = exposure_hours / 24.0 / n_int
    start = exp.expstart + int_days * np.arange(n_int)
    end = start + int_days
    mid = (start + end) / 2
    effinttm = round(int_days * 86400.0 * 0.98, 3)  # a little time goes to resets

    wavelength = np.linspace(*wavelength_range, n_wl)
    star = stellar_spectrum(wavelength)
    p = rp_rs * (1 + feature_amplitude * np.exp(-0.5 * ((wavelength - 1.4) / 0.12) ** 2))
    u1, u2 = 0.15 + 0.25 / wavelength, np.full(n_wl, 0.2)
    phase = 2 * np.pi * (mid - mid.mean()) / period_days
    z = np.hypot(a_rs * np.sin(phase), impact * np.cos(phase))
    model = star * transit_light_curve(z[:, None], p, u1, u2)  # (n_int, n_wl)

    electrons_per_jy = electrons_per_second * effinttm / star.max()
    var_poisson = model / electrons_per_jy
    var_rnoise = np.full_like(model, (12.0 / electrons_per_jy) ** 2)  # 12 e- read noise per bin
    var_flat = (2e-5 * model) ** 2
    error = np.sqrt(var_poisson + var_rnoise + var_flat)
    flux = model + rng.standard_normal(model.shape) * error

    dq = np.zeros(model.shape, dtype=np.uint32)
    dq[:, rng.choice(np.arange(2, n_wl - 2), size=min(3, max(n_wl - 4, 0)), replace=False)] |= HOT
    dq[rng.random(model.shape) < 1e-3] |= JUMP_DET
    dq[:, :2] = dq[:, -2:] = DO_NOT_USE
    flux[:, :2] = flux[:, -2:] = np.nan
    error[:, :2] = error[:, -2:] = np.nan

    npixels = 30.0
    to_sb = 1e-6 / (npixels * 1.5e-13)  # Jy -> MJy/sr over the extraction aperture (pixel ~0.065")
    rows = np.zeros((n_int, n_wl), dtype=[(name, fmt) for name, fmt, _ in SPEC_COLUMNS])
    for name, value in {
        "WAVELENGTH": wavelength,
        "FLUX": flux,
        "FLUX_ERROR": error,
        "FLUX_VAR_POISSON": var_poisson,
        "FLUX_VAR_RNOISE": var_rnoise,
        "FLUX_VAR_FLAT": var_flat,
        "SURF_BRIGHT": flux * to_sb,
        "SB_ERROR": error * to_sb,
        "SB_VAR_POISSON": var_poisson * to_sb**2,
        "SB_VAR_RNOISE": var_rnoise * to_sb**2,
        "SB_VAR_FLAT": var_flat * to_sb**2,
        "DQ": dq,
        "NPIXELS": npixels,
    }.items():
        rows[name] = value

    header = fits.BinTableHDU(rows[0], name="EXTRACT1D", ver=1).header  # astropy lays out TFORM/TZERO once
    for k, (_, _, unit) in enumerate(SPEC_COLUMNS, start=1):
        if unit:
            header[f"TUNIT{k}"] = unit
    header["SPORDER"] = (1, "Spectral order number")
    header["INT_NUM"] = (1, "Integration number")
    header["SRCTYPE"] = ("POINT", "Source type used for calibration")
    header["DISPAXIS"] = (1, "Dispersion direction")
    header["TIMESYS"] = ("UTC", "principal time system for time-related keywords")
    primary = _primary(exp, "x1dints", "MultiSpecModel", float(end[-1]), n_int, effinttm)
    primary.header["SUBARRAY"] = ("SUBSTRIP256", "Subarray used")
    parts = [primary.header.tostring().encode("ascii")]
    raw = _stored_as_fits(rows)
    for i in range(n_int):
        header["EXTVER"] = i + 1
        header["INT_NUM"] = i + 1
        header["MJD-BEG"] = (start[i], "[d] integration start time")
        header["MJD-AVG"] = (mid[i], "[d] integration mid time")
        header["MJD-END"] = (end[i], "[d] integration end time")
        parts.append(header.tostring().encode("ascii") + _padded(raw[i].tobytes()))
    int_times = _int_times(start, end, exp.ra, exp.dec)
    parts.append(int_times.header.tostring().encode("ascii") + _padded(_stored_as_fits(int_times.data).tobytes()))
    return b"".join(parts)


def injected_transit(**kwargs: Any) -> dict[str, float]:
    """The white-light transit that ``x1dints_bytes(**kwargs)`` injects: the answer a transit
    fitter is scored against (``hwosim_assets.evaluate``).

    ``mid_time`` (MJD UTC) is mid-exposure; ``depth`` is the fractional dip of the flux summed
    over the finite channels at mid-transit, limb darkening included (deeper than the mean
    in-transit depth a box fit finds); ``duration`` is the first-to-fourth-contact time
    (days) for the white-light radius ratio.
    """
    p = {name: param.default for name, param in inspect.signature(x1dints_bytes).parameters.items()} | kwargs
    exp = p["exposure"] or SAMPLE_EXPOSURES["spectra"]
    n_int, n_wl = int(p["n_integrations"]), int(p["n_wavelengths"])
    # the two bins at each end are NaN
    wavelength = np.linspace(*cast(tuple[float, float], p["wavelength_range"]), n_wl)[2:-2]
    star = stellar_spectrum(wavelength)
    radius = p["rp_rs"] * (1 + p["feature_amplitude"] * np.exp(-0.5 * ((wavelength - 1.4) / 0.12) ** 2))
    at_mid = transit_light_curve(
        np.array([p["impact"]]), radius, 0.15 + 0.25 / wavelength, np.full(len(wavelength), 0.2)
    )
    chord = np.sqrt((1 + p["rp_rs"]) ** 2 - p["impact"] ** 2) / p["a_rs"]
    return {
        "mid_time": exp.expstart + p["exposure_hours"] / 24.0 / 2,
        "depth": float(1 - np.sum(star * at_mid) / np.sum(star)),
        "duration": float(p["period_days"] / np.pi * np.arcsin(min(1.0, chord))),
        "integrations": n_int,
    }


def _padded(data: bytes) -> bytes:
    """FITS data units fill whole 2880-byte blocks, padded with zeros."""
    return data + b"\0" * (-len(data) % 2880)


def _stored_as_fits(rows: np.ndarray) -> np.ndarray:
    """Table rows as FITS stores them: packed big-endian fields, uint32 fields
    as int32 offset by TZERO = 2**31 (the header astropy makes says so)."""
    rows = np.asarray(rows)
    names = cast(tuple[str, ...], rows.dtype.names)  # a structured dtype: its field names

    def is_u4(name: str) -> bool:
        return rows.dtype[name].kind == "u" and rows.dtype[name].itemsize == 4

    fields = [(n, ">i4" if is_u4(n) else rows.dtype[n].newbyteorder(">")) for n in names]
    out = np.empty(rows.shape, dtype=fields)
    for name in names:
        out[name] = (rows[name].astype(np.uint32) ^ np.uint32(2**31)).view(np.int32) if is_u4(name) else rows[name]
    return out


def make_x1dints(n_integrations: int = 200, n_wavelengths: int = 500, **kwargs: Any) -> fits.HDUList:
    """``x1dints_bytes`` opened with astropy (same keyword arguments)."""
    return fits.open(io.BytesIO(x1dints_bytes(n_integrations, n_wavelengths, **kwargs)))


# --- images (cal, calints) ---------------------------------------------------

_PIXEL_ARCSEC = 0.031  # NIRCam short-wavelength pixel
_PIXAR_SR = (_PIXEL_ARCSEC / 206264.80624709636) ** 2
_PHOTMJSR = 0.25  # MJy/sr per DN/s, the order of NIRCam F200W
_GAIN = 2.0  # e- per DN
_READ_NOISE_E = 15.0


def _star_field(
    ny: int, nx: int, dither: tuple[float, float], field_seed: int, stars_per_megapixel: float
) -> np.ndarray:
    """Electrons per second per pixel from a star field.

    Stars are drawn on a sky larger than the frame (seeded by ``field_seed``,
    not the noise seed), so two dithers see the same stars shifted. PSF: a
    Gaussian core (FWHM ~2 px, as F200W) plus a 10% wide halo, rendered on a
    15x15 stamp per star and summed with one ``bincount``.
    """
    rng = np.random.default_rng(field_seed)
    margin = 16
    n = rng.poisson(stars_per_megapixel * (ny + 2 * margin) * (nx + 2 * margin) / 1e6)
    y = rng.uniform(-margin, ny + margin, n) + dither[0]
    x = rng.uniform(-margin, nx + margin, n) + dither[1]
    total = np.minimum(5.0 * (1 - rng.random(n)) ** -1.2, 1e4)  # power-law counts, e-/s per star

    half = 7
    offsets = np.arange(-half, half + 1)
    iy = np.round(y).astype(np.int64)[:, None, None] + offsets[None, :, None]
    ix = np.round(x).astype(np.int64)[:, None, None] + offsets[None, None, :]
    r2 = (iy - y[:, None, None]) ** 2 + (ix - x[:, None, None]) ** 2
    psf = 0.9 * np.exp(-0.5 * r2 / 0.9**2) / (2 * np.pi * 0.9**2) + 0.1 * np.exp(-0.5 * r2 / 3.0**2) / (
        2 * np.pi * 3.0**2
    )
    values = total[:, None, None] * psf
    ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    flat = np.bincount((iy * nx + ix)[ok], weights=values[ok], minlength=ny * nx)
    return flat.reshape(ny, nx)


def make_image(
    ny: int = 256,
    nx: int = 256,
    nints: int | None = None,
    *,
    effexptm: float = 300.0,
    sky_electrons_per_second: float = 0.5,
    stars_per_megapixel: float = 3000.0,
    hot_pixel_fraction: float = 2e-4,
    reference_border: int = 4,
    extra_planes: bool = True,
    dither: tuple[float, float] = (0.0, 0.0),
    field_seed: int = 7,
    seed: int = 1,
    exposure: Exposure | None = None,
) -> fits.HDUList:
    """A NIRCam-like calibrated image: ``cal`` (2D) or, with ``nints``, ``calints`` (3D).

    HDUs as the pipeline writes them: PRIMARY, SCI (float32, MJy/sr), ERR
    (float32), DQ (uint32; astropy stores it as int32 with BZERO = 2**31 and
    reads it back as uint32), then, if ``extra_planes``, AREA and VAR_POISSON /
    VAR_RNOISE / VAR_FLAT; calints also get INT_TIMES. No ASDF extension.

    Content: star field (see ``_star_field``) on a flat sky, Gaussian photon
    and read noise with ERR equal to the noise drawn from, hot pixels (very
    bright, flagged HOT|DO_NOT_USE), and a ``reference_border`` of reference
    pixels (no signal: NaN, flagged REFERENCE_PIXEL|DO_NOT_USE, the top DQ bit).
    Each integration of a calints has its own noise.
    """
    exp = exposure or SAMPLE_EXPOSURES["images"]
    rng = np.random.default_rng(seed)
    cube = nints is not None
    n = int(nints) if nints is not None else 1

    scene = _star_field(ny, nx, dither, field_seed, stars_per_megapixel)
    electrons = np.broadcast_to((scene + sky_electrons_per_second) * effexptm, (n, ny, nx))
    var_rnoise_e = _READ_NOISE_E**2
    noisy = electrons + rng.standard_normal(electrons.shape) * np.sqrt(electrons + var_rnoise_e)

    dq = np.zeros((n, ny, nx), dtype=np.uint32)
    n_hot = max(1, round(hot_pixel_fraction * ny * nx))
    hot = rng.choice(ny * nx, size=n_hot, replace=False)
    dq.reshape(n, -1)[:, hot] = HOT | DO_NOT_USE
    noisy.reshape(n, -1)[:, hot] += 5e4 * rng.uniform(1, 3, size=n_hot)

    to_mjy_sr = _PHOTMJSR / (_GAIN * effexptm)  # electrons over the exposure -> MJy/sr
    sci = (noisy * to_mjy_sr).astype(np.float32)
    var_poisson = (np.clip(electrons, 0, None) * to_mjy_sr**2).astype(np.float32)
    var_rnoise = np.full(sci.shape, var_rnoise_e * to_mjy_sr**2, dtype=np.float32)
    var_flat = (1e-3 * sci) ** 2
    err = np.sqrt(var_poisson + var_rnoise + var_flat).astype(np.float32)
    b = int(reference_border)
    if b > 0:
        border = np.ones((ny, nx), dtype=bool)
        border[b:-b, b:-b] = False
        dq[:, border] = REFERENCE_PIXEL | DO_NOT_USE
        for plane in (sci, err, var_poisson, var_rnoise, var_flat):
            plane[:, border] = np.nan

    def squeeze(a: np.ndarray) -> np.ndarray:
        return a if cube else a[0]

    product_type = "calints" if cube else "cal"
    int_days = effexptm / 86400.0 / n / 0.98
    start = exp.expstart + int_days * np.arange(n)
    end = start + int_days
    primary = _primary(exp, product_type, "CubeModel" if cube else "ImageModel", float(end[-1]), n, effexptm / n)
    primary.header["SUBARRAY"] = ("FULL" if (ny, nx) == (2048, 2048) else "GENERIC", "Subarray used")
    primary.header["MODULE"] = ("B", "NIRCam module: A or B")
    primary.header["CHANNEL"] = ("SHORT", "Instrument channel")

    sci_hdu = fits.ImageHDU(squeeze(sci), name="SCI")
    sh = sci_hdu.header
    sh["BUNIT"] = ("MJy/sr", "physical units of the array values")
    sh["PHOTMJSR"] = (_PHOTMJSR, "Flux density (MJy/steradian) producing 1 cps")
    sh["PIXAR_SR"] = (_PIXAR_SR, "Nominal pixel area in steradians")
    sh["PIXAR_A2"] = (_PIXEL_ARCSEC**2, "Nominal pixel area in arcsec^2")
    sh["CTYPE1"], sh["CTYPE2"] = "RA---TAN", "DEC--TAN"
    sh["CUNIT1"], sh["CUNIT2"] = "deg", "deg"
    sh["CRPIX1"], sh["CRPIX2"] = (nx + 1) / 2 - dither[1], (ny + 1) / 2 - dither[0]
    sh["CRVAL1"], sh["CRVAL2"] = exp.ra, exp.dec
    sh["CDELT1"], sh["CDELT2"] = -_PIXEL_ARCSEC / 3600, _PIXEL_ARCSEC / 3600
    err_hdu = fits.ImageHDU(squeeze(err), name="ERR")
    err_hdu.header["BUNIT"] = "MJy/sr"
    hdus = [primary, sci_hdu, err_hdu, fits.ImageHDU(squeeze(dq), name="DQ")]
    if extra_planes:
        area = np.ones((ny, nx), dtype=np.float32)
        hdus.append(fits.ImageHDU(area, name="AREA"))
        for name, plane in (("VAR_POISSON", var_poisson), ("VAR_RNOISE", var_rnoise), ("VAR_FLAT", var_flat)):
            hdu = fits.ImageHDU(squeeze(plane.astype(np.float32)), name=name)
            hdu.header["BUNIT"] = "(MJy/sr)^2"
            hdus.append(hdu)
    if cube:
        hdus.append(_int_times(start, end, exp.ra, exp.dec))
    return fits.HDUList(hdus)


# --- the sample catalogue ----------------------------------------------------

SAMPLE_EXPOSURES: dict[str, Exposure] = {
    "spectra": Exposure(
        observation="001",
        instrument="NIRISS",
        detector="NIS",
        filter="CLEAR",
        pupil="GR700XD",
        exp_type="NIS_SOSS",
        target="HWOSIM-TRANSIT-1",
        ra=123.456,
        dec=-12.345,
        expstart=60700.25,
        visit_group="04",
        segment=1,
    ),
    "images": Exposure(
        observation="002",
        instrument="NIRCAM",
        detector="NRCB1",
        filter="F200W",
        pupil="CLEAR",
        exp_type="NRC_IMAGE",
        target="HWOSIM-FIELD-1",
        ra=210.987,
        dec=54.321,
        expstart=60705.5,
    ),
}


@dataclass(frozen=True)
class SampleProduct:
    """One sample file: its catalog row fields and the function that makes its bytes."""

    obs_id: str
    instrument: str
    target: str
    product_type: str
    make: Callable[[], bytes]


def _dither(k: int) -> Exposure:
    """Exposure k of the imaging observation, 7.2 minutes after the previous one."""
    base = SAMPLE_EXPOSURES["images"]
    return dataclasses.replace(base, exposure=k, expstart=base.expstart + (k - 1) * 0.005)


_SPEC, _IMG1, _IMG2 = SAMPLE_EXPOSURES["spectra"], _dither(1), _dither(2)

SAMPLE_PRODUCTS: dict[str, SampleProduct] = {
    _SPEC.filename("x1dints"): SampleProduct(
        SPECTRA_OBS_ID, "NIRISS/SOSS", _SPEC.target, "x1dints", lambda: x1dints_bytes(exposure=_SPEC)
    ),
    _IMG1.filename("cal"): SampleProduct(
        IMAGE_OBS_ID, "NIRCAM/IMAGE", _IMG1.target, "cal", lambda: hdul_bytes(make_image(exposure=_IMG1, seed=1))
    ),
    _IMG2.filename("cal"): SampleProduct(
        IMAGE_OBS_ID,
        "NIRCAM/IMAGE",
        _IMG2.target,
        "cal",
        lambda: hdul_bytes(make_image(exposure=_IMG2, seed=2, dither=(5.5, -7.25))),
    ),
}


def hdul_bytes(hdul: fits.HDUList) -> bytes:
    """The exact bytes astropy writes for an HDUList (no timestamps are added)."""
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    return buffer.getvalue()


def _product(filename: str) -> SampleProduct:
    try:
        return SAMPLE_PRODUCTS[filename]
    except KeyError:
        raise KeyError(f"{filename!r} is not a sample product; known: {sorted(SAMPLE_PRODUCTS)}") from None


@functools.cache
def sample_bytes(filename: str) -> bytes:
    """The bytes of one sample product, made once per process (~19 MB in all)."""
    return _product(filename).make()


def sample_catalog() -> pl.DataFrame:
    """The sample products as a catalog manifest (records.CATALOG_SCHEMA), one row per file."""
    rows = []
    for filename, product in sorted(SAMPLE_PRODUCTS.items()):
        data = sample_bytes(filename)
        rows.append(
            {
                "obs_id": product.obs_id,
                "program": SAMPLE_PROGRAM,
                "instrument": product.instrument,
                "target": product.target,
                "product_type": product.product_type,
                "calib_level": 2,
                "filename": filename,
                "data_uri": f"sample://{filename}",
                "size": len(data),
                "checksum": hashlib.sha256(data).hexdigest(),
                "source": "sample",
                "simulated": True,
            }
        )
    return pl.DataFrame(rows, schema=CATALOG_SCHEMA)


def write_sample_product(filename: str, dest_dir: Path) -> Path:
    """Write one sample product to ``dest_dir/filename``, whole or not at all.

    The bytes go to a temporary file in the same directory first and are then
    renamed over the target (atomic on POSIX), so a reader never sees half a file.
    """
    data = sample_bytes(filename)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_sample_products(dest_dir: Path) -> list[Path]:
    """Write every sample product to ``dest_dir``; the paths, sorted by name."""
    return [write_sample_product(name, dest_dir) for name in sorted(SAMPLE_PRODUCTS)]
