"""Packets are due at start + f(i) and emitted then, without drift."""

import time

import numpy as np
import pytest

from hwosim_assets.stream.pacing import Pacer, Pacing, schedule_offsets, window_duration


def test_rate_schedule_is_absolute_and_fractional_rates_work():
    offsets = schedule_offsets(Pacing("rate", rate=0.4), 4)
    assert offsets.tolist() == [0.0, 2.5, 5.0, 7.5]
    assert window_duration(Pacing("rate", rate=0.4), 4) == 10.0


def test_cadence_follows_event_times_scaled_and_capped():
    events = 60000 + np.array([0, 10, 20, 3620, 3630]) / 86400  # a one-hour gap between visits
    pacing = Pacing("cadence", speed=10.0, gap_cap_s=60.0)
    assert schedule_offsets(pacing, 5, events) == pytest.approx([0, 1, 2, 8, 9])
    assert window_duration(pacing, 5, events) == pytest.approx(9 + 1)
    assert (schedule_offsets(Pacing("asap"), 3) == 0).all()


@pytest.mark.timing
def test_pacer_holds_200_per_second_without_drift():
    n, rate = 400, 200.0
    start = time.time() + 0.05
    pacer = Pacer()
    for _ in pacer.batches(start + np.arange(n) / rate):
        pass
    stats = pacer.stats()
    assert stats.packets == n
    assert stats.achieved_rate == pytest.approx(rate, rel=0.01)
    assert stats.lateness_p50 < 0.002 and stats.lateness_p99 < 0.010
    assert abs(stats.last_second_lateness - stats.first_second_lateness) < 0.005  # no cumulative drift
    assert pacer.emitted.min() >= start  # nothing early


@pytest.mark.timing
def test_time_spent_by_the_sink_does_not_accumulate():
    start = time.time() + 0.02
    scheduled = start + np.arange(100) / 100.0
    pacer = Pacer()
    for _ in pacer.batches(scheduled):
        time.sleep(0.005)  # a sink taking half the period
    late = pacer.emitted - scheduled
    assert np.percentile(late, 90) < 0.010 and abs(late[-10:].mean() - late[:10].mean()) < 0.005


@pytest.mark.timing
def test_overdue_packets_go_at_once_together():
    now = time.time()
    scheduled = np.concatenate([now - 1.0 + np.arange(10) * 0.01, [now + 0.05]])
    pacer = Pacer()
    batches = list(pacer.batches(scheduled))
    assert batches[0][:2] == (0, 10)  # all ten overdue ones in the first batch
    assert batches[0][2] - now < 0.01
    assert batches[1][:2] == (10, 11) and batches[1][2] >= scheduled[-1]


def test_fake_clock_sleeps_until_due():
    clock = [100.0]
    pacer = Pacer(spin_s=0.0, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    out = [(i, j, t) for i, j, t in pacer.batches([100.5, 101.0, 101.0, 102.0])]
    assert out == [(0, 1, 100.5), (1, 3, 101.0), (3, 4, 102.0)]
