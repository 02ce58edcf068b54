"""Value noise: read noise, shot noise and 1/f striping - in electrons of
the product itself, with the added variance written into ERR and the
product's VAR_RNOISE / VAR_POISSON (:meth:`Batch.add_variance`), so a
perturbed product states its own scatter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import cast

import numpy as np

from hwosim_assets.perturb.batch import ALL, DETECTOR_PIXELS, Batch, Coverage, Effect
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.kernels import add_normal_piece
from hwosim_assets.perturb.rng import Stream, normal_constants
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})

# (rows, first, last, out) -> the sigmas of that piece of the packets' fields (:func:`add_normal`)
SigmaFn = Callable[[slice, int, int, np.ndarray], np.ndarray]


def _everything(params: Mapping[str, float], coverage: Coverage) -> Expectation:
    return Expectation(1.0, 0.0)


BLOCK = 1 << 17  # elements per block of a dense noise field: stays in cache
_NO_VARIANCE = np.empty((0, 0), np.float32)  # add_normal_piece's "no deferred variance"


def add_normal(
    batch: Batch,
    stream: Stream,
    sigma: np.ndarray | SigmaFn,
    lane: int = 0,
    keep: Callable[[slice, int, int, np.ndarray], None] | None = None,
    deferred: np.ndarray | None = None,
) -> None:
    """value += sigma x N(0, 1), with packet i's field drawn from ``stream``
    row i. Drawn and added piece by piece into reused buffers, so no
    field-sized temporary is made. ``sigma`` (data units) is either an array
    that broadcasts against value (one per packet, or per element) or a
    function (rows, first, last, out) -> the sigmas of that piece,
    (len(rows), last - first), written into the scratch ``out`` - for a sigma
    the caller derives from the data piece by piece, in cache. ``keep``: called
    with (rows, first, last, noise) for every piece added (trace mode).
    ``deferred`` (n, elements): a second variance drawn in the same field,
    sigma sqrt(sigma^2 + deferred) (:func:`_add_folded`).

    The field is drawn and added by one compiled pass per piece
    (:func:`~hwosim_assets.perturb.kernels.add_normal_piece`)."""
    n, size = batch.n, batch.elements
    values = batch.value.reshape(n, size)
    piece = sigma if callable(sigma) else _sigma_pieces(np.asarray(sigma), batch)
    scratch = np.empty(min(BLOCK, n * size), dtype=values.dtype)  # no piece is larger (Stream.field_pieces)
    noise = np.empty(scratch.shape, dtype=values.dtype) if keep is not None else scratch[:0]
    constants = normal_constants()
    for rows, first, last, states, tail_keys in stream.field_pieces(size, lane=lane, block=BLOCK):
        shape = (len(states), last - first)
        cells = shape[0] * shape[1]
        sigmas = piece(rows, first, last, scratch[:cells].reshape(shape))
        if sigmas.ndim != 2 or sigmas.shape[0] != shape[0] or sigmas.shape[1] not in (1, shape[1]):
            sigmas = np.broadcast_to(sigmas, shape)  # a (k, 1) column is the kernel's own case
        added = noise[:cells].reshape(shape) if keep is not None else noise.reshape(0, 0)
        second = deferred[rows, first:last] if deferred is not None else _NO_VARIANCE
        add_normal_piece(states, tail_keys, first, *constants, sigmas, second, values[rows, first:last], added)
        if keep is not None:
            keep(rows, first, last, added)


def _sigma_pieces(sigma: np.ndarray, batch: Batch) -> SigmaFn:
    """Pieces of a sigma array: per packet it stays an (n, 1) column (no
    full-size array is made), per element the matching slice."""
    n, size = batch.n, batch.elements
    dtype = batch.value.dtype
    if sigma.ndim == 0 or sigma.size == n:  # one sigma per packet (or for all)
        column = np.broadcast_to(sigma.astype(dtype).reshape(-1, 1), (n, 1))
        return lambda rows, first, last, out: column[rows]
    full = np.broadcast_to(sigma.astype(dtype, copy=False), batch.value.shape).reshape(n, size)
    return lambda rows, first, last, out: full[rows, first:last]


def read_noise(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Extra Gaussian read noise: ``excess`` x the element's own read noise
    (1 sigma): the product's VAR_RNOISE where it has one, else the detector's
    noise for the product's groups, times sqrt(NPIXELS) for an extracted
    channel (:mod:`hwosim_assets.perturb.batch`). VAR_RNOISE and ERR grow by
    the added variance.

    Where the pointing jitter left its noise-restoring variance s_j^2
    (``batch.deferred_variance``, :func:`~hwosim_assets.perturb.kinds.drift.pointing_jitter`),
    one field of sigma sqrt(s_j^2 + s_r^2) carries both - a sum of two
    independent Gaussians is one Gaussian of the summed variance, and one
    field costs half of two. ERR still grows by s_r^2 only (the jitter's
    noise restores what resampling removed). In trace mode the field is split
    back into the two kinds' changes by drawing the jitter's part given the
    total (:func:`_split_share`), so each kind's trace has its own variance.

    Magnitude: the added sigma in electrons (median over the packet)."""
    sigma_e = p["excess"] * batch.read_noise_e
    sigma = sigma_e * batch.per_electron
    deferred = batch.deferred_variance
    if deferred is None:
        add_normal(batch, draws.packets(batch.seq), sigma)
    else:
        batch.deferred_variance = None
        _add_folded(batch, draws, np.asarray(sigma), deferred)
    added = np.asarray(sigma, dtype=np.float64) ** 2
    if batch.pending_rnoise is not None:  # striping_1f's variance, left to this pass (Batch.defer_rnoise)
        added = added + batch.pending_rnoise
        batch.pending_rnoise = None
    batch.add_variance(added, "rnoise")
    return Effect(ALL, batch.packet_median(sigma_e))


