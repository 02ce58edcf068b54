"""Drifts over event time: gain, offset, spectral shift, pointing jitter.

Each drift is a function of a packet's event time (seconds since the
observation's reference time ``t_ref``) and of its exposure index: a linear
trend, an exponential settling after the start, and a random walk whose
steps are drawn per exposure index from the observation's own stream - so
the value at exposure k is the same whether exposures 0..k-1 were processed
in this chunk, another chunk, or never.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from hwosim_assets.perturb.batch import ALL, Batch, Coverage, Effect
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.kernels import restoring_variance, shift_bilinear
from hwosim_assets.perturb.kinds.noise import add_normal
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})
WALK_BLOCK = 4096


@lru_cache(maxsize=256)
def _walk(key: int, blocks: int) -> np.ndarray:
    """Unit random walk W(0..blocks*WALK_BLOCK): W(0) = 0, steps N(0, 1); block
    b's steps depend on b only, and cumsum is sequential, so a longer walk
    starts with exactly the shorter one."""
    steps = Stream(key, np.arange(blocks)).normal(WALK_BLOCK).ravel()
    walk = np.concatenate([[0.0], np.cumsum(steps)])
    walk.setflags(write=False)  # cached
    return walk


def random_walk(key: int, epoch: np.ndarray) -> np.ndarray:
    blocks = 1
    while blocks * WALK_BLOCK < epoch.max() + 1:
        blocks *= 2
    return _walk(key, blocks)[epoch]


def drift_profile(
    batch: Batch, draws: Draws, slope_per_hour: float, settle: float, tau_s: float, walk_sigma: float
) -> np.ndarray:
    """(n,) linear trend + exponential settling + random walk at each packet."""
    dt = batch.elapsed_s()
    value = slope_per_hour * dt / 3600.0 + settle * np.exp(-np.maximum(dt, 0.0) / tau_s)
    if walk_sigma:
        value = value + walk_sigma * random_walk(draws.key("observation"), batch.epoch)
    return value


def _everything(params: Mapping[str, float], coverage: Coverage) -> Expectation:
    return Expectation(1.0, 0.0)


def _spectral_elements(params: Mapping[str, float], coverage: Coverage) -> Expectation:
    """Every element of a spectrum; of images, every pixel of the 2-D spectra
    (the batches report which) and none of the plain images."""
    if coverage.family == "spectra":
        return Expectation(1.0, 0.0)
    mean, _ = coverage.expected_total("spectral_shift")
    return Expectation(mean / max(coverage.elements, 1), 0.0)


def gain_drift(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Multiplicative drift of value and error by 1 + d(t).

    Magnitude: d, the relative gain change of the packet."""
    d = drift_profile(batch, draws, p["slope_per_hour"], p["settle_amplitude"], p["settle_tau_s"], p["walk_sigma"])
    factor = batch.per_packet(1.0 + d)
    batch.value *= factor.astype(batch.value.dtype)
    batch.scale_variance(factor)
    return Effect(ALL, d)


