"""Small metadata helpers shared by the assets."""

from __future__ import annotations

import dagster as dg
import polars as pl


def md_table(df: pl.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    """A polars frame as a markdown table for the UI (first ``max_rows`` rows)."""
    head = df.head(max_rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + " --- |" * len(head.columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n({len(df) - max_rows} more rows)")
    return dg.MetadataValue.md("\n".join(lines))
