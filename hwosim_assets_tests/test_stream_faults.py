"""Stream faults are deterministic, match their configured rates, and their truth explains every delivery;
a profile that loads replays, with exactly the bounds the replay checks."""

import math

import numpy as np
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwosim_assets.perturb import STREAM_KINDS, ProfileError, parse_profiles
from hwosim_assets.perturb.rng import Stream, stream_key
from hwosim_assets.stream.faults import FaultRandom, gilbert_elliott, packet_index, plan_window, validate_faults

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
    p_loss=st.floats(0, 0.5),
    burst=st.floats(1, 10),
    p_dup=st.floats(0, 0.5),
    p_reorder=st.floats(0, 0.5),
    max_delay=st.integers(1, 10),
    sigma=st.floats(0, 0.05),
)
def test_any_plan_is_the_kept_packets_plus_copies(n, p_loss, burst, p_dup, p_reorder, max_delay, sigma):
    faults = {
        "packet_loss": {"p_loss": p_loss, "mean_burst": burst},
        "duplicates": {"p_dup": p_dup},
        "reordering": {"p_reorder": p_reorder, "max_delay_packets": max_delay},
        "latency_jitter": {"sigma_s": sigma},
        "outage": {"rate_per_hour": 100.0, "duration_s": 0.2},
    }
    plan = plan_window(np.arange(n), np.zeros(n), np.arange(n) / 50.0, faults, **KEY)
    lost = set(kind_seqs(plan, "packet_loss"))
    counts = np.bincount(plan.packet, minlength=n) if n else np.zeros(0)
    assert all((counts[i] == 0) == (i in lost) for i in range(n))
    assert sum(counts) == n - len(lost) + len(kind_seqs(plan, "duplicates"))
    assert (np.diff(plan.due_s) >= 0).all()


@pytest.mark.parametrize(
    "faults, message",
    [
        ({"lightning": {"p": 0.1}}, "unknown stream fault kind"),
        ({"duplicates": {"p_dupe": 0.1}}, r"duplicates.p_dupe: unknown parameter 'p_dupe' \(did you mean 'p_dup'\?\)"),
        ({"duplicates": {"p_dup": 1.5}}, r"duplicates.p_dup: must be a probability in \[0, 1\], got 1.5"),
        ({"latency_jitter": {"sigma_s": -1}}, r"latency_jitter.sigma_s: must be a number in \[0, 86400\], got -1"),
        (
            {"packet_loss": {"p_loss": 1.0, "mean_burst": 1}},
            r"packet_loss.p_loss: must be a probability in \[0, 1\), got 1.0",
        ),
        ({"packet_loss": {"p_loss": 0.1}}, "packet_loss.mean_burst: missing"),
    ],
)
def test_bad_fault_parameters_are_refused(faults, message):
    with pytest.raises(ValueError, match=message):
        validate_faults(faults)


def test_draws_come_from_the_engine_generator_keyed_by_kind_name_lap_and_seq():
    lap, seq = np.array([0, 0, 1, 1, 2**23]), np.array([0, 5, 0, 5, 2**39])
    assert len(set(packet_index(lap, seq))) == 5 and packet_index(lap, seq)[1] == 5
    key = stream_key(KEY["seed"], KEY["profile_hash"], KEY["observation"], "duplicates", "packet")
    expected = Stream(key, packet_index(lap, seq)).uniform(1, lane=0)[:, 0]
    random = FaultRandom(KEY["seed"], KEY["profile_hash"], KEY["observation"])
    assert np.array_equal(random.uniform("duplicates", lap, seq), expected)
    # so a packet's faults do not depend on where its window starts
    dup = {"duplicates": ALL["duplicates"]}
    whole = plan_window(SEQ[:2000], LAP[:2000], DUE[:2000], dup, **KEY)
    part = plan_window(SEQ[1000:2000], LAP[1000:2000], DUE[1000:2000] - DUE[1000], dup, **KEY)
    later = {s for s in kind_seqs(whole, "duplicates") if s >= 1000}
    assert set(kind_seqs(part, "duplicates")) == later and later


# One validation for profiles and replay: every parameter set the profile loader accepts plans a
# window, and every set it refuses the replay refuses too.

