"""Data loss: isolated missing values and bursty telemetry dropouts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from hwosim_assets.perturb.batch import Batch, Coverage, Effect
from hwosim_assets.perturb.dq import DO_NOT_USE, DROPOUT
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})


def _blank(batch: Batch, where: np.ndarray, flags: int = DO_NOT_USE) -> None:
    """A lost element has neither a value nor an error; the ground system
    knows it is gone, so DQ says so in both stages (DO_NOT_USE; DROPOUT for
    telemetry losses, the JWST flag for "data lost in transmission")."""
    batch.blank(where, flags)


def missing_values(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Isolated missing values (NaN in value and error). Each packet gets a
    Poisson number of losses with mean ``probability`` x elements at uniform
    positions: every element is lost with probability 1 - exp(-probability),
    drawn without a per-element Bernoulli field.

    Magnitude: number of losses drawn for the packet."""
    packets = draws.packets(batch.seq)
    counts = packets.poisson(np.full(batch.n, p["probability"] * batch.elements), lane=0)
    owner, u = packets.events(counts, width=1, lane=1)
    flat = owner * batch.elements + np.minimum((u[:, 0] * batch.elements).astype(np.int64), batch.elements - 1)
    _blank(batch, flat)
    return Effect(flat, counts.astype(float))


def expect_missing(p: Mapping[str, float], coverage: Coverage) -> Expectation:
    fraction = 1 - math.exp(-p["probability"])
    n = max(coverage.elements, 1)
    # 4 sigma and three events of slack: a Poisson tail below ~1e-5 at any mean (one event of
    # slack failed 1 check in 1000 at a mean of 0.2 events - the MIRI i2d under quicklook)
    return Expectation(fraction, 4 * math.sqrt(fraction * (1 - fraction) / n) + 3 / n)


BLOCK = 4096  # sojourns per block of the burst chain


def _geometric(u: np.ndarray, success: float) -> np.ndarray:
    """Lengths >= 1 of geometric runs that end with probability ``success``."""
    with np.errstate(divide="ignore"):
        return 1 + np.floor(np.log(u) / np.log1p(-min(success, 1.0))).astype(np.int64)


@lru_cache(maxsize=256)
def bad_intervals(key: int, p_enter: float, mean_burst: float, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) packet-seq ranges of the Gilbert-Elliott bad state.

    The chain starts good at seq 0 and alternates good and bad runs; run
    lengths of block b depend on b only, so a longer chain extends a shorter
    one and every packet sees the same state whatever the chunking."""
    u = Stream(key, np.arange(blocks)).uniform(2 * BLOCK).reshape(-1, 2, BLOCK)
    good = _geometric(u[:, 0].ravel(), p_enter)
    bad = _geometric(u[:, 1].ravel(), 1.0 / max(mean_burst, 1.0))
    ends = np.cumsum(good + bad)
    starts = ends - bad
    starts.setflags(write=False)  # cached
    ends.setflags(write=False)
    return starts, ends


def in_burst(key: int, p_enter: float, mean_burst: float, seq: np.ndarray) -> np.ndarray:
    """Whether each packet falls in a bad (burst) period."""
    blocks = 1
    while True:
        starts, ends = bad_intervals(key, p_enter, mean_burst, blocks)
        if ends[-1] > seq.max():
            break
        blocks *= 2
    run = np.searchsorted(starts, seq, side="right") - 1
    return (run >= 0) & (seq < ends[np.maximum(run, 0)])


def dropouts(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Telemetry dropouts in bursts: a two-state Gilbert-Elliott chain over the
    packet sequence enters a bad state with probability ``p_enter`` per packet
    and stays for ``mean_burst`` packets on average; a packet in a burst is
    lost with probability ``loss_in_burst``: wholly (a tile, an integration)
    or, for ``partial_fraction`` of losses, from a random row (images) or
    channel (spectra) to its end - a frame cut mid-packet.

    Magnitude: fraction of the packet lost."""
    bursty = in_burst(draws.key("observation"), p["p_enter"], p["mean_burst"], batch.seq)
    u = draws.packets(batch.seq).uniform(3)
    lost = bursty & (u[:, 0] < p["loss_in_burst"])
    if not lost.any():
        return Effect.nothing(batch)
    rows = batch.value.shape[1]  # tile rows, or channels for spectra
    per_row = batch.elements // rows
    first_row = np.where(u[:, 1] < p["partial_fraction"], np.floor(u[:, 2] * rows).astype(np.int64), 0)
    packets = np.flatnonzero(lost)
    start = packets * batch.elements + first_row[packets] * per_row
    length = batch.elements - first_row[packets] * per_row
    for a, size in zip(start, length, strict=False):  # contiguous tails: plain slice writes
        _blank(batch, np.arange(a, a + size), DROPOUT | DO_NOT_USE)
    flat = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(length.sum())
    affected = np.zeros(batch.n, dtype=np.int64)
    affected[packets] = length
    return Effect(flat, affected / batch.elements, affected=affected)


