"""Baseline reconstructor: outliers replaced by a median-filter estimate, everything else kept.

It finds outliers exactly as :class:`SigmaClipFlagger` does and replaces
them, and missing values, with the reference the flagger compared them to:
for spectra the channel's median over the previous integrations times the
packet's common-mode ratio, for image tiles the 3 x 3 median of the
neighbourhood. Every other value is returned as it came: a reconstructor
that smoothed everything would trade the outliers' error for a smoothing
error on every value, and on clean data (level 0) this one returns the data
unchanged, so its error there is zero.
"""

from __future__ import annotations

import numpy as np

from hwosim_assets.evaluate.baselines.sigma_clip import SigmaClipFlagger
from hwosim_assets.stream.packets import Packet


class MedianFilterReconstructor:
    """Returns ``cleaned``: the values with outliers and gaps replaced by a robust local median."""

    families = ("spectra", "images")

    def __init__(self, threshold: float = 6.0, history: int = 9, min_history: int = 3, contrast: float = 2.0):
        self.finder = SigmaClipFlagger(threshold, history, min_history, contrast)

    def predict_one(self, packet: Packet) -> dict:
        flags, reference = self.finder.outliers(packet)
        replace = (flags | ~np.isfinite(packet.values)) & np.isfinite(reference)
        return {"cleaned": np.where(replace, reference, packet.values)}

    def learn_one(self, packet: Packet) -> None:
        self.finder.learn_one(packet)
