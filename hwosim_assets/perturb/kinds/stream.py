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
    is_off=lambda p: p["p_loss"] == 0,
)

DUPLICATES = KindSpec(
    name="duplicates",
    summary="packets delivered twice (retransmissions)",
    grounding="Ground-station retransmission after an unacknowledged frame repeats packets. " + DSN,
    families=STREAM,
    params=(Param("p_dup", "per packet", "probability", "chance a packet is delivered twice"),),
    levels={"p_dup": (0, 1e-4, 1e-3, 5e-3, 2e-2, 5e-2)},
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
    is_off=lambda p: p["p_reorder"] == 0 or p["max_delay_packets"] == 0,
)

LATENCY_JITTER = KindSpec(
    name="latency_jitter",
    summary="random delivery delay around the schedule",
    grounding="Ground network and processing queues add variable latency. " + DSN,
    families=STREAM,
    params=(Param("sigma_s", "s", "nonneg", "delay spread, 1 sigma", high=86_400),),
    levels={"sigma_s": (0, 0.01, 0.05, 0.2, 1.0, 5.0)},
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
    is_off=lambda p: p["rate_per_hour"] == 0 or p["duration_s"] == 0,
)