def offset_drift(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Additive drift of d(t) electrons per pixel (bias / pedestal drift); an
    extracted channel sums it over its NPIXELS pixels.

    Magnitude: the offset per pixel in electrons."""
    d = drift_profile(batch, draws, p["slope_e_per_hour"], p["settle_e"], p["settle_tau_s"], p["walk_sigma_e"])
    pixels = batch.aperture() if batch.family == "spectra" else 1.0
    batch.value += (batch.per_packet(d) * pixels * batch.per_electron).astype(batch.value.dtype)
    return Effect(ALL, d)


def _dispersion(wavelength: np.ndarray) -> np.ndarray:
    """d(wavelength)/d(channel) per element; gaps get the packet's median."""
    if wavelength.shape[1] < 2:
        return np.zeros_like(wavelength)
    disp = np.gradient(wavelength, axis=1)
    bad = ~np.isfinite(disp)
    if bad.any():
        fill = np.nan_to_num(np.nanmedian(np.where(bad, np.nan, disp), axis=1), nan=0.0)
        disp = np.where(bad, fill[:, None], disp)
    return disp


def restore_noise(batch: Batch, draws: Draws, lost_var: np.ndarray) -> None:
    """Resampling averages neighbours and so lowers the noise (bilinear: to
    ~0.8x for a half-pixel shift) while a real exposure's detector noise is
    fresh whatever the pointing: add back the variance the interpolation
    removed (data units^2, per element), so the scatter matches ERR again."""
    sigma = np.sqrt(np.clip(np.nan_to_num(lost_var), 0.0, None))
    add_normal(batch, draws.packets(batch.seq), sigma, lane=7)


def spectral_shift(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """The spectrum moves on the detector by s(t) pixels - an offset, a trend
    and per-integration jitter - while the product keeps its wavelength grid,
    as real x1dints do (one WAVELENGTH array for every integration): the
    flux of each channel becomes the linear interpolation of the spectrum at
    channel - s. Channels with no flux stay empty (their detector positions do
    not move); a neighbour without flux leaves the channel its own value.
    The noise the interpolation averaged away is restored (:func:`restore_noise`).

    2-D spectra (images with a WAVELENGTH plane or a DISPAXIS, see
    :attr:`Batch.spectral_2d`) move the same way along their dispersion axis,
    their WAVELENGTH plane unchanged: along x for DISPAXIS = 1 (NIRSpec) and
    when the product does not say, along y for DISPAXIS = 2 (e.g. MIRI LRS
    slit); plain images are left alone (no truth bit).

    Magnitude: the shift s in pixels."""
    jitter = draws.epochs(batch.epoch).normal(1)[:, 0]
    shift = p["offset_px"] + p["slope_px_per_hour"] * batch.elapsed_s() / 3600.0 + p["jitter_px"] * jitter
    if batch.family == "images":
        if not batch.spectral_2d:
            return Effect(
                np.empty(0, dtype=np.int64), np.zeros(batch.n), expected=(np.zeros(batch.n), np.zeros(batch.n))
            )
        lost = np.zeros(batch.value.shape)
        for s in np.unique(shift):  # one shift per frame: its tiles move together
            rows = np.flatnonzero(shift == s)
            own = batch.value[rows]
            dy, dx = (float(s), 0.0) if batch.dispersion_axis == 2 else (0.0, float(s))
            moved = _shift_tiles(own, dy, dx)
            usable = np.isfinite(own) & np.isfinite(moved)  # empty pixels stay empty, and get no noise back
            f = s - np.floor(s)
            kept = (1 - f) ** 2 + f**2  # sum of squared interpolation weights
            lost[rows] = np.where(usable, np.nan_to_num(batch.error[rows].astype(np.float64)) ** 2 * (1.0 - kept), 0.0)
            batch.value[rows] = np.where(usable, moved, own)
        restore_noise(batch, draws, lost)
        return Effect(ALL, shift, expected=(np.full(batch.n, float(batch.elements)), np.zeros(batch.n)))
    flux, err = batch.value, batch.error
    moved, (rows, j0, j1, w0, w1, total) = shifted_channels(flux, shift)
    own = np.isfinite(flux)
    with np.errstate(invalid="ignore", divide="ignore"):
        kept_var = (w0**2 * np.nan_to_num(err[rows, j0]) ** 2 + w1**2 * np.nan_to_num(err[rows, j1]) ** 2) / total**2
    usable = own & (total > 0)
    lost = np.where(usable, np.nan_to_num(err) ** 2 - kept_var, 0.0)
    batch.value[...] = np.where(usable, moved, flux)
    restore_noise(batch, draws, lost)
    return Effect(ALL, shift)


def shifted_channels(flux: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Each row of ``flux`` (packets x channels) read at channel - ``shift[row]`` by linear
    interpolation, a neighbour without flux giving no weight (NaN where neither has flux); with
    the taps (rows, j0, j1) and weights (w0, w1, their total) for the caller's error propagation."""
    n, m = flux.shape
    x = np.arange(m)[None, :] - shift[:, None]
    j = np.floor(x).astype(np.int64)
    f = x - j
    rows = np.arange(n)[:, None]
    j0, j1 = np.clip(j, 0, m - 1), np.clip(j + 1, 0, m - 1)
    v0, v1 = flux[rows, j0], flux[rows, j1]
    w0 = np.where(np.isfinite(v0), 1.0 - f, 0.0)
    w1 = np.where(np.isfinite(v1), f, 0.0)
    total = w0 + w1
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = (w0 * np.nan_to_num(v0) + w1 * np.nan_to_num(v1)) / total
    return moved, (rows, j0, j1, w0, w1, total)


def _shift_tiles(planes: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Resample (k, ny, nx) tiles as if the scene moved by (dy, dx) pixels:
    bilinear interpolation, edges clamped (a tile has no neighbours). A new
    array; :func:`_shift_in_place` does the work."""
    out = planes.copy()
    _shift_in_place(out, dy, dx)
    return out


def _shift_in_place(planes: np.ndarray, dy: float, dx: float) -> None:
    """Bilinear resampling of (k, ny, nx) tiles in place: the scene moved by
    (dy, dx) pixels, edges clamped. A bilinear weight is the product of a
    weight along y and one along x, so two 2-tap blends (y, then x) give
    the four-tap result with half the arithmetic: out[i] = (1 - f)
    x[clip(i + b)] + f x[clip(i + b + 1)] along each axis, b = floor(-shift),
    f = -shift - b (float32 weights); a whole-pixel shift (f = 0) copies, so
    no NaN neighbour is pulled in. One compiled pass per tile
    (:func:`~hwosim_assets.perturb.kernels.shift_bilinear`)."""
    base_y, base_x = math.floor(-dy), math.floor(-dx)
    frac_y, frac_x = np.float32(-dy - base_y), np.float32(-dx - base_x)
    if len(planes):
        shift_bilinear(planes, base_y, frac_y, base_x, frac_x)


def _kept_variance(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Share of a pixel's noise variance bilinear resampling keeps: the sum of
    the squared weights, ((1 - fy)^2 + fy^2) ((1 - fx)^2 + fx^2)."""
    fy, fx = dy - np.floor(dy), dx - np.floor(dx)
    return ((1 - fy) ** 2 + fy**2) * ((1 - fx) ** 2 + fx**2)


def _epoch_runs(epoch: np.ndarray) -> list[slice]:
    """Runs of consecutive packets of one epoch (a frame's tiles come together)."""
    edges = np.flatnonzero(epoch[1:] != epoch[:-1]) + 1
    bounds = np.r_[0, edges, len(epoch)]
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def pointing_jitter(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Line-of-sight jitter: each frame's scene moves by a Gaussian sub-pixel
    offset (``sigma_mas`` per axis, over the detector's pixel scale from
    :mod:`hwosim_assets.perturb.detectors`); every tile of the frame moves
    together. The noise bilinear resampling averages away is restored: a
    fresh Gaussian of sigma ERR x sqrt(1 - kept) (:func:`_kept_variance`;
    NaN ERR: none) - ERR stays right. Where the run also adds read noise,
    that Gaussian is drawn in read_noise's field, whose variance is then the
    sum of both (one field, not two: a sum of independent Gaussians is
    Gaussian; :func:`hwosim_assets.perturb.kinds.noise.read_noise`).

    Magnitude: the offset length in pixels."""
    offsets = draws.epochs(batch.epoch).normal(2) * (p["sigma_mas"] / batch.detector.pixel_scale_mas)
    for run in _epoch_runs(batch.epoch):
        dy, dx = offsets[run.start]
        _shift_in_place(batch.value[run], float(dy), float(dx))
    lost = np.sqrt(np.clip(1.0 - _kept_variance(offsets[:, 0], offsets[:, 1]), 0.0, None))
    lost = lost.astype(batch.value.dtype)[:, None]
    error = batch.error.reshape(batch.n, -1)
    if batch.fold_noise:  # read_noise follows: it draws this noise in its own field (summed variance)
        deferred = np.empty(error.shape, dtype=np.float32)
        # one compiled pass; NaN ERR: no noise, an ERR beyond 1.8e19 (real products' bad pixels): a huge
        # noise, as unfolded, never inf
        restoring_variance(error, (lost**2).astype(np.float32).reshape(-1), deferred)
        batch.deferred_variance = deferred
        return Effect(ALL, np.hypot(offsets[:, 0], offsets[:, 1]))

    def sigma(rows: slice, first: int, last: int, out: np.ndarray) -> np.ndarray:
        np.abs(error[rows, first:last], out=out)
        out *= lost[rows]
        return np.fmax(out, 0, out=out)  # fmax drops NaN: no noise where ERR is NaN

    add_normal(batch, draws.packets(batch.seq), sigma, lane=7)
    return Effect(ALL, np.hypot(offsets[:, 0], offsets[:, 1]))


SETTLE_GROUNDING = (
    "NIRCam time series settle exponentially over 5-15 min after the start and "
    "show sub-percent non-linear drifts and mirror 'tilt events' (Schlawin et al. "
    "2023, PASP 135, 018001); JDox 'JWST Time-Series Observations Noise Sources'."
)

EPOCH_GROUNDING = (
    "Between epochs, MIRI flux calibrations repeat to 0.1-1.2 % (Gordon et al. 2024, "
    "arXiv:2409.10443); the NIRCam short-wavelength detector offsets of the 2022 "
    "zeropoints (jwst_0959.pmap) appeared time-variable by up to at least 0.1 mag "
    "(Boyer et al. 2022, arXiv:2209.03348)."
)

GAIN_DRIFT = KindSpec(
    name="gain_drift",
    summary="multiplicative drift: linear, exponential settling, random walk",
    grounding=SETTLE_GROUNDING + " " + EPOCH_GROUNDING,
    families=BOTH,
    params=(
        Param("slope_per_hour", "1/h", "real", "linear relative gain change per hour", high=1),
        Param("settle_amplitude", "", "real", "relative offset at t_ref, decaying", high=1),
        Param("settle_tau_s", "s", "positive", "settling time constant", high=1e6),
        Param("walk_sigma", "", "nonneg", "relative random-walk step per exposure", high=1),
    ),
    levels={
        "slope_per_hour": (0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        "settle_amplitude": (0, 5e-4, 1e-3, 3e-3, 1e-2, 0.096),
        "settle_tau_s": (600.0,),
        "walk_sigma": (0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
    },
    anchors={
        1: "5e-4 settling: sub-per-mil settling of NIRCam time series after the start (Schlawin et al. 2023)",
        3: "3e-3: a 'tilt event' - a mirror-segment jump of a few 1e-3 (Schlawin et al. 2023)",
        4: "1e-2: the per-cent scale of flux-calibration repeatability - 0.1-1.2 % per MIRI band after "
        "correcting the time-dependent response loss (Gordon et al. 2024, 'The JWST Absolute Flux Calibration. "
        "II. MIRI Imaging and Coronagraphy', arXiv:2409.10443, abstract)",
        5: "0.096: the NIRCam short-wavelength detector offsets 'appear to be time variable by up to at least "
        "0.1 mag' (Boyer et al. 2022, 'The JWST Resolved Stellar Populations ERS Program I.: NIRCam Flux "
        "Calibration', arXiv:2209.03348, abstract): 0.1 mag = 9.6 %",
    },
    is_off=lambda p: p["slope_per_hour"] == 0 and p["settle_amplitude"] == 0 and p["walk_sigma"] == 0,
    apply=gain_drift,
    expect=_everything,
    marks_all=True,
)

OFFSET_DRIFT = KindSpec(
    name="offset_drift",
    summary="additive (bias) drift: linear, exponential settling, random walk",
    grounding=(
        "H2RG bias drifts with temperature and is tracked by the 4-pixel reference "
        "border (JDox 'NIRCam Detector Overview'); pre-amplifier offsets jump "
        "between integrations (Schlawin et al. 2020). " + SETTLE_GROUNDING
    ),
    families=BOTH,
    params=(
        Param("slope_e_per_hour", "e-/h", "real", "linear offset change per hour", high=1e6),
        Param("settle_e", "e-", "real", "offset at t_ref, decaying", high=1e6),
        Param("settle_tau_s", "s", "positive", "settling time constant", high=1e6),
        Param("walk_sigma_e", "e-", "nonneg", "random-walk step per exposure", high=1e6),
    ),
    levels={
        "slope_e_per_hour": (0, 0.5, 1, 3, 10, 30),
        "settle_e": (0, 1, 3, 10, 30, 100),
        "settle_tau_s": (600.0,),
        "walk_sigma_e": (0, 0.2, 0.5, 1, 3, 10),
    },
    anchors={
        1: "what-if figure: ~1 e- per pixel, what the reference-pixel correction leaves - pre-amplifier "
        "offsets are 'correctable below 10 ppm once background subtraction and pixel masking are performed' "
        "(Schlawin et al. 2020, 'JWST Noise Floor I', AJ 160, 231, arXiv:2010.03564, abstract); no residual "
        "in electrons is published",
        3: "what-if figure: 10 e- - an uncorrected pre-amplifier offset: the SUBGRISM64/128 subarrays have no "
        "bottom reference pixels on the short-wavelength detectors to subtract pre-amplifier reset noise "
        "(JDox 'NIRCam Time Series Observation Pipeline Caveats'); its size in electrons is not published",
        5: "what-if (no record): 100 e- - a bias jump ten times that",
    },
    is_off=lambda p: p["slope_e_per_hour"] == 0 and p["settle_e"] == 0 and p["walk_sigma_e"] == 0,
    apply=offset_drift,
    expect=_everything,
    marks_all=True,
)

SPECTRAL_SHIFT = KindSpec(
    name="spectral_shift",
    summary="the spectrum moving on the detector (offset, trend, jitter) under a fixed wavelength grid",
    grounding=(
        "The NIRISS pupil wheel does not settle exactly where commanded, moving the "
        "SOSS traces and the wavelength solution between visits by up to a few pixels; "
        "a model of the pupil-wheel position predicts them to ~0.1-0.3 px (Baines et al. "
        "2023, arXiv:2311.07769 and 2311.07771; CAL program 1512); trace drifts of "
        "~0.01 px occur within time series."
    ),
    families=BOTH,
    params=(
        Param("offset_px", "px", "real", "constant shift", high=100),
        Param("slope_px_per_hour", "px/h", "real", "shift trend", high=100),
        Param("jitter_px", "px", "nonneg", "per-integration jitter, 1 sigma", high=100),
    ),
    levels={
        "offset_px": (0, 0.01, 0.03, 0.1, 0.3, 2.0),
        "slope_px_per_hour": (0, 0.002, 0.005, 0.02, 0.05, 0.2),
        "jitter_px": (0, 0.002, 0.005, 0.01, 0.03, 0.1),
    },
    anchors={
        1: "0.01 px: trace drifts within time series (NIRISS GR700XD wavelength calibration, CAL program 1512)",
        3: "0.1 px: what a pupil-wheel model leaves - trace positions predicted from the GR700XD pupil-wheel "
        "position 'with sub-pixel accuracy of about ~0.1 pixels' (Baines et al. 2023, 'Characterization of "
        "the visit-to-visit Stability of the GR700XD Spectral Traces for NIRISS/SOSS Observations', "
        "arXiv:2311.07769, abstract)",
        4: "0.3 px: the wavelength solution per visit predicted 'with an RMS error within a few tenths of a "
        "pixel' (Baines et al. 2023, '... Stability of the GR700XD Wavelength Calibration ...', "
        "arXiv:2311.07771, abstract)",
        5: "2 px: the pupil wheel not settling where commanded - the wavelength solution 'can fluctuate ... "
        "between visits by up to a few pixels' (Baines et al. 2023, arXiv:2311.07771, abstract; CAL program "
        "1512); 2 px taken for 'a few'",
    },
    is_off=lambda p: p["offset_px"] == 0 and p["slope_px_per_hour"] == 0 and p["jitter_px"] == 0,
    apply=spectral_shift,
    expect=_spectral_elements,
    marks_all=False,  # plain images are left alone: marked where it acted (Effect ALL)
)

POINTING_JITTER = KindSpec(
    name="pointing_jitter",
    summary="sub-pixel frame-to-frame pointing jitter",
    grounding=(
        "JWST line-of-sight stability is ~1 mas per axis (JDox 'JWST Fine Guide Stability'); "
        "target acquisition places targets to 5.5 mas (NIR) / 14 mas (MIRI) (JDox 'JWST "
        "Pointing Accuracy'); offsets are converted with the detector's pixel scale."
    ),
    families=frozenset({"images"}),
    params=(Param("sigma_mas", "mas", "nonneg", "jitter per axis, 1 sigma", high=10_000),),
    levels={"sigma_mas": (0, 1.0, 2.0, 6.5, 10.0, 14.0)},
    anchors={
        1: "1 mas per axis: the observed line-of-sight stability under fine guiding (JDox 'JWST Fine Guide Stability')",
        2: "interpolated",
        3: "6.5 mas: the documented stability while tracking a moving target (same page, 6.2-6.7 mas)",
        4: "interpolated",
        5: "14 mas: MIRI target-acquisition accuracy, the largest documented pointing error (JDox 'JWST Pointing Accuracy')",
    },
    is_off=lambda p: p["sigma_mas"] == 0,
    apply=pointing_jitter,
    expect=_everything,
    marks_all=True,
)
