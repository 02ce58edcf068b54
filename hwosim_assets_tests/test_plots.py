"""The figures the perturbed assets store: drawn without warnings whatever
the level puts in a tile (a demo once printed matplotlib's overflow warning
at level 5, where bit flips leave values near float32's limit)."""

import warnings

import numpy as np

from hwosim_assets import plots


def tile(values: np.ndarray) -> dict:
    return {"ny": values.shape[0], "nx": values.shape[1], "sci": values.astype(np.float32).tobytes()}


def test_a_tile_with_extreme_values_draws_without_warnings():
    after = np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32)
    after[3, 3], after[5, 5], after[7, 7] = 3.0e38, -3.0e38, np.nan  # bit flips and a dropout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plots.tile_with_truth(tile(np.full((64, 64), 100.0)), tile(after), np.ones(64 * 64, "<u4"), "level 5")
    assert png.startswith(b"\x89PNG")
