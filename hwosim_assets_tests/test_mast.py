"""The MAST path, through the real astroquery client, against the local replay
server (hwosim_assets_tests/mast_server.py). Always over the project's sample
products; also over the real JWST files in shared/data/jwst when there are any."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.checksums import sha256_of
from hwosim_assets.defs.mast.resources import MastSource, SampleSource
from hwosim_assets.ingest.mast import (
    MastDownloadError,
    MastQueryError,
    Selection,
    download_product,
    query_catalog,
)
from hwosim_assets.ingest.products import identify, observation_id, observation_id_from_mast
from hwosim_assets.records import CATALOG_SCHEMA, SUPPORTED_PRODUCT_TYPES
from hwosim_assets_tests.mast_server import MastReplayServer

FAST = {"timeout": 5.0, "retries": 2}


@pytest.fixture(scope="module")
def running(served_dir):
    with MastReplayServer(served_dir) as server:
        yield server


@pytest.fixture
def mast(running) -> MastReplayServer:
    """The module's server, well-behaved and with an empty request log."""
    running.behave()
    return running


def everything(server: MastReplayServer, **changes) -> Selection:
    """A selection of every supported product the server holds."""
    programs = sorted({o["proposal_id"] for o in server.observations})
    return Selection(**{"programs": programs, "product_types": SUPPORTED_PRODUCT_TYPES, **changes})


def served_types(server: MastReplayServer) -> dict[str, str]:
    """{file name: product type} as the server lists them (decided from the headers)."""
    return {p["productFilename"]: p["productSubGroupDescription"].lower() for p in server.products}


def served_products(server: MastReplayServer) -> dict[str, Path]:
    return {name: server.files[name] for name, t in served_types(server).items() if t in SUPPORTED_PRODUCT_TYPES}


def test_query_catalog_lists_the_served_products(mast):
    catalog = query_catalog(everything(mast), server_url=mast.url, **FAST)

    expected = served_products(mast)
    assert catalog.schema == pl.Schema(CATALOG_SCHEMA)
    assert sorted(catalog["filename"]) == sorted(expected)
    for row in catalog.iter_rows(named=True):
        path = expected[row["filename"]]
        header = fits.getheader(path, 0)
        assert row["size"] == path.stat().st_size
        assert row["data_uri"] == f"mast:JWST/product/{path.name}"
        assert row["obs_id"] == observation_id(header) == identify(path).obs_id  # one id scheme for every source
        assert "," not in row["obs_id"] and "/" not in row["obs_id"]
        assert row["program"] == str(header["PROGRAM"]).zfill(5)
        assert row["product_type"] == identify(path).product_type
        assert row["checksum"] is None  # MAST reports no checksum
    assert catalog["source"].to_list() == ["mast"] * len(catalog)
    assert not catalog["simulated"].any()


def test_astroquery_made_the_requests(mast):
    query_catalog(everything(mast), server_url=mast.url, **FAST)

    assert mast.services() == ["Mast.Caom.Filtered", "Mast.Caom.Products"]
    assert [r.col_config for r in mast.requests if r.col_config] == ["Mast.Caom.Cone", "Mast.Caom.Products"]
    assert all(r.user_agent.startswith("astroquery/") for r in mast.requests)
    filters = {f["paramName"]: f["values"] for f in mast.requests[1].params["filters"]}
    assert filters["obs_collection"] == ["JWST"]
    assert set(filters["proposal_id"]) == {o["proposal_id"] for o in mast.observations}


def test_downloads_are_byte_exact(mast, tmp_path):
    catalog = query_catalog(everything(mast), server_url=mast.url, **FAST)
    mast.behave()

    for row in catalog.iter_rows(named=True):
        path = download_product(row, tmp_path, server_url=mast.url, **FAST)
        assert path == tmp_path / row["filename"]
        assert sha256_of(path) == sha256_of(mast.files[row["filename"]])

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(catalog["filename"])  # no temp files left
    downloads = [(r.method, r.query["uri"][0]) for r in mast.requests]
    assert downloads == [(m, uri) for uri in catalog["data_uri"] for m in ("HEAD", "GET")]


def test_product_type_filter(mast):
    types = served_types(mast)
    wanted = types[sorted(served_products(mast))[0]]
    catalog = query_catalog(everything(mast, product_types=[wanted]), server_url=mast.url, **FAST)

    assert set(catalog["product_type"]) == {wanted}
    assert sorted(catalog["filename"]) == sorted(n for n in served_products(mast) if types[n] == wanted)


