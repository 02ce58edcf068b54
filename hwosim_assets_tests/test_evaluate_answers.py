"""The answer key's pre-existing class: a real product's own anomalies, found on the clean data by a
rule that knows no model (``answers.preexisting_mask``), checked on a small constructed time series."""

import numpy as np
import polars as pl

from hwosim_assets.evaluate.answers import PREEXISTING_ERR, preexisting_mask, spectra_answers
from hwosim_assets.perturb.dq import DQ

N_INT, N_CH, ERR = 12, 8, 1.0


def table(flux: np.ndarray, dq: np.ndarray | None = None) -> pl.DataFrame:
    seq, channel = np.divmod(np.arange(flux.size), N_CH)
    return pl.DataFrame(
        {
            "seq": seq,
            "channel": channel,
            "integration": seq + 1,
            "event_time": 60000.0 + seq / 1440,
            "wavelength": 5.0 + channel * 0.1,
            "flux": flux.ravel(),
            "flux_error": np.full(flux.size, ERR),
            "dq": (np.zeros(flux.size, dtype=np.int64) if dq is None else dq.ravel()).astype(np.int32),
        }
    )


def constructed() -> tuple[np.ndarray, np.ndarray]:
    """A spectrum of 1000 ERR per channel, a 1 % transit in integrations 5-7 on every channel, a
    little noise; then an obvious outlier, a value within N ERR, and a DO_NOT_USE value."""
    rng = np.random.default_rng(7)
    level = np.ones(N_INT)
    level[5:8] = 0.99  # the transit: 10 ERR on every channel, common to all, not an anomaly
    flux = 1000.0 * level[:, None] * np.linspace(1.0, 1.5, N_CH)[None, :] + rng.normal(0, 0.3, (N_INT, N_CH))
    dq = np.zeros(flux.shape, dtype=np.int64)
    flux[3, 2] -= 20 * ERR  # a dip of 20 ERR: pre-existing
    flux[9, 4] += 0.6 * PREEXISTING_ERR * ERR  # within N ERR: not
    dq[6, 6] = DQ["DO_NOT_USE"]  # the product says: do not use (its value is ordinary)
    dq[8, 1] = DQ["HOT"]  # HOT alone: a corrected value the pipeline kept
    return flux, dq


def test_the_rule_on_a_constructed_table():
    flux, dq = constructed()
    key = spectra_answers(table(flux, dq), table(flux, dq), table(flux).with_columns(truth=0), "constructed")
    expected = np.zeros(flux.shape, dtype=bool)
    expected[3, 2] = expected[6, 6] = True
    assert np.array_equal(key.preexisting.reshape(N_INT, N_CH), expected)
    # the rule itself, without DQ: only the dip
    alone = preexisting_mask(flux.ravel(), np.full(flux.size, ERR), None, key.starts, key.channel)
    assert np.flatnonzero(alone).tolist() == [3 * N_CH + 2]


def test_a_value_just_beyond_n_err_is_pre_existing_and_just_within_is_not():
    flux, _ = constructed()
    starts = np.arange(0, flux.size + 1, N_CH)
    channel = np.tile(np.arange(N_CH), N_INT)
    for offset, beyond in ((1.3 * PREEXISTING_ERR, True), (0.8 * PREEXISTING_ERR, False)):
        moved = flux.copy()
        moved[10, 5] += offset * ERR
        mask = preexisting_mask(moved.ravel(), np.full(flux.size, ERR), None, starts, channel)
        assert bool(mask.reshape(N_INT, N_CH)[10, 5]) is beyond, offset
        assert mask.sum() == 1 + beyond  # the dip, and this value if beyond


def test_an_injected_perturbation_on_a_pre_existing_value_is_a_positive_not_pre_existing():
    flux, dq = constructed()
    perturbed = flux.copy()
    perturbed[3, 2] += 100 * ERR
    truth = np.zeros(flux.size, dtype=np.int64)
    truth[3 * N_CH + 2] = 1 << 2  # a cosmic ray's truth bit (JUMP_DET)
    key = spectra_answers(
        table(flux, dq), table(perturbed, dq), table(flux).with_columns(truth=pl.Series(truth)), "constructed"
    )
    assert key.corrupted[3 * N_CH + 2] and not key.preexisting[3 * N_CH + 2]
    assert key.preexisting.sum() == 1  # the DO_NOT_USE value is still pre-existing


def test_packets_with_different_channels_are_laid_out_by_channel():
    """One integration lacks a channel: the channels are matched by number, not by position."""
    flux, _ = constructed()
    keep = np.ones(flux.shape, dtype=bool)
    keep[1, 0] = False  # integration 1 has no channel 0
    values = flux[keep]
    channel = np.tile(np.arange(N_CH), N_INT)[keep.ravel()]
    starts = np.r_[0, np.cumsum(keep.sum(axis=1))]
    mask = preexisting_mask(values, np.full(values.size, ERR), None, starts, channel)
    assert (
        mask.sum() == 1 and channel[mask][0] == 2 and np.searchsorted(starts, np.flatnonzero(mask)[0], "right") - 1 == 3
    )
