"""What a kind works on: a stack of packets of one shape, with the
product's variance, DQ and header facts, and the unit conversion every kind
shares.

Kinds are vectorised over the packets of a batch but never let one packet
influence another, so a batch of one packet gives the same result as a
batch of a thousand.

**Electron scale** (``per_electron``: data units per electron), from the
product itself, in this order (``scale_source`` says which was used):

1. ``poisson``: where the product carries its Poisson variance, N = F^2 /
   VAR_POISSON electrons, i.e. data per electron c = VAR_POISSON / F. The
   pipeline computes VAR_POISSON as the slope's shot noise, so this is the
   product's own gain x time x flux calibration, per element. Spectra: per
   channel, where F > 0 and VAR_POISSON > 0, interpolated along the channels
   elsewhere (below-background channels have no usable ratio). Images: the
   median ratio over the tile's pixels with S/N > 5 (one scale per tile, like
   a real gain), per line of constant wavelength where the tile is a 2-D
   spectrum (the flux calibration varies with wavelength): per column when
   the dispersion runs along x (DISPAXIS 1, the default), per row when it
   runs along y (DISPAXIS 2).
2. ``header``: gain x EFFINTTM (EFFEXPTM for exposure-level products) and
   PHOTMJSR / PIXAR_SR from the headers, with the gain of the detector table
   (:mod:`hwosim_assets.perturb.detectors`).
3. ``err``: a shot-noise-limited reading of ERR, c = ERR^2 / F, for bright
   elements (S/N > 5) of products with neither (spectra lack PHOTMJSR).
4. ``err16``: the former convention, ERR = 16 e- (synthetic tables only).

**Read noise per element** (``read_noise_e``, e- over one integration):
the product's own VAR_RNOISE / c^2 where present; else the detector's noise
for the product's groups (:meth:`Exposure.read_noise_e`), times
sqrt(NPIXELS) for an extracted channel (the aperture sums NPIXELS pixels; a product without NPIXELS is taken to
sum DEFAULT_APERTURE_PX).

**Variance bookkeeping**: a kind that adds noise calls :meth:`Batch.add_variance`,
which adds to VAR_RNOISE or VAR_POISSON (where the product has them) and to
ERR, so the perturbed product states its own scatter.

Detector geometry: ``DETECTOR_PIXELS`` = 2048, the H2RG format (JDox "NIRCam
Detector Overview"); fixed-pattern defects and afterimages live on this
grid; image coordinates beyond it wrap around it.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from hwosim_assets.perturb.detectors import Detector
from hwosim_assets.perturb.exposure import GENERIC, Exposure
from hwosim_assets.perturb.kernels import bright_medians, grow_error

DETECTOR_PIXELS = 2048
PIXEL_PITCH_UM = 18.0
PIXEL_AREA_CM2 = (PIXEL_PITCH_UM * 1e-4) ** 2
ERR_ELECTRONS = 16.0  # last-resort convention (module docstring)
SECONDS_PER_DAY = 86400.0
STAGES = ("archive", "live")
# Pixels behind a channel of a product that carries no NPIXELS at all (older
# or synthetic x1d): an assumed extraction box of 10 rows.
DEFAULT_APERTURE_PX = 10.0
_NO_PLANE = np.empty((0, 0, 0), np.float32)  # grow_error's "no VAR_* plane"
MIN_SNR = 5.0  # elements bright enough for a ratio of variances to be a scale

ALL = "all"  # Effect.where: every element of the batch


@dataclass
class Batch:
    """n packets of one shape. ``value``/``error``/``wavelength`` and the
    optional variance and DQ arrays are the engine's own copies and kinds
    change them in place."""

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
    exposure: Exposure = GENERIC
    stage: str = "archive"  # "archive": post-pipeline residuals; "live": raw-like
    var_poisson: np.ndarray | None = None  # like value, or None where the product lacks it
    var_rnoise: np.ndarray | None = None
    npixels: np.ndarray | None = None  # spectra: (n, m) pixels summed per channel
    dq: np.ndarray | None = None  # like value, integer JWST DQ flags
    # images that are 2-D spectra: a WAVELENGTH plane, or DISPAXIS in the product's SCI header (resampled
    # s2d products carry their wavelengths in the WCS only); dispersed along exposure.dispersion_axis
    spectral_2d: bool = False
    per_electron: np.ndarray = field(init=False)  # data units per electron, broadcastable to value
    scale_source: str = field(init=False)
    read_noise_e: np.ndarray = field(init=False)  # e- per element over one integration, broadcastable
    trace: dict = field(init=False, default_factory=dict)  # kind -> change of value (engine trace mode)
    # Folded white noise (set by the engine when ``read_noise`` follows ``pointing_jitter`` in the run):
    # ``fold_noise`` lets the jitter leave its noise-restoring variance (n, elements) in
    # ``deferred_variance`` instead of drawing a field of its own; ``read_noise`` draws one field of
    # the summed variance. ``trace_shares``: in trace mode, kind -> its share of a later kind's
    # change (the engine moves it).
    fold_noise: bool = field(init=False, default=False)
    deferred_variance: np.ndarray | None = field(init=False, default=None)
    # Folded ERR growth (set by the engine when ``read_noise`` runs right after ``striping_1f``):
    # striping leaves its added read-noise variance in ``pending_rnoise`` and read_noise grows ERR and
    # VAR_RNOISE by both at once - one pass over them, not two.
    defer_rnoise: bool = field(init=False, default=False)
    pending_rnoise: np.ndarray | None = field(init=False, default=None)
    trace_shares: dict | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.family == "images" and self.exposure.dispaxis in (1, 2):
            self.spectral_2d = True
        if self.family == "images":
            self.per_electron, self.scale_source = _tile_scale(self)
        else:
            self.per_electron, self.scale_source = _element_scale(self)
        self.read_noise_e = _read_noise(self)

    @property
    def n(self) -> int:
        return self.value.shape[0]

    @property
    def elements(self) -> int:
        """Elements (pixels or channels) per packet."""
        return math.prod(self.value.shape[1:])

    @property
    def seconds(self) -> float:
        """Integration time of one value (the product's EFFINTTM / EFFEXPTM)."""
        return self.exposure.seconds

    @property
    def detector(self) -> Detector:
        return self.exposure.detector

    @property
    def dispersion_axis(self) -> int:
        """Array axis of a 2-D spectrum's dispersion: 2 for y (rows; DISPAXIS = 2),
        1 for x (columns) - the default when the product does not say
        (:attr:`Exposure.dispersion_axis`)."""
        return self.exposure.dispersion_axis

    def packets(self, part: slice) -> Batch:
        """The packets ``part`` of this batch as a batch of their own: views of
        its arrays (a kind writing into it writes into this batch), with the
        electron scale and read noise already computed - nothing is
        recomputed. Kinds never let one packet influence another, so a kind
        applied part by part gives what it gives on the whole batch; a kind
        whose temporaries grow with the number of events (cosmic rays at
        particle-event rates) works this way in bounded memory."""
        sub = copy.copy(self)
        n = self.n
        for name in ("value", "error", "wavelength", "var_poisson", "var_rnoise", "npixels", "dq", "cols", "rows"):
            array = getattr(self, name)
            if array is not None:
                setattr(sub, name, array[part])
        for name in ("seq", "epoch", "time_mjd"):
            setattr(sub, name, getattr(self, name)[part])
        for name in ("per_electron", "read_noise_e"):  # broadcastable: (n, ...) or (1, ...)
            array = getattr(self, name)
            if np.ndim(array) and array.shape[0] == n and n > 1:
                setattr(sub, name, array[part])
        return sub

    def aperture(self) -> np.ndarray:
        """Pixels behind each element: NPIXELS for an extracted channel (0 where
        nothing was extracted), 1 for an image pixel."""
        if self.family == "spectra":
            if self.npixels is None:
                return np.full(self.value.shape, DEFAULT_APERTURE_PX)
            return np.where(np.isfinite(self.npixels) & (self.npixels > 0), self.npixels, 0.0)
        return np.ones(self.value.shape)

    def per_electron_rows(self) -> np.ndarray:
        """``per_electron`` as rows of the flattened packets: (n, 1) when it is
        one figure per packet (images), else (n, elements) - a copy only for
        per-column scales (2-D spectra), which cannot be flattened as a view."""
        scale = np.asarray(self.per_electron)
        if scale.ndim == 0 or all(d == 1 for d in scale.shape[1:]):
            return np.broadcast_to(scale.reshape(-1, 1), (self.n, 1))
        return np.broadcast_to(scale, self.value.shape).reshape(self.n, -1)

    def per_packet(self, values: np.ndarray) -> np.ndarray:
        """Reshape a (n,) vector to broadcast against ``value``."""
        return np.asarray(values).reshape((self.n,) + (1,) * (self.value.ndim - 1))

    def elapsed_s(self) -> np.ndarray:
        """Seconds from the reference time to each packet's event time."""
        return (self.time_mjd - self.t_ref) * SECONDS_PER_DAY

    def scale_at(self, flat: np.ndarray) -> np.ndarray:
        """Data units per electron at flat element indices - read through the
        broadcast view (flattening it would copy a full-size array per call)."""
        index = np.unravel_index(np.asarray(flat, dtype=np.int64), self.value.shape)
        return np.broadcast_to(self.per_electron, self.value.shape)[index]

    def packet_scale(self) -> np.ndarray:
        """(n,) data units per electron, one per packet (median over a packet)."""
        flat = np.broadcast_to(self.per_electron, self.value.shape).reshape(self.n, -1)
        return np.median(flat, axis=1) if flat.shape[1] > 1 else flat[:, 0]

    def packet_median(self, values: np.ndarray) -> np.ndarray:
        """(n,) median over each packet of a per-element figure (broadcastable
        to value). A figure already constant within packets - shape (n or 1,
        1, ...), as the read noise of an image is - is taken as it is, with no
        full-size copy and no sort."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0 or all(d == 1 for d in values.shape[1:]):
            return np.broadcast_to(values.reshape(-1), (self.n,)).copy()
        flat = np.broadcast_to(values, self.value.shape).reshape(self.n, -1)
        return np.median(flat, axis=1) if flat.shape[1] > 1 else flat[:, 0]

    def electrons(self) -> np.ndarray:
        """The detected charge of each element, e- (0 where the value is not positive)."""
        with np.errstate(invalid="ignore"):
            return np.where(self.value > 0, self.value / self.per_electron, 0.0)

    def add_variance(self, added: np.ndarray, component: str, where: np.ndarray | None = None) -> None:
        """Add ``added`` (data units^2, broadcastable to value) to the error and to
        the product's VAR_RNOISE (``component`` "rnoise") or VAR_POISSON
        ("poisson") where it carries them; ``where`` restricts to a mask.

        ERR = sqrt(ERR^2 + added). A float32 ERR (images) is updated by the
        compiled :func:`~hwosim_assets.perturb.kernels.grow_error`, one pass,
        in float32 where nothing can overflow or lose precision (within 2 ulp
        of the float64 figure, at a third of its cost - the dense noise kinds
        run this over every pixel); a float64 ERR (spectra) in float64, a few
        packets at a time (:meth:`_pieces`), so a per-packet ``added`` is
        never made full-size."""
        added = np.asarray(added, dtype=np.float64)
        if where is not None:
            added = np.where(where, added, 0.0)
        column = self.var_rnoise if component == "rnoise" else self.var_poisson
        if self.error.dtype == np.float32 and (column is None or column.dtype == np.float32):
            plane = _stack(column) if column is not None else _NO_PLANE
            grow_error(
                _stack(self.error), _stack(added.reshape((1,) * (self.value.ndim - added.ndim) + added.shape)), plane
            )
            return
        extra = np.broadcast_to(added, self.value.shape)
        with np.errstate(invalid="ignore"):
            for part in self._pieces():
                own = self.error[part]
                error = np.square(own, dtype=np.float64)
                error += extra[part]
                np.sqrt(error, out=own, casting="same_kind")  # rounded once, as astype would
                if column is not None:
                    column[part] += extra[part].astype(column.dtype)

    def add_variance_at(self, flat: np.ndarray, added: np.ndarray, component: str) -> None:
        """Sparse :meth:`add_variance`: ``added`` (data units^2) at flat element
        indices, repeated indices summed in order; elements whose sum is not
        positive are left alone. For the few elements a hit or a defect
        touches, no full-size array is made."""
        flat = np.asarray(flat, dtype=np.int64)
        if len(flat) == 0:
            return
        where, inverse = np.unique(flat, return_inverse=True)
        total = np.bincount(inverse.reshape(-1), weights=np.asarray(added, dtype=np.float64), minlength=len(where))
        positive = total > 0
        where, total = where[positive], total[positive]
        error = self.error.reshape(-1)
        with np.errstate(invalid="ignore"):
            error[where] = np.sqrt(error[where].astype(np.float64) ** 2 + total).astype(error.dtype)
        column = self.var_rnoise if component == "rnoise" else self.var_poisson
        if column is not None:
            column.reshape(-1)[where] += total.astype(column.dtype)

    def _pieces(self, elements: int = 1 << 16) -> list[slice]:
        """Slices of ~``elements`` elements over the packets (whole packets)."""
        step = max(1, elements // max(self.elements, 1))
        return [slice(i, i + step) for i in range(0, self.n, step)]

    def scale_variance(self, factor: np.ndarray) -> None:
        """Multiply error by ``factor`` and the variance columns by factor^2 (a gain change)."""
        self.error *= factor.astype(self.error.dtype)
        for column in (self.var_poisson, self.var_rnoise):
            if column is not None:
                column *= (factor**2).astype(column.dtype)

    def flag(self, where: np.ndarray, flags: int) -> None:
        """OR JWST DQ ``flags`` into the in-band DQ where touched (a mask or flat indices)."""
        if self.dq is None:
            return
        if isinstance(where, np.ndarray) and where.dtype == bool:
            self.dq[where] |= np.asarray(flags, dtype=self.dq.dtype)
        else:
            np.bitwise_or.at(
                self.dq.reshape(-1), np.asarray(where, dtype=np.int64), np.asarray(flags, dtype=self.dq.dtype)
            )

    def blank(self, where: np.ndarray, flags: int) -> None:
        """Make elements unusable: value and error NaN (variances NaN), DQ ``flags``."""
        for array in (self.value, self.error, self.var_poisson, self.var_rnoise):
            if array is not None:
                if isinstance(where, np.ndarray) and where.dtype == bool:
                    array[where] = np.nan
                else:
                    array.reshape(-1)[where] = np.nan
        self.flag(where, flags)


def _stack(array: np.ndarray) -> np.ndarray:
    """A (n, m) plane as an (n, m, 1) view, an (n, ny, nx) one as it is: the
    compiled kernels take stacks of tiles."""
    return array[..., None] if array.ndim == 2 else array


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


def _ratio(numerator: np.ndarray, value: np.ndarray, error: np.ndarray) -> np.ndarray:
    """numerator / value where value is bright (S/N > MIN_SNR) and the ratio positive; NaN elsewhere."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ok = value > MIN_SNR * np.abs(error)
        ok &= np.isfinite(value)  # one test at a time, in place
        ok &= numerator > 0
        ok &= np.isfinite(numerator)
        ratio = np.divide(numerator, value, dtype=np.float64)
        ratio[~ok] = np.nan
        return ratio


SCALE_SAMPLES = 1 << 16  # sub-grid samples of a 2-D spectrum handled together: the temporaries stay in cache


def _tile_scale(batch: Batch) -> tuple[np.ndarray, str]:
    """Data per electron of each tile (n, 1, 1), per line of constant
    wavelength for 2-D spectra: per column (n, 1, nx) when dispersed along x,
    per row (n, ny, 1) when dispersed along y. Ratios are taken on a regular sub-grid of ~4096 pixels (every
    step-th row and column): a median needs no more, and a full-tile pass
    would cost as much as the noise field itself. Each tile's median is its
    own; which source is used (and the fill of tiles without one) is decided
    on the batch, as the module docstring says."""
    n, ny, nx = batch.value.shape
    step = 1 if batch.spectral_2d else max(1, int(np.sqrt(ny * nx / 4096)))
    grid = np.s_[:, ::step, ::step]
    candidates = ["poisson"] if batch.var_poisson is not None else []
    header = batch.exposure.data_per_electron()
    if header is not None:
        candidates.append("header")
    candidates.append("err")
    for name in candidates:
        if name == "header":
            return np.full((n, 1, 1), header), name
        tile, column = _scale_medians(batch, name, grid)
        if not np.isfinite(tile).any():
            continue
        if not np.isfinite(tile).all():  # tiles without a bright sample: the batch's median
            tile = np.where(np.isfinite(tile), tile, np.nanmedian(tile))
        if batch.spectral_2d:
            column = cast(np.ndarray, column)  # _scale_medians gives the wavelength lines of a 2-D spectrum
            column = np.where(np.isfinite(column), column, tile[:, None])
            return (column[:, :, None] if batch.dispersion_axis == 2 else column[:, None, :]), name
        return tile[:, None, None], name
    # last resort: ERR of a background pixel = 16 e-
    value, error = batch.value[grid], batch.error[grid]
    sub = error.reshape(n, -1).astype(np.float64)
    scale = _lower_median(np.where((sub > 0) & np.isfinite(sub), sub, np.nan))
    missing = ~(scale > 0)
    if missing.any():
        scale[missing] = _robust_sigma(value[missing].reshape(int(missing.sum()), -1).astype(np.float64))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return (scale / ERR_ELECTRONS)[:, None, None], "err16"


def _scale_medians(batch: Batch, name: str, grid: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    """Per tile, the lower median of the ``name`` ratio ("poisson": VAR_POISSON
    / F, "err": ERR^2 / F) over the sub-grid ``grid`` - and per line of
    constant wavelength (columns; rows when dispersed along y), its
    NaN-median, for 2-D spectra. Tiles are taken a few at a time (about
    SCALE_SAMPLES samples): a tile's figure never depends on the others, and
    the temporaries stay small and in cache."""
    n = batch.n
    if not batch.spectral_2d:  # one pass per tile, compiled: the same numbers as _ratio and _lower_median
        # "poisson" is asked for only where the batch carries VAR_POISSON (_tile_scale)
        numerator = cast(np.ndarray, batch.var_poisson) if name == "poisson" else batch.error
        sample = grid[1].step or 1
        medians = bright_medians(batch.value, batch.error, numerator, name == "err", sample, np.float32(MIN_SNR))
        return medians, None
    samples = max(1, batch.value[:1][grid].size)
    step = max(1, SCALE_SAMPLES // samples)
    tile = np.empty(n)
    along_y = batch.dispersion_axis == 2  # a line of constant wavelength is a row, else a column
    column = np.empty((n, batch.value[:1][grid].shape[1 if along_y else 2])) if batch.spectral_2d else None
    for first in range(0, n, step):
        part = slice(first, first + step)
        # contiguous copies of the sub-grid first: every later pass reads them at full speed
        value, error = np.ascontiguousarray(batch.value[part][grid]), np.ascontiguousarray(batch.error[part][grid])
        numerator = batch.var_poisson[part][grid] if name == "poisson" else np.square(error, dtype=np.float64)  # type: ignore[index]  # "poisson" only where the batch has VAR_POISSON (_tile_scale)
        ratio = _ratio(numerator, value, error)
        tile[part] = _lower_median(ratio.reshape(len(ratio), -1))
        if column is not None:
            with warnings.catch_warnings():  # all-NaN columns are expected (NaN padding)
                warnings.simplefilter("ignore", RuntimeWarning)
                column[part] = np.nanmedian(ratio, axis=2 if along_y else 1)
    return tile, column


def _fill_along(ratio: np.ndarray) -> np.ndarray:
    """Fill the NaN of each row by linear interpolation over its finite entries
    (constant beyond the ends); rows with none stay NaN."""
    out = ratio.copy()
    x = np.arange(ratio.shape[1])
    for i in np.flatnonzero(~np.isfinite(ratio).all(axis=1)):
        good = np.isfinite(ratio[i])
        if good.any():
            out[i] = np.interp(x, x[good], ratio[i, good])
    return out


def _element_scale(batch: Batch) -> tuple[np.ndarray, str]:
    """(n, m) data per electron of each channel (see the module docstring)."""
    for name, numerator in (("poisson", batch.var_poisson), ("err", batch.error.astype(np.float64) ** 2)):
        if numerator is None or not np.isfinite(numerator).any():
            continue
        ratio = _ratio(numerator, batch.value, batch.error)
        if name == "poisson":  # VAR_POISSON needs no S/N cut: it is the pipeline's own shot noise
            with np.errstate(invalid="ignore", divide="ignore"):
                ok = np.isfinite(numerator) & (numerator > 0) & np.isfinite(batch.value) & (batch.value > 0)
                ratio = np.where(ok, numerator / np.where(ok, batch.value, 1.0), np.nan)
        if not np.isfinite(ratio).any():
            continue
        filled = _fill_along(ratio)
        if not np.isfinite(filled).all():  # packets with no usable channel: the batch median
            filled = np.where(np.isfinite(filled), filled, np.nanmedian(ratio))
        return filled, name
    usable = np.isfinite(batch.error) & (batch.error > 0)
    fallback = _lower_median(np.where(usable, batch.error, np.nan))
    missing = ~(fallback > 0)
    if missing.any():
        fallback[missing] = _robust_sigma(batch.value[missing])
    fallback = np.where(np.isfinite(fallback) & (fallback > 0), fallback, 1.0)
    return np.where(usable, batch.error, fallback[:, None]) / ERR_ELECTRONS, "err16"


def _read_noise(batch: Batch) -> np.ndarray:
    """Read noise of each element over one integration, e- (module docstring)."""
    if batch.family == "images":  # one pixel behind each element: the detector's figure, no full-size array
        model = np.full((1,) * batch.value.ndim, batch.exposure.read_noise_e())
    else:
        model = batch.exposure.read_noise_e() * np.sqrt(np.maximum(batch.aperture(), 1.0))
    if batch.var_rnoise is None:
        return model
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.sqrt(batch.var_rnoise.astype(np.float64)) / batch.per_electron
    own = np.where(np.isfinite(own) & (own > 0), own, model)
    return own


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
    expected: tuple | None = None  # per packet: (mean, variance) of elements expected touched[, rare events]

    @classmethod
    def nothing(cls, batch: Batch) -> Effect:
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
    expected: dict = field(default_factory=dict)  # kind -> (means, variances) per packet, from the kinds

    def expect(self, kind: str, expected: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Keep a batch's per-packet expected touched elements (mean, variance) for a kind."""
        if expected is not None:
            means, variances = self.expected.setdefault(kind, ([], []))
            means.extend(np.broadcast_to(expected[0], (len(np.atleast_1d(expected[0])),)).tolist())
            variances.extend(np.atleast_1d(expected[1]).tolist())
            if len(expected) > 2:  # a kind's rare events (count per packet): kept apart for a Poisson bound
                events, _ = self.expected.setdefault(kind + ":events", ([], []))
                events.extend(np.atleast_1d(expected[2]).tolist())

    def expected_total(self, kind: str) -> tuple[float, float]:
        """(mean, variance) of the elements a kind was expected to touch: exactly
        rounded sums (math.fsum), so the figure is the same whatever the chunking."""
        means, variances = self.expected.get(kind, ([], []))
        return math.fsum(means), math.fsum(variances)

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
