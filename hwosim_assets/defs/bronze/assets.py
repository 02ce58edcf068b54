"""The bronze stage: tidy Parquet tables read from the raw FITS files, one asset per family.

`bronze_spectra` holds one row per integration x wavelength of the
MultiSpecModel products (x1dints, x1d); `bronze_images` holds the frames of
ImageModel, CubeModel, SlitModel and MultiSlitModel products cut into tile
packets (records.FAMILIES). Both keep astropy's values bit for bit, and
each observation also gets a metadata record: one row per product with the
header facts the physics downstream needs (exposure times, detector,
readout, units, photometric calibration).
"""

import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from hwosim_assets.defs.bronze import checks
from hwosim_assets.defs.lake.layout import CATALOG_KEY, bronze_key, bronze_meta_key, raw_key
from hwosim_assets.defs.lake.resources import LakeResource
from hwosim_assets.defs.mast.assets import raw_products
from hwosim_assets.defs.mast.partitions import FAMILY_PARTITIONS
from hwosim_assets.defs.metadata import md_table
from hwosim_assets.defs.project import HwosimConfig
from hwosim_assets.ingest import catalog
from hwosim_assets.records import FAMILIES, Family


def build_bronze(
    context: dg.AssetExecutionContext, lake: LakeResource, family: Family, tile_size: int
) -> dg.MaterializeResult:
    """Fetch the observation's raw files of one family, read them, write the table and its record, check them."""
    from hwosim_assets.ingest import quality  # astropy: imported where FITS is read, not by every run
    from hwosim_assets.ingest.fits_reader import FitsProductError, header_facts, read_family

    obs_id = context.partition_key
    asset = context.asset_key
    products = catalog.products_of(lake.read_parquet(CATALOG_KEY), obs_id, family.name)
    if products.is_empty():
        raise dg.Failure(f"observation {obs_id!r} has no {family.name} products in {lake.uri(CATALOG_KEY)}")
    raw_prefix = lake.uri(raw_key(products["program"][0], obs_id, ""))
    with tempfile.TemporaryDirectory(prefix="hwosim-bronze-") as tmp:
        paths = []
        for row in products.iter_rows(named=True):
            path = Path(tmp) / row["filename"]
            lake.get_file(raw_key(row["program"], obs_id, row["filename"]), path)
            paths.append(path)
        t0 = time.perf_counter()
        try:
            table = read_family(family.name, paths, tile_size)
            facts = header_facts(paths)
        except FitsProductError as exc:  # name the lake object, not our temp copy
            message = str(exc).replace(f"{tmp}/", raw_prefix)
            raise dg.Failure(f"observation {obs_id!r}, raw files under {raw_prefix}: {message}") from None
        seconds = time.perf_counter() - t0
        source_nans = quality.source_nan_counts(paths, family.name)
        fits_bytes = sum(p.stat().st_size for p in paths)
    stored = lake.write_parquet(bronze_key(family.name, obs_id), table)
    lake.write_parquet(bronze_meta_key(family.name, obs_id), facts)
    context.log.info(f"{obs_id}: {len(table)} {family.name} rows from {len(paths)} files -> {stored.key}")
    shown = ["product", "model", "product_type", "detector", "effinttm", "nints", "bunit"]
    return dg.MaterializeResult(
        metadata={
            "rows": len(table),
            "packets": table["seq"].n_unique(),
            "files": len(paths),
            "parquet_bytes": stored.size,
            "read_MB_per_s": round(fits_bytes / 1e6 / seconds, 1) if seconds else 0.0,
            "simulated": bool(products["simulated"].any()),
            "table": dg.MetadataValue.path(lake.uri(stored.key)),
            "products": md_table(facts.select(shown).rename({"effinttm": "effinttm [s]"})),
            "preview": md_table(table.select(pl.exclude(pl.Binary)), 5),
        },
        check_results=[
            checks.schema(asset, table, family.schema),
            checks.non_empty(asset, table),
            checks.no_new_nans(asset, source_nans, quality.bronze_nan_counts(table, family.name)),
        ],
    )


def bronze_asset(family: Family) -> dg.AssetsDefinition:
    """The bronze asset of one family, partitioned by the family's observations."""

    @dg.asset(
        name=f"bronze_{family.name}",
        group_name="bronze",
        partitions_def=FAMILY_PARTITIONS[family.name],
        deps=[dg.AssetDep(raw_products, partition_mapping=dg.IdentityPartitionMapping())],
        check_specs=checks.specs(f"bronze_{family.name}"),
        kinds={"parquet", "polars"},
        description=(
            f"{family.name.capitalize()} of {', '.join(family.models)} products "
            f"({', '.join(family.product_types)}); one packet is {family.packet}."
        ),
    )
    def _bronze(context: dg.AssetExecutionContext, lake: LakeResource, hwosim: HwosimConfig) -> dg.MaterializeResult:
        return build_bronze(context, lake, family, hwosim.tile_size)

    return _bronze


BRONZE = {name: bronze_asset(family) for name, family in FAMILIES.items()}
bronze_assets = list(BRONZE.values())
