"""The MAST stage: choose products (`jwst_catalog`) and land them byte-exact
in the lake's raw zone (`raw_products`)."""

import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from hwosim_assets.defs.lake.layout import CATALOG_KEY, raw_key
from hwosim_assets.defs.lake.resources import LakeResource
from hwosim_assets.defs.mast.partitions import FAMILY_PARTITIONS, OBSERVATIONS
from hwosim_assets.defs.mast.resources import ProductSource
from hwosim_assets.defs.metadata import md_table
from hwosim_assets.ingest import catalog
from hwosim_assets.ingest.selection import Selection
from hwosim_assets.records import SUPPORTED_PRODUCT_TYPES


class CatalogConfig(dg.Config):
    """Which JWST products to take. Empty lists mean "any"; with the MAST
    source at least a program or a target is required, so that nobody asks
    the archive for all of JWST by accident."""

    programs: list[str] = Field(default=[], description='JWST program ids, e.g. ["2783"]')
    targets: list[str] = Field(default=[], description="target names as MAST has them")
    instruments: list[str] = Field(default=[], description='"MIRI" (all its modes) or a mode, "MIRI/SLITLESS"')
    product_types: list[str] = Field(
        default=[], description=f"any of {', '.join(SUPPORTED_PRODUCT_TYPES)}; empty = all of them"
    )
    calib_level: int | None = Field(default=None, description="MAST calibration level; none = 2 and 3")
    max_products: int = Field(default=50, description="at most this many files, the first by observation and name")


@dg.asset(group_name="mast", kinds={"parquet"})
def jwst_catalog(
    context: dg.AssetExecutionContext,
    config: CatalogConfig,
    source: ProductSource,
    lake: LakeResource,
) -> dg.MaterializeResult:
    """The MAST selection as a Parquet manifest, one row per product file.

    It registers every observation as a partition itself (rather than through a
    sensor) so that one materialization, from the UI or `hwosim demo`, makes
    the observations available to backfill at once, with no daemon running.
    """
    selection = Selection(
        programs=tuple(config.programs),
        targets=tuple(config.targets),
        instruments=tuple(config.instruments),
        product_types=tuple(config.product_types),
        calib_level=config.calib_level,
        max_products=config.max_products,
    )
    manifest = catalog.check_manifest(source.query(selection), f"{source.name} query")
    lake.write_parquet(CATALOG_KEY, manifest)

    observations = sorted(manifest["obs_id"].unique().to_list())
    context.instance.add_dynamic_partitions(OBSERVATIONS.name, observations)
    for family, obs_ids in catalog.observations_by_family(manifest).items():
        context.instance.add_dynamic_partitions(FAMILY_PARTITIONS[family].name, obs_ids)
    context.log.info(f"{len(manifest)} products in {len(observations)} observations from {source.name}")

    simulated = bool(manifest["simulated"].any())
    return dg.MaterializeResult(
        metadata={
            "products": len(manifest),
            "observations": len(observations),
            "bytes": int(manifest["size"].sum()),
            "source": source.name,
            "simulated": dg.MetadataValue.text(
                "yes: HWOsim sample products, not real JWST data" if simulated else "no"
            ),
            "manifest": dg.MetadataValue.path(lake.uri(CATALOG_KEY)),
            "selection": md_table(catalog.summary(manifest)),
        }
    )


@dg.asset(group_name="mast", partitions_def=OBSERVATIONS, deps=[jwst_catalog], kinds={"s3", "fits"})
def raw_products(context: dg.AssetExecutionContext, source: ProductSource, lake: LakeResource) -> dg.MaterializeResult:
    """Byte-exact FITS files of one observation under `raw/jwst/<program>/<obs_id>/`.

    Idempotent and resumable: a file already in the lake with the expected size
    (and checksum, when the source reports one) is skipped, so a rerun after a
    failure fetches only what is missing. Each file goes source -> temp file ->
    checked (size, checksum, and identified from its headers: a product
    HWOsim cannot read fails the run before any file of the observation
    lands) -> lake, and the lake writes objects whole or not at all.
    """
    obs_id = context.partition_key
    products = catalog.products_of(lake.read_parquet(CATALOG_KEY), obs_id)
    if products.is_empty():
        raise dg.Failure(f"observation {obs_id!r} is not in {lake.uri(CATALOG_KEY)}: rematerialize jwst_catalog")

    from hwosim_assets.ingest.products import FitsProductError, identify  # astropy: only where FITS is read

    landed, fetched, nbytes, seconds = [], [], 0, 0.0
    with tempfile.TemporaryDirectory(prefix="hwosim-raw-") as tmp:
        # First fetch every missing file and identify it from its headers: a
        # product HWOsim cannot read fails the run before anything lands.
        for i, row in enumerate(products.iter_rows(named=True), start=1):
            key = raw_key(row["program"], obs_id, row["filename"])
            present = lake.info(key)
            if present and present.size == row["size"] and row["checksum"] in (None, present.sha256):
                landed.append((row["filename"], present.size, present.sha256, "already there"))
                continue
            t0 = time.perf_counter()
            path = source.fetch(row, Path(tmp))
            seconds += time.perf_counter() - t0
            try:
                identify(path)
            except FitsProductError as exc:
                raise dg.Failure(
                    f"observation {obs_id!r} from {source.name}: {exc}; nothing landed in the lake"
                ) from exc
            fetched.append((key, row, path))
            context.log.info(f"[{i}/{len(products)}] {row['filename']}: {path.stat().st_size / 1e6:.1f} MB fetched")
        for key, row, path in fetched:
            t0 = time.perf_counter()
            stored = lake.put_file(key, path)
            seconds += time.perf_counter() - t0
            nbytes += stored.size
            landed.append((row["filename"], stored.size, stored.sha256, "landed"))
    skipped = len(products) - len(fetched)

    table = pl.DataFrame(landed, schema=["file", "bytes", "sha256", "status"], orient="row")
    return dg.MaterializeResult(
        metadata={
            "files": len(products),
            "bytes": int(table["bytes"].sum()),
            "skipped": skipped,
            "landed_MB_per_s": round(nbytes / 1e6 / seconds, 2) if seconds else 0.0,
            "simulated": bool(products["simulated"].any()),
            "files_table": md_table(table),
        }
    )
