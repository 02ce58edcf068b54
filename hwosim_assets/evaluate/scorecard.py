"""A scorecard: one model's scores on one observation x profile (offline, or live at one rate).

Scores are data: each scorecard carries what is needed to compare two runs -
the model reference, its version and source hash, its parameters, the
profile and its config hash, the seed - and is stored as long rows (one per
metric) in the lake and in the ``hwosim_scores`` SQL table. A model that
failed gets a scorecard too, with ``status = "failed"`` and the error, so a
backfill shows which model broke where; models not made for the family get
``status = "skipped"``.

Metric names are ``<prediction kind>.<metric>`` (``flags.f1``,
``cleaned.mae_err``, ``events.nab_score``, ``health.recall``...). Those under
``timing.`` and ``live.`` are measurements of the machine as much as of the
model: the others are reproducible bit for bit from the same model, data and
seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field

import polars as pl

MEASURED = ("timing.", "live.")  # metric prefixes that depend on the machine, not only the data
LEVEL = re.compile(r"level-(\d+)")

ROW_SCHEMA = {
    "scorecard_id": pl.Utf8,
    "created": pl.Float64,  # UTC epoch seconds
    "model": pl.Utf8,
    "model_ref": pl.Utf8,
    "model_version": pl.Utf8,
    "model_hash": pl.Utf8,
    "model_params": pl.Utf8,  # JSON
    "observation": pl.Utf8,
    "family": pl.Utf8,
    "profile": pl.Utf8,
    "profile_hash": pl.Utf8,
    "level": pl.Int32,  # N of a profile named level-N, else null
    "seed": pl.Int64,
    "mode": pl.Utf8,  # offline | live
    "stream": pl.Utf8,  # live: the stream read
    "rate": pl.Float64,  # live: target packets per second
    "status": pl.Utf8,  # ok | failed | skipped
    "error": pl.Utf8,
    "metric": pl.Utf8,
    "value": pl.Float64,  # null where undefined
}


def level_of(profile: str) -> int | None:
    """N for a profile named ``level-N``."""
    match = LEVEL.fullmatch(profile)
    return int(match.group(1)) if match else None


@dataclass
class Scorecard:
    model: str
    model_ref: str
    model_version: str
    model_hash: str
    model_params: dict
    observation: str
    family: str
    profile: str
    profile_hash: str
    seed: int
    mode: str = "offline"
    stream: str | None = None
    rate: float | None = None
    status: str = "ok"
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def level(self) -> int | None:
        return level_of(self.profile)

    @property
    def scorecard_id(self) -> str:
        """Same model, data, seed, mode and rate -> same id: a rerun replaces its rows."""
        identity = [
            self.model,
            self.model_ref,
            self.model_hash,
            self.observation,
            self.family,
            self.profile,
            self.profile_hash,
            self.seed,
            self.mode,
            self.stream,
            self.rate,
        ]
        return hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:24]

    def reproducible(self) -> dict[str, float]:
        """The metrics that depend only on model, data and seed."""
        return {k: v for k, v in self.metrics.items() if not k.startswith(MEASURED)}

    def rows(self) -> pl.DataFrame:
        """Long rows, one per metric (one row with a null metric when there is none: a failure)."""
        base = {
            "scorecard_id": self.scorecard_id,
            "created": self.created,
            "model": self.model,
            "model_ref": self.model_ref,
            "model_version": self.model_version,
            "model_hash": self.model_hash,
            "model_params": json.dumps(self.model_params, sort_keys=True, default=repr),
            "observation": self.observation,
            "family": self.family,
            "profile": self.profile,
            "profile_hash": self.profile_hash,
            "level": self.level,
            "seed": self.seed,
            "mode": self.mode,
            "stream": self.stream,
            "rate": self.rate,
            "status": self.status,
            "error": self.error,
        }
        items: list[tuple[str | None, float | None]] = [*sorted(self.metrics.items())] or [(None, None)]
        rows = [{**base, "metric": k, "value": _finite(v)} for k, v in items]
        return pl.DataFrame(rows, schema=ROW_SCHEMA)

    def text(self) -> str:
        """The scorecard as a person reads it."""
        where = (
            f"live from stream {self.stream}" + (f" at {self.rate:g} packets/s" if self.rate else "")
            if self.mode == "live"
            else "offline"
        )
        lines = [
            f"model {self.model} ({self.model_ref}{', ' + self.model_version if self.model_version else ''}, hash {self.model_hash})",
            f"  {self.observation} under {self.profile} (profile hash {self.profile_hash}), seed {self.seed}, {where}",
        ]
        if self.status != "ok":
            lines.append(f"  {self.status.upper()}: {self.error}")
        width = max((len(k) for k in self.metrics), default=0)
        for name, value in sorted(self.metrics.items()):
            lines.append(f"  {name:<{width}}  {_shown(value)}")
        return "\n".join(lines)


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _shown(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.4g}"


def frame(cards: list[Scorecard]) -> pl.DataFrame:
    """All rows of several scorecards."""
    return pl.concat([c.rows() for c in cards]) if cards else pl.DataFrame(schema=ROW_SCHEMA)
