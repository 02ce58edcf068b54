"""The bronze stage: tidy Parquet tables read from the raw FITS files.

``bronze_spectra`` holds one row per integration x wavelength of the
time-series products; ``bronze_images`` holds image frames cut into tile
packets. Both keep astropy's values bit for bit (see records.py).
"""


import tempfile
import time
from pathlib import Path
from typing import Callable

import dagster as dg
import polars as pl

from hwosim_assets.defs.bronze import checks
from hwosim_assets.defs.lake.layout import CATALOG_KEY, bronze_key, raw_key
from hwosim_assets.defs.lake.resources import LakeResource
from hwosim_assets.defs.mast.assets import raw_products
from hwosim_assets.defs.mast.partitions import IMAGE_OBSERVATIONS, SPECTRA_OBSERVATIONS
from hwosim_assets.defs.metadata import md_table
from hwosim_assets.defs.resources import HwosimConfig
from hwosim_assets.ingest import catalog, quality
from hwosim_assets.ingest.fits_reader import FitsProductError, read_images, read_spectra
from hwosim_assets.records import IMAGE_TILE_SCHEMA, SPECTRA_SCHEMA


def _build_bronze(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    family: str,
    read: Callable[[list[Path]], pl.DataFrame],
    schema: dict[str, pl.DataType],
) -> dg.MaterializeResult:
    """Fetch the observation's raw files of one family, read them, write the table, check it."""
    obs_id = context.partition_key
    asset = context.asset_key
    products = catalog.products_of(lake.read_parquet(CATALOG_KEY), obs_id, family)
    if products.is_empty():
        raise dg.Failure(f"observation {obs_id!r} has no {family} products in {lake.uri(CATALOG_KEY)}")
    with tempfile.TemporaryDirectory(prefix="hwosim-bronze-") as tmp:
        paths = []
        for row in products.iter_rows(named=True):
            path = Path(tmp) / row["filename"]
            lake.get_file(raw_key(row["program"], obs_id, row["filename"]), path)
            paths.append(path)
        t0 = time.perf_counter()
        try:
            table = read(paths)
        except FitsProductError as exc:  # name the lake object, not our temp copy
            raise dg.Failure(f"observation {obs_id!r}, raw files under {lake.uri(raw_key(products['program'][0], obs_id, ''))}: {exc}") from exc
        seconds = time.perf_counter() - t0
        source_nans = quality.source_nan_counts(paths, family)
        fits_bytes = sum(p.stat().st_size for p in paths)
    key = bronze_key(family, obs_id)
    stored = lake.write_parquet(key, table)
    context.log.info(f"{obs_id}: {len(table)} {family} rows from {len(paths)} files -> {lake.uri(key)}")
    return dg.MaterializeResult(
        metadata={
            "rows": len(table),
            "packets": table["seq"].n_unique(),
            "files": len(paths),
            "parquet_bytes": stored.size,
            "read_MB_per_s": round(fits_bytes / 1e6 / seconds, 1) if seconds else 0.0,
            "simulated": bool(products["simulated"].any()),
            "table": dg.MetadataValue.path(lake.uri(key)),
            "preview": md_table(table.select(pl.exclude(pl.Binary)), 5),
        },
        check_results=[
            checks.schema(asset, table, schema),
            checks.non_empty(asset, table),
            checks.no_new_nans(asset, source_nans, quality.bronze_nan_counts(table, family)),
        ],
    )


@dg.asset(
    group_name="bronze",
    partitions_def=SPECTRA_OBSERVATIONS,
    deps=[dg.AssetDep(raw_products, partition_mapping=dg.IdentityPartitionMapping())],
    check_specs=checks.specs("bronze_spectra"),
    kinds={"parquet", "polars"},
)
def bronze_spectra(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Time-series spectra (x1dints): one row per integration x wavelength, event
    time from the INT_TIMES table."""
    return _build_bronze(context, lake, "spectra", read_spectra, SPECTRA_SCHEMA)


@dg.asset(
    group_name="bronze",
    partitions_def=IMAGE_OBSERVATIONS,
    deps=[dg.AssetDep(raw_products, partition_mapping=dg.IdentityPartitionMapping())],
    check_specs=checks.specs("bronze_images"),
    kinds={"parquet", "polars"},
)
def bronze_images(
    context: dg.AssetExecutionContext, lake: LakeResource, hwosim: HwosimConfig
) -> dg.MaterializeResult:
    """Image frames (cal, calints, i2d) cut into tile packets, event time from the
    exposure headers."""
    return _build_bronze(
        context, lake, "images", lambda paths: read_images(paths, tile_size=hwosim.tile_size), IMAGE_TILE_SCHEMA
    )
