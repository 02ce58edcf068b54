"""What a kind works on: a stack of packets of one shape, plus the detector
geometry and unit conversion every kind shares.

Kinds are vectorised over the packets of a batch but never let one packet
influence another, so a batch of one packet gives the same result as a
batch of a thousand.

Detector model (shared by all kinds, JWST near-infrared H2RG arrays):

* ``DETECTOR_PIXELS`` = 2048: each NIRCam/NIRISS/NIRSpec SCA is 2048 x 2048
  pixels (2040 x 2040 light-sensitive plus a 4-pixel reference border; JDox
  "NIRCam Detector Overview"). Fixed-pattern defects (hot pixels, dead
  columns) and afterimages live on this grid; image coordinates beyond it
  (i2d mosaics) wrap around it.
* ``PIXEL_PITCH_UM`` = 18 um: the H2RG pixel pitch, which turns a cosmic-ray
  rate per cm^2 into a rate per pixel.
* ``ERR_ELECTRONS`` = 16 e-: how many electrons the pipeline's 1-sigma error
  of a background pixel stands for. A CDS read noise of 10-16 e- is the
  NIRCam/NIRISS floor (JDox detector performance pages); calibrated products
  carry no gain, so parameters given in electrons are converted to data
  units with ``data per electron = ERR / 16 e-`` - per packet from the
  median ERR of a tile (one scale per tile, like a real gain), per element
  from ``flux_error`` for spectra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DETECTOR_PIXELS = 2048
PIXEL_PITCH_UM = 18.0
PIXEL_AREA_CM2 = (PIXEL_PITCH_UM * 1e-4) ** 2
ERR_ELECTRONS = 16.0
SECONDS_PER_DAY = 86400.0

ALL = "all"  # Effect.where: every element of the batch


@dataclass
class Batch:
    """n packets of one shape. ``value``/``error``/``wavelength`` are the
    engine's own copies and kinds change them in place."""

    family: str  # "images" or "spectra"
    value: np.ndarray  # images: sci (n, ny, nx) float32; spectra: flux (n, m) float64
    error: np.ndarray  # err / flux_error, same shape
    wavelength: np.ndarray | None  # spectra: (n, m) micron; images: None
    seq: np.ndarray  # (n,) int64 packet numbers
    epoch: np.ndarray  # (n,) int64 exposure index: frame (images) or seq (spectra)
    time_mjd: np.ndarray  # (n,) float64 event time
    cols: np.ndarray  # (n, nx) detector column of each tile column / (n, m) channel position
    rows: np.ndarray | None  # (n, ny) detector row of each tile row; None for spectra
    t_ref: float  # MJD the drifts count from
    per_electron: np.ndarray = field(init=False)  # data units per electron, broadcastable to value

    def __post_init__(self) -> None:
        if self.family == "images":
            self.per_electron = _tile_scale(self.value, self.error)[:, None, None] / ERR_ELECTRONS
        else:
            self.per_electron = _element_scale(self.value, self.error) / ERR_ELECTRONS

    @property
    def n(self) -> int:
        return self.value.shape[0]

    @property
    def elements(self) -> int:
        """Elements (pixels or channels) per packet."""
        return int(np.prod(self.value.shape[1:]))

    def per_packet(self, values: np.ndarray) -> np.ndarray:
        """Reshape a (n,) vector to broadcast against ``value``."""
        return np.asarray(values).reshape((self.n,) + (1,) * (self.value.ndim - 1))

    def elapsed_s(self) -> np.ndarray:
        """Seconds from the reference time to each packet's event time."""
        return (self.time_mjd - self.t_ref) * SECONDS_PER_DAY

    def scale_at(self, flat: np.ndarray) -> np.ndarray:
        """Data units per electron at flat element indices."""
        if self.per_electron.size == self.n:  # one scale per packet
            return self.per_electron.reshape(self.n)[flat // self.elements]
        return self.per_electron.reshape(-1)[flat]

    def packet_scale(self) -> np.ndarray:
        """(n,) data units per electron, one per packet (median over a spectrum)."""
        flat = self.per_electron.reshape(self.per_electron.shape[0], -1)
        return np.median(flat, axis=1) if flat.shape[1] > 1 else flat[:, 0]


def _lower_median(rows: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (lower middle; NaN if none)."""
    good = np.isfinite(rows).sum(axis=1)
    width = rows.shape[1]
    if width and (good == width).all():  # the usual case: one partition, no sort
        middle = (width - 1) // 2
        return np.partition(rows, middle, axis=1)[:, middle]
    rows = np.sort(rows, axis=1)  # NaN sort last
    picked = rows[np.arange(len(rows)), np.maximum(good - 1, 0) // 2]
    return np.where(good > 0, picked, np.nan)


def _robust_sigma(values: np.ndarray) -> np.ndarray:
    """1.4826 x median absolute deviation of each row's finite values."""
    med = _lower_median(values)
    return 1.4826 * _lower_median(np.abs(values - med[:, None]))


def _tile_scale(sci: np.ndarray, err: np.ndarray) -> np.ndarray:
    """(n,) typical 1-sigma of each tile: median ERR on a regular sub-grid of
    ~256 pixels (every 8th row and column of a 128-pixel tile); if a tile has
    no usable ERR, the robust scatter of SCI; else 1."""
    n, ny, nx = sci.shape
    step = max(1, int(round(np.sqrt(ny * nx / 256))))
    sub = err[:, ::step, ::step].reshape(n, -1)
    usable = (sub > 0) & np.isfinite(sub)
    if usable.all():
        scale = _lower_median(sub).astype(np.float64)
    else:
        scale = _lower_median(np.where(usable, sub, np.nan).astype(np.float64))
    missing = ~(scale > 0)
    if missing.any():
        scale[missing] = _robust_sigma(sci[missing][:, ::step, ::step].reshape(int(missing.sum()), -1).astype(np.float64))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def _element_scale(flux: np.ndarray, flux_error: np.ndarray) -> np.ndarray:
    """(n, m) 1-sigma of each channel: its flux_error where usable, else the
    packet's median flux_error, else the packet's robust flux scatter, else 1."""
    usable = np.isfinite(flux_error) & (flux_error > 0)
    fallback = _lower_median(np.where(usable, flux_error, np.nan))
    missing = ~(fallback > 0)
    if missing.any():
        fallback[missing] = _robust_sigma(flux[missing])
    fallback = np.where(np.isfinite(fallback) & (fallback > 0), fallback, 1.0)
    return np.where(usable, flux_error, fallback[:, None])


@dataclass
class Effect:
    """Where a kind changed the batch, and how much, per packet.

    ``where`` is ALL, a boolean mask shaped like ``value``, or flat indices
    into ``value`` (duplicates allowed). ``magnitude`` is one number per
    packet whose meaning each kind documents (noise sigma, event count...).
    """

    where: np.ndarray | str
    magnitude: np.ndarray
    affected: np.ndarray | None = None  # (n,) distinct elements touched, when the kind knows it

    @classmethod
    def nothing(cls, batch: Batch) -> "Effect":
        return cls(np.empty(0, dtype=np.int64), np.zeros(batch.n))

    def counts(self, batch: Batch) -> np.ndarray:
        """(n,) number of elements of each packet this effect touched."""
        if self.affected is not None:
            return self.affected
        if isinstance(self.where, str):
            return np.full(batch.n, batch.elements, dtype=np.int64)
        if self.where.dtype == bool:
            return self.where.reshape(batch.n, -1).sum(axis=1)
        ordered = np.sort(self.where)  # a sort beats np.unique's hashing here
        distinct = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered
        return np.bincount(distinct // batch.elements, minlength=batch.n)

    def mark(self, truth: np.ndarray, bit: int) -> None:
        """Set ``bit`` in the truth mask (shaped like value, uint32) where touched."""
        flag = np.uint32(1 << bit)
        if isinstance(self.where, str):
            truth |= flag
        elif self.where.dtype == bool:
            truth[self.where] |= flag
        else:
            truth.reshape(-1)[self.where] |= flag


@dataclass
class Coverage:
    """What a perturbation run covered, for the expected fractions."""

    family: str
    packets: int = 0
    elements: int = 0
    seen_columns: np.ndarray = field(default_factory=lambda: np.zeros(DETECTOR_PIXELS, dtype=bool))
    seen_rows: np.ndarray = field(default_factory=lambda: np.zeros(DETECTOR_PIXELS, dtype=bool))

    def add(self, batch: Batch) -> None:
        self.packets += batch.n
        self.elements += batch.n * batch.elements
        self.seen_columns[batch.cols % DETECTOR_PIXELS] = True
        if batch.rows is not None:
            self.seen_rows[batch.rows % DETECTOR_PIXELS] = True

    @property
    def columns(self) -> int:
        """Distinct detector columns (channel positions) seen."""
        return int(self.seen_columns.sum())

    @property
    def positions(self) -> int:
        """Distinct detector positions seen (fixed-pattern defects repeat on them)."""
        return max(self.columns * max(int(self.seen_rows.sum()), 1), 1)
