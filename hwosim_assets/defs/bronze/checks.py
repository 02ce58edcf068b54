"""Checks on the bronze tables, run in the same step as the materialization
(as `check_specs`) so each partition is checked from the data just written."""

from __future__ import annotations

import dagster as dg
import polars as pl


def specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("schema", asset=asset, description="columns and types are the shared bronze schema"),
        dg.AssetCheckSpec("non_empty", asset=asset, description="at least one row"),
        dg.AssetCheckSpec("no_new_nans", asset=asset, description="no NaN where astropy's read of the FITS has none"),
    ]


def schema(asset: str, table: pl.DataFrame, expected: dict[str, pl.DataType]) -> dg.AssetCheckResult:
    got = dict(table.schema)
    wrong = {k: f"{got.get(k)} (expected {v})" for k, v in expected.items() if got.get(k) != v}
    extra = sorted(set(got) - set(expected))
    return dg.AssetCheckResult(
        check_name="schema",
        asset_key=asset,
        passed=not wrong and not extra,
        metadata={"wrong": str(wrong), "extra": str(extra)},
    )


def non_empty(asset: str, table: pl.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="non_empty", asset_key=asset, passed=len(table) > 0, metadata={"rows": len(table)}
    )


def no_new_nans(asset: str, source: dict[str, int], bronze: dict[str, int]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="no_new_nans",
        asset_key=asset,
        passed=source == bronze,
        metadata={"source_nans": str(source), "bronze_nans": str(bronze)},
    )
