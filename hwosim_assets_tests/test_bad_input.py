"""Bad input, with real services: every failure names the file, observation or
setting at fault, and leaves nothing half-written in the lake (SeaweedFS)."""

from __future__ import annotations

import io

import dagster as dg
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.defs.lake.layout import CATALOG_KEY, bronze_key, raw_key
from hwosim_assets.defs.lake.resources import LakeConfigError
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.ingest import sample
from hwosim_assets.ingest.mast import DOWNLOAD_PATH
from hwosim_assets.settings import Settings
from hwosim_assets_tests.mast_server import MastReplayServer
from hwosim_assets_tests.pipeline import failure, materialize

SPECTRA_FILE = next(name for name, p in sample.SAMPLE_PRODUCTS.items() if p.product_type == "x1dints")
CAL_FILE = sorted(name for name, p in sample.SAMPLE_PRODUCTS.items() if p.product_type == "cal")[-1]
SAMPLE_SELECTION = {"programs": [sample.SAMPLE_PROGRAM], "product_types": ["x1dints", "cal"]}


def catalog_config(**config) -> dict:
    return {"ops": {"jwst_catalog": {"config": config}}}


def s3_resources(bucket: str, **env) -> dict:
    return resources_from_settings(Settings.from_env({"HWOSIM_LAKE_URL": f"s3://{bucket}/bad", **env}))


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    sample.write_sample_products(folder)
    return folder


@pytest.fixture
def mast(samples):
    with MastReplayServer(samples) as server:
        yield server


def mast_env(server: MastReplayServer) -> dict:
    # short timeouts and a single retry keep the failing cases fast
    return {
        "HWOSIM_SOURCE": "mast",
        "HWOSIM_MAST_URL": server.url,
        "HWOSIM_MAST_TIMEOUT": "1",
        "HWOSIM_MAST_RETRIES": "1",
    }


# ---------------------------------------------------------------- FITS in the raw zone


def land(bucket: str, obs_id: str) -> tuple[dict, dg.DagsterInstance]:
    """An S3 lake holding the sample catalog and one observation's raw products (sample source)."""
    resources, instance = s3_resources(bucket), dg.DagsterInstance.ephemeral()
    materialize("jwst_catalog", resources, instance)
    materialize("raw_products", resources, instance, obs_id)
    return resources, instance


def replace_raw(lake, obs_id: str, filename: str, data: bytes) -> None:
    lake.put_bytes(raw_key(sample.SAMPLE_PROGRAM, obs_id, filename), data)


