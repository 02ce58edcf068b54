"""How a perturbation kind is declared: its parameters, its six severity
levels, the function that applies it and the fraction of elements it is
expected to touch.

Everything a profile can say about a kind is checked against these
declarations, and the README's level table is rendered from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from hwosim_assets.perturb.batch import Batch, Coverage, Effect
    from hwosim_assets.perturb.draws import Draws

LEVELS = range(6)  # 0 = untouched ... 5 = worst

# Checks a parameter value must pass; the message names what was expected.
CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "nonneg": (lambda v: v >= 0, "must be >= 0"),
    "positive": (lambda v: v > 0, "must be > 0"),
    "probability": (lambda v: 0 <= v <= 1, "must be a probability in [0, 1]"),
    "fraction": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "count": (lambda v: v >= 0 and float(v).is_integer(), "must be a whole number >= 0"),
    "real": (lambda v: math.isfinite(v), "must be a finite number"),
}


@dataclass(frozen=True)
class Param:
    name: str
    unit: str
    check: str  # a key of CHECKS
    meaning: str

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__} {value!r}"
        if math.isnan(value):
            return "must not be NaN"
        if math.isinf(value) and not (value > 0 and self.check in ("nonneg", "positive")):
            return "must be finite"
        test, message = CHECKS[self.check]
        return None if test(value) else f"{message}, got {value!r}"


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

    def __post_init__(self) -> None:
        names = {p.name for p in self.params}
        if set(self.levels) != names:
            raise ValueError(f"{self.name}: level table {sorted(self.levels)} != params {sorted(names)}")
        for name, values in self.levels.items():
            if len(values) not in (1, len(LEVELS)):
                raise ValueError(f"{self.name}.{name}: need 1 or 6 level values")
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
