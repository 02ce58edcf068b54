"""Reference models shipped as baselines: small, numpy and astropy only, each documented in its module.

* :class:`SigmaClipFlagger` (``flags``): outliers against each channel's recent
  history (spectra) or the 3 x 3 neighbourhood (image tiles);
* :class:`MedianFilterReconstructor` (``cleaned``): those outliers and missing
  values replaced by the median estimate;
* :class:`StreamHealthDetector` (``health``): gaps, duplicates and late packets
  from the packet numbers;
* :class:`WhiteLightTransitFitter` (``events``): a white-light curve, an early
  dip trigger and a box fit.

Each is named by reference like any model, e.g.
``hwosim_assets.evaluate.baselines:SigmaClipFlagger``; the robustness figures
of every model are relative to these (ImageNet-C's baseline-normalised
corruption error).
"""

from hwosim_assets.evaluate.baselines.median_filter import MedianFilterReconstructor
from hwosim_assets.evaluate.baselines.sigma_clip import SigmaClipFlagger
from hwosim_assets.evaluate.baselines.stream_health import StreamHealthDetector
from hwosim_assets.evaluate.baselines.transit import WhiteLightTransitFitter

__all__ = ["MedianFilterReconstructor", "SigmaClipFlagger", "StreamHealthDetector", "WhiteLightTransitFitter"]
