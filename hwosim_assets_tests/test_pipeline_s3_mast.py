"""Acceptance, with real services: FITS products go MAST replay server ->
astroquery -> SeaweedFS (S3 lake) -> bronze, and bronze holds astropy's values
bit for bit. Always over the project's sample products; also over the real
JWST files in shared/data/jwst when there are any."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.checksums import sha256_of
from hwosim_assets.defs.lake.layout import CATALOG_KEY, bronze_key, raw_key
from hwosim_assets.defs.mast.partitions import FAMILY_PARTITIONS
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.ingest.fits_reader import assemble_frame
from hwosim_assets.ingest.mast import DOWNLOAD_PATH
from hwosim_assets.ingest.products import identify
from hwosim_assets.records import FAMILIES, PIXEL_DTYPES, SPECTRA_OPTIONAL, SUPPORTED_PRODUCT_TYPES
from hwosim_assets.settings import Settings
from hwosim_assets_tests.mast_server import MastReplayServer
from hwosim_assets_tests.pipeline import checks_passed, materialize

BRONZE = {"spectra": "bronze_spectra", "images": "bronze_images"}
ALL_PASSED = {"schema": True, "non_empty": True, "no_new_nans": True}


@pytest.fixture(scope="module")
def pipeline(served_dir, seaweedfs):
    """The whole MAST -> S3 -> bronze path, run once per served folder.

    The environment is what an operator would set: AWS_* for SeaweedFS (as the
    ``s3_env`` fixture sets them, here for the whole module) and HWOSIM_*.
    """
    with MastReplayServer(served_dir) as mast, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name, value in seaweedfs.env().items():
            mp.setenv(name, value)
        bucket = seaweedfs.new_bucket()
        env = {
            "HWOSIM_LAKE_URL": f"s3://{bucket}/acceptance",
            "HWOSIM_SOURCE": "mast",
            "HWOSIM_MAST_URL": mast.url,
            "HWOSIM_MAST_TIMEOUT": "30",
        }
        resources = resources_from_settings(Settings.from_env(env))
        instance = dg.DagsterInstance.ephemeral()
        types = {p["productFilename"]: p["productSubGroupDescription"].lower() for p in mast.products}
        served = {name: mast.files[name] for name, t in types.items() if t in SUPPORTED_PRODUCT_TYPES}
        config = {
            "programs": sorted({o["proposal_id"] for o in mast.observations}),
            "product_types": sorted({types[name] for name in served}),
            "max_products": 1000,
        }
        results = {
            "jwst_catalog": materialize(
                "jwst_catalog", resources, instance, run_config={"ops": {"jwst_catalog": {"config": config}}}
            )
        }
        for obs_id in instance.get_dynamic_partitions("observations"):
            results["raw_products", obs_id] = materialize("raw_products", resources, instance, obs_id)
        for family, asset in BRONZE.items():
            for obs_id in instance.get_dynamic_partitions(FAMILY_PARTITIONS[family].name):
                results[asset, obs_id] = materialize(asset, resources, instance, obs_id)
        yield {"lake": resources["lake"], "instance": instance, "mast": mast, "served": served, "results": results}
        seaweedfs.drop_bucket(bucket)


def raw_copies(pipeline, tmp_path: Path, family: str | None = None) -> dict[str, tuple[str, Path]]:
    """{filename: (obs_id, local copy of the lake's raw object)} for the catalog's products."""
    lake = pipeline["lake"]
    manifest = lake.read_parquet(CATALOG_KEY)
    out = {}
    for row in manifest.iter_rows(named=True):
        if family is None or row["product_type"] in FAMILIES[family].product_types:
            path = lake.get_file(raw_key(row["program"], row["obs_id"], row["filename"]), tmp_path / row["filename"])
            out[row["filename"]] = (row["obs_id"], path)
    return out


def assert_same_values(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Bronze ``got`` holds astropy's ``want`` bit for bit: floats may only be
    widened (exact, NaN payloads kept), integer flags keep their 32 bits."""
    want = np.asarray(want)
    want = want.astype(want.dtype.newbyteorder("="))
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if want.dtype.kind == "f":
        assert got.dtype.kind == "f" and got.dtype.itemsize >= want.dtype.itemsize, f"{what}: {got.dtype}"
        assert np.array_equal(got, want.astype(got.dtype), equal_nan=True), f"{what}: values differ"
        bits = f"u{want.dtype.itemsize}"
        assert np.array_equal(got.astype(want.dtype).view(bits), want.view(bits)), f"{what}: bits differ"
    else:
        if want.dtype == np.uint32 and got.dtype == np.int32:  # DQ flags: same 32 bits, reinterpreted
            got = got.view(np.uint32)
        assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), f"{what}: values differ"


# ------------------------------------------------------------------------ tests


def test_catalog_lists_every_served_product(pipeline):
    manifest = pipeline["lake"].read_parquet(CATALOG_KEY)
    served = pipeline["served"]
    assert sorted(manifest["filename"]) == sorted(served)
    assert (manifest["source"] == "mast").all()
    for row in manifest.iter_rows(named=True):
        assert row["size"] == served[row["filename"]].stat().st_size
    meta = pipeline["results"]["jwst_catalog"].get_asset_materialization_events()[0].materialization.metadata
    assert meta["source"].value == "mast" and meta["products"].value == len(served)
    assert meta["manifest"].value.startswith("s3://")


def test_raw_objects_are_byte_exact(pipeline, tmp_path):
    lake = pipeline["lake"]
    copies = raw_copies(pipeline, tmp_path)
    assert sorted(copies) == sorted(pipeline["served"])
    for filename, (obs_id, path) in copies.items():
        want = sha256_of(pipeline["served"][filename])
        assert sha256_of(path) == want, f"{filename}: lake object differs from the served file"
        manifest_row = lake.read_parquet(CATALOG_KEY).filter(pl.col("filename") == filename).row(0, named=True)
        info = lake.info(raw_key(manifest_row["program"], obs_id, filename))
        assert info.sha256 == want and info.size == path.stat().st_size


def test_asset_checks_passed(pipeline):
    bronze_runs = {key: r for key, r in pipeline["results"].items() if key[0] in BRONZE.values()}
    assert {key[0] for key in bronze_runs} == set(BRONZE.values())
    for key, result in bronze_runs.items():
        assert result.success and checks_passed(result) == ALL_PASSED, key


COLUMNS = {"wavelength": "WAVELENGTH", "flux": "FLUX", "flux_error": "FLUX_ERROR", "dq": "DQ"}
OPTIONAL = {name: name.upper() for name in SPECTRA_OPTIONAL}


def astropy_spectra(path: Path) -> list[tuple[int, int, int, int, dict[str, np.ndarray]]]:
    """(integration, order, HDU, row, columns) of every spectrum in an x1dints or x1d file, read by astropy."""
    out = []
    with fits.open(path) as hdul:
        first = int(hdul[0].header.get("INTSTART", 1))
        per_order: Counter[int] = Counter()
        for index, hdu in enumerate(hdul):
            if hdu.name != "EXTRACT1D" or hdu.data is None or len(hdu.data) == 0:
                continue
            order, data, names = int(hdu.header.get("SPORDER", 1)), hdu.data, set(hdu.columns.names)
            columns = {c: np.array(data[c]) for c in (*COLUMNS.values(), *OPTIONAL.values()) if c in names}
            if columns["WAVELENGTH"].ndim == 2:  # one row per integration (jwst >= 1.18)
                widths = data["NELEMENTS"] if "NELEMENTS" in names else [columns["WAVELENGTH"].shape[1]] * len(data)
                for row, (n, width) in enumerate(zip(data["INT_NUM"], widths, strict=False)):
                    out.append((int(n), order, index, row, {c: v[row, :width] for c, v in columns.items()}))
            else:
                per_order[order] += 1
                n = int(hdu.header.get("INT_NUM", first - 1 + per_order[order]))
                out.append((n, order, index, 0, columns))
    return out


def test_bronze_spectra_equal_astropy_for_every_integration_and_channel(pipeline, tmp_path):
    lake = pipeline["lake"]
    by_obs: dict[str, list[Path]] = {}
    for obs_id, path in raw_copies(pipeline, tmp_path, "spectra").values():
        by_obs.setdefault(obs_id, []).append(path)
    if not by_obs:
        pytest.skip("the served products hold no x1dints")
    for obs_id, paths in by_obs.items():
        table = lake.read_parquet(bronze_key("spectra", obs_id))
        spectra = []  # channels run over orders, then files by name, within an integration
        for file_index, path in enumerate(sorted(paths, key=lambda p: p.name)):
            spectra += [(n, order, file_index, hdu, row, cols) for n, order, hdu, row, cols in astropy_spectra(path)]
        spectra.sort(key=lambda s: s[:5])
        integrations = sorted({s[0] for s in spectra})
        assert sorted(table["integration"].unique().to_list()) == integrations
        for n in integrations:
            got = table.filter(pl.col("integration") == n).sort("channel")
            assert got["channel"].to_list() == list(range(len(got)))
            mine = [s[5] for s in spectra if s[0] == n]
            for bronze, column in {**COLUMNS, **OPTIONAL}.items():  # an absent optional column reads as NaN
                want = np.concatenate([cols.get(column, np.full(len(cols["WAVELENGTH"]), np.nan)) for cols in mine])
                assert_same_values(got[bronze].to_numpy(), want, f"{obs_id} integration {n} {bronze}")


def test_bronze_images_equal_astropy_for_every_frame_and_tile(pipeline, tmp_path):
    """Every plane of every frame (integration, or slit) of every image-family
    product, optional planes (WAVELENGTH, VAR_*) included, as astropy reads it."""
    lake = pipeline["lake"]
    copies = raw_copies(pipeline, tmp_path, "images")
    if not copies:
        pytest.skip("the served products hold no image products")
    tables = {}
    for filename, (obs_id, path) in copies.items():
        if obs_id not in tables:
            tables[obs_id] = lake.read_parquet(bronze_key("images", obs_id))
        table = tables[obs_id]
        info = identify(path)
        frames = table.filter(pl.col("source") == info.name)["frame"].unique().sort().to_list()
        with fits.open(path) as hdul:  # astropy's own read: scaled, so DQ comes back as uint32
            versions = [h.ver for h in hdul if h.name == "SCI"] if info.model == "MultiSlitModel" else [None]
            expected = []  # (planes, frame index within the plane cube or None)
            for version in versions:
                planes = {}
                for plane in PIXEL_DTYPES:
                    hdu = next((h for h in hdul if h.name == plane.upper() and version in (None, h.ver)), None)
                    if hdu is not None and hdu.data is not None:
                        planes[plane] = hdu.data
                planes.setdefault("dq", np.zeros(planes["sci"].shape, np.uint32))
                cube = planes["sci"].ndim == 3
                expected += [(planes, i) for i in range(planes["sci"].shape[0])] if cube else [(planes, None)]
            assert len(frames) == len(expected), f"{filename}: frame count"
            for frame, (planes, i) in zip(frames, expected, strict=False):
                for plane in PIXEL_DTYPES:
                    if plane not in planes:
                        assert table.filter(pl.col("frame") == frame)[plane].null_count() == len(
                            table.filter(pl.col("frame") == frame)
                        ), f"{filename} {plane}: absent plane must be null"
                        continue
                    want = planes[plane][i] if i is not None else planes[plane]
                    assert_same_values(assemble_frame(table, frame, plane), want, f"{filename} frame {frame} {plane}")


def test_astroquery_requests_are_in_the_server_log(pipeline):
    mast = pipeline["mast"]
    services = mast.services()
    assert "Mast.Caom.Filtered" in services and "Mast.Caom.Products" in services
    downloads = [r for r in mast.requests if r.path == DOWNLOAD_PATH and r.method == "GET"]
    fetched = {r.query["uri"][0].rsplit("/", 1)[-1] for r in downloads}
    assert fetched == set(pipeline["served"])
    assert all(r.status == 200 for r in downloads)
    assert all(r.user_agent.startswith("astroquery/") for r in mast.requests), {r.user_agent for r in mast.requests}
