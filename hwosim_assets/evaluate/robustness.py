"""Robustness summaries in the spirit of ImageNet-C (Hendrycks & Dietterich 2019).

For each model and prediction kind, one error figure per perturbation level
(the headline metric of the kind, :data:`HEADLINE`; each is 0 for a perfect
answer), from the offline scorecards of the ``level-0`` ... ``level-5``
profiles:

* corruption error of a model on an observation, normalised by the baseline
  model of the same kind: ``CE = sum_{s=1..5} E_s / sum_{s=1..5} E_base,s``;
* relative corruption error, the degradation beyond the clean error:
  ``rCE = sum_s (E_s - E_0) / sum_s (E_base,s - E_base,0)``: a model that is
  poor on clean data but loses nothing more under perturbation is robust;
* mCE and relative mCE: their means over the observations, in percent (the
  baseline scores 100 %; below 100 % is better than the baseline).

Undefined (NaN) where the baseline's sum is zero: nothing to normalise by.
The rate axis (live scorecards at several rates) is summarised per model as
the fraction of packets answered within the cadence, the p99 latency and the
largest backlog at each rate.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

HEADLINE = {
    "flags": "flags.error",  # wrong flag decisions / values received (1 - accuracy)
    "cleaned": "cleaned.error",  # mean |cleaned - clean| in ERR
    "events": "events.error",  # |relative depth error| (a miss counts 1), or false alarms per hour
    "health": "health.error",  # wrong health decisions / decisions
}
LEVELS = range(6)


def level_curves(rows: pl.DataFrame) -> pl.DataFrame:
    """Headline error per (model, kind, family, observation, level), from offline scorecard rows."""
    wanted = {metric: kind for kind, metric in HEADLINE.items()}
    picked = rows.filter(
        (pl.col("mode") == "offline")
        & (pl.col("status") == "ok")
        & pl.col("level").is_not_null()
        & pl.col("metric").is_in(list(wanted))
    )
    return (
        picked.with_columns(pl.col("metric").replace_strict(wanted, return_dtype=pl.Utf8).alias("kind"))
        .group_by(["model", "kind", "family", "observation", "level"])
        .agg(pl.col("value").last().alias("error"))  # rows of one scorecard: one value
        .sort(["model", "kind", "observation", "level"])
    )


def _sums(curve: dict[int, float]) -> tuple[float, float] | None:
    if any(level not in curve or curve[level] is None or not math.isfinite(curve[level]) for level in LEVELS):
        return None
    corrupted = sum(curve[s] for s in LEVELS if s > 0)
    return corrupted, corrupted - 5 * curve[0]


def summary(curves: pl.DataFrame, baselines: list[str]) -> pl.DataFrame:
    """mCE and relative mCE (percent) per model and kind, against the first of ``baselines`` that
    answers the same kind; the error at each level averaged over observations alongside."""
    table: dict[tuple, dict[int, float]] = {}
    for row in curves.iter_rows(named=True):
        table.setdefault((row["model"], row["kind"], row["observation"]), {})[row["level"]] = row["error"]
    kinds = sorted({k for _, k, _ in table})
    reference = {
        kind: next((b for b in baselines if any(m == b and k == kind for m, k, _ in table)), None) for kind in kinds
    }
    out = []
    for model, kind in sorted({(m, k) for m, k, _ in table}):
        ce, rce = [], []
        per_level: dict[int, list[float]] = {s: [] for s in LEVELS}
        for (m, k, obs), curve in table.items():
            if (m, k) != (model, kind):
                continue
            for s in LEVELS:
                if curve.get(s) is not None:
                    per_level[s].append(curve[s])
            base = table.get((reference[kind], kind, obs)) if reference[kind] else None
            ours, theirs = _sums(curve), _sums(base) if base else None
            if ours and theirs:
                ce.append(ours[0] / theirs[0] if theirs[0] else math.nan)
                rce.append(ours[1] / theirs[1] if theirs[1] else math.nan)
        finite = lambda xs: [x for x in xs if math.isfinite(x)]  # noqa: E731
        out.append(
            {
                "model": model,
                "kind": kind,
                "baseline": reference[kind],
                "mce_pct": 100 * float(np.mean(finite(ce))) if finite(ce) else None,
                "relative_mce_pct": 100 * float(np.mean(finite(rce))) if finite(rce) else None,
                **{f"level_{s}": float(np.mean(v)) if v else None for s, v in per_level.items()},
            }
        )
    schema = {
        "model": pl.Utf8,
        "kind": pl.Utf8,
        "baseline": pl.Utf8,
        "mce_pct": pl.Float64,
        "relative_mce_pct": pl.Float64,
        **{f"level_{s}": pl.Float64 for s in LEVELS},
    }
    return pl.DataFrame(out, schema=schema)


def rate_curves(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (model, observation, rate): within-cadence fraction, p99 latency (ms), largest backlog."""
    metrics = {
        "live.within_cadence": "within_cadence",
        "live.latency_ms_p99": "latency_ms_p99",
        "live.backlog_max": "backlog_max",
    }
    live = rows.filter(
        (pl.col("mode") == "live") & pl.col("rate").is_not_null() & pl.col("metric").is_in(list(metrics))
    )
    if live.is_empty():
        return pl.DataFrame(
            schema={
                "model": pl.Utf8,
                "observation": pl.Utf8,
                "rate": pl.Float64,
                **{v: pl.Float64 for v in metrics.values()},
            }
        )
    return (
        live.with_columns(pl.col("metric").replace_strict(metrics, return_dtype=pl.Utf8))
        .pivot(on="metric", index=["model", "observation", "rate"], values="value", aggregate_function="last")
        .sort(["model", "observation", "rate"])
    )