def test_instrument_selection(mast):
    # the first observation with a supported product (a served folder may hold others too)
    observation = next(
        o
        for o in mast.observations
        if any(p["obsID"] == o["obsid"] and p["productFilename"] in served_products(mast) for p in mast.products)
    )
    mode = observation["instrument_name"]  # e.g. NIRISS/SOSS
    bare = mode.split("/")[0]
    with_mode = {o["obsid"] for o in mast.observations if o["instrument_name"] == mode}
    expected = sorted(p["productFilename"] for p in mast.products if p["obsID"] in with_mode)
    expected = [n for n in expected if n in served_products(mast)]

    by_mode = query_catalog(everything(mast, instruments=[mode]), server_url=mast.url, **FAST)
    filters = {f["paramName"]: f["values"] for f in mast.requests[1].params["filters"]}
    assert filters["instrument_name"] == [mode]  # a full MAST name is sent to MAST
    mast.behave()
    by_instrument = query_catalog(everything(mast, instruments=[bare]), server_url=mast.url, **FAST)

    assert sorted(by_mode["filename"]) == expected
    modes = {o["instrument_name"] for o in mast.observations}
    assert set(by_instrument["instrument"]) <= {m for m in modes if m == bare or m.startswith(bare + "/")}
    assert set(by_mode["filename"]) <= set(by_instrument["filename"])


def test_cap_keeps_the_first_products_by_observation_and_name(mast):
    full = query_catalog(everything(mast), server_url=mast.url, **FAST)
    capped = query_catalog(everything(mast, max_products=1), server_url=mast.url, **FAST)

    assert len(capped) == 1
    assert capped.row(0) == full.sort("obs_id", "filename").row(0)


def test_empty_result_names_the_selection(mast):
    mast.empty_results = True
    with pytest.raises(MastQueryError, match=r"no JWST observations for Selection\(programs=\('09999',"):
        query_catalog(Selection(programs=["9999"]), server_url=mast.url, **FAST)


def test_no_matching_product_type_is_an_error(mast):
    missing = [t for t in SUPPORTED_PRODUCT_TYPES if t not in set(served_types(mast).values())]
    if not missing:
        pytest.skip("the served files have every supported product type")
    with pytest.raises(MastQueryError, match="none of them matching"):
        query_catalog(everything(mast, product_types=missing), server_url=mast.url, **FAST)


def test_server_errors_are_retried(mast, tmp_path):
    mast.fail_next(status=500)
    catalog = query_catalog(everything(mast), server_url=mast.url, **FAST)
    assert [r.status for r in mast.requests][:2] == [500, 200]  # the same request, tried again

    mast.behave()
    mast.fail_next(status=503, path="Download")
    row = catalog.row(0, named=True)
    path = download_product(row, tmp_path, server_url=mast.url, **FAST)
    assert sha256_of(path) == sha256_of(mast.files[row["filename"]])
    assert [(r.method, r.status) for r in mast.requests] == [("HEAD", 503), ("HEAD", 200), ("GET", 200)]


def test_timeout_is_a_query_error_naming_the_server(mast):
    mast.delay(3.0)
    start = time.monotonic()
    with pytest.raises(MastQueryError) as error:
        query_catalog(everything(mast), server_url=mast.url, timeout=0.2, retries=1)

    assert time.monotonic() - start < 2.5  # gave up on its own timeout, not the server's delay
    assert mast.url in str(error.value) and "Mast.Caom.Filtered" in str(error.value)
    assert "ReadTimeout" in str(error.value) and "after 2 attempts" in str(error.value)


def test_client_errors_are_not_retried(mast, tmp_path):
    catalog = query_catalog(everything(mast), server_url=mast.url, **FAST)
    mast.behave()
    mast.fail_next(status=404, path="Download", count=10)  # astroquery reports it as status "ERROR"

    with pytest.raises(MastDownloadError, match="404"):
        download_product(catalog.row(0, named=True), tmp_path, server_url=mast.url, **FAST)
    assert len(mast.requests) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("truncation", [True, "file"], ids=["body-shorter-than-content-length", "short-file"])
