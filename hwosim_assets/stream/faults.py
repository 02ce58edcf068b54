"""Stream-level faults of a downlink, applied at replay time, deterministic, with their truth.

:func:`plan_window` turns the packets of one window (their ``seq``, ``lap``
and nominal due times) into a delivery plan plus a truth table. Kinds and
parameters (``Profile.stream_faults`` of the perturbation engine; a kind that
is absent or has zero probability does nothing):

* ``packet_loss`` {p_loss, mean_burst}: Gilbert-Elliott two-state channel. In
  the bad state every packet is lost; the chain leaves it with probability
  ``1/mean_burst`` per packet and enters it so that the long-run loss
  fraction is ``p_loss``. ``mean_burst=1`` gives scattered single losses.
* ``duplicates`` {p_dup}: a delivered packet is delivered a second time right
  after itself (same due time), as a retransmission would.
* ``reordering`` {p_reorder, max_delay_packets}: a packet is held back by 1 to
  ``max_delay_packets`` delivery positions and arrives late, due when the
  packet it now follows is due.
* ``latency_jitter`` {sigma_s}: a half-normal delay ``|N(0, sigma_s)|`` is
  added to each due time (latency only grows). Deliveries are then ordered by
  due time, so jitter larger than the packet spacing also reorders, as on a
  real link.
* ``outage`` {rate_per_hour, duration_s}: each packet starts an outage with
  probability ``1 - exp(-rate_per_hour * gap / 3600)`` (``gap`` = its spacing
  from the previous packet in schedule time), i.e. outages are a Poisson
  process in stream time. Nothing is delivered for ``duration_s``; packets due
  inside it are held on board and delivered at its end, in a burst (what a
  spacecraft recorder does), not dropped. As-fast-as-possible streams have no
  stream time, hence no outages.

* ``downlink`` {contacts_per_day, contact_hours, p_missed, p_retransmit,
  retransmit_s, p_lost}: JWST's store and forward (:func:`downlink_delays`).
  A packet is recorded at its event time and reaches the ground at the first
  contact that is not missed (contacts every 24 h / contacts_per_day on an
  absolute clock whose phase is keyed by the observation; a packet recorded
  during a contact goes down at once); a retransmitted file adds
  ``retransmit_s``; ``p_lost`` never arrives. These mission delays are
  compressed by the stream's speed (mission seconds per stream second: the
  cadence pacing's ``speed``, else the window's event-time span over its
  due-time span) and applied first; the generic kinds then act on top.

Parameters, their bounds and levels are declared once, with the other kinds,
in :mod:`hwosim_assets.perturb.kinds.stream`; :func:`validate_faults` checks
what the replay is handed against those declarations, so a profile that
loads always replays.

Determinism: each draw is a pure function of (global seed, profile hash,
observation, fault kind, lap, seq, draw index), taken from the keyed
generator of the perturbation engine (:mod:`hwosim_assets.perturb.rng`): the
kind's key is ``stream_key(seed, profile hash, observation, kind name,
"packet")`` - keyed by the kind's name, so adding or reordering kinds changes
no draw - and a packet's index is its (lap, seq) packed into 64 bits (see
:func:`packet_index`); the draw index is the generator's lane. Building a
generator per packet would cost ~20 us, too slow for windows of 100k packets;
these draws are vectorised. The one sequential piece, the loss chain, starts
each window from its stationary distribution, so a window always gets the
same faults, whoever replays it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from hwosim_assets.perturb.kinds import STREAM_KINDS
from hwosim_assets.perturb.rng import Stream, stream_key

TRUTH_SCHEMA = {"lap": pl.Int32, "seq": pl.Int64, "delivery": pl.Int64, "kind": pl.Utf8, "detail": pl.Utf8}
LAP_SHIFT = 40  # seq of one observation stays far below 2**40 packets


@dataclass
class DeliveryPlan:
    """Deliveries in emit order (``delivery`` i gets offset first_offset + i) and the truth.

    ``packet`` indexes the window's packets (input order); ``due_s`` is the
    due time in seconds after the window start, non-decreasing.
    """

    packet: np.ndarray  # int64, index of the source packet of each delivery
    due_s: np.ndarray  # float64
    truth: pl.DataFrame  # TRUTH_SCHEMA; delivery is null for lost packets

    def __len__(self) -> int:
        return len(self.packet)


def validate_faults(stream_faults: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Every stream kind's parameters: those given, checked against the kind's
    declaration (complete sets, within the bounds the profile loader applies),
    and level 0 - off - for the kinds not given. ValueError names kind and
    parameter."""
    for kind in stream_faults:
        if kind not in STREAM_KINDS:
            raise ValueError(f"unknown stream fault kind {kind!r}; known: {', '.join(STREAM_KINDS)}")
    return {
        kind: spec.check_params(stream_faults[kind]) if kind in stream_faults else spec.at_level(0)
        for kind, spec in STREAM_KINDS.items()
    }


