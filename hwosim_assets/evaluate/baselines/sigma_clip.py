"""Baseline outlier flagger: sigma clipping against a robust local reference.

Spectra (one packet = one integration): each channel is compared with its
own median over the previous ``history`` integrations, each brought to a
common level first (the median over channels of its ratio to the others), and
scaled by the packet's common-mode ratio (the median over channels of value /
reference), so that a transit, a gain drift or a first integration that
settles low, moving every channel together, is not an outlier. The residual
is taken in units of its noise - the packet's ERR and the reference's own (a
median of n values: sqrt(pi / 2n) of the ERR), in quadrature, or the
channel's scatter over the history if larger - and clipped at ``threshold``
times its robust scatter (1.4826 x MAD over the channels, never below 1):
extra noise that ERR does not know of raises the bar rather than flagging
everything. Only what is new is flagged: a value within ``threshold`` noise
sigmas of the range of the channel's recent unflagged values is not (a
channel low in most of its history has a median at its dip, against which
its next normal value would look like an outlier: on the real MIRI LRS
x1dints, two false alarms at level 0 before this rule). Causal: no flags
until ``min_history`` integrations have been seen.

Image tiles: each pixel is compared with the median of its 3 x 3
neighbourhood, in units of ERR, clipped the same way, and, as in
L.A.Cosmic (van Dokkum 2001, PASP 113, 1420), only when it is also sharper
than the neighbourhood itself: the residual must exceed ``contrast`` times
the fine structure (3 x 3 median minus the 7 x 7 median of that), so that
a star's core is not taken for a cosmic ray.

A value that is missing (NaN) where the reference has one is flagged too.
Values the data-quality array already marks as unusable (DO_NOT_USE, and the
pixel defects a calibrated product carries in DQ) are left alone: the
pipeline has flagged them; a model that reports them again adds nothing.
"""

from __future__ import annotations

import numpy as np

from hwosim_assets.evaluate.baselines.filters import (
    MAD_TO_SIGMA,
    History,
    median_filter,
    nanmedian,
    neighbours,
    robust_sigma,
)
from hwosim_assets.stream.packets import Packet

# JWST DQ bits (stdatamodels dqflags): DO_NOT_USE, SATURATED, DEAD, HOT, WARM, NON_SCIENCE, REFERENCE_PIXEL
KNOWN_BAD_DQ = np.uint32(1 | 2 | 1024 | 2048 | 4096 | 512 | 2**31)


