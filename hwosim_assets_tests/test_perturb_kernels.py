"""The compiled kernels (perturb/kernels.py) against plain numpy references:
each must give the numbers the numpy code it replaced gave."""

from __future__ import annotations

import numpy as np
import pytest

from hwosim_assets.perturb import kernels
from hwosim_assets.perturb.batch import MIN_SNR, _lower_median, _ratio
from hwosim_assets.perturb.kinds.drift import _shift_in_place
from hwosim_assets.perturb.rng import Stream, normal_constants, normal_table


def _numpy_field(stream: Stream, count: int) -> np.ndarray:
    """Fields from numpy's own SFC64 raw stream and the table (tails aside)."""
    table = normal_table()
    out = np.empty((len(stream), count), np.float32)
    for row, state in enumerate(stream.words(4)):
        generator = np.random.SFC64(0)
        generator.state = {"bit_generator": "SFC64", "state": {"state": state}, "has_uint32": 0, "uinteger": 0}
        words = generator.random_raw(-(-count // 4))
        out[row] = table[words.view(np.uint16)[:count]]
    return out


@pytest.mark.parametrize("count", [16384, 5001, 3])
def test_normal_fields_are_numpys_sfc64_stream_through_the_table(count):
    stream = Stream(20261207, np.array([0, 5, 9, 1 << 40]))
    drawn = stream.normal_f32(count)
    reference = _numpy_field(stream, count)
    _, marker, tail_start = normal_constants()
    body = np.abs(reference) < marker  # the tail markers are redrawn exactly, beyond the tail's start
    assert np.array_equal(drawn[body], reference[body])
    assert (np.abs(drawn[~body]) > tail_start).all()
    assert np.array_equal(np.sign(drawn[~body]), np.sign(reference[~body]))


def test_a_field_drawn_in_pieces_is_the_field_drawn_whole():
    stream = Stream(7, np.array([3]))
    whole = stream.normal_f32(100_003)
    pieces = np.concatenate([v.copy() for _, _, _, v in stream.normal_fields(100_003, block=4000)], axis=1)
    assert np.array_equal(whole, pieces)


def _nasty_tiles(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    value = rng.normal(1000, 300, (40, 37, 53)).astype(np.float32)
    error = rng.uniform(5, 60, value.shape).astype(np.float32)
    value[rng.random(value.shape) < 0.2] = np.nan
    value[rng.random(value.shape) < 0.05] = -5
    value[rng.random(value.shape) < 0.01] = np.inf
    error[rng.random(value.shape) < 0.05] = 0
    error[rng.random(value.shape) < 0.02] = np.inf
    error[rng.random(value.shape) < 0.02] = np.nan
    value[:3] = 0  # tiles with no bright sample
    poisson = (error.astype(np.float64) ** 2 * rng.uniform(0.5, 1.5, value.shape)).astype(np.float32)
    poisson[rng.random(value.shape) < 0.1] = np.nan
    poisson[rng.random(value.shape) < 0.05] = 0
    return value, error, poisson


@pytest.mark.parametrize("step", [1, 2, 3])
@pytest.mark.parametrize("source", ["err", "poisson"])
def test_bright_medians_equal_numpys_ratio_and_lower_median(source, step):
    value, error, poisson = _nasty_tiles()
    grid = np.s_[:, ::step, ::step]
    numerator = np.square(error[grid], dtype=np.float64) if source == "err" else poisson[grid]
    ratio = _ratio(numerator, value[grid], error[grid])
    reference = _lower_median(ratio.reshape(len(ratio), -1))
    compiled = kernels.bright_medians(
        value, error, error if source == "err" else poisson, source == "err", step, np.float32(MIN_SNR)
    )
    assert np.isnan(compiled[:3]).all()
    assert np.array_equal(compiled, reference, equal_nan=True)


@pytest.mark.parametrize("n", [1, 2, 600, 4096, 10_000])
def test_bracketed_selection_is_the_kth_smallest(n):
    rng = np.random.default_rng(n)
    for values in (rng.normal(0.1, 1e-3, n), np.round(rng.normal(0, 3, n)), np.sort(rng.random(n))):
        k = (n - 1) // 2
        before = values.copy()
        assert kernels._select_bracketed(values, k, np.empty(n)) == np.partition(before, k)[k]
        assert np.array_equal(values, before)  # not reordered


@pytest.mark.parametrize("shape", [(256,), (256, 1, 1), (256, 1, 64), (256, 64, 1), (256, 64, 64)])
def test_grow_error_is_within_two_ulp_of_float64(shape):
    rng = np.random.default_rng(1)
    error = rng.uniform(1, 100, (256, 64, 64)).astype(np.float32)
    error[5, 3, 4] = np.nan
    error[7, 9, 10] = 3e19  # squares beyond float32: this line in float64
    added = rng.uniform(0.1, 50, shape[:1] + tuple(shape[1:])).reshape(shape if len(shape) == 3 else (256, 1, 1))
    column = rng.uniform(0, 10, error.shape).astype(np.float32)
    expected = np.sqrt(error.astype(np.float64) ** 2 + added).astype(np.float32)
    expected_column = column + np.broadcast_to(added, error.shape).astype(np.float32)
    grown = error.copy()
    kernels.grow_error(grown, added, column)
    assert np.isnan(grown[5, 3, 4])
    assert grown[7, 9, 10] == expected[7, 9, 10]
    finite = np.isfinite(expected)
    ulp = np.spacing(expected[finite])
    assert (np.abs(grown[finite] - expected[finite]) <= 2 * ulp).all()
    assert np.array_equal(column, expected_column)


def _numpy_shift(planes: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Two 2-tap blends with clamped edges, each product rounded to the planes'
    precision (numpy's arithmetic), a zero fraction a plain copy."""
    out = planes.copy()
    for axis, shift in ((1, dy), (2, dx)):
        base = int(np.floor(-shift))
        frac = np.float32(-shift - base)
        size = out.shape[axis]
        near = np.take(out, np.clip(np.arange(size) + base, 0, size - 1), axis=axis)
        if frac == 0:
            out = near
            continue
        far = np.take(out, np.clip(np.arange(size) + base + 1, 0, size - 1), axis=axis)
        out = near * (np.float32(1) - frac) + far * frac
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilinear_shift_equals_numpys_two_blends(dtype):
    rng = np.random.default_rng(0)
    planes = rng.normal(100, 10, (3, 37, 53)).astype(dtype)
    planes[0, 3, 4] = np.nan
    shifts = [(0.3, -0.2), (0, 0), (1, 0), (0, -1), (2.5, -3.25), (40, -60), (-0.0001, 0.9999)]
    for dy, dx in shifts + [tuple(rng.normal(0, 3, 2)) for _ in range(20)]:
        moved = planes.copy()
        _shift_in_place(moved, dy, dx)
        assert np.array_equal(moved, _numpy_shift(planes, dy, dx), equal_nan=True), (dy, dx)


def test_restoring_variance_drops_nan_and_caps_overflow():
    error = np.array([[2.0, np.nan, 3e19, 0.0]], np.float32)
    out = np.empty_like(error)
    kernels.restoring_variance(error, np.array([0.25], np.float32), out)
    assert out[0, 0] == np.float32(4.0) * np.float32(0.25)
    assert out[0, 1] == 0
    assert out[0, 2] == np.finfo(np.float32).max
    assert out[0, 3] == 0
