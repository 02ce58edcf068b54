"""Value noise: read noise, shot noise and 1/f striping."""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np

from hwosim_assets.perturb.batch import ALL, DETECTOR_PIXELS, Batch, Effect
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})


def _everything(params: Mapping[str, float], coverage) -> Expectation:
    return Expectation(1.0, 0.0)


BLOCK = 1 << 17  # elements per block of a dense noise field: stays in cache


def add_normal(batch: Batch, stream: Stream, sigma: np.ndarray) -> None:
    """value += sigma x N(0, 1), with packet i's field drawn from ``stream``
    row i. Drawn and added piece by piece, so no field-sized temporary is
    made; sigma broadcasts against (n, elements)."""
    n, size = batch.n, batch.elements
    values = batch.value.reshape(n, size)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=values.dtype).reshape(n, -1), (n, size))
    for rows, first, last, noise in stream.normal_fields(size, block=BLOCK):
        noise = noise.astype(values.dtype, copy=False)
        noise *= sigma[rows, first:last]
        values[rows, first:last] += noise


def read_noise(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Extra Gaussian read noise of ``sigma_e`` electrons on every element.

    Magnitude: the noise sigma in data units (per packet)."""
    add_normal(batch, draws.packets(batch.seq), p["sigma_e"] * batch.per_electron)
    return Effect(ALL, p["sigma_e"] * batch.packet_scale())


def shot_noise(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Extra photon noise, as if only ``throughput`` of the photons had been
    collected: a Poisson re-draw of the detected electrons N adds variance
    N (1/throughput - 1). Drawn in its Gaussian limit (exact mean and
    variance; the Poisson skew matters only below ~10 e-). Only elements with
    positive signal change.

    Magnitude: mean added sigma over the packet's lit elements (data units)."""
    lit = batch.value > 0
    signal = np.where(lit, batch.value, 0).astype(np.float64)
    sigma = np.sqrt(signal * batch.per_electron * (1.0 / p["throughput"] - 1.0))
    add_normal(batch, draws.packets(batch.seq), sigma)
    per_packet = sigma.reshape(batch.n, -1).sum(axis=1) / np.maximum(lit.reshape(batch.n, -1).sum(axis=1), 1)
    return Effect(lit, per_packet)


@lru_cache(maxsize=1024)
def one_over_f_series(key: int, epoch: int, alpha: float) -> np.ndarray:
    """A unit-rms noise series over the 2048 detector rows with power spectrum
    proportional to 1/f^alpha: the offsets the SIDECAR ASIC adds row by row
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
    """Correlated 1/f ("flicker") noise: one offset per detector row, the rows
    forming a 1/f^alpha series, rms ``sigma_e`` electrons. Images get the
    horizontal banding of NIRCam/NIRISS frames; spectra get the same series
    along their channels (the dispersion direction of NIRCam grism and SOSS
    runs along the fast-read rows).

    Magnitude: the rms offset in data units."""
    key = draws.key("epoch")
    epochs, which = np.unique(batch.epoch, return_inverse=True)
    series = np.stack([one_over_f_series(key, int(e), float(p["alpha"])) for e in epochs])
    if batch.family == "images":
        offsets = series[which[:, None], batch.rows % DETECTOR_PIXELS]  # (n, ny)
        offsets *= p["sigma_e"] * batch.per_electron[:, :, 0]
        batch.value += offsets[:, :, None].astype(batch.value.dtype)
    else:
        offsets = series[which[:, None], batch.cols % DETECTOR_PIXELS]  # (n, m)
        batch.value += offsets * (p["sigma_e"] * batch.per_electron)
    return Effect(ALL, p["sigma_e"] * batch.packet_scale())


READ_NOISE = KindSpec(
    name="read_noise",
    summary="extra Gaussian read noise on every element",
    grounding=(
        "H2RG correlated-double-sample read noise is ~10-16 e- for NIRCam/NIRISS "
        "(JDox detector performance); level 3 adds one more CDS read noise, "
        "doubling the variance of a read-noise-limited pixel."
    ),
    families=BOTH,
    params=(Param("sigma_e", "e-", "nonneg", "added noise, 1 sigma", high=1e6),),
    levels={"sigma_e": (0, 4, 8, 16, 32, 64)},
    is_off=lambda p: p["sigma_e"] == 0,
    apply=read_noise,
    expect=_everything,
    marks_all=True,
)

SHOT_NOISE = KindSpec(
    name="shot_noise",
    summary="extra photon (Poisson) noise of a lower-throughput exposure",
    grounding=(
        "Photon noise of the detected electrons, the noise floor of JWST "
        "time-series observations (JDox 'JWST Time-Series Observations Noise Sources')."
    ),
    families=BOTH,
    params=(Param("throughput", "fraction", "fraction", "fraction of the photons kept (1 = unchanged)"),),
    levels={"throughput": (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)},
    is_off=lambda p: p["throughput"] >= 1.0,
    apply=shot_noise,
)

STRIPING_1F = KindSpec(
    name="striping_1f",
    summary="row-correlated 1/f noise (horizontal banding)",
    grounding=(
        "SIDECAR ASIC 1/f noise appears as horizontal banding spanning the full "
        "row and varying row to row (JDox 'NIRCam 1/f Noise Removal Methods'); "
        "Schlawin et al. 2020 (AJ 160, 231) find it limits NIRCam grism time "
        "series; uncorrected in NIRISS SOSS it is 'equivalent to doubling the "
        "readout noise' (Albert et al. 2023)."
    ),
    families=BOTH,
    params=(
        Param("sigma_e", "e-", "nonneg", "rms of the row offsets", high=1e6),
        Param("alpha", "", "nonneg", "spectral index: power ~ 1/f^alpha", high=10),
    ),
    levels={"sigma_e": (0, 2, 4, 8, 16, 32), "alpha": (1.0,)},
    is_off=lambda p: p["sigma_e"] == 0,
    apply=striping_1f,
    expect=_everything,
    marks_all=True,
)
