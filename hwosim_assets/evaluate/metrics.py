"""Scoring functions, in scikit-learn's vocabulary, on numpy arrays (no scikit-learn needed).

Users compare scores with the ones they know, so the definitions are
scikit-learn's: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their
harmonic mean, undefined (NaN, where scikit-learn warns and reports 0) when
the denominator is 0; average precision is ``sum_n (R_n - R_{n-1}) P_n`` over
the distinct score thresholds, as ``sklearn.metrics.average_precision_score``
computes it. scikit-learn itself is not a dependency: these are a few lines
of numpy each, and the tests check them against scikit-learn's documented
examples.

Event scoring follows the Numenta Anomaly Benchmark (Lavin & Ahmad 2015): a
true event owns a window; the first detection inside it scores by how early it
came (a scaled sigmoid, 0.987 at the window's start, 0 at its end); a
detection outside every window is a false alarm; a window without detection
is a miss. The normalised score is 100 for perfect early detection and 0 for
a detector that reports nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NAB_FALSE_ALARM_WEIGHT = 0.11  # NAB's standard profile: A_FP
NAB_MISS_WEIGHT = 1.0  # A_FN


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


@dataclass(frozen=True)
class Counts:
    """Confusion counts of a binary decision."""

    tp: int
    fp: int
    fn: int
    tn: int = 0

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def error(self) -> float:
        """The fraction of decisions that were wrong, (FP + FN) / all (1 - accuracy): ImageNet-C's
        error rate, and unlike 1 - F1 defined at level 0 too and not flattered by a level where
        nearly everything is corrupted (flag everything there and F1 looks good)."""
        total = self.tp + self.fp + self.fn + self.tn
        return (self.fp + self.fn) / total if total else 0.0


def counts(truth: np.ndarray, predicted: np.ndarray) -> Counts:
    """Confusion counts of two boolean arrays of one shape."""
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    tp = int(np.count_nonzero(truth & predicted))
    fp = int(np.count_nonzero(predicted)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return Counts(tp, fp, fn, truth.size - tp - fp - fn)


def set_counts(truth: set, reported: set, universe: int = 0) -> Counts:
    """Confusion counts of two sets of items out of ``universe`` items (true negatives: the rest)."""
    tp = len(truth & reported)
    fp, fn = len(reported) - tp, len(truth) - tp
    return Counts(tp, fp, fn, max(0, universe - tp - fp - fn))


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn's average precision: sum over distinct thresholds of (R_n - R_{n-1}) P_n.

    NaN scores count as the lowest score. NaN when there is no positive."""
    truth = np.asarray(truth, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(truth.sum())
    if positives == 0:
        return math.nan
    scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last index of each distinct score
    tp = np.cumsum(truth)[last]
    predicted = last + 1
    precision = tp / predicted
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


ERROR_CAP_ERR = 1e6  # one value's error counts at most this many ERR: a flipped exponent bit is as wrong as it gets


def error_in_err(estimate: np.ndarray, clean: np.ndarray, err: np.ndarray) -> dict[str, float]:
    """|estimate - clean| / err over the elements where all three are finite (and err > 0):
    mean (MAE), root mean square, 99th percentile, and the fraction of the elements with a
    usable clean value that the estimate covered (finite). Each value's error is capped at
    :data:`ERROR_CAP_ERR`, so that one value of 1e300 does not make the mean infinite."""
    usable = np.isfinite(clean) & np.isfinite(err) & (err > 0)
    covered = usable & np.isfinite(estimate)
    n = int(usable.sum())
    if not covered.any():
        return {"mae_err": math.nan, "rmse_err": math.nan, "p99_abs_err": math.nan, "coverage": 0.0 if n else math.nan}
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.minimum(np.abs(estimate[covered] - clean[covered]) / err[covered], ERROR_CAP_ERR)
        return {
            "mae_err": float(np.mean(z)),
            "rmse_err": float(np.sqrt(np.mean(np.square(z)))),
            "p99_abs_err": float(np.percentile(z, 99)),
            "coverage": float(covered.sum() / n),
        }


def nab_sigmoid(relative_position: float) -> float:
    """NAB's scaled sigmoid of a detection's position in its window: -1 at the start, 0 at the end."""
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


@dataclass(frozen=True)
class Window:
    """A true event's window [start, end] (MJD) and the event."""

    start: float
    end: float
    time: float
    depth: float | None


def nab(windows: list[Window], detections: list[float], false_alarms: int) -> float:
    """NAB's normalised score (standard profile) of first-detection times against the windows.

    ``detections[i]`` is the time of the first detection in window i (NaN: missed). NaN when
    there is no true event (the score is only defined against something to find)."""
    if not windows:
        return math.nan
    raw = -NAB_FALSE_ALARM_WEIGHT * false_alarms
    for window, detected in zip(windows, detections, strict=False):
        if math.isnan(detected):
            raw -= NAB_MISS_WEIGHT
            continue
        length = window.end - window.start
        position = (detected - window.end) / length if length > 0 else 0.0
        raw += nab_sigmoid(max(-1.0, min(0.0, position)))
    perfect = len(windows) * nab_sigmoid(-1.0)
    null = -NAB_MISS_WEIGHT * len(windows)
    return 100.0 * (raw - null) / (perfect - null)


def percentiles(values: npt.ArrayLike, qs: Sequence[float] = (50, 99)) -> list[float]:
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return [float(np.percentile(finite, q)) if len(finite) else math.nan for q in qs]
