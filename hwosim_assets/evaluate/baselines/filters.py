"""The few robust statistics the baselines share, in numpy (no scipy: not a dependency)."""

from __future__ import annotations

import warnings
from collections import deque
from typing import overload

import numpy as np

MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution per median absolute deviation


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of the finite values (NaN if none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(finite - np.median(finite))))


@overload
def nanmedian(stack: np.ndarray, axis: None) -> np.floating: ...
@overload
def nanmedian(stack: np.ndarray, axis: int) -> np.ndarray: ...
def nanmedian(stack: np.ndarray, axis: int | None) -> np.ndarray | np.floating:
    """The median ignoring NaN, NaN for an all-NaN slice (without numpy's warning).

    Along an axis it sorts (NaN sorts last) and picks the middle of the finite values:
    np.nanmedian goes through masked arrays for short axes, ~10x slower on the
    (history x channels) stacks the baselines take a median of at every packet."""
    stack = np.asarray(stack, dtype=np.float64)
    if axis is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(stack)
    ordered = np.sort(stack, axis=axis)
    count = np.expand_dims(np.sum(~np.isnan(stack), axis=axis), axis)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis=axis)
    high = np.take_along_axis(ordered, count // 2 - (count == 0), axis=axis)
    # halves first: a flipped exponent bit of a float64 value (~1e308) would overflow the sum
    return np.squeeze(np.where(count > 0, low / 2 + high / 2, np.nan), axis=axis)


def median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """Median of each ``size`` x ``size`` neighbourhood (NaN ignored, edges reflected)."""
    half = size // 2
    padded = np.pad(np.asarray(image, dtype=np.float64), half, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return nanmedian(windows.reshape(*image.shape, size * size), axis=-1)


def neighbours(image: np.ndarray) -> np.ndarray:
    """The 8 neighbours of each pixel, stacked: (8, ny, nx), NaN beyond the edges."""
    padded = np.pad(np.asarray(image, dtype=np.float64), 1, constant_values=np.nan)
    ny, nx = image.shape
    shifts = [(dy, dx) for dy in (0, 1, 2) for dx in (0, 1, 2) if (dy, dx) != (1, 1)]
    return np.stack([padded[dy : dy + ny, dx : dx + nx] for dy, dx in shifts])


class History:
    """The last ``length`` packets' values of a spectrum, per channel: the running reference a
    causal model compares each new packet with. Starts afresh when the channel count changes."""

    def __init__(self, length: int):
        self.values: deque[np.ndarray] = deque(maxlen=length)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, values: np.ndarray) -> None:
        if self.values and self.values[-1].shape != values.shape:
            self.values.clear()
        self.values.append(np.asarray(values, dtype=np.float64))

    def median(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """Per-channel median of the history, or None without history of this shape."""
        if not self.values or self.values[-1].shape != shape:
            return None
        return nanmedian(np.stack(self.values), axis=0)
