"""What a catalog manifest says about its observations.

The manifest (records.CATALOG_SCHEMA) lists product files; downstream stages
think in observations and families (time-series spectra, images). These
helpers derive one from the other so that the rule lives in one place.
"""

from __future__ import annotations

import polars as pl

from hwosim_assets.records import CATALOG_SCHEMA, FAMILIES


def check_manifest(manifest: pl.DataFrame, where: str) -> pl.DataFrame:
    """The manifest with exactly the catalog schema, or a ValueError naming the column."""
    for name, dtype in CATALOG_SCHEMA.items():
        if name not in manifest.columns:
            raise ValueError(f"{where}: catalog manifest has no column {name!r}")
        if manifest.schema[name] != dtype:
            raise ValueError(f"{where}: column {name!r} is {manifest.schema[name]}, expected {dtype}")
    return manifest.select(list(CATALOG_SCHEMA))


def observations_by_family(manifest: pl.DataFrame) -> dict[str, list[str]]:
    """Observation ids that have at least one product of each family, sorted."""
    return {
        family: sorted(
            manifest.filter(pl.col("product_type").is_in(list(f.product_types)))["obs_id"].unique().to_list()
        )
        for family, f in FAMILIES.items()
    }


def products_of(manifest: pl.DataFrame, obs_id: str, family: str | None = None) -> pl.DataFrame:
    """The product rows of one observation (optionally of one family), by file name."""
    rows = manifest.filter(pl.col("obs_id") == obs_id)
    if family is not None:
        rows = rows.filter(pl.col("product_type").is_in(list(FAMILIES[family].product_types)))
    return rows.sort("filename")


def summary(manifest: pl.DataFrame) -> pl.DataFrame:
    """One row per observation: what the catalog selected, for the UI."""
    return (
        manifest.group_by("obs_id", "program", "instrument", "target")
        .agg(
            pl.col("product_type").unique().sort().str.join(",").alias("product_types"),
            pl.len().alias("files"),
            (pl.col("size").sum() / 1e6).round(2).alias("MB"),
            pl.col("simulated").any().alias("simulated"),
        )
        .sort("obs_id")
    )