N_SOURCE = 37  # a looping window over a short source crosses laps
POSITIONS = np.arange(300)
WINDOW = dict(seq=POSITIONS % N_SOURCE, lap=POSITIONS // N_SOURCE)
SCHEDULES = {
    "rate": POSITIONS / 50.0,
    "cadence": np.cumsum(np.random.default_rng(1).exponential(20.0, len(POSITIONS))),  # irregular, sparse
    "asap": np.zeros(len(POSITIONS)),
}


class PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # write a repeated value again, not as an alias
        return True


def profile_with(kind: str, setting) -> str:
    return yaml.dump({"profiles": {"p": {"kinds": {kind: setting}}}}, Dumper=PlainDumper)


def plans_every_schedule(stream_faults: dict) -> None:
    for due in SCHEDULES.values():
        plan = plan_window(WINDOW["seq"], WINDOW["lap"], due, stream_faults, **KEY)
        assert len(plan) >= len(POSITIONS) - len(kind_seqs(plan, "packet_loss"))
        assert (np.diff(plan.due_s) >= 0).all() and np.isfinite(plan.due_s).all()


@pytest.mark.parametrize("kind", sorted(STREAM_KINDS))
@pytest.mark.parametrize("level", range(6))
def test_every_level_of_every_stream_kind_replays(kind, level):
    faults = parse_profiles(profile_with(kind, level))["p"].stream_faults
    assert (kind in faults) == (level > 0)
    plans_every_schedule(faults)


def boundary_values(kind: str, name: str) -> list:
    """Each bound of the parameter, and just outside it, from the declaration."""
    low, high = STREAM_KINDS[kind].param(name).bounds
    return [low, high, math.nextafter(low, -math.inf), math.nextafter(high, math.inf), low - 1, high + 1]


def parameter_values(kind: str):
    value = st.one_of(
        st.sampled_from(sorted({v for p in STREAM_KINDS[kind].params for v in boundary_values(kind, p.name)})),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(0, 2),
        st.integers(-2, 2**64),
        st.sampled_from([True, False, None, "0.1", [], {}]),
    )
    return st.fixed_dictionaries({p.name: value for p in STREAM_KINDS[kind].params})


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(STREAM_KINDS)).flatmap(lambda kind: st.tuples(st.just(kind), parameter_values(kind))))
@example(("packet_loss", {"p_loss": 1.0, "mean_burst": 2}))
@example(("packet_loss", {"p_loss": 0.5, "mean_burst": 0}))
@example(("outage", {"rate_per_hour": 1.0, "duration_s": math.inf}))
@example(("latency_jitter", {"sigma_s": math.inf}))
@example(("reordering", {"p_reorder": 1.0, "max_delay_packets": 1_000_000}))
@example(("outage", {"rate_per_hour": 3600, "duration_s": 86_400}))
def test_profile_validation_and_replay_agree(kind_params):
    kind, params = kind_params
    try:
        profile = parse_profiles(profile_with(kind, {"params": params}))["p"]
    except ProfileError as error:
        assert f"profile 'p': kinds.{kind}.params." in str(error)
        with pytest.raises(ValueError, match=f"^{kind}\\."):
            validate_faults({kind: params})
        return
    plans_every_schedule(profile.stream_faults)
    plans_every_schedule({kind: params})  # as given, even when the profile finds it off


# --- JWST store and forward ----------------------------------------------------

DOWNLINK_1 = STREAM_KINDS["downlink"].at_level(1)


def _mission(hours: float, n: int = 2000):
    """n packets spread over ``hours`` of mission time, replayed at 100 packets/s."""
    event = 60000.0 + np.linspace(0.0, hours / 24.0, n)
    due = np.arange(n) / 100.0
    return event, due


def test_downlink_holds_data_until_a_contact_and_compresses_the_wait():
    """Two 4-h contacts a day: data recorded outside a contact wait for the
    next one (up to 8 h of mission time), never longer than a period; data
    recorded during a contact go down at once; stream delays are mission
    delays divided by the stream's speed; nothing is lost at level 1."""
    event, due = _mission(48.0)
    speed = 48 * 3600.0 / (due[-1] - due[0])  # mission s per stream s
    faults = {"downlink": DOWNLINK_1}
    plan = plan_window(np.arange(len(due)), np.zeros(len(due), np.int64), due, faults, **KEY, event_time_mjd=event)
    assert len(plan) == len(due) and plan.truth.filter(kind="downlink", detail="lost").height == 0
    delay_stream = plan.due_s[np.argsort(plan.packet, kind="stable")] - due
    delay_mission = delay_stream * speed
    assert delay_mission.max() <= 8 * 3600.0 + 1.0 and delay_mission.min() >= -1e-6
    waiting = delay_mission > 1.0
    assert 0.55 < waiting.mean() < 0.8  # 16 of every 24 hours fall outside a contact
    assert np.mean(delay_mission[waiting]) == pytest.approx(4 * 3600.0, rel=0.15)  # uniform wait of 0-8 h
    detail = plan.truth.filter(kind="downlink")["detail"][0]
    assert " h mission" in detail and " s stream" in detail


def test_a_missed_contact_is_a_twelve_hour_gap_caught_up_at_the_next():
    event, due = _mission(240.0, 5000)
    missed = dict(DOWNLINK_1, p_missed=0.5)
    plan = plan_window(
        np.arange(len(due)),
        np.zeros(len(due), np.int64),
        due,
        {"downlink": missed},
        **KEY,
        event_time_mjd=event,
        speed=1.0,
    )
    delay = plan.due_s[np.argsort(plan.packet, kind="stable")] - due
    hit = plan.truth.filter(kind="downlink")["detail"].str.contains("missed contact").sum()
    assert hit > 0 and len(plan) == len(due)  # late, never lost
    assert delay.max() >= 12 * 3600.0 and (delay.max() / 3600.0) % 12 < 8.01
    again = plan_window(
        np.arange(len(due)),
        np.zeros(len(due), np.int64),
        due,
        {"downlink": missed},
        **KEY,
        event_time_mjd=event,
        speed=1.0,
    )
    assert np.array_equal(again.due_s, plan.due_s)  # the same contacts are missed every time


def test_downlink_needs_event_times_and_loses_almost_nothing():
    event, due = _mission(24.0, 20000)
    seq, lap = np.arange(len(due)), np.zeros(len(due), np.int64)
    assert np.array_equal(plan_window(seq, lap, due, {"downlink": DOWNLINK_1}, **KEY).due_s, due)
    worst = STREAM_KINDS["downlink"].at_level(5)
    plan = plan_window(seq, lap, due, {"downlink": worst}, **KEY, event_time_mjd=event)
    assert plan.truth.filter(kind="downlink", detail="lost").height <= 10  # p_lost 1e-4 of 20,000