class SigmaClipFlagger:
    """Flags values more than ``threshold`` robust sigmas (in ERR) from a local robust reference."""

    families = ("spectra", "images")

    def __init__(self, threshold: float = 6.0, history: int = 9, min_history: int = 3, contrast: float = 2.0):
        self.threshold, self.min_history, self.contrast = threshold, min_history, contrast
        self.history = History(history)
        self.seen = History(history)  # the same packets, with the values this model flagged left out
        self._flags: np.ndarray | None = None  # the last spectrum's flags, for learn_one

    def outliers(self, packet: Packet) -> tuple[np.ndarray, np.ndarray]:
        """(flags, reference) of one packet: the reference is what the value should have been."""
        values = np.asarray(packet.values, dtype=np.float64)
        if packet.family == "spectra":
            return self._spectrum(values, np.asarray(packet.errors, dtype=np.float64), packet.dq)
        return self._tile(values, np.asarray(packet.errors, dtype=np.float64), packet.dq)

    def _clip(self, residual: np.ndarray, usable: np.ndarray) -> np.ndarray:
        finite = usable & np.isfinite(residual)
        centre = np.median(residual[finite]) if finite.any() else 0.0
        spread = robust_sigma(residual[finite] - centre)
        scale = max(1.0, spread) if np.isfinite(spread) else 1.0
        return usable & (np.abs(residual - centre) > self.threshold * scale)

    def _spectrum(self, values: np.ndarray, errors: np.ndarray, dq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self.history) < self.min_history or self.history.values[-1].shape != values.shape:
            return np.zeros(values.shape, dtype=bool), np.full(values.shape, np.nan)
        past = np.stack(self.history.values)
        good = (np.asarray(dq, dtype=np.uint32) & KNOWN_BAD_DQ) == 0
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # each past packet brought to a common level (a transit, a drift, a first integration
            # that settles), the reference taken at that level, then each channel's scatter over time
            levels = nanmedian(past / nanmedian(past, axis=0), axis=1)[:, None]
            levels = np.where(np.isfinite(levels) & (levels > 0), levels, 1.0)
            reference = nanmedian(past / levels, axis=0)
            spread = MAD_TO_SIGMA * nanmedian(np.abs(past / levels - reference), axis=0)
            # the residual's noise: the value's ERR and the reference's own, a median of n values
            # with that ERR (sqrt(pi / 2n) of it), in quadrature
            n = np.maximum(np.sum(np.isfinite(past), axis=0), 1)
            scale = np.fmax(errors * np.sqrt(1.0 + np.pi / (2.0 * n)), spread)
            ratio = nanmedian(np.where(good, values / reference, np.nan), axis=None)
            expected = reference * (ratio if np.isfinite(ratio) else 1.0)
            residual = (values - expected) / scale
            # what the channel has done before (its unflagged values, at this packet's level): a value
            # within ``threshold`` noise sigmas of that range is nothing new, however far from the
            # reference - when most of a channel's history is its own dips, the median is a dip and a
            # normal value would look like an outlier
            seen = np.stack(self.seen.values) / levels * (ratio if np.isfinite(ratio) else 1.0)
            enough = np.sum(np.isfinite(seen), axis=0) >= self.min_history
            margin = self.threshold * scale
            within = enough & (values >= np.nanmin(np.where(enough, seen, 0.0), axis=0) - margin)
            within &= values <= np.nanmax(np.where(enough, seen, 0.0), axis=0) + margin
        usable = good & ~np.isnan(residual)  # an infinite residual (a flipped exponent bit) is an outlier too
        went_missing = good & np.isnan(values) & np.isfinite(expected)
        flags = (self._clip(residual, usable) & ~within) | went_missing
        self._flags = flags
        return flags, expected

    def _tile(self, values: np.ndarray, errors: np.ndarray, dq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        good = (np.asarray(dq, dtype=np.uint32) & KNOWN_BAD_DQ) == 0
        around = neighbours(np.where(good, values, np.nan))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            high, low = np.nanmax(around, axis=0), np.nanmin(around, axis=0)
            local = nanmedian(around, axis=0)
            background = median_filter(np.where(good, values, np.nan), 7)
            above = (values - high) / errors  # a lone bright pixel stands above all its neighbours
            below = (low - values) / errors  # a lone dark one below them all
            # ...and by more than its neighbours stand above (or below) the background: a star's core
            # has neighbours nearly as bright; a hit on the sky has none
            lone_high = (values - high) > self.contrast * np.abs(high - background)
            lone_low = (low - values) > self.contrast * np.abs(background - low)
        usable = good & ~np.isnan(above) & ~np.isnan(below)
        spread = robust_sigma(((values - local) / errors)[usable])
        bar = self.threshold * (max(1.0, spread) if np.isfinite(spread) else 1.0)
        flags = usable & (((above > bar) & lone_high) | ((below > bar) & lone_low))
        went_missing = good & np.isnan(values) & np.isfinite(local)
        return flags | went_missing, local

    def predict_one(self, packet: Packet) -> dict:
        flags, _ = self.outliers(packet)
        return {"flags": flags}

    def learn_one(self, packet: Packet) -> None:
        if packet.family == "spectra":
            values = np.asarray(packet.values, dtype=np.float64)
            self.history.add(values)
            flagged = self._flags if self._flags is not None and self._flags.shape == values.shape else False
            self.seen.add(np.where(flagged, np.nan, values))
            self._flags = None
