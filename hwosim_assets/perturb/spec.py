"""How a perturbation kind is declared: its parameters with their bounds,
its six severity levels, the function that applies it and the fraction of
elements it is expected to touch.

Everything a profile can say about a kind is checked against these
declarations - by pydantic models built from them - and so is what the
stream replay is handed (:meth:`KindSpec.check_params`): one set of bounds,
checked when profiles.yaml is loaded. The README's level table is rendered
from the same declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError, create_model

from hwosim_assets.userconfig import StrictModel, number, problems

if TYPE_CHECKING:
    from hwosim_assets.perturb.batch import Batch, Coverage, Effect
    from hwosim_assets.perturb.draws import Draws

LEVELS = range(6)  # 0 = untouched ... 5 = worst


class Range(NamedTuple):
    """The values a kind of parameter accepts; ``high`` None means the
    parameter declares its own upper bound (``Param.high``)."""

    what: str
    low: float | None  # None: symmetric, [-high, high]
    high: float | None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False


CHECKS: dict[str, Range] = {
    "probability": Range("a probability", 0, 1),
    "below_one": Range("a probability", 0, 1, high_open=True),  # where 1 would be a division by zero
    "fraction": Range("a fraction", 0, 1, low_open=True),
    "nonneg": Range("a number", 0, None),
    "positive": Range("a number", 0, None, low_open=True),
    "at_least_one": Range("a number", 1, None),  # mean lengths of runs: a run has at least one packet
    "count": Range("a whole number", 0, None, whole=True),
    "real": Range("a number", None, None),
}


@dataclass(frozen=True)
class Param:
    """One parameter of a kind. ``high`` is its largest accepted value (an
    order of magnitude or more beyond level 5: room to explore, but no value
    that overflows a count or hangs a run); ``math.inf`` where infinity has a
    meaning (a full well of inf = no saturation)."""

    name: str
    unit: str
    check: str  # a key of CHECKS
    meaning: str
    high: float | None = None

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"{self.name}: unknown check {self.check!r}")
        if (CHECKS[self.check].high is None) != (self.high is not None):
            raise ValueError(f"{self.name}: give high for a {self.check} parameter, and only then")

    @property
    def bounds(self) -> tuple[float, float]:
        """Lowest and highest value (each accepted unless the check's range is open there)."""
        check = CHECKS[self.check]
        high = self.high if check.high is None else check.high
        if high is None:  # refused by __post_init__
            raise ValueError(f"{self.name}: no upper bound")
        return (-high if check.low is None else check.low), high

    @property
    def annotation(self) -> Any:
        """The pydantic type of this parameter: strict number, bounds, message."""
        what, _, _, low_open, high_open, whole = CHECKS[self.check]
        return number(*self.bounds, what, low_open=low_open, high_open=high_open, whole=whole)


class ParamsModel(StrictModel):
    """Parameters of one kind; subclasses are built from the declarations."""

    key_word = "parameter"


@cache
def params_model(params: tuple[Param, ...], complete: bool) -> type[ParamsModel]:
    """The model of a kind's parameters: every one required (``complete``), or
    each optional (the overrides of a profile, laid over a level). An omitted
    optional parameter is None; an explicit null is refused like any non-number."""
    fields: dict[str, Any] = {p.name: (p.annotation, ...) if complete else (p.annotation, None) for p in params}
    return create_model("Params" if complete else "ParamOverrides", __base__=ParamsModel, **fields)


@dataclass(frozen=True)
class Expectation:
    """Expected fraction of elements a kind touches, and how far a measured
    fraction may stray from it before a statistical check should fail
    (about four standard deviations plus the model's own approximation)."""

    fraction: float
    tolerance: float

    def accepts(self, measured: float) -> bool:
        return abs(measured - self.fraction) <= self.tolerance


ApplyFn = Callable[["Batch", Mapping[str, float], "Draws"], "Effect"]
ExpectFn = Callable[[Mapping[str, float], "Coverage"], Expectation | None]


@dataclass(frozen=True)
class KindSpec:
    """One perturbation kind.

    ``levels[name]`` is the value of parameter ``name`` at severity 0..5
    (a single value means the same at every level). ``is_off(params)`` says
    when the parameters leave the data untouched; level 0 always is.
    ``bit`` is the truth-mask bit (None for stream-level kinds, which the
    stream replay applies and records itself).
    """

    name: str
    summary: str
    grounding: str
    families: frozenset[str]  # subset of {"spectra", "images"}, or {"stream"}
    params: tuple[Param, ...]
    levels: Mapping[str, tuple[float, ...]]
    is_off: Callable[[Mapping[str, float]], bool]
    bit: int | None = None
    apply: ApplyFn | None = None
    expect: ExpectFn | None = None
    alias_of: str | None = None
    marks_all: bool = False  # touches every element: its bit is preset in the truth mask
    anchors: Mapping[int, str] = field(default_factory=dict)  # level -> the recorded figure it rests on, and where

    def __post_init__(self) -> None:
        names = {p.name for p in self.params}
        if set(self.levels) != names:
            raise ValueError(f"{self.name}: level table {sorted(self.levels)} != params {sorted(names)}")
        for name, values in self.levels.items():
            if len(values) not in (1, len(LEVELS)):
                raise ValueError(f"{self.name}.{name}: need 1 or 6 level values")
        for level in LEVELS:  # a level the kind's own bounds refuse would fail only when used
            self.check_params(self.at_level(level))
        if set(self.anchors) - set(LEVELS[1:]):
            raise ValueError(f"{self.name}: anchors are for levels 1-5")
        if not self.is_off(self.at_level(0)):
            raise ValueError(f"{self.name}: level 0 must leave the data untouched")

    @property
    def stream_level(self) -> bool:
        return "stream" in self.families

    def at_level(self, level: int) -> dict[str, float]:
        """The parameters of this kind at a severity level."""
        return {name: (values[0] if len(values) == 1 else values[level]) for name, values in self.levels.items()}

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @cached_property
    def overrides_model(self) -> type[ParamsModel]:
        """The model of a profile's ``params:`` for this kind (any subset)."""
        return params_model(self.params, complete=False)

    def check_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """A complete parameter set of this kind, as floats, or ValueError naming
        ``kind.parameter`` and the accepted range. The profile loader's bounds:
        what the stream replay calls on the faults it is handed."""
        try:
            checked = params_model(self.params, complete=True).model_validate(dict(params))
        except ValidationError as exc:
            found = [f"{self.name}.{'.'.join(map(str, where))}: {what}" for where, what in problems(exc)]
            raise ValueError("; ".join(found)) from None
        return checked.model_dump()
