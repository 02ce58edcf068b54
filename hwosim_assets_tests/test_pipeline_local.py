"""The embedded default end to end: sample source -> local lake -> bronze."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.defs.lake.layout import CATALOG_KEY, bronze_key, raw_key
from hwosim_assets.defs.mast.partitions import FAMILY_PARTITIONS
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.ingest.fits_reader import tile_pixels
from hwosim_assets.settings import Settings
from hwosim_assets_tests.pipeline import checks_passed, materialize


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    home = tmp_path_factory.mktemp("hwosim")
    resources = resources_from_settings(Settings.from_env({"HWOSIM_HOME": str(home)}))
    instance = dg.DagsterInstance.ephemeral()
    materialize("jwst_catalog", resources, instance)
    return resources, instance, home


def test_catalog_registers_observations(embedded):
    resources, instance, _ = embedded
    manifest = resources["lake"].read_parquet(CATALOG_KEY)
    observations = set(instance.get_dynamic_partitions("observations"))
    assert observations == set(manifest["obs_id"].to_list()) and observations
    assert (
        set(instance.get_dynamic_partitions("spectra_observations"))
        | set(instance.get_dynamic_partitions("images_observations"))
        == observations
    )
    assert manifest["simulated"].all()


def test_raw_products_are_byte_exact_and_idempotent(embedded, tmp_path):
    resources, instance, _ = embedded
    lake = resources["lake"]
    manifest = lake.read_parquet(CATALOG_KEY)
    for obs_id in instance.get_dynamic_partitions("observations"):
        first = materialize("raw_products", resources, instance, obs_id)
        meta = first.get_asset_materialization_events()[0].materialization.metadata
        rows = manifest.filter(pl.col("obs_id") == obs_id)
        assert meta["files"].value == len(rows)
        for row in rows.iter_rows(named=True):
            info = lake.info(raw_key(row["program"], obs_id, row["filename"]))
            assert info.size == row["size"] and info.sha256 == row["checksum"]
        again = materialize("raw_products", resources, instance, obs_id)
        assert again.get_asset_materialization_events()[0].materialization.metadata["skipped"].value == len(rows)


def test_bronze_equals_astropy(embedded, tmp_path):
    resources, instance, _ = embedded
    lake = resources["lake"]
    manifest = lake.read_parquet(CATALOG_KEY)
    for family, asset in (("spectra", "bronze_spectra"), ("images", "bronze_images")):
        obs_ids = instance.get_dynamic_partitions(FAMILY_PARTITIONS[family].name)
        assert obs_ids, f"the sample catalog has no {family} observation"
        for obs_id in obs_ids:
            materialize("raw_products", resources, instance, obs_id)
            result = materialize(asset, resources, instance, obs_id)
            assert checks_passed(result) == {"schema": True, "non_empty": True, "no_new_nans": True}
            table = lake.read_parquet(bronze_key(family, obs_id))
            row = manifest.filter(pl.col("obs_id") == obs_id).sort("filename").row(0, named=True)
            path = tmp_path / row["filename"]
            lake.get_file(raw_key(row["program"], obs_id, row["filename"]), path)
            with fits.open(path) as hdul:
                if family == "spectra":
                    first = hdul["EXTRACT1D", 1].data
                    got = table.filter(pl.col("seq") == 0).sort("channel")
                    assert np.array_equal(got["flux"].to_numpy(), first["FLUX"], equal_nan=True)
                    assert np.array_equal(got["wavelength"].to_numpy(), first["WAVELENGTH"], equal_nan=True)
                    assert np.array_equal(got["dq"].to_numpy(), first["DQ"])
                else:
                    sci = hdul["SCI"].data
                    sci = sci if sci.ndim == 2 else sci[0]
                    tile = table.filter(pl.col("seq") == 0).row(0, named=True)
                    want = sci[: tile["ny"], : tile["nx"]]
                    assert np.array_equal(tile_pixels(tile, "sci"), want, equal_nan=True)
