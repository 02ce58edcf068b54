"""Small metadata helpers shared by the assets."""

from __future__ import annotations

import dagster as dg
import polars as pl


def md_table(df: pl.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    """A polars frame as a markdown table for the UI (first `max_rows` rows)."""
    head = df.head(max_rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + " --- |" * len(head.columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n({len(df) - max_rows} more rows)")
    return dg.MetadataValue.md("\n".join(lines))


def figure(lake, key: str, png: bytes) -> dict[str, dg.MetadataValue]:
    """Store a figure in the lake and return its metadata: a link to the full-size PNG and a small
    copy inline (markdown image from a data: URL), so the UI shows it without access to the lake."""
    import base64

    from hwosim_assets import plots

    stored = lake.put_bytes(key, png)
    small = base64.b64encode(plots.preview(png)).decode()
    return {
        "plot": dg.MetadataValue.path(lake.uri(stored.key)),
        "plot_preview": dg.MetadataValue.md(f"![{key}](data:image/png;base64,{small})"),
    }
