"""Every real JWST product in shared/data/jwst through the whole pipeline, from
the user's own files (HWOSIM_SOURCE=files): catalog -> raw -> bronze ->
perturbed under every shipped profile -> one replayed stream window. Also:
a renamed copy reads the same, the same folder on an S3 prefix works, and
unsupported products are refused naming the file and leaving the lake as it
was. (The MAST path over the same files: test_pipeline_s3_mast.py.)

The files are discovered, never named (see mast_server.real_jwst_files): when
the folder is absent, every test here skips saying where the files go.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.cli import observe
from hwosim_assets.defs.lake.layout import CATALOG_KEY, bronze_key, bronze_meta_key, perturbed_key, raw_key
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.ingest.fits_reader import read_family
from hwosim_assets.ingest.products import identify
from hwosim_assets.perturb import load_profiles
from hwosim_assets.records import FAMILIES
from hwosim_assets.settings import Settings
from hwosim_assets.stream import load_streams
from hwosim_assets_tests.mast_server import REAL_JWST_DIR, MastReplayServer, real_jwst_files
from hwosim_assets_tests.pipeline import checks_passed, failure, materialize

REAL = real_jwst_files()
NO_FILES = (
    f"no real JWST products (*.fits) in {REAL_JWST_DIR}: that folder sits beside the repository "
    "(../shared/data/jwst) and holds small public JWST products; see its README for what they are"
)
pytestmark = pytest.mark.skipif(not REAL, reason=NO_FILES)
PROFILES = sorted(load_profiles())


def streams_yaml(observations: list[tuple[str, str]]) -> str:
    """One stream per (observation, family), replayed under nominal."""
    entries = [
        f"""  - name: real-{i}
    observation: {obs_id}
    profile: nominal
    family: {family}
    pacing: {{mode: asap}}
    window: 4
    loop: true
"""
        for i, (obs_id, family) in enumerate(sorted(observations))
    ]
    return "streams:\n" + "".join(entries)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The whole path once for every real product: files source, local lake, SQLite streams."""
    home = tmp_path_factory.mktemp("real")
    infos = {path.name: identify(path) for path in REAL}
    observations = sorted({(info.obs_id, info.family) for info in infos.values()})
    streams = home / "streams.yaml"
    streams.write_text(streams_yaml(observations))
    env = {
        "HWOSIM_HOME": str(home),
        "HWOSIM_SOURCE": "files",
        "HWOSIM_SOURCE_URL": str(REAL_JWST_DIR),
        "HWOSIM_STREAMS": str(streams),
        "HWOSIM_TILE_SIZE": "64",
    }
    resources = resources_from_settings(Settings.from_env(env))
    instance = dg.DagsterInstance.ephemeral()
    results = {"catalog": materialize("jwst_catalog", resources, instance)}
    for obs_id in instance.get_dynamic_partitions("observations"):
        results["raw", obs_id] = materialize("raw_products", resources, instance, obs_id)
    for family in FAMILIES:
        for obs_id in instance.get_dynamic_partitions(FAMILIES[family].partitions_name):
            results["bronze", family, obs_id] = materialize(f"bronze_{family}", resources, instance, obs_id)
    observe("observe_profiles", resources, instance)  # registers the profile partitions
    for obs_id, family in observations:
        for profile in PROFILES:
            key = dg.MultiPartitionKey({"observation": obs_id, "profile": profile})
            results["perturbed", family, obs_id, profile] = materialize(f"perturbed_{family}", resources, instance, key)
    materialize("stream_tables", resources, instance)
    for spec in load_streams(streams).values():
        config = {"first_window": 0, "last_window": 0, "start_time": 0.0, "pace": False}
        results["stream", spec.family, spec.observation] = materialize(
            f"stream_{spec.family}",
            resources,
            instance,
            spec.name,
            run_config={"ops": {f"stream_{spec.family}": {"config": config}}},
        )
    return {"resources": resources, "instance": instance, "infos": infos, "results": results}


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_each_real_product_goes_through_every_stage(pipeline, path):
    info = pipeline["infos"][path.name]
    lake, results = pipeline["resources"]["lake"], pipeline["results"]
    family, obs_id = info.family, info.obs_id

    manifest = lake.read_parquet(CATALOG_KEY)
    row = manifest.filter(pl.col("filename") == path.name).row(0, named=True)
    assert (row["obs_id"], row["product_type"], row["source"]) == (obs_id, info.product_type, "files")

    assert results["raw", obs_id].success
    landed = lake.info(raw_key(row["program"], obs_id, path.name))
    assert landed is not None and landed.size == path.stat().st_size and landed.sha256 == row["checksum"]

    bronze = results["bronze", family, obs_id]
    assert bronze.success and all(checks_passed(bronze).values()), checks_passed(bronze)
    table = lake.read_parquet(bronze_key(family, obs_id))
    record = lake.read_parquet(bronze_meta_key(family, obs_id))
    assert info.name in record["product"].to_list()
    facts = record.filter(pl.col("product") == info.name).row(0, named=True)
    assert facts["model"] == info.model and facts["effinttm"] == fits.getval(path, "EFFINTTM")
    if family == "images":
        assert info.name in set(table["source"])

    for profile in PROFILES:
        result = results["perturbed", family, obs_id, profile]
        assert result.success and all(checks_passed(result).values()), (profile, checks_passed(result))
        perturbed = lake.read_parquet(perturbed_key(family, profile, obs_id))
        assert len(perturbed) == len(table) and perturbed.columns == table.columns

    stream = _metadata(results["stream", family, obs_id])
    assert stream["packets_delivered"] >= 1 and stream["rows_written"] >= 1, stream


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_a_renamed_copy_reads_the_same(path, tmp_path):
    copy = tmp_path / "renamed_product.fits"
    shutil.copyfile(path, copy)
    original, renamed = identify(path), identify(copy)
    assert (renamed.model, renamed.product_type, renamed.obs_id) == (
        original.model,
        original.product_type,
        original.obs_id,
    )
    assert read_family(original.family, [copy], 64).equals(read_family(original.family, [path], 64))