def expect_dropouts(p: Mapping[str, float], coverage: Coverage) -> Expectation:
    """Stationary share of bad packets x loss probability x mean share lost."""
    cycle = 1 / p["p_enter"] + max(p["mean_burst"], 1.0)
    bad_share = max(p["mean_burst"], 1.0) / cycle
    fraction = bad_share * p["loss_in_burst"] * (1 - p["partial_fraction"] / 2)
    bursts = max(coverage.packets / cycle, 1.0)
    return Expectation(fraction, 4 * fraction * math.sqrt(2 / bursts) + 0.1 * fraction + 2 / max(coverage.packets, 1))


MISSING_VALUES = KindSpec(
    name="missing_values",
    summary="isolated missing values (NaN)",
    grounding=(
        "Single lost samples: JWST pipeline DQ marks DO_NOT_USE/DROPOUT elements "
        "and calibrated products carry them as NaN."
    ),
    families=BOTH,
    params=(Param("probability", "", "probability", "mean losses per element"),),
    levels={"probability": (0, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2)},
    anchors={
        1: "what-if (no record): rare isolated losses (1e-5 per value) - lost single values are not a "
        "published JWST statistic (the pipeline's DQ marks them DO_NOT_USE / DROPOUT)",
        5: "what-if (no record): 5 % of values lost",
    },
    is_off=lambda p: p["probability"] == 0,
    apply=missing_values,
    expect=expect_missing,
)

DROPOUTS = KindSpec(
    name="dropouts",
    summary="bursty telemetry dropouts (Gilbert-Elliott) blanking packets or their tails",
    grounding=(
        "JWST downlinks its solid-state recorder in two 4-h Ka-band contacts a day "
        "(JDox 'JWST Solid State Recorder'); link fades and missed contacts lose "
        "consecutive frames, the classic bursty channel of Gilbert (1960) and "
        "Elliott (1963)."
    ),
    families=BOTH,
    params=(
        Param("p_enter", "per packet", "probability", "chance a good packet starts a burst"),
        Param("mean_burst", "packets", "at_least_one", "mean burst length", high=1e6),
        Param("loss_in_burst", "", "probability", "chance a packet in a burst is lost"),
        Param("partial_fraction", "", "probability", "share of losses that keep the packet's head"),
    ),
    levels={
        "p_enter": (0, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2),
        "mean_burst": (1, 2, 3, 5, 8, 20),
        "loss_in_burst": (0, 0.8, 0.9, 1.0, 1.0, 1.0),
        "partial_fraction": (0.3,),
    },
    anchors={
        1: "permanent loss near zero - the recorder keeps data until a contact delivers it and CFDP "
        "retransmits what fails (JDox 'JWST Solid State Recorder'; Johns et al. 2008, SPIE 7016); the "
        "residual rate itself is a what-if",
        5: "what-if (no record): a failing recorder partition - no such JWST failure is published",
    },
    is_off=lambda p: p["p_enter"] * p["loss_in_burst"] == 0,
    apply=dropouts,
    expect=expect_dropouts,
)
