"""The catalogue of perturbation kinds.

Element-level kinds are listed in the order a signal meets them on its way
from the sky to the ground - scene motion, gain, extra charge, noise,
saturation, dead columns, storage upsets, telemetry loss - and are always
applied in that order whatever order a profile lists them in. A kind's
truth-mask bit is the JWST DQ bit whose meaning describes it
(:data:`hwosim_assets.perturb.dq.TRUTH_BIT`).

``noise``, ``missing`` and ``drift`` are plain-named aliases (for the seed's
three perturbations) of ``read_noise``, ``missing_values`` and
``gain_drift``: same parameters, levels and truth bit.
"""

from __future__ import annotations

from dataclasses import replace

from hwosim_assets.perturb.dq import bit_of
from hwosim_assets.perturb.kinds.corruption import BIT_FLIPS
from hwosim_assets.perturb.kinds.cosmic import COSMIC_RAYS
from hwosim_assets.perturb.kinds.detector import DEAD_COLUMNS, HOT_PIXELS, PERSISTENCE, SATURATION
from hwosim_assets.perturb.kinds.drift import GAIN_DRIFT, OFFSET_DRIFT, POINTING_JITTER, SPECTRAL_SHIFT
from hwosim_assets.perturb.kinds.loss import DROPOUTS, MISSING_VALUES
from hwosim_assets.perturb.kinds.noise import READ_NOISE, SHOT_NOISE, STRIPING_1F
from hwosim_assets.perturb.kinds.stream import DOWNLINK, DUPLICATES, LATENCY_JITTER, OUTAGE, PACKET_LOSS, REORDERING
from hwosim_assets.perturb.spec import KindSpec

_CHAIN = (
    POINTING_JITTER,
    SPECTRAL_SHIFT,
    GAIN_DRIFT,
    PERSISTENCE,
    SHOT_NOISE,
    HOT_PIXELS,
    COSMIC_RAYS,
    OFFSET_DRIFT,
    STRIPING_1F,
    READ_NOISE,
    SATURATION,
    DEAD_COLUMNS,
    BIT_FLIPS,
    MISSING_VALUES,
    DROPOUTS,
)

ELEMENT_KINDS: dict[str, KindSpec] = {spec.name: replace(spec, bit=bit_of(spec.name)) for spec in _CHAIN}
CHAIN = {spec.name: position for position, spec in enumerate(_CHAIN)}

ALIASES = {"noise": "read_noise", "missing": "missing_values", "drift": "gain_drift"}
for _alias, _target in ALIASES.items():
    ELEMENT_KINDS[_alias] = replace(
        ELEMENT_KINDS[_target], name=_alias, alias_of=_target, summary=f"alias of {_target}"
    )

STREAM_KINDS: dict[str, KindSpec] = {
    spec.name: spec for spec in (DOWNLINK, PACKET_LOSS, DUPLICATES, REORDERING, LATENCY_JITTER, OUTAGE)
}

KINDS: dict[str, KindSpec] = {**ELEMENT_KINDS, **STREAM_KINDS}


def chain_order(name: str) -> tuple[int, str]:
    """Sort key: position in the signal chain, aliases right after their target."""
    spec = KINDS[name]
    return (CHAIN.get(spec.alias_of or name, 99), name)
