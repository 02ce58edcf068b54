"""Corruption of stored values: single-event upsets."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from hwosim_assets.perturb.batch import Batch, Coverage, Effect
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param


def bit_flips(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Single-event upsets: a Poisson number of flips per packet (mean
    ``probability`` x elements), each inverting one uniformly chosen bit of a
    stored value (float32 SCI, float64 flux) - mantissa flips are tiny,
    exponent and sign flips are wild outliers, NaN or inf.

    Magnitude: number of flips in the packet."""
    packets = draws.packets(batch.seq)
    counts = packets.poisson(np.full(batch.n, p["probability"] * batch.elements), lane=0)
    owner, u = packets.events(counts, width=2, lane=1)
    flat = owner * batch.elements + np.minimum((u[:, 0] * batch.elements).astype(np.int64), batch.elements - 1)
    width = batch.value.dtype.itemsize * 8
    words = batch.value.reshape(-1).view(np.uint32 if width == 32 else np.uint64)
    which = np.minimum((u[:, 1] * width).astype(np.int64), width - 1)
    np.bitwise_xor.at(words, flat, np.left_shift(1, which).astype(words.dtype))
    return Effect(flat, counts.astype(float))


def expect_bit_flips(p: Mapping[str, float], coverage: Coverage) -> Expectation:
    fraction = 1 - math.exp(-p["probability"])
    n = max(coverage.elements, 1)
    # 4 sigma and three events of slack: a Poisson tail below ~1e-5 at any mean (one event of
    # slack failed 1 check in 1000 at a mean of 0.2 events - the MIRI i2d under quicklook)
    return Expectation(fraction, 4 * math.sqrt(fraction * (1 - fraction) / n) + 3 / n)


BIT_FLIPS = KindSpec(
    name="bit_flips",
    summary="single-event upsets flipping one stored bit of a value",
    grounding=(
        "Energetic particles at L2 upset memory cells (single-event upsets); the "
        "JWST solid-state recorder and ICDH memories rely on EDAC, so the levels "
        "span rare residual upsets (1e-7 per value) to a failing memory bank (1e-3)."
    ),
    families=frozenset({"spectra", "images"}),
    params=(Param("probability", "per value", "probability", "mean flips per stored value"),),
    levels={"probability": (0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)},
    anchors={
        1: "what-if (no record): rare residual upsets behind EDAC - the recorder and ICDH memories correct "
        "single-event upsets and no rate of uncorrected upsets reaching JWST products is published",
        3: "what-if (no record): the upset rate of a solar particle event, which raises the particle flux 10-100x "
        "(cosmic_rays levels 3-4); EDAC still corrects almost all, the residual is not published",
        5: "what-if (no record): a failing memory bank - EDAC overwhelmed; no such JWST event is on record",
    },
    is_off=lambda p: p["probability"] == 0,
    apply=bit_flips,
    expect=expect_bit_flips,
)