@pytest.mark.parametrize(
    "obs_id, family, filename",
    [(sample.SPECTRA_OBS_ID, "spectra", SPECTRA_FILE), (sample.IMAGE_OBS_ID, "images", CAL_FILE)],
    ids=["x1dints", "cal"],
)
def test_truncated_fits_in_raw_zone(s3_bucket, s3_env, obs_id, family, filename):
    resources, instance = land(s3_bucket, obs_id)
    lake = resources["lake"]
    whole = sample.sample_bytes(filename)
    replace_raw(lake, obs_id, filename, whole[: len(whole) * 2 // 3])
    before = lake.list_keys()

    result = materialize(f"bronze_{family}", resources, instance, obs_id, raise_on_error=False)

    message = failure(result, f"bronze_{family}")
    assert filename in message and "truncated" in message, message
    assert not lake.exists(bronze_key(family, obs_id))
    assert lake.list_keys() == before


def test_cal_file_without_sci(s3_bucket, s3_env):
    resources, instance = land(s3_bucket, sample.IMAGE_OBS_ID)
    lake = resources["lake"]
    with fits.open(io.BytesIO(sample.sample_bytes(CAL_FILE))) as hdul:
        del hdul["SCI"]
        replace_raw(lake, sample.IMAGE_OBS_ID, CAL_FILE, sample.hdul_bytes(hdul))
    before = lake.list_keys()

    result = materialize("bronze_images", resources, instance, sample.IMAGE_OBS_ID, raise_on_error=False)

    message = failure(result, "bronze_images")
    assert CAL_FILE in message and "without a SCI extension" in message, message
    assert "/tmp" not in message and lake.uri(raw_key(sample.SAMPLE_PROGRAM, sample.IMAGE_OBS_ID, CAL_FILE)) in message
    assert not lake.exists(bronze_key("images", sample.IMAGE_OBS_ID))
    assert lake.list_keys() == before


# ---------------------------------------------------------------- the catalog


def test_unsupported_product_type(s3_bucket, s3_env):
    resources = s3_resources(s3_bucket)
    result = materialize(
        "jwst_catalog",
        resources,
        dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=catalog_config(programs=[sample.SAMPLE_PROGRAM], product_types=["s3d", "cal"]),
    )

    message = failure(result, "jwst_catalog")
    assert "unsupported product type(s) ['s3d']" in message and "x1dints" in message, message
    assert resources["lake"].list_keys() == []


def test_mast_source_needs_a_program_or_target(mast, s3_bucket, s3_env):
    resources = s3_resources(s3_bucket, **mast_env(mast))
    result = materialize(
        "jwst_catalog",
        resources,
        dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=catalog_config(product_types=["x1dints"]),
    )

    message = failure(result, "jwst_catalog")
    assert "at least one program or target" in message, message
    assert mast.requests == []  # refused before asking the archive anything
    assert resources["lake"].list_keys() == []


def test_empty_mast_result(mast, s3_bucket, s3_env):
    mast.empty_results = True
    resources = s3_resources(s3_bucket, **mast_env(mast))
    result = materialize(
        "jwst_catalog",
        resources,
        dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=catalog_config(**SAMPLE_SELECTION),
    )

    message = failure(result, "jwst_catalog")
    assert "no JWST observations" in message and f"programs=('{sample.SAMPLE_PROGRAM}',)" in message, message
    assert not resources["lake"].exists(CATALOG_KEY)
    assert resources["lake"].list_keys() == []


# ---------------------------------------------------------------- downloads


@pytest.mark.parametrize("fault", ["http 500", "timeout", "truncated body"])
def test_failed_download_names_the_file_and_lands_nothing(mast, s3_bucket, s3_env, fault):
    resources, instance = s3_resources(s3_bucket, **mast_env(mast)), dg.DagsterInstance.ephemeral()
    materialize("jwst_catalog", resources, instance, run_config=catalog_config(**SAMPLE_SELECTION))
    if fault == "http 500":
        mast.fail_next(500, count=100, path=DOWNLOAD_PATH)
    elif fault == "timeout":
        mast.delay(30, path=DOWNLOAD_PATH)  # longer than HWOSIM_MAST_TIMEOUT, every time
    else:
        mast.truncate_downloads = "body"

    manifest = resources["lake"].read_parquet(CATALOG_KEY)
    obs_id = manifest.filter(pl.col("filename") == SPECTRA_FILE)["obs_id"].item()  # MAST's id, not the sample's

    result = materialize("raw_products", resources, instance, obs_id, raise_on_error=False)

    message = failure(result, "raw_products")
    assert SPECTRA_FILE in message and "after 2 attempts" in message, message
    assert resources["lake"].list_keys() == [CATALOG_KEY]  # no raw object, whole or partial


# ---------------------------------------------------------------- settings


def test_unsupported_lake_url_names_the_setting():
    with pytest.raises(ValueError, match="HWOSIM_LAKE_URL='ftp://x'"):
        resources_from_settings(Settings.from_env({"HWOSIM_LAKE_URL": "ftp://x"}))


def test_s3_lake_without_credentials_names_them(seaweedfs, s3_bucket, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint_url)
    resources = s3_resources(s3_bucket)

    result = materialize("jwst_catalog", resources, dg.DagsterInstance.ephemeral(), raise_on_error=False)

    message = failure(result, "jwst_catalog")
    assert "AWS_ACCESS_KEY_ID" in message and s3_bucket in message, message
    with pytest.raises(LakeConfigError, match="AWS_ACCESS_KEY_ID"):
        resources["lake"].check()
    assert seaweedfs.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