def _add_folded(batch: Batch, draws: Draws, sigma: np.ndarray, deferred: np.ndarray) -> None:
    """value += sqrt(deferred + sigma^2) x N(0, 1): read noise (``sigma``,
    broadcastable) and the jitter's restoring noise (variance ``deferred``,
    (n, elements)) in one field, piece by piece in cache."""
    n, size = batch.n, batch.elements
    if batch.trace_shares is None:
        add_normal(batch, draws.packets(batch.seq), sigma, deferred=deferred)
        return
    total = np.zeros((n, size))

    def keep(rows: slice, first: int, last: int, noise: np.ndarray) -> None:
        total[rows, first:last] = noise

    add_normal(batch, draws.packets(batch.seq), sigma, keep=keep, deferred=deferred)
    read = np.broadcast_to(np.asarray(sigma, dtype=np.float64), batch.value.shape).reshape(n, size)
    extra = draws.packets(batch.seq).normal_f32(size, lane=9).astype(np.float64)
    share = _split_share(total, np.sqrt(deferred.astype(np.float64)), read, extra)
    batch.trace_shares["pointing_jitter"] = share.reshape(batch.value.shape)


def _split_share(total: np.ndarray, first: np.ndarray, second: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The part of ``total`` = a + b (a ~ N(0, first^2), b ~ N(0, second^2),
    independent) that is a, drawn given the total: a | total ~ N(total x
    first^2 / s^2, (first x second / s)^2), s^2 = first^2 + second^2, with
    ``z`` standard normals. a and total - a then have exactly the joint law
    of two independent draws - what each kind's trace would have shown had
    they been drawn apart."""
    s2 = first**2 + second**2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(s2 > 0, total * first**2 / s2, 0.0)
        spread = np.where(s2 > 0, first * second / np.sqrt(s2), 0.0)
    return mean + spread * z


def shot_noise(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Extra photon noise, as if only ``throughput`` of the photons had been
    collected and the result scaled back up: the detected electrons N become
    a draw of mean N and variance N / throughput, i.e. the value gains
    variance N (1/throughput - 1) c^2 (c: data per electron), and so do
    VAR_POISSON and ERR. Drawn in its Gaussian limit (exact mean and
    variance; the Poisson skew matters only below ~10 e-). Only elements with
    positive signal change.

    The sigma, ERR and VAR_POISSON are worked out piece by piece as the field
    is drawn (each piece from its values before the noise lands), so no
    full-size float64 temporary is made.

    Magnitude: mean added sigma over the packet's lit elements (e-)."""
    n, size = batch.n, batch.elements
    factor = 1.0 / p["throughput"] - 1.0
    values = batch.value.reshape(n, size)
    errors = batch.error.reshape(n, size)
    poisson = batch.var_poisson.reshape(n, size) if batch.var_poisson is not None else None
    scale = batch.per_electron_rows()
    per_row = scale.shape[1] == 1
    lit = np.empty((n, size), dtype=bool)
    sigma_sum = np.zeros(n)

    def sigma(rows: slice, first: int, last: int, out: np.ndarray) -> np.ndarray:
        value = values[rows, first:last]
        c = scale[rows] if per_row else scale[rows, first:last]
        positive = np.greater(value, 0, out=lit[rows, first:last])
        with np.errstate(invalid="ignore"):
            electrons = np.where(positive, value / c, 0.0)  # Batch.electrons, piece by piece
        sigma_e = np.sqrt(electrons * factor)
        sigma_sum[rows] += sigma_e.sum(axis=1)
        sigma64 = sigma_e * c
        added = sigma64**2
        with np.errstate(invalid="ignore"):  # Batch.add_variance (float64), piece by piece
            error = np.square(errors[rows, first:last], dtype=np.float64)
            error += added
            np.sqrt(error, out=errors[rows, first:last], casting="same_kind")
        if poisson is not None:
            poisson[rows, first:last] += added.astype(poisson.dtype)
        np.copyto(out, sigma64, casting="same_kind")
        return out

    add_normal(batch, draws.packets(batch.seq), sigma)
    per_packet = sigma_sum / np.maximum(lit.sum(axis=1), 1)
    return Effect(lit.reshape(batch.value.shape), per_packet)


@lru_cache(maxsize=1024)
def one_over_f_series(key: int, epoch: int, alpha: float) -> np.ndarray:
    """A unit-rms noise series over 2048 detector lines with power spectrum
    proportional to 1/f^alpha: the offsets the SIDECAR ASIC adds line by line
    during one readout (one series per frame, shared by all its tiles)."""
    nfreq = DETECTOR_PIXELS // 2 + 1
    z = Stream(key, np.array([epoch])).normal(2 * nfreq)[0]
    freq = np.arange(nfreq, dtype=np.float64)
    amplitude = np.zeros(nfreq)
    amplitude[1:] = freq[1:] ** (-alpha / 2.0)
    series = np.fft.irfft((z[:nfreq] + 1j * z[nfreq:]) * amplitude, n=DETECTOR_PIXELS)
    series /= np.sqrt(np.mean(series**2))
    series.setflags(write=False)  # cached: shared by every tile of the frame
    return series


def striping_1f(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Correlated 1/f ("flicker") noise: one offset per detector line, the
    lines forming a 1/f^alpha series of rms ``sigma_rn`` x the pixel's read
    noise for the product's groups (e-). Which lines share an offset is the
    detector's (:mod:`hwosim_assets.perturb.detectors`): rows of the DMS frame
    for NIRCam (fast read along the grism dispersion), columns for NIRSpec and
    NIRISS (across it); MIRI's arrays show no such banding and are left alone.

    * Images: the offset of each tile row (rows) or column (columns). 2-D
      spectra too, whatever their DISPAXIS: the stripes follow the detector's
      fast-read lines, which a 2-D spectrum keeps (NIRISS GR150R and GR150C
      disperse along x and y on the same detector, with the same stripes).
    * Extracted spectra: an aperture sums NPIXELS pixels across the
      dispersion. Stripes across the dispersion (the detector's columns when
      it runs along x, DISPAXIS 1 or not given; its rows when along y,
      DISPAXIS 2) put NPIXELS x that line's offset on its channel - the
      channels differ; stripes along the dispersion put the same sum of
      NPIXELS offsets on every channel of the integration (a grey offset of
      the spectrum).

    VAR_RNOISE and ERR grow by the offset's variance (by read_noise's pass
    when it runs next: ``Batch.defer_rnoise``).

    Magnitude: the rms offset per pixel in electrons."""
    direction = batch.detector.stripes
    if direction == "none":
        return Effect.nothing(batch)
    key = draws.key("epoch")
    epochs, which = np.unique(batch.epoch, return_inverse=True)
    series = np.stack([one_over_f_series(key, int(e), float(p["alpha"])) for e in epochs])
    sigma_pixel = p["sigma_rn"] * batch.exposure.read_noise_e()  # e-, per pixel
    if batch.family == "images":
        if direction == "rows":
            rows = cast(np.ndarray, batch.rows)  # an image batch has its detector rows
            offsets = series[which[:, None], rows % DETECTOR_PIXELS][:, :, None]  # (n, ny, 1)
        else:
            offsets = series[which[:, None], batch.cols % DETECTOR_PIXELS][:, None, :]  # (n, 1, nx)
        added = offsets * sigma_pixel * batch.per_electron
        variance = (sigma_pixel * batch.per_electron) ** 2
    else:
        aperture = batch.aperture()
        across = "rows" if batch.exposure.dispersion_axis == 2 else "columns"  # stripes across the dispersion
        if direction == across:
            offsets = series[which[:, None], batch.cols % DETECTOR_PIXELS] * aperture
            variance_e = aperture**2
        else:  # stripes along the dispersion: the aperture's NPIXELS lines, the first of the series
            sums = np.cumsum(series, axis=1)
            rows = np.clip(np.rint(aperture).astype(np.int64), 0, DETECTOR_PIXELS) - 1
            offsets = np.where(rows >= 0, sums[which[:, None], np.maximum(rows, 0)], 0.0)
            variance_e = aperture
        added = offsets * sigma_pixel * batch.per_electron
        variance = variance_e * (sigma_pixel * batch.per_electron) ** 2
    batch.value += added.astype(batch.value.dtype)
    if batch.defer_rnoise:  # read_noise follows: it grows ERR by both variances in one pass
        batch.pending_rnoise = np.asarray(variance, dtype=np.float64)
    else:
        batch.add_variance(variance, "rnoise")
    return Effect(ALL, np.full(batch.n, sigma_pixel))


READ_NOISE = KindSpec(
    name="read_noise",
    summary="extra Gaussian read noise on every element",
    grounding=(
        "Added sigma = excess x the element's own read noise (the product's VAR_RNOISE, "
        "else the detector's CDS noise for the product's groups x sqrt(NPIXELS)); "
        "H2RG CDS noise ~15 e- NIRCam, 23 e- NIRISS; MIRI ~6 DN x 4 e/DN in flight "
        "(JDox detector pages; STScI 'NIRISS at a Glance')."
    ),
    families=BOTH,
    params=(
        Param(
            "excess",
            "x read noise",
            "nonneg",
            "added noise, 1 sigma, as a multiple of the element's read noise",
            high=100,
        ),
    ),
    levels={"excess": (0, 0.38, 0.7, 1.0, 1.2, 1.37)},
    anchors={
        1: "0.38: the ~7 % detector-noise increase CR rejection causes in 1000-s NIRSpec exposures "
        "(Giardino et al. 2019, PASP 131, 094503): sqrt(1.07^2 - 1)",
        2: "interpolated",
        3: "1.0: read-noise variance doubled - NIRSpec's traditional readout missing the < 6 e- total-noise "
        "requirement that IRS2 meets (JDox 'NIRSpec Detector Readout Modes and Patterns')",
        4: "interpolated",
        5: "1.37: MIRI's flight read noise (~6 DN x ~4 e/DN, JDox 'MIRI Detector Performance') is 1.7x its "
        "ground CDS ~14 e- (JDox 'MIRI Detector Overview'): sqrt(1.7^2 - 1)",
    },
    is_off=lambda p: p["excess"] == 0,
    apply=read_noise,
    expect=_everything,
    marks_all=True,
)

SHOT_NOISE = KindSpec(
    name="shot_noise",
    summary="extra photon (Poisson) noise of a lower-throughput exposure",
    grounding=(
        "Photon noise of the detected electrons (N = F^2 / VAR_POISSON of the product), "
        "the noise floor of JWST time-series observations (JDox 'JWST Time-Series "
        "Observations Noise Sources')."
    ),
    families=BOTH,
    params=(Param("throughput", "fraction", "fraction", "fraction of the photons kept (1 = unchanged)"),),
    levels={"throughput": (1.0, 0.98, 0.95, 0.9, 0.7, 0.5)},
    anchors={
        1: "0.98: 2 % - the relative flux calibration of well-centred NIRSpec fixed-slit sources (~3 % "
        "absolute; JDox 'NIRSpec Fixed Slit Calibration Status')",
        2: "interpolated",
        3: "0.9: a mis-centred source - NIRSpec MOS point sources near the shutter edges are calibrated to "
        "~10-15 % with the in-flight pathloss files (STScI news, 11 Nov 2025, 'New Pathloss Corrections for "
        "NIRSpec Multi-Object and Fixed Slit Spectroscopy Are Available'); the low end taken",
        4: "interpolated",
        5: "what-if figure: 0.5, half the light lost (a source at a shutter corner, or a failed target "
        "acquisition) - before those files, errors near the shutter edges reached ~70 % (same news item), "
        "but no measured throughput loss of that size is published",
    },
    is_off=lambda p: p["throughput"] >= 1.0,
    apply=shot_noise,
)

STRIPING_1F = KindSpec(
    name="striping_1f",
    summary="line-correlated 1/f noise (banding along the detector's fast-read lines)",
    grounding=(
        "SIDECAR ASIC 1/f noise appears as banding along the fast-read direction (JDox "
        "'NIRCam 1/f Noise Removal Methods'); it limits NIRCam grism time series, whose "
        "dispersion runs along the fast-read rows (Schlawin et al. 2020, AJ 160, 231); NIRISS "
        "SOSS and NIRSpec stripes run across the dispersion (column by column)."
    ),
    families=BOTH,
    params=(
        Param(
            "sigma_rn",
            "x read noise",
            "nonneg",
            "rms of the line offsets, per pixel, as a multiple of its read noise",
            high=100,
        ),
        Param("alpha", "", "nonneg", "spectral index: power ~ 1/f^alpha", high=10),
    ),
    levels={"sigma_rn": (0, 0.3, 0.6, 1.0, 1.5, 2.0), "alpha": (1.0,)},
    anchors={
        1: "what-if figure: 0.3 - the residual after the reference-pixel correction, which 'can partly "
        "mitigate' 1/f noise but cannot remove it with four reference pixels per edge (JDox 'NIRCam 1/f Noise "
        "Removal Methods'); the residual's size is not published",
        2: "interpolated",
        3: "1.0: uncorrected 1/f in NIRISS SOSS is 'equivalent to doubling the readout noise' (Albert et al. 2023)",
        4: "interpolated",
        5: "what-if (no record): 2.0 - twice the uncorrected level (a noisy ASIC)",
    },
    is_off=lambda p: p["sigma_rn"] == 0,
    apply=striping_1f,
)
