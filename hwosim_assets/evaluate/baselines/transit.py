"""Baseline transit fitter: a white-light curve, a dip trigger, and a box fit (astropy's BLS).

Each integration's spectrum becomes one white-light point: the flux summed
over the channels that are finite and within ``clip`` ERR of a reference
spectrum (the per-channel median of the first ``reference_packets``
integrations, scaled), divided by the reference summed over the same
channels - so a missing channel or a cosmic ray does not fake a dip.

Online detection, as a live consumer must: the baseline is the median of the
points before any dip and its noise their robust scatter. When ``confirm``
points in a row fall more than ``trigger`` sigmas below the baseline, the
fitter reports a transit at once (the time of the first low point, the dip
so far as depth): NAB rewards that early report. When ``confirm`` points in
a row are back within ``recover`` sigmas, it fits a box to the whole light
curve with astropy's BoxLeastSquares (one transit: a period longer than the
data) and updates the same event with the fitted mid-time, depth (as a
fraction of the baseline) and duration. At the end of the stream a transit
still in progress is fitted with what there is.

A box is not a limb-darkened transit: its depth is the mean in-transit
depth, shallower than the depth at mid-transit (about 10 % for the sample's
limb darkening), which shows as this model's own depth bias at level 0.
"""

from __future__ import annotations

import numpy as np

from hwosim_assets.evaluate.baselines.filters import nanmedian, robust_sigma
from hwosim_assets.stream.packets import Packet


class WhiteLightTransitFitter:
    """Reports ``events``: transits with mid-time (MJD), depth (fraction) and duration (days)."""

    families = ("spectra",)

    def __init__(
        self,
        reference_packets: int = 5,
        min_baseline: int = 5,
        trigger: float = 5.0,
        recover: float = 2.0,
        confirm: int = 3,
        clip: float = 10.0,
    ):
        self.reference_packets, self.min_baseline = reference_packets, min_baseline
        self.trigger, self.recover, self.confirm, self.clip = trigger, recover, confirm, clip
        self.first: list[np.ndarray] = []
        self.reference: np.ndarray | None = None
        self.times: list[float] = []
        self.white: list[float] = []
        self.baseline: list[float] = []  # white-light points outside any dip
        self.dip_start: int | None = None  # index of the first low point of the dip in progress
        self.transits = 0

    def _white(self, packet: Packet) -> float:
        values, errors = np.asarray(packet.values, dtype=np.float64), np.asarray(packet.errors, dtype=np.float64)
        if self.reference is None:
            if len(self.first) and self.first[-1].shape != values.shape:
                self.first.clear()
            self.first.append(values)
            reference = nanmedian(np.stack(self.first), axis=0)
            if len(self.first) >= self.reference_packets:
                self.reference = reference
        else:
            reference = self.reference
        if reference.shape != values.shape:
            return np.nan
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ratio = nanmedian(values / reference, axis=None)
            good = (
                np.isfinite(values) & np.isfinite(reference) & (np.abs(values - ratio * reference) < self.clip * errors)
            )
        total = reference[good].sum()
        return float(values[good].sum() / total) if good.any() and total > 0 else np.nan

    def predict_one(self, packet: Packet) -> dict:
        point = self._white(packet)
        self.times.append(packet.event_time)
        self.white.append(point)
        if not np.isfinite(point) or len(self.baseline) < self.min_baseline:
            if np.isfinite(point) and self.dip_start is None:
                self.baseline.append(point)
            return {"events": []}
        level = float(np.median(self.baseline))
        sigma = robust_sigma(np.diff(self.baseline)) / np.sqrt(2) or 1e-12  # point-to-point: drifts do not inflate it
        recent = np.asarray(self.white[-self.confirm :])
        if self.dip_start is None:
            if len(recent) == self.confirm and np.all(recent < level - self.trigger * sigma):
                self.dip_start = len(self.white) - self.confirm
                self.transits += 1
                return {
                    "events": [self._event(self.times[self.dip_start], level - float(np.median(recent)), level, None)]
                }
            self.baseline.append(point)
            return {"events": []}
        if len(recent) == self.confirm and np.all(recent > level - self.recover * sigma):
            event = self._fit(level, self.dip_start)
            self.dip_start = None
            self.baseline.extend(recent.tolist())
            return {"events": [event]}
        return {"events": []}

    def _event(self, time: float, depth: float, level: float, duration: float | None) -> dict:
        return {
            "kind": "transit",
            "time": float(time),
            "depth": float(depth / level),
            "duration": duration,
            "id": f"transit-{self.transits}",
        }

    def _fit(self, level: float, dip_start: int) -> dict:
        """Box fit over the whole light curve: mid-time, depth and duration of this dip."""
        from astropy.timeseries import BoxLeastSquares  # astropy: imported when a transit is fitted

        t, y = np.asarray(self.times), np.asarray(self.white)
        ok = np.isfinite(y)
        t, y = t[ok], y[ok]
        start = self.times[dip_start]
        low = t >= start
        span = t[-1] - t[0]
        longest = max(t[-1] - start, np.median(np.diff(t)) * 2)
        durations = np.linspace(max(np.median(np.diff(t)), longest * 0.2), longest, 40)
        fit = BoxLeastSquares(t, y).power(
            [max(3 * span, 2 * durations[-1])], durations, objective="likelihood", oversample=20
        )
        mid, depth, duration = float(fit.transit_time[0]), float(fit.depth[0]), float(fit.duration[0])
        if not (np.isfinite(mid) and np.isfinite(depth)) or not low.any():
            mid, depth, duration = start, level - float(np.median(y[low])), longest
        return self._event(mid, depth, level, duration)

    def finish(self) -> dict:
        if self.dip_start is None or len(self.baseline) < self.min_baseline:
            return {"events": []}
        return {"events": [self._fit(float(np.median(self.baseline)), self.dip_start)]}
