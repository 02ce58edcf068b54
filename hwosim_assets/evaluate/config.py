"""models.yaml: the models a scorecard run scores, checked before anything runs.

Format (``hwosim_assets/defaults/models.yaml`` is the packaged file; your own
with ``HWOSIM_MODELS``)::

    version: 1
    models:
      - name: sigma-clip                 # a slug: how scores name the model
        model: hwosim_assets.evaluate.baselines:SigmaClipFlagger   # package.module:factory
        params: {threshold: 6.0}         # keyword arguments of the factory (optional)
        baseline: true                   # the reference of the robustness figures (optional)
        description: what it is          # optional
    rates:                               # optional: the live rate sweep of the robustness asset
      per_second: [10, 100, 1000]        # packets per second, at most 8 rates
      profile: level-2                   # the profile replayed (default level-2)
      packets: 200                       # the first N packets of each observation (default all)

A reference that does not have the ``package.module:factory`` form, an
unknown key, a duplicate name or a rate out of bounds fails here, naming the
file, the model and the field. Whether the reference imports, and whether
the model behaves, is only known when it is scored: a failure there is
recorded in that model's scorecard, and the other models are scored.
The file is read by :mod:`hwosim_assets.userconfig` (no aliases, no duplicate
keys, bounded size), like profiles.yaml and streams.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from hwosim_assets.evaluate.model import REFERENCE
from hwosim_assets.evaluate.offline import ModelSpec
from hwosim_assets.stream.schema import SLUG
from hwosim_assets.userconfig import (
    Omittable,
    StrictModel,
    integer_checks,
    load_file,
    number_checks,
    text_checks,
)

DEFAULT_MODELS = Path(__file__).resolve().parent.parent / "defaults" / "models.yaml"
MAX_MODELS = 100
MAX_RATES = 8
DEFAULT_RATE_PROFILE = "level-2"


class ModelsConfigError(ValueError):
    """A models.yaml that cannot be used; the message names file, model and field."""


@dataclass(frozen=True)
class RateSweep:
    per_second: tuple[float, ...]
    profile: str = DEFAULT_RATE_PROFILE
    packets: int | None = None


@dataclass(frozen=True)
class ModelsConfig:
    models: dict[str, ModelSpec]
    rates: RateSweep | None = None
    path: str = ""
    baselines: tuple[str, ...] = field(default=())


# Annotated[..., *checks] rather than text()/number()/integer(): the same types, readable by the type checker.
Name = Annotated[
    str, *text_checks("a slug: a-z or 0-9, then up to 63 of a-z, 0-9, '_' and '-'", pattern=SLUG, max_length=64)
]
Reference = Annotated[
    str,
    *text_checks(
        "package.module:factory (a module path, a colon, a class or function)", pattern=REFERENCE, max_length=255
    ),
]
ParamName = Annotated[str, *text_checks("a Python identifier", pattern=re.compile(r"[A-Za-z_]\w{0,63}"), max_length=64)]
Text = Annotated[str, *text_checks()]
Rate = Annotated[float, *number_checks(1e-3, 1e5, "a number of packets per second")]
ProfileName = Annotated[str, *text_checks("a profile name (a slug)", pattern=SLUG, max_length=64)]
Packets = Annotated[int, *integer_checks(1, 1_000_000, "a number of packets")]
Version = Annotated[int, *integer_checks(1, 1, "the only version understood")]


class ModelEntry(StrictModel):
    """One entry of ``models:``."""

    name: Name
    model: Reference
    params: dict[ParamName, Any] = {}
    baseline: bool = False
    description: Text = ""

    @field_validator("params")
    @classmethod
    def _plain_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            if not _plain(value):
                raise ValueError(f"parameter {key!r} must be a number, text, true/false, null or a list of them")
        return params


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    return isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) or v is None for v in value)


class RatesBlock(StrictModel):
    """``rates:``: the live rate sweep."""

    per_second: Annotated[list[Rate], Field(min_length=1, max_length=MAX_RATES)]
    profile: ProfileName = DEFAULT_RATE_PROFILE
    packets: Omittable[Packets] = None


class ModelsFile(StrictModel):
    key_word = "top-level key"

    version: Version = 1
    models: Annotated[list[ModelEntry], Field(max_length=MAX_MODELS)]
    rates: Omittable[RatesBlock] = None


def load_models(path: str | Path | None = None) -> ModelsConfig:
    """Read and check models.yaml (the packaged one when ``path`` is None or empty)."""
    path = Path(path) if path else DEFAULT_MODELS
    parsed, document = load_file(path, ModelsFile, ModelsConfigError, "models", "model", "a top-level 'models:' list")
    models: dict[str, ModelSpec] = {}
    for entry in parsed.models:
        if entry.name in models:
            raise ModelsConfigError(f"{path}: model {entry.name!r}: field name: duplicate model name")
        models[entry.name] = ModelSpec(entry.name, entry.model, dict(entry.params), entry.baseline)
    rates = None
    if parsed.rates is not None:
        rates = RateSweep(tuple(float(r) for r in parsed.rates.per_second), parsed.rates.profile, parsed.rates.packets)
    return ModelsConfig(models, rates, str(path), tuple(n for n, m in models.items() if m.baseline))
