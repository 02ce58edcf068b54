"""The same lake tests, run on a local folder and on S3 (SeaweedFS); then keys
and URLs from hostile input, and S3 outages: SeaweedFS stopped, restarted or
killed mid-upload, and multipart uploads left open by a crash."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
import tracemalloc

import dagster as dg
import polars as pl
import pytest

from hwosim_assets.defs.lake.layout import raw_key
from hwosim_assets.defs.lake.resources import (
    TMP_PREFIX,
    LakeConfigError,
    LakeKeyError,
    LakeUnreachableError,
    LocalLake,
    S3Lake,
    lake_from_url,
)
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.ingest import sample
from hwosim_assets.settings import Settings
from hwosim_assets_tests import services
from hwosim_assets_tests.pipeline import materialize


@pytest.fixture(scope="module")
def shared_bucket(seaweedfs):
    """One bucket for this module: SeaweedFS grows volumes on a bucket's first
    write (about a second), so tests share a bucket and differ by prefix."""
    return seaweedfs.new_bucket()  # left for the server's folder to take at session end


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):
    if request.param == "local":
        return LocalLake(root=str(tmp_path / "lake"))
    request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("shared_bucket")
    prefix = f"{tmp_path.name}/some/prefix"  # unique per test
    return lake_from_url(f"s3://{bucket}/{prefix}")  # endpoint and keys from the environment, as in production


def _write_random(path, size: int) -> str:
    """A file of ``size`` random-ish bytes, written in 1 MiB pieces; returns its sha256."""
    digest, block = hashlib.sha256(), os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(0, size, len(block)):
            piece = block[: size - i]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def _small_parts(lake, part_size_mb: int, max_concurrency: int, max_attempts: int = 5, retry_seconds: float = 60):
    """The same lake with small multipart parts, so a test file spans several."""
    if isinstance(lake, LocalLake):
        return lake
    return S3Lake(
        bucket=lake.bucket,
        prefix=lake.prefix,
        endpoint_url=lake.endpoint_url,
        part_size_mb=part_size_mb,
        max_concurrency=max_concurrency,
        max_attempts=max_attempts,
        retry_seconds=retry_seconds,
    )


def _leftovers(lake, tmp_path) -> list[str]:
    """Partial objects or temp files a failed write may have left behind."""
    if isinstance(lake, LocalLake):
        return [str(p) for p in (tmp_path / "lake").rglob(f"{TMP_PREFIX}*")]
    uploads = lake._client().list_multipart_uploads(Bucket=lake.bucket, Prefix=lake.prefix)
    return [u["Key"] for u in uploads.get("Uploads", [])]


def test_put_get_round_trip_is_byte_exact(lake, tmp_path):
    data = bytes(range(256)) * 4099 + b"\x00tail"
    src = tmp_path / "src.fits"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()

    info = lake.put_file("raw/jwst/01366/obs1/a.fits", src)
    assert (info.key, info.size, info.sha256) == ("raw/jwst/01366/obs1/a.fits", len(data), sha)
    assert lake.info("raw/jwst/01366/obs1/a.fits") == info
    assert lake.exists("raw/jwst/01366/obs1/a.fits")
    assert lake.read_bytes("raw/jwst/01366/obs1/a.fits") == data
    back = lake.get_file("raw/jwst/01366/obs1/a.fits", tmp_path / "out" / "a.fits")
    assert back.read_bytes() == data

    assert lake.put_bytes("raw/jwst/01366/obs1/b.txt", b"bee").sha256 == hashlib.sha256(b"bee").hexdigest()
    assert lake.put_fileobj("raw/jwst/01366/obs2/c.bin", io.BytesIO(b"sea")).size == 3
    assert lake.list_keys("raw/jwst/01366/obs1/") == ["raw/jwst/01366/obs1/a.fits", "raw/jwst/01366/obs1/b.txt"]
    assert lake.list_keys("raw/jwst/01366/obs") == [
        "raw/jwst/01366/obs1/a.fits",
        "raw/jwst/01366/obs1/b.txt",
        "raw/jwst/01366/obs2/c.bin",
    ]
    assert lake.list_keys("raw/nothing/") == []

    lake.put_bytes("raw/jwst/01366/obs1/b.txt", b"replaced")
    assert lake.read_bytes("raw/jwst/01366/obs1/b.txt") == b"replaced"
    lake.delete("raw/jwst/01366/obs1/b.txt")
    lake.delete("raw/jwst/01366/obs1/b.txt")  # deleting twice is fine
    assert lake.info("raw/jwst/01366/obs1/b.txt") is None
    assert not lake.exists("raw/jwst/01366/obs1/b.txt")


def test_parquet_round_trip(lake):
    df = pl.DataFrame({"t": [0.5, 1.5], "flux": [1.0, float("nan")], "obs": ["a", "b"]})
    info = lake.write_parquet("bronze/spectra/obs1.parquet", df)
    assert info.size > 0 and len(info.sha256) == 64
    back = lake.read_parquet("bronze/spectra/obs1.parquet")
    assert back.equals(df)


def test_missing_key_names_the_uri(lake, tmp_path):
    uri = lake.uri("bronze/none.parquet")
    assert uri.endswith("/bronze/none.parquet")
    for read in (
        lambda: lake.read_parquet("bronze/none.parquet"),
        lambda: lake.read_bytes("bronze/none.parquet"),
        lambda: lake.get_file("bronze/none.parquet", tmp_path / "x"),
    ):
        with pytest.raises(LakeKeyError) as missing:
            read()
        assert uri in str(missing.value)
        assert isinstance(missing.value, KeyError)
    assert lake.info("bronze/none.parquet") is None


def test_uri_names_backend_and_location(lake, tmp_path):
    if isinstance(lake, LocalLake):
        assert lake.uri("a/b") == (tmp_path / "lake").as_uri() + "/a/b"
    else:
        assert lake.uri("a/b") == f"s3://{lake.bucket}/{tmp_path.name}/some/prefix/a/b"
        # the prefix really is applied to stored keys
        lake.put_bytes("a/b", b"1")
        listed = lake._client().list_objects_v2(Bucket=lake.bucket, Prefix=tmp_path.name)["Contents"]
        assert [o["Key"] for o in listed] == [f"{tmp_path.name}/some/prefix/a/b"]


@pytest.mark.parametrize("key", ["/abs", "a/../b", "../up", "a//b", "./a", "", "a\\b", f"a/{TMP_PREFIX}x"])
def test_bad_keys_are_refused(lake, key):
    with pytest.raises(ValueError, match="invalid lake key"):
        lake.put_bytes(key, b"x")


@pytest.mark.slow
def test_multipart_upload_streams_in_bounded_memory(lake, tmp_path):
    size = 40 << 20
    src = tmp_path / "big.fits"
    sha = _write_random(src, size)
    lake = _small_parts(lake, part_size_mb=8, max_concurrency=2)
    parts = []
    tracemalloc.start()
    try:
        info = lake.put_file("raw/big.fits", src, progress=parts.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{type(lake).__name__}: peak traced memory {peak / 2**20:.1f} MiB for a {size >> 20} MiB upload")
    assert (info.size, info.sha256) == (size, sha)
    assert sum(parts) == size and len(parts) > 1
    assert peak < size / 2, f"peak memory {peak} bytes is not well below the file size {size}"
    assert lake.info("raw/big.fits").sha256 == sha
    if isinstance(lake, S3Lake):
        head = lake._client().head_object(Bucket=lake.bucket, Key=f"{lake.prefix}/raw/big.fits")
        assert head["Metadata"]["sha256"] == sha  # sent as x-amz-meta-sha256
        assert head["ETag"].strip('"').endswith("-5")  # 40 MiB in 8 MiB parts: a 5-part multipart upload
    assert hashlib.sha256(lake.read_bytes("raw/big.fits")).hexdigest() == sha


class _Breaks(io.RawIOBase):
    """A stream that fails after ``limit`` bytes, like a dropped download."""

    def __init__(self, limit: int):
        self.limit, self.sent = limit, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent >= self.limit:
            raise OSError("connection reset while reading the source")
        n = min(len(buffer), self.limit - self.sent)
        buffer[:n] = b"x" * n
        self.sent += n
        return n


def test_failed_stream_leaves_no_object(lake, tmp_path):
    lake.put_bytes("raw/keep.bin", b"old")
    with pytest.raises(OSError, match="connection reset"):
        lake.put_fileobj("raw/partial.bin", io.BufferedReader(_Breaks(3 << 20)))
    with pytest.raises(OSError, match="connection reset"):
        lake.put_fileobj("raw/keep.bin", io.BufferedReader(_Breaks(1 << 20)))
    assert lake.list_keys("raw/") == ["raw/keep.bin"]
    assert lake.read_bytes("raw/keep.bin") == b"old"  # a failed overwrite keeps the old object
    assert _leftovers(lake, tmp_path) == []


class LinkLost(Exception):
    pass


@pytest.mark.slow
def test_failure_mid_multipart_upload_is_aborted(lake, tmp_path):
    src = tmp_path / "big.bin"
    _write_random(src, 24 << 20)
    # max_attempts=1: botocore would otherwise retry the part (as it should for a
    # real network error) with backoff, which only makes the test slow
    lake = _small_parts(lake, part_size_mb=8, max_concurrency=1, max_attempts=1)
    sent = []

    def cut_after_10_mib(n):
        sent.append(n)
        if sum(sent) > 10 << 20:
            raise LinkLost("link lost mid-upload")  # not an error botocore would retry

    with pytest.raises(LinkLost):
        lake.put_file("raw/cut.bin", src, progress=cut_after_10_mib)
    assert sum(sent) > 10 << 20  # it failed after parts had been sent, not before
    assert lake.list_keys("") == []
    assert lake.info("raw/cut.bin") is None
    assert _leftovers(lake, tmp_path) == []


def test_local_info_hashes_files_written_by_other_tools(tmp_path):
    lake = LocalLake(root=str(tmp_path))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "copied.fits").write_bytes(b"SIMPLE")
    info = lake.info("raw/copied.fits")
    assert (info.size, info.sha256) == (6, hashlib.sha256(b"SIMPLE").hexdigest())


@pytest.mark.parametrize(
    "url, kind, where",
    [
        ("", LocalLake, ".hwosim/lake"),
        ("/data/lake", LocalLake, "/data/lake"),
        ("file:///data/lake", LocalLake, "/data/lake"),
        ("s3://bucket/pre/fix/", S3Lake, "s3://bucket/pre/fix"),
        ("s3://bucket", S3Lake, "s3://bucket"),
    ],
)
def test_lake_from_url(url, kind, where, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    lake = lake_from_url(url)
    assert isinstance(lake, kind)
    assert lake.uri().rstrip("/").endswith(where) if kind is LocalLake else lake.uri() == where
    if kind is S3Lake:
        assert lake.endpoint_url == "http://127.0.0.1:9"
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:10")
        assert lake_from_url(url).endpoint_url == "http://127.0.0.1:10"  # the S3-specific variable wins


@pytest.mark.parametrize("url", ["gs://bucket/x", "http://host/lake", "s3:///nobucket"])
def test_lake_from_url_refuses_other_schemes(url):
    with pytest.raises(ValueError, match="HWOSIM_LAKE_URL") as bad:
        lake_from_url(url)
    assert url in str(bad.value)
    if url.startswith(("gs", "http")):
        assert repr(url.split(":")[0]) in str(bad.value)  # names the bad scheme


def test_s3_without_credentials_names_the_variables(seaweedfs, shared_bucket, monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role probe off this machine
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint_url)
    lake = lake_from_url(f"s3://{shared_bucket}/p")
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for use in (
        lake.check,
        lambda: lake.put_bytes("k", b"x"),
        lambda: lake.put_file("k", src),
        lambda: lake.list_keys(),
        lambda: lake.read_parquet("k"),
    ):
        with pytest.raises(LakeConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
            use()


def test_s3_wrong_secret_and_missing_bucket_are_explained(seaweedfs, shared_bucket, s3_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for write in (lambda lake: lake.put_bytes("k", b"x"), lambda lake: lake.put_file("k", src)):
        with pytest.raises(LakeConfigError, match="rejected the credentials") as rejected:
            write(lake_from_url(f"s3://{shared_bucket}"))
        assert seaweedfs.secret_key not in str(rejected.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    with pytest.raises(LakeConfigError, match="does not exist"):
        lake_from_url("s3://no-such-bucket-here").check()
    lake_from_url(f"s3://{shared_bucket}").check()


# ---------------------------------------------------------------- keys and URLs from hostile input


@pytest.mark.parametrize(
    "key, why",
    [
        ("raw/jwst/01366/" + "o" * 5000 + "/x.fits", "its part 4 is 5,000 bytes, more than the 255"),
        ("raw/" + "/".join(["p" * 200] * 6), "more than the 1,024 bytes"),
        ("raw/jwst/01366/abc\n/x.fits", "control characters"),
        ("raw/\ud800.fits", "not valid Unicode"),
    ],
)
def test_overlong_and_unstorable_keys_are_refused_before_writing(lake, key, why):
    with pytest.raises(ValueError, match="invalid lake key") as refused:
        lake.put_bytes(key, b"x")
    assert why in str(refused.value)
    assert len(str(refused.value)) < 400  # a 5,000-character id is abbreviated, not echoed
    assert lake.list_keys("") == []


def test_longest_allowed_parts_are_stored(lake):
    key = "raw/" + "n" * 255 + "/" + "é" * 127 + "x"  # 255 bytes each (é is 2 bytes in UTF-8)
    lake.put_bytes(key, b"edge")
    assert lake.read_bytes(key) == b"edge"


def test_s3_key_limit_counts_the_prefix(seaweedfs, s3_env, shared_bucket):
    lake = lake_from_url(f"s3://{shared_bucket}/" + "/".join(["q" * 250] * 3))  # a 752-byte prefix
    key = "/".join(["k" * 250] * 2)  # 501 bytes: fine alone, 1,254 under the prefix
    with pytest.raises(ValueError, match="under the prefix .* more than the 1,024 an S3 key may have"):
        lake.put_bytes(key, b"x")


@pytest.mark.parametrize(
    "url, why",
    [
        ("s3://b/../victim", "'..' parts"),
        ("s3://bucket/pre/../../victim", "'..' parts"),
        ("s3://bucket/./p", "'.' or '..' parts"),
        ("s3://bucket//p", "no leading '/'"),
        ("s3://bucket/a//b", "no empty"),
        ("s3://bucket/a\\..\\b", "backslashes"),
        ("s3://bucket/%2e%2e/victim", "percent-escapes"),
        ("s3://bucket/p?versionId=1", "no '?' or '#'"),
        ("s3://bucket/p#frag", "no '?' or '#'"),
        ("s3://bucket/p\n", "control characters"),
        ("s3://..", "not a bucket name"),
        ("s3://a..b/p", "not a bucket name"),
        ("s3://bucket:9000/p", "not a bucket name"),
        ("s3://-bucket/p", "not a bucket name"),
        ("s3://b\\x/p", "not a bucket name"),
        ("s3:///p", "expected s3://bucket/prefix"),
        ("s3://", "expected s3://bucket/prefix"),
        ("s3://bucket/" + "x" * 300, "its part 1 is 300 bytes"),
    ],
)
def test_hostile_lake_urls_are_refused_at_load(url, why):
    with pytest.raises(ValueError, match="HWOSIM_LAKE_URL") as refused:
        resources_from_settings(Settings.from_env({"HWOSIM_LAKE_URL": url}))
    assert why in str(refused.value)


def test_lake_url_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(ValueError, match="credentials do not belong in the URL") as refused:
        lake_from_url("s3://AKIAEXAMPLE:TopSecret42@bucket/p")
    assert "TopSecret42" not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)


def test_lake_retry_budget_comes_from_settings():
    lake = resources_from_settings(
        Settings.from_env({"HWOSIM_LAKE_URL": "s3://bucket/p", "HWOSIM_LAKE_RETRY_SECONDS": "7.5"})
    )["lake"]
    assert isinstance(lake, S3Lake) and lake.retry_seconds == 7.5
    assert Settings.from_env({}).lake_retry_seconds == S3Lake(bucket="b").retry_seconds == 60
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(ValueError, match=f"HWOSIM_LAKE_RETRY_SECONDS='{bad}'"):
            Settings.from_env({"HWOSIM_LAKE_RETRY_SECONDS": bad})


# ---------------------------------------------------------------- S3 outages and interrupted uploads


def _open_uploads(fs, lake: S3Lake, key: str) -> list[str]:
    """Multipart uploads S3 still holds open for exactly this key (asked with
    the test's own client, not the lake's)."""
    full = f"{lake.prefix}/{key}"
    pages = fs.client().get_paginator("list_multipart_uploads").paginate(Bucket=lake.bucket, Prefix=full)
    return [u["UploadId"] for page in pages for u in page.get("Uploads", []) if u["Key"] == full]


def _assert_hides_secrets(fs, text: str) -> None:
    assert fs.secret_key not in text and fs.access_key not in text
    assert "uploadId" not in text and "Could not connect to the endpoint URL" not in text  # botocore's own message


@pytest.mark.slow
def test_unreachable_lake_says_so_for_every_operation(seaweedfs, s3_env, tmp_path, caplog):
    (port,) = services.free_ports(1)  # nothing listens there
    lake = S3Lake(
        bucket="hwosim-gone", prefix="p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1, retry_seconds=2
    )
    src = tmp_path / "a.fits"
    src.write_bytes(b"SIMPLE")
    operations = {
        "writing raw/a.fits": lambda: lake.put_file("raw/a.fits", src),
        "writing raw/b.txt": lambda: lake.put_bytes("raw/b.txt", b"b"),
        "reading raw/a.fits": lambda: lake.read_bytes("raw/a.fits"),
        "reading raw/c.fits": lambda: lake.get_file("raw/c.fits", tmp_path / "c.fits"),
        "reading raw/d.fits": lambda: lake.info("raw/d.fits"),
        "listing raw/": lambda: lake.list_keys("raw/"),
        "deleting raw/a.fits": lambda: lake.delete("raw/a.fits"),
        "checking the bucket": lake.check,
    }
    caplog.set_level(logging.WARNING)
    for doing, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(LakeUnreachableError) as unreachable:
            operation()
        took = time.monotonic() - started
        message = str(unreachable.value)
        assert message.startswith(
            f"S3 lake s3://hwosim-gone/p at http://127.0.0.1:{port} is unreachable while {doing} "
            "(EndpointConnectionError) after "
        ), message
        attempts = int(re.search(r"after (\d+) attempts over", message).group(1))
        assert attempts >= 2 and 2 <= took < 15, (attempts, took)  # retried until the budget was spent
        assert "no answer for" in message and "HWOSIM_LAKE_RETRY_SECONDS=2" in message
        assert unreachable.value.__suppress_context__  # the botocore error (and its URL) is not chained
        _assert_hides_secrets(seaweedfs, message)
    assert "did not answer while writing raw/a.fits" in caplog.text  # each retry is logged
    _assert_hides_secrets(seaweedfs, caplog.text)
    assert not (tmp_path / "c.fits").exists()


@pytest.mark.parametrize("write", ["put_file", "put_bytes"])
def test_upload_left_open_by_a_crash_is_aborted_by_the_next_write(seaweedfs, s3_env, shared_bucket, tmp_path, write):
    lake = lake_from_url(f"s3://{shared_bucket}/{tmp_path.name}")
    key, s3 = "raw/jwst/01366/o1/x1dints.fits", seaweedfs.client()
    for crashed in (key, key + ".bak"):  # what a killed process leaves: created, one part sent, never completed
        upload = s3.create_multipart_upload(Bucket=shared_bucket, Key=f"{tmp_path.name}/{crashed}")
        s3.upload_part(
            Bucket=shared_bucket,
            Key=f"{tmp_path.name}/{crashed}",
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=os.urandom(5 << 20),
        )
    assert len(_open_uploads(seaweedfs, lake, key)) == 1

    src = tmp_path / "x1dints.fits"
    src.write_bytes(b"SIMPLE  =                    T")
    lake.put_file(key, src) if write == "put_file" else lake.put_bytes(key, src.read_bytes())

    assert _open_uploads(seaweedfs, lake, key) == []
    assert len(_open_uploads(seaweedfs, lake, key + ".bak")) == 1  # another key's upload is not ours to abort
    assert lake.read_bytes(key) == src.read_bytes()


def test_two_writes_of_one_key_at_once_never_mix(seaweedfs, s3_env, shared_bucket, tmp_path):
    """The known cost of cleaning up on every write: a second writer of the same
    key aborts the first one's upload. The first then fails saying so, and the
    object is the second one's, whole."""
    first = S3Lake(
        bucket=shared_bucket,
        prefix=tmp_path.name,
        endpoint_url=seaweedfs.endpoint_url,
        part_size_mb=5,
        max_concurrency=1,
    )
    second = lake_from_url(f"s3://{shared_bucket}/{tmp_path.name}")
    src = tmp_path / "big.bin"
    _write_random(src, 20 << 20)
    sent = []

    def second_writer_after_6_mib(n):
        sent.append(n)
        if sum(sent) > 6 << 20 and not second.exists("k"):
            second.put_bytes("k", b"second")

    with pytest.raises(
        RuntimeError, match="multipart upload was aborted while writing k, most likely by another write"
    ):
        first.put_file("k", src, progress=second_writer_after_6_mib)
    assert first.read_bytes("k") == b"second"
    assert _open_uploads(seaweedfs, first, "k") == []


