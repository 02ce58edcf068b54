"""Stream-level faults: declared here, once - parameters, bounds, levels - so
that a profile can carry them; applied by the stream replay
(:func:`hwosim_assets.stream.faults.plan_window`), which owns packet delivery
and checks what it is handed against these same declarations
(:meth:`KindSpec.check_params`). :attr:`Profile.stream_faults` hands them over,
resolved.

The upper bounds keep every accepted set plannable: at most one outage a
second and a day long, a day of jitter, hold-backs no longer than the largest
window (1,000,000 packets).
"""

from __future__ import annotations

from hwosim_assets.perturb.spec import KindSpec, Param

STREAM = frozenset({"stream"})
# No record exists for these: JWST moves science data as files (CFDP, with
# retransmission) from its recorder over the Deep Space Network, so packet-level
# loss, duplication, reordering and jitter never reach the archive and are not
# published; the real-time links of the HWO era are not built yet. The levels are
# explicit what-ifs, and the JWST figures live in the 'downlink' kind.
WHAT_IF = {
    1: "what-if (no record): a healthy generic real-time link for HWO-era what-ifs - JWST delivers files "
    "by CFDP with retransmission, so packet-level faults are neither seen nor published (JWST: the 'downlink' kind)",
    5: "what-if (no record): a badly degraded generic real-time link",
}
DSN = (
    "JWST downlinks over the Deep Space Network in two 4-h Ka-band contacts a day "
    "at 28 Mbps (JDox 'JWST Solid State Recorder'); a missed contact or a fade "
    "delays or loses whole stretches of packets."
)

PACKET_LOSS = KindSpec(
    name="packet_loss",
    summary="packets never delivered, in bursts",
    grounding=DSN,
    families=STREAM,
    params=(
        Param("p_loss", "per packet", "below_one", "long-run share of lost packets"),
        Param("mean_burst", "packets", "at_least_one", "mean length of a run of losses", high=1e6),
    ),
    levels={"p_loss": (0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1), "mean_burst": (1, 1, 2, 3, 5, 10)},
    anchors=WHAT_IF,
    is_off=lambda p: p["p_loss"] == 0,
)

DUPLICATES = KindSpec(
    name="duplicates",
    summary="packets delivered twice (retransmissions)",
    grounding="Ground-station retransmission after an unacknowledged frame repeats packets. " + DSN,
    families=STREAM,
    params=(Param("p_dup", "per packet", "probability", "chance a packet is delivered twice"),),
    levels={"p_dup": (0, 1e-4, 1e-3, 5e-3, 2e-2, 5e-2)},
    anchors=WHAT_IF,
    is_off=lambda p: p["p_dup"] == 0,
)

REORDERING = KindSpec(
    name="reordering",
    summary="packets delivered late, after later ones",
    grounding="Parallel ground paths and playback of recorder partitions deliver out of order. " + DSN,
    families=STREAM,
    params=(
        Param("p_reorder", "per packet", "probability", "chance a packet is held back"),
        Param("max_delay_packets", "packets", "count", "largest hold-back", high=1_000_000),
    ),
    levels={"p_reorder": (0, 1e-4, 1e-3, 1e-2, 5e-2, 1e-1), "max_delay_packets": (0, 2, 4, 8, 16, 32)},
    anchors=WHAT_IF,
    is_off=lambda p: p["p_reorder"] == 0 or p["max_delay_packets"] == 0,
)

LATENCY_JITTER = KindSpec(
    name="latency_jitter",
    summary="random delivery delay around the schedule",
    grounding="Ground network and processing queues add variable latency. " + DSN,
    families=STREAM,
    params=(Param("sigma_s", "s", "nonneg", "delay spread, 1 sigma", high=86_400),),
    levels={"sigma_s": (0, 0.01, 0.05, 0.2, 1.0, 5.0)},
    anchors=WHAT_IF,
    is_off=lambda p: p["sigma_s"] == 0,
)

OUTAGE = KindSpec(
    name="outage",
    summary="no delivery at all for a while (missed contact)",
    grounding=DSN,
    families=STREAM,
    params=(
        Param("rate_per_hour", "1/h", "nonneg", "outages per hour", high=3600),
        Param("duration_s", "s", "nonneg", "length of one outage", high=86_400),
    ),
    levels={"rate_per_hour": (0, 0.01, 0.03, 0.1, 0.3, 1.0), "duration_s": (0, 10, 30, 60, 300, 900)},
    anchors=WHAT_IF,
    is_off=lambda p: p["rate_per_hour"] == 0 or p["duration_s"] == 0,
)

DOWNLINK = KindSpec(
    name="downlink",
    summary="JWST store-and-forward downlink: recorder, contacts, missed contacts, retransmission",
    grounding=(
        "Science data are stored on the solid-state recorder and downlinked in two 4-h Ka-band "
        "contacts a day, about 12 h apart; a missed contact is caught up at the next (JDox 'JWST "
        "Solid State Recorder'); files travel by CCSDS File Delivery Protocol, which retransmits "
        "what fails (Johns et al. 2008, SPIE 7016, 70161D), so permanent loss is near zero and "
        "latency is hours. Delays are compressed by the stream's speed (mission s per stream s)."
    ),
    families=STREAM,
    params=(
        Param("contacts_per_day", "1/day", "nonneg", "ground contacts per day (0 = off)", high=24),
        Param("contact_hours", "h", "positive", "length of one contact", high=24),
        Param("p_missed", "per contact", "probability", "chance a contact is missed"),
        Param("p_retransmit", "per packet", "probability", "chance a packet's file needs a retransmission"),
        Param("retransmit_s", "s", "nonneg", "mission delay of one retransmission round", high=86_400),
        Param("p_lost", "per packet", "below_one", "chance a packet is never delivered"),
    ),
    levels={
        "contacts_per_day": (0, 2, 2, 2, 2, 2),
        "contact_hours": (4.0,),
        "p_missed": (0, 0.0, 0.05, 0.1, 0.3, 0.5),
        "p_retransmit": (0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1),
        "retransmit_s": (0, 60, 60, 300, 600, 1800),
        "p_lost": (0, 0, 1e-7, 1e-6, 1e-5, 1e-4),
    },
    anchors={
        1: "two 4-h contacts a day, ~12 h apart; no contact missed (JDox 'JWST Solid State Recorder')",
        3: "one contact in ten missed, a 12-h gap caught up at the next: the recorder is sized so that observing "
        "continues 'even if one downlink contact is missed' (JDox 'JWST Solid State Recorder'); Ka-band drops to "
        "1/2 or 1/4 of its 3.5 MB/s for bad weather at a station (JDox 'JWST Communications Subsystem'); "
        "the miss rate itself is a what-if - none is published",
        5: "what-if beyond the design margin: half the contacts missed (a ground-station outage) - the ~65 GB "
        "recorder holds about two contacts' worth (>= 28.6 GB each, JDox 'JWST Solid State Recorder'), so "
        "consecutive misses delay data by a day or more; no such outage is on record",
    },
    is_off=lambda p: p["contacts_per_day"] == 0,
)