def test_truncated_download_leaves_nothing(mast, tmp_path, truncation):
    catalog = query_catalog(everything(mast), server_url=mast.url, **FAST)
    row = catalog.row(0, named=True)
    mast.truncate_downloads = truncation

    with pytest.raises(MastDownloadError, match=row["filename"]) as error:
        download_product(row, tmp_path, server_url=mast.url, timeout=5, retries=1)
    if truncation == "file":
        assert f"expected {row['size']} bytes, got {row['size'] // 2}" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_leaves_nothing(mast, tmp_path):
    row = query_catalog(everything(mast), server_url=mast.url, **FAST).row(0, named=True)
    with pytest.raises(MastDownloadError, match="expected sha256 0{64}"):
        download_product({**row, "checksum": "0" * 64}, tmp_path, server_url=mast.url, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_mast_source_resource(mast, tmp_path):
    source = MastSource(server_url=mast.url, timeout=5, retries=1)
    catalog = source.query(everything(mast))
    path = source.fetch(catalog.row(0, named=True), tmp_path)

    assert source.name == "mast"
    assert sha256_of(path) == sha256_of(mast.files[path.name])


# ---------------------------------------------------------- no server needed


def test_unsupported_product_type_is_refused():
    with pytest.raises(ValueError, match=r"\['s3d'\].*x1dints, x1d, cal, calints, i2d, rate, rateints, s2d"):
        Selection(programs=["2734"], product_types=["x1dints", "s3d"])
    assert Selection(programs=["2734"]).product_types == SUPPORTED_PRODUCT_TYPES  # none given: all


def test_selection_normalizes_its_fields():
    selection = Selection(programs=["2734"], instruments=["niriss/soss"], product_types=["X1DINTS"])
    assert selection.programs == ("02734",)
    assert selection.instruments == ("NIRISS/SOSS",)
    assert selection.product_types == ("x1dints",)
    assert selection.calib_levels == (2, 3)
    with pytest.raises(ValueError, match="max_products"):
        Selection(max_products=0)


def test_query_needs_a_program_or_target():
    with pytest.raises(ValueError, match="at least one program or target"):
        query_catalog(Selection(), server_url="http://127.0.0.1:9", timeout=1, retries=0)


def test_observation_id_from_headers_and_from_mast():
    header = {
        "PROGRAM": "02734",
        "OBS_ID": "V02734002001P0000000004101",  # OBSERVTN missing: taken from OBS_ID
        "INSTRUME": "NIRISS",
        "FILTER": "CLEAR",
        "PUPIL": "GR700XD",
        "SUBARRAY": "SUBSTRIP256",
    }
    assert observation_id(header) == "jw02734-o002_niriss_clear-gr700xd-substrip256"
    nircam = {"PROGRAM": "1345", "OBSERVTN": "1", "INSTRUME": "NIRCAM", "FILTER": "F444W", "PUPIL": "GRISMR"}
    nircam["SUBARRAY"] = "FULL"  # full frame: not part of the id
    assert observation_id(nircam) == "jw01345-o001_nircam_f444w-grismr"
    fixed_slit = {
        "PROGRAM": "01492",
        "OBSERVTN": "005",
        "INSTRUME": "NIRSPEC",
        "FILTER": "F100LP",
        "GRATING": "G140M",
        "FXD_SLIT": "S1600A1",
        "EXP_TYPE": "NRS_FIXEDSLIT",
        "SUBARRAY": "SUB2048",
    }
    assert observation_id(fixed_slit) == "jw01492-o005_nirspec_f100lp-g140m-s1600a1-sub2048"
    # MAST's stage-3 names carry a target or source number that headers do not: it is dropped
    assert (
        observation_id_from_mast("jw02783-o002_t001_miri_p750l-slitlessprism")
        == "jw02783-o002_miri_p750l-slitlessprism"
    )
    assert observation_id_from_mast("JW01492-O005_S00004_NIRSPEC_F100LP-G140M-S1600A1-SUB2048") == observation_id(
        fixed_slit
    )
    assert observation_id_from_mast("jw01288015001_04101_00001_mirimage") == "jw01288015001_04101_00001_mirimage"


def test_sample_source_filters_and_writes(tmp_path):
    source = SampleSource()
    catalog = source.query(Selection(product_types=["cal"], max_products=1))
    row = catalog.row(0, named=True)
    path = source.fetch(row, tmp_path)

    assert source.name == "sample"
    assert catalog["product_type"].to_list() == ["cal"] and catalog["simulated"].all()
    assert path == tmp_path / row["filename"] and sha256_of(path) == row["checksum"]
    assert len(source.query(Selection(programs=["9999"], product_types=["x1dints", "cal"]))) == 3
    with pytest.raises(ValueError, match="no sample product matches"):
        source.query(Selection(programs=["2734"]))
