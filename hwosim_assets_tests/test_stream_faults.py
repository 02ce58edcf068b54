"""Stream faults are deterministic, match their configured rates, and their truth explains every delivery."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwosim_assets.stream.faults import gilbert_elliott, plan_window, validate_faults

N = 20_000
SEQ = np.arange(N)
LAP = np.zeros(N, dtype=np.int64)
DUE = SEQ / 100.0  # 100 packets/s
KEY = dict(seed=20261124, profile_hash="9f1c2ab4e0", observation="jw09999-o001_t001_niriss_clear-gr700xd")
ALL = {
    "packet_loss": {"p_loss": 0.05, "mean_burst": 4.0},
    "duplicates": {"p_dup": 0.02},
    "reordering": {"p_reorder": 0.03, "max_delay_packets": 5},
    "latency_jitter": {"sigma_s": 0.004},
    "outage": {"rate_per_hour": 6.0, "duration_s": 3.0},
}


def kind_seqs(plan, kind):
    return plan.truth.filter(kind=kind)["seq"].to_numpy()


def test_no_faults_is_the_identity():
    plan = plan_window(SEQ, LAP, DUE, {}, **KEY)
    assert np.array_equal(plan.packet, SEQ) and np.array_equal(plan.due_s, DUE)
    assert plan.truth.height == 0


def test_same_inputs_same_faults_other_seed_other_faults():
    a = plan_window(SEQ, LAP, DUE, ALL, **KEY)
    b = plan_window(SEQ, LAP, DUE, ALL, **KEY)
    assert np.array_equal(a.packet, b.packet) and np.array_equal(a.due_s, b.due_s) and a.truth.equals(b.truth)
    c = plan_window(SEQ, LAP, DUE, ALL, **{**KEY, "seed": 1})
    assert not np.array_equal(a.packet, c.packet)
    next_lap = plan_window(SEQ, LAP + 1, DUE, ALL, **KEY)
    assert not np.array_equal(kind_seqs(a, "packet_loss"), kind_seqs(next_lap, "packet_loss"))


def test_loss_rate_and_burst_length():
    plan = plan_window(SEQ, LAP, DUE, {"packet_loss": {"p_loss": 0.05, "mean_burst": 4.0}}, **KEY)
    lost = kind_seqs(plan, "packet_loss")
    assert len(lost) / N == pytest.approx(0.05, abs=0.012)
    bursts = np.split(lost, np.flatnonzero(np.diff(lost) != 1) + 1)
    assert np.mean([len(b) for b in bursts]) == pytest.approx(4.0, rel=0.2)
    assert set(plan.packet).isdisjoint(lost) and len(plan.packet) == N - len(lost)


def test_gilbert_elliott_with_unit_bursts_is_scattered():
    u = np.random.default_rng(0).random(50_000)
    lost = gilbert_elliott(u, 0.1, 1.0)
    assert lost.mean() == pytest.approx(0.1, abs=0.01)
    assert not (lost[1:] & lost[:-1]).any()  # leave-bad probability 1: never two in a row


def test_duplicates_follow_their_original():
    plan = plan_window(SEQ, LAP, DUE, {"duplicates": {"p_dup": 0.02}}, **KEY)
    dups = kind_seqs(plan, "duplicates")
    assert len(dups) / N == pytest.approx(0.02, abs=0.005)
    counts = np.bincount(plan.packet, minlength=N)
    assert set(np.flatnonzero(counts == 2)) == set(dups) and counts.max() == 2
    for d in plan.truth.filter(kind="duplicates")["delivery"]:
        assert plan.packet[d] == plan.packet[d - 1]


def test_reordering_is_bounded_and_late():
    plan = plan_window(SEQ, LAP, DUE, {"reordering": {"p_reorder": 0.03, "max_delay_packets": 5}}, **KEY)
    held = kind_seqs(plan, "reordering")
    assert len(held) / N == pytest.approx(0.03, abs=0.006)
    position = np.empty(N, dtype=np.int64)
    position[plan.packet] = np.arange(N)
    assert sorted(plan.packet) == list(SEQ)
    before = np.maximum.accumulate(plan.packet)[position[held] - 1]  # highest seq delivered before it
    assert (before <= held + 5).all()  # never overtaken by a packet more than 5 later
    assert np.mean(before > held) > 0.98  # overtaken (unless the packets behind it were held too)
    assert (np.diff(plan.due_s) >= 0).all()
    assert (plan.due_s[position[held]] >= DUE[held]).all()


def test_jitter_is_half_normal_delay():
    plan = plan_window(SEQ, LAP, DUE, {"latency_jitter": {"sigma_s": 0.004}}, **KEY)
    delay = plan.due_s - DUE[plan.packet]
    assert (delay >= 0).all()
    assert np.mean(delay) == pytest.approx(0.004 * np.sqrt(2 / np.pi), rel=0.05)
    assert (np.diff(plan.due_s) >= 0).all()


def test_outages_hold_packets_until_their_end():
    faults = {"outage": {"rate_per_hour": 20.0, "duration_s": 3.0}}
    plan = plan_window(SEQ, LAP, DUE, faults, **KEY)  # 200 s of stream: ~1.1 outages expected
    plans = [plan_window(SEQ, LAP + lap, DUE, faults, **KEY) for lap in range(30)]
    held = np.array([len(kind_seqs(p, "outage")) for p in plans])
    assert held.sum() / (30 * 300) == pytest.approx(20 * 200 / 3600, rel=0.35)  # outages per window
    assert len(plan.packet) == N and (np.diff(plan.due_s) >= 0).all()
    for p in plans:
        seqs = kind_seqs(p, "outage")
        if len(seqs):
            late = p.due_s - DUE[p.packet]
            held_mask = np.isin(p.packet, seqs)
            assert (late[held_mask] > 0).all() and (late[~held_mask] == 0).all()
            assert late.max() < 3.0 * 3  # one outage, or a few overlapping ones merged
            assert len(set(p.due_s[held_mask])) < held_mask.sum() / 10  # released in bursts


def test_truth_offsets_point_at_the_delivery():
    plan = plan_window(SEQ, LAP, DUE, ALL, **KEY)
    delivered = plan.truth.filter(plan.truth["delivery"].is_not_null())
    assert (plan.packet[delivered["delivery"].to_numpy()] == delivered["seq"].to_numpy()).all()
    assert plan.truth.filter(kind="packet_loss")["delivery"].null_count() == len(kind_seqs(plan, "packet_loss"))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 300),
    p_loss=st.floats(0, 0.5), burst=st.floats(1, 10), p_dup=st.floats(0, 0.5),
    p_reorder=st.floats(0, 0.5), max_delay=st.integers(1, 10), sigma=st.floats(0, 0.05),
)
def test_any_plan_is_the_kept_packets_plus_copies(n, p_loss, burst, p_dup, p_reorder, max_delay, sigma):
    faults = {"packet_loss": {"p_loss": p_loss, "mean_burst": burst}, "duplicates": {"p_dup": p_dup},
              "reordering": {"p_reorder": p_reorder, "max_delay_packets": max_delay},
              "latency_jitter": {"sigma_s": sigma}, "outage": {"rate_per_hour": 100.0, "duration_s": 0.2}}
    plan = plan_window(np.arange(n), np.zeros(n), np.arange(n) / 50.0, faults, **KEY)
    lost = set(kind_seqs(plan, "packet_loss"))
    counts = np.bincount(plan.packet, minlength=n) if n else np.zeros(0)
    assert all((counts[i] == 0) == (i in lost) for i in range(n))
    assert sum(counts) == n - len(lost) + len(kind_seqs(plan, "duplicates"))
    assert (np.diff(plan.due_s) >= 0).all()


@pytest.mark.parametrize("faults, message", [
    ({"lightning": {"p": 0.1}}, "unknown stream fault kind"),
    ({"duplicates": {"p_dupe": 0.1}}, "unknown parameters"),
    ({"duplicates": {"p_dup": 1.5}}, "probability"),
    ({"latency_jitter": {"sigma_s": -1}}, ">= 0"),
    ({"packet_loss": {"p_loss": 1.0, "mean_burst": 1}}, "< 1"),
])
def test_bad_fault_parameters_are_refused(faults, message):
    with pytest.raises(ValueError, match=message):
        validate_faults(faults)