def _edited(path: Path, dest: Path, **header) -> Path:
    with fits.open(path) as hdul:
        for key, value in header.items():
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value
        hdul.writeto(dest)
    return dest


UNSUPPORTED = {
    "uncal ramp": ({"DATAMODL": "RampModel"}, "DATAMODL=RampModel"),
    "IFU cube": ({"DATAMODL": "IFUCubeModel", "EXP_TYPE": "NRS_IFU"}, "DATAMODL=IFUCubeModel"),
    "no data model": ({"DATAMODL": None}, "DATAMODL=(none)"),
    "not JWST": ({"TELESCOP": "HST"}, "TELESCOP=HST"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_input_is_refused_and_nothing_lands(case, tmp_path):
    edits, words = UNSUPPORTED[case]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(REAL[0], folder / REAL[0].name)
    bad = _edited(REAL[-1], folder / "jw99999001001_02101_00001_nrs1_mystery.fits", **edits)
    env = {"HWOSIM_HOME": str(tmp_path / "home"), "HWOSIM_SOURCE": "files", "HWOSIM_SOURCE_URL": str(folder)}
    resources = resources_from_settings(Settings.from_env(env))
    result = materialize("jwst_catalog", resources, dg.DagsterInstance.ephemeral(), raise_on_error=False)

    message = failure(result, "jwst_catalog")
    assert bad.name in message and words in message and "supported models: MultiSpecModel" in message, message
    assert resources["lake"].list_keys() == []


def test_an_asdf_file_is_not_read_as_fits(tmp_path):
    path = tmp_path / "jw01345062001_03101_00001_nrs2_cal.fits"
    path.write_bytes(b"#ASDF 1.0.0\n#ASDF_STANDARD 1.5.0\n%YAML 1.1\n--- !core/asdf-1.1.0\n...\n")
    with pytest.raises(Exception) as error:
        identify(path)
    assert (
        isinstance(error.value, ValueError)
        and path.name in str(error.value)
        and "not a readable FITS" in str(error.value)
    )


def test_files_source_on_an_s3_prefix(seaweedfs, s3_bucket, s3_env, tmp_path):
    client = seaweedfs.client()
    for path in REAL:
        client.upload_file(str(path), s3_bucket, f"incoming/{path.name}")
    env = {
        "HWOSIM_HOME": str(tmp_path),
        "HWOSIM_SOURCE": "files",
        "HWOSIM_SOURCE_URL": f"s3://{s3_bucket}/incoming",
        "HWOSIM_LAKE_URL": f"s3://{s3_bucket}/lake",
    }
    resources = resources_from_settings(Settings.from_env(env))
    instance = dg.DagsterInstance.ephemeral()
    materialize("jwst_catalog", resources, instance)
    lake = resources["lake"]
    manifest = lake.read_parquet(CATALOG_KEY)
    assert sorted(manifest["filename"]) == sorted(p.name for p in REAL)
    assert all(uri.startswith(f"s3://{s3_bucket}/incoming/") for uri in manifest["data_uri"])
    for obs_id in instance.get_dynamic_partitions("observations"):
        materialize("raw_products", resources, instance, obs_id)
    for family, f in FAMILIES.items():
        for obs_id in instance.get_dynamic_partitions(f.partitions_name):
            result = materialize(f"bronze_{family}", resources, instance, obs_id)
            assert all(checks_passed(result).values())
            local = [p for p in REAL if identify(p).obs_id == obs_id and identify(p).family == family]
            assert lake.read_parquet(bronze_key(family, obs_id)).equals(read_family(family, local, 128))


def test_unsupported_product_from_mast_never_lands(tmp_path):
    """MAST lists a file as a cal product, but its headers say raw ramps: the raw stage refuses it."""
    folder = tmp_path / "served"
    folder.mkdir()
    bad = _edited(REAL[0], folder / "jw99999001001_02101_00001_nrcb1_cal.fits", DATAMODL="RampModel")
    with MastReplayServer(folder) as server:
        env = {"HWOSIM_HOME": str(tmp_path), "HWOSIM_SOURCE": "mast", "HWOSIM_MAST_URL": server.url}
        resources = resources_from_settings(Settings.from_env(env))
        instance = dg.DagsterInstance.ephemeral()
        config = {"programs": sorted({o["proposal_id"] for o in server.observations})}
        materialize("jwst_catalog", resources, instance, run_config={"ops": {"jwst_catalog": {"config": config}}})
        lake = resources["lake"]
        before = lake.list_keys()
        [obs_id] = instance.get_dynamic_partitions("observations")
        result = materialize("raw_products", resources, instance, obs_id, raise_on_error=False)

    message = failure(result, "raw_products")
    assert bad.name in message and "DATAMODL=RampModel" in message and "nothing landed" in message, message
    assert lake.list_keys() == before == ["catalog/jwst_catalog.parquet"]
