"""The scoring functions agree with scikit-learn's definitions (its documented examples) and NAB's."""

import math

import numpy as np
import pytest

from hwosim_assets.evaluate import metrics as m


def test_precision_recall_f1_as_scikit_learn_defines_them():
    # sklearn.metrics.precision_recall_fscore_support docs, binary case of y_true [0,1,1,0,1], y_pred [0,1,0,0,1]
    c = m.counts(np.array([0, 1, 1, 0, 1], bool), np.array([0, 1, 0, 0, 1], bool))
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 0, 1, 2)
    assert c.precision == 1.0 and c.recall == pytest.approx(2 / 3) and c.f1 == pytest.approx(0.8)
    assert c.error == pytest.approx(1 / 5)  # 1 - accuracy
    nothing = m.counts(np.zeros(4, bool), np.zeros(4, bool))
    assert (
        math.isnan(nothing.precision) and math.isnan(nothing.recall) and math.isnan(nothing.f1) and nothing.error == 0.0
    )


def test_average_precision_matches_scikit_learns_documented_example():
    # sklearn.metrics.average_precision_score docstring: 0.83...
    assert m.average_precision(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(
        0.8333333
    )
    # ties share a threshold; NaN scores rank last; no positive -> undefined
    assert m.average_precision(np.array([1, 0, 1, 0], bool), np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert m.average_precision(np.array([0, 1], bool), np.array([np.nan, 1.0])) == 1.0
    assert math.isnan(m.average_precision(np.zeros(3, bool), np.ones(3)))


def test_errors_in_err_units_over_what_can_be_compared():
    clean = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    err = np.array([0.5, 0.5, 0.5, 0.0, 1.0])  # a zero ERR cannot scale anything
    out = m.error_in_err(np.array([1.5, 2.0, 7.0, 9.0, np.nan]), clean, err)
    assert out["mae_err"] == pytest.approx(0.5) and out["coverage"] == pytest.approx(2 / 3)
    assert out["rmse_err"] == pytest.approx(math.sqrt(0.5))


def test_nab_scores_early_detection_and_charges_misses_and_false_alarms():
    assert m.nab_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5) and m.nab_sigmoid(0.0) == 0.0
    window = [m.Window(10.0, 20.0, 15.0, None)]
    assert m.nab(window, [10.0], 0) == pytest.approx(100.0)
    early, late = m.nab(window, [12.0], 0), m.nab(window, [19.0], 0)
    assert 100 > early > late > 50  # earlier in the window scores more
    assert m.nab(window, [math.nan], 0) == 0.0  # reporting nothing is the null detector
    assert m.nab(window, [12.0], 2) < early  # false alarms cost
    assert math.isnan(m.nab([], [], 3))  # nothing to find: undefined


def test_set_counts_for_health_answers():
    c = m.set_counts({(0, 1), (0, 5)}, {(0, 5), (0, 9)}, universe=100)
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 1, 97) and c.error == pytest.approx(0.02)