@pytest.mark.slow
def test_outage_mid_upload_fails_clearly_and_the_rerun_leaves_no_open_upload(
    seaweedfs, s3_env, shared_bucket, tmp_path, caplog
):
    src = tmp_path / "big_x1dints.fits"
    sha = _write_random(src, 64 << 20)
    # botocore's own retries cut to 2 attempts and a 3 s budget: the outage
    # outlasts both, and the test stays quick
    lake = S3Lake(
        bucket=shared_bucket,
        prefix=tmp_path.name,
        endpoint_url=seaweedfs.endpoint_url,
        part_size_mb=5,
        max_concurrency=1,
        max_attempts=2,
        retry_seconds=3,
    )
    key = "raw/jwst/01366/jw01366-o001/big_x1dints.fits"
    sent = []

    def outage_after_16_mib(n):
        sent.append(n)
        if sum(sent) > 16 << 20 and seaweedfs.server.alive:
            seaweedfs.stop()

    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    try:
        with pytest.raises(LakeUnreachableError) as outage:
            lake.put_file(key, src, progress=outage_after_16_mib)
        gave_up = time.monotonic() - started
    finally:
        seaweedfs.start()
    message = str(outage.value)
    print(f"\ngave up after {gave_up:.1f} s: {message}")
    assert message.startswith(
        f"S3 lake s3://{shared_bucket}/{tmp_path.name} at {seaweedfs.endpoint_url} is unreachable while writing {key} ("
    ), message
    assert "HWOSIM_LAKE_RETRY_SECONDS" in message
    _assert_hides_secrets(seaweedfs, message + caplog.text)
    assert 16 << 20 < sum(sent) < 64 << 20  # it failed mid-upload
    # boto3's abort could not reach S3 either: the upload is still open
    assert len(_open_uploads(seaweedfs, lake, key)) == 1
    assert lake.info(key) is None  # and nothing half-written is visible

    info = lake.put_file(key, src)  # the rerun

    assert (info.size, info.sha256) == (64 << 20, sha)
    body = seaweedfs.client().get_object(Bucket=shared_bucket, Key=f"{tmp_path.name}/{key}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha
    assert _open_uploads(seaweedfs, lake, key) == []


@pytest.mark.slow
def test_restart_during_a_write_is_ridden_out_within_the_budget(seaweedfs, s3_env, shared_bucket, tmp_path, caplog):
    src = tmp_path / "big.fits"
    sha = _write_random(src, 32 << 20)
    # max_attempts=2: botocore alone gives up within a second or two; a
    # SeaweedFS restart takes 10-20 s, so only the lake's own retries can bridge it
    lake = S3Lake(
        bucket=shared_bucket,
        prefix=tmp_path.name,
        endpoint_url=seaweedfs.endpoint_url,
        part_size_mb=5,
        max_concurrency=1,
        max_attempts=2,
        retry_seconds=90,
    )
    key, sent, restarted = "raw/big.fits", [], []

    def restart_after_10_mib(n):
        sent.append(n)
        if sum(sent) > 10 << 20 and not restarted:
            seaweedfs.stop()
            restarted.append(time.monotonic())
            seaweedfs.start(wait=False)  # back when it is back, as under a service manager

    caplog.set_level(logging.WARNING)
    try:
        info = lake.put_file(key, src, progress=restart_after_10_mib)
        recovered = time.monotonic() - restarted[0]
    finally:
        seaweedfs.start()  # waits until writable, whatever happened
    print(f"\nwrite completed {recovered:.1f} s after SeaweedFS was stopped and restarted")
    assert restarted and recovered > 3  # there really was an outage to ride out
    assert "did not answer while writing raw/big.fits" in caplog.text
    assert (info.size, info.sha256) == (32 << 20, sha)
    assert lake.info(key).sha256 == sha
    body = seaweedfs.client().get_object(Bucket=shared_bucket, Key=f"{tmp_path.name}/{key}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha
    assert _open_uploads(seaweedfs, lake, key) == []  # the interrupted attempt's upload was aborted


@pytest.mark.slow
def test_pipeline_run_cut_by_an_s3_crash_leaves_no_open_upload_after_the_next_run(
    seaweedfs, s3_env, s3_bucket, tmp_path
):
    """The issue's acceptance, through Dagster: SeaweedFS is killed (-9) while
    raw_products uploads the sample's 15.6 MB x1dints in 5 MiB parts; the run
    fails saying the lake is unreachable; the next run lands the file whole and
    no multipart upload is left open in the bucket."""

    def run_resources(retry_seconds: float) -> dict:
        resources = resources_from_settings(Settings.from_env({"HWOSIM_LAKE_URL": f"s3://{s3_bucket}/lake"}))
        resources["lake"] = S3Lake(
            bucket=s3_bucket,
            prefix="lake",
            endpoint_url=seaweedfs.endpoint_url,
            part_size_mb=5,
            max_concurrency=1,
            max_attempts=2,
            retry_seconds=retry_seconds,
        )
        return resources

    def open_uploads() -> list:
        return seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])

    instance = dg.DagsterInstance.ephemeral()
    materialize("jwst_catalog", run_resources(60), instance)

    def kill_when_an_upload_opens(done: threading.Event) -> None:
        probe = seaweedfs.client(retries={"max_attempts": 1})
        while not done.is_set():
            if probe.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"):
                seaweedfs.server.proc.kill()  # kill -9: no draining, mid-upload
                seaweedfs.server.proc.wait()
                return
            time.sleep(0.005)

    done = threading.Event()
    killer = threading.Thread(target=kill_when_an_upload_opens, args=(done,))
    killer.start()
    try:
        failed = materialize("raw_products", run_resources(2), instance, sample.SPECTRA_OBS_ID, raise_on_error=False)
    finally:
        done.set()
        killer.join()
        seaweedfs.start()
    assert not failed.success
    error = failed.failure_data_for_node("raw_products").error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any("is unreachable while writing raw/jwst/09999/" in m for m in messages), messages
    assert len(open_uploads()) == 1, "the crash did not come mid-upload"

    rerun = materialize("raw_products", run_resources(60), instance, sample.SPECTRA_OBS_ID)

    assert rerun.success
    assert open_uploads() == []
    (name,) = [n for n, p in sample.SAMPLE_PRODUCTS.items() if p.product_type == "x1dints"]
    sample.write_sample_products(tmp_path)
    landed = (
        seaweedfs.client()
        .get_object(Bucket=s3_bucket, Key=f"lake/{raw_key(sample.SAMPLE_PROGRAM, sample.SPECTRA_OBS_ID, name)}")["Body"]
        .read()
    )
    assert landed == (tmp_path / name).read_bytes()  # whole, byte for byte