def packet_index(lap: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """One 64-bit generator index per packet of a looping stream: lap in the
    high 24 bits, seq in the low 40. Distinct for every (lap, seq) a stream
    meets (laps repeat their draws only after 16.7 million passes)."""
    lap = np.asarray(lap, dtype=np.int64).astype(np.uint64)
    seq = np.asarray(seq, dtype=np.int64).astype(np.uint64)
    return ((lap << np.uint64(LAP_SHIFT)) | seq).view(np.int64)


class FaultRandom:
    """Uniform and normal draws of one stream's faults, one row per packet."""

    def __init__(self, seed: int, profile_hash: str, observation: str):
        self._address = (int(seed), profile_hash, observation)
        self._keys: dict[str, int] = {}

    def _stream(self, kind: str, lap: np.ndarray, seq: np.ndarray) -> Stream:
        if kind not in self._keys:
            self._keys[kind] = stream_key(*self._address, kind, "packet")
        return Stream(self._keys[kind], packet_index(lap, seq))

    def uniform(self, kind: str, lap: np.ndarray, seq: np.ndarray, draw: int = 0) -> np.ndarray:
        """Uniform in (0, 1)."""
        return self._stream(kind, lap, seq).uniform(1, lane=draw)[:, 0]

    def normal(self, kind: str, lap: np.ndarray, seq: np.ndarray, draw: int = 0) -> np.ndarray:
        """Standard normal."""
        return self._stream(kind, lap, seq).normal(1, lane=draw)[:, 0]


def gilbert_elliott(u: np.ndarray, p_loss: float, mean_burst: float) -> np.ndarray:
    """Lost mask from one uniform per packet: bad state = lost, stationary loss p_loss."""
    lost = np.zeros(len(u), dtype=bool)
    if p_loss <= 0 or len(u) == 0:
        return lost
    leave_bad = 1.0 / max(mean_burst, 1.0)
    enter_bad = min(1.0, p_loss * leave_bad / (1.0 - p_loss))
    bad = u[0] < p_loss  # start from the stationary distribution
    lost[0] = bad
    for i in range(1, len(u)):
        bad = (u[i] >= leave_bad) if bad else (u[i] < enter_bad)
        lost[i] = bad
    return lost


SECONDS_PER_DAY = 86400.0


def stream_speed(due_s: np.ndarray, event_time_mjd: np.ndarray | None, speed: float | None) -> float:
    """Mission seconds per stream second: ``speed`` when the pacing has one,
    else the window's event-time span over its due-time span (1 if either is 0)."""
    if speed:
        return float(speed)
    if event_time_mjd is None or len(due_s) < 2:
        return 1.0
    times = np.asarray(event_time_mjd, dtype=np.float64)
    span_mission = (np.nanmax(times) - np.nanmin(times)) * SECONDS_PER_DAY if np.isfinite(times).any() else 0.0
    span_stream = float(due_s.max() - due_s.min())
    return span_mission / span_stream if span_mission > 0 and span_stream > 0 else 1.0


def downlink_delays(
    p: dict[str, float], event_time_mjd: np.ndarray, rnd: FaultRandom, lap: np.ndarray, seq: np.ndarray, key: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mission-time delay (s) of each packet and its fate under store and forward:
    (delay_s, lost, missed_contacts, retransmitted)."""
    period = SECONDS_PER_DAY / p["contacts_per_day"]
    length = min(p["contact_hours"] * 3600.0, period)
    phase = Stream(key, np.array([0])).uniform(1)[0, 0] * period  # contact clock of this observation
    t = np.nan_to_num(np.asarray(event_time_mjd, dtype=np.float64)) * SECONDS_PER_DAY - phase
    k = np.floor(t / period).astype(np.int64)  # the contact period the packet is recorded in
    in_contact = (t - k * period) < length
    contact = np.where(in_contact, k, k + 1)  # the first contact that can take it
    missed = np.zeros(len(t), dtype=np.int64)
    if p["p_missed"] > 0 and len(t):  # walk forward past missed contacts (keyed by contact number)
        for _ in range(64):  # 0.5^64: no chain of missed contacts is longer
            skipped = Stream(key, contact).uniform(1, lane=1)[:, 0] < p["p_missed"]
            if not skipped.any():
                break
            missed += skipped
            contact = np.where(skipped, contact + 1, contact)
            in_contact &= ~skipped
    start = contact * period
    delay = np.where(in_contact & (missed == 0), 0.0, np.maximum(start - t, 0.0))
    retransmitted = (
        rnd.uniform("downlink", lap, seq, 1) < p["p_retransmit"] if p["p_retransmit"] > 0 else np.zeros(len(t), bool)
    )
    delay = delay + np.where(retransmitted, p["retransmit_s"], 0.0)
    lost = rnd.uniform("downlink", lap, seq, 2) < p["p_lost"] if p["p_lost"] > 0 else np.zeros(len(t), bool)
    return delay, lost, missed, retransmitted


def plan_window(
    seq: np.ndarray,
    lap: np.ndarray,
    due_s: np.ndarray,
    stream_faults: dict[str, dict[str, float]],
    *,
    seed: int,
    profile_hash: str,
    observation: str,
    event_time_mjd: np.ndarray | None = None,
    speed: float | None = None,
) -> DeliveryPlan:
    """Apply the stream faults to one window of packets (in source order) and
    return the plan. ``event_time_mjd`` (each packet's event time) and
    ``speed`` (the cadence pacing's speed-up) place the ``downlink`` kind's
    contacts in mission time; without event times it is not applied."""
    faults = validate_faults(stream_faults)
    seq = np.asarray(seq, dtype=np.int64)
    lap = np.asarray(lap, dtype=np.int64)
    due_s = np.asarray(due_s, dtype=np.float64)
    rnd = FaultRandom(seed, profile_hash, observation)
    truth: list[tuple[int, str, str]] = []  # (packet, kind, detail) for packets never delivered
    events: list[tuple[int, str, str]] = []  # (packet, kind, detail) for delivered-packet faults
    p = lambda kind, name: faults[kind][name]  # noqa: E731
    packets = np.arange(len(seq))

    schedule_s = due_s  # the pacing's own times: outages are a process in these
    # 0. JWST store and forward: hours of mission latency, compressed by the stream's speed
    gone = np.zeros(len(seq), dtype=bool)
    if p("downlink", "contacts_per_day") > 0 and event_time_mjd is not None and len(seq):
        compress = stream_speed(due_s, event_time_mjd, speed)
        key = stream_key(seed, profile_hash, observation, "downlink", "observation")
        delay, gone, missed, retransmitted = downlink_delays(faults["downlink"], event_time_mjd, rnd, lap, seq, key)
        truth += [(int(i), "downlink", "lost") for i in packets[gone]]
        for i in np.flatnonzero((delay > 0) & ~gone):
            detail = f"+{delay[i] / 3600.0:.3f} h mission, +{delay[i] / compress:.3f} s stream"
            if missed[i]:
                detail += f", {int(missed[i])} missed contact(s)"
            if retransmitted[i]:
                detail += ", retransmitted"
            events.append((int(i), "downlink", detail))
        due_s = due_s + delay / compress

    # 1. loss
    p_loss = p("packet_loss", "p_loss")
    lost = (
        gilbert_elliott(rnd.uniform("packet_loss", lap, seq), p_loss, p("packet_loss", "mean_burst"))
        if p_loss > 0
        else np.zeros(len(seq), dtype=bool)
    )
    truth += [(int(i), "packet_loss", "lost") for i in packets[lost & ~gone]]
    lost |= gone
    kept = packets[~lost]
    order_by_due = np.argsort(due_s[kept], kind="stable")  # the downlink's delays may reorder
    kept = kept[order_by_due]
    t = due_s[kept]

    # 2. duplicates: a copy right after the original
    p_dup = p("duplicates", "p_dup")  # (no draws for a kind that is off: they cost time on long windows)
    dup = rnd.uniform("duplicates", lap[kept], seq[kept]) < p_dup if p_dup > 0 else np.zeros(len(kept), dtype=bool)
    order = np.repeat(np.arange(len(kept)), 1 + dup.astype(np.int64))
    is_copy = np.zeros(len(order), dtype=bool)
    is_copy[1:] = order[1:] == order[:-1]
    deliv_packet = kept[order]
    t = t[order]

    # 3. reordering: hold a delivery back by d positions
    p_reorder = p("reordering", "p_reorder")
    held = (
        rnd.uniform("reordering", lap[deliv_packet], seq[deliv_packet]) < p_reorder
        if p_reorder > 0
        else np.zeros(len(deliv_packet), dtype=bool)
    )
    held &= ~dup[order]  # a duplicated packet keeps its place (keeps the truth readable)
    max_delay = int(p("reordering", "max_delay_packets"))
    delay = 1 + np.floor(rnd.uniform("reordering", lap[deliv_packet], seq[deliv_packet], 1) * max(max_delay, 1)).astype(
        np.int64
    )
    place = np.arange(len(order), dtype=np.float64) + np.where(held, delay + 0.5, 0.0)
    perm = np.argsort(place, kind="stable")
    deliv_packet, t, held, is_copy, delay = deliv_packet[perm], t[perm], held[perm], is_copy[perm], delay[perm]
    t = np.maximum.accumulate(t) if len(t) else t  # a held packet is due when the one before it is
    events += [
        (int(i), "reordering", f"held back {int(d)} positions")
        for i, d in zip(deliv_packet[held], delay[held], strict=False)
    ]
    events += [(int(i), "duplicates", "second copy") for i in deliv_packet[is_copy]]

    # 4. latency jitter (a copy gets its original's delay: same seq, same draw)
    sigma = p("latency_jitter", "sigma_s")
    if sigma > 0 and len(t):
        jitter = sigma * np.abs(rnd.normal("latency_jitter", lap[deliv_packet], seq[deliv_packet]))
        t = t + jitter
        events += [
            (int(i), "latency_jitter", f"+{j:.6f} s")
            for i, j, c in zip(deliv_packet, jitter, is_copy, strict=False)
            if not c
        ]
        perm = np.argsort(t, kind="stable")
        deliv_packet, t, is_copy = deliv_packet[perm], t[perm], is_copy[perm]

    # 5. outages: held until the end, in stream time
    rate, duration = p("outage", "rate_per_hour"), p("outage", "duration_s")
    if rate > 0 and duration > 0 and len(due_s):
        gaps = np.diff(schedule_s, prepend=schedule_s[0] if len(schedule_s) else 0.0)
        starts = rnd.uniform("outage", lap, seq) < -np.expm1(-rate * gaps / 3600.0)
        for a in schedule_s[starts]:
            inside = (t >= a) & (t < a + duration)
            events += [
                (int(i), "outage", f"held {a + duration - ti:.6f} s")
                for i, ti in zip(deliv_packet[inside], t[inside], strict=False)
            ]
            t = np.where(inside, a + duration, t)
        perm = np.argsort(t, kind="stable")
        deliv_packet, t = deliv_packet[perm], t[perm]

    # truth rows carry the delivery index of the (first) delivery of the packet
    first_delivery: dict[int, int] = {}
    copies: dict[int, list[int]] = {}
    for d, packet in enumerate(deliv_packet.tolist()):
        first_delivery.setdefault(packet, d)
        copies.setdefault(packet, []).append(d)
    rows: list[tuple[int, int | None, str, str]] = [(packet, None, kind, detail) for packet, kind, detail in truth]
    for packet, kind, detail in events:
        where = copies[packet][-1] if kind == "duplicates" else first_delivery[packet]
        rows.append((packet, where, kind, detail))
    truth_df = pl.DataFrame(
        {
            "lap": [int(lap[r[0]]) for r in rows],
            "seq": [int(seq[r[0]]) for r in rows],
            "delivery": [r[1] for r in rows],
            "kind": [r[2] for r in rows],
            "detail": [r[3] for r in rows],
        },
        schema=TRUTH_SCHEMA,
    ).sort("seq", "kind", nulls_last=True)
    return DeliveryPlan(packet=deliv_packet.astype(np.int64), due_s=t, truth=truth_df)
