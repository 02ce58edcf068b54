"""No secret leaves the environment: after the whole pipeline on the MySQL instance (MariaDB),
a MariaDB stream database and an S3 lake (SeaweedFS), neither the database password nor the
S3 secret key is anywhere in the Dagster instance (every table, snapshots decompressed), in the
compute logs, or in what the runs printed.

Before, HWOSIM_STREAM_DB_URL was a literal resource field, so the password was in every job
snapshot and in the UI's resource config."""

from __future__ import annotations

import zlib
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from hwosim_assets.cli import observe
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.ingest.sample import SPECTRA_OBS_ID
from hwosim_assets.settings import Settings
from hwosim_assets_tests.pipeline import materialize

REPO = Path(__file__).resolve().parents[1]
STREAMS = f"""streams:
  - name: secret-check
    observation: {SPECTRA_OBS_ID}
    profile: nominal
    family: spectra
    pacing: {{mode: asap}}
    window: 5
"""


def _texts(value) -> list[str]:
    """A stored value as the text(s) a leak would show in: bytes decompressed where zlib'd."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out = [raw.decode("utf-8", "replace")]
        try:
            out.append(zlib.decompress(raw).decode("utf-8", "replace"))
        except zlib.error:
            pass
        return out
    return [str(value)] if value is not None else []


def test_no_secret_in_the_instance_logs_or_metadata(
    mariadb, seaweedfs, s3_bucket, s3_env, tmp_path, monkeypatch, capfd
):
    dagster_db = sa.make_url(mariadb.new_database("dagster_secrets"))
    stream_url = mariadb.new_database("streams_secrets")
    assert mariadb.password in stream_url  # the URL really carries the password
    home = tmp_path / "dagster"
    home.mkdir()
    storage = (REPO / "hwosim_assets" / "defaults" / "dagster-mysql-storage.yaml").read_text()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text() + storage)
    (tmp_path / "streams.yaml").write_text(STREAMS)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_MYSQL_HOSTNAME": mariadb.host,
        "DAGSTER_MYSQL_PORT": str(mariadb.port),
        "DAGSTER_MYSQL_USERNAME": mariadb.user,
        "DAGSTER_MYSQL_PASSWORD": mariadb.password,
        "DAGSTER_MYSQL_DB": dagster_db.database,
        "HWOSIM_HOME": str(tmp_path / "hwosim"),
        "HWOSIM_LAKE_URL": f"s3://{s3_bucket}/secrets",
        "HWOSIM_STREAM_DB_URL": stream_url,
        "HWOSIM_STREAMS": str(tmp_path / "streams.yaml"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    secrets = {"database password": mariadb.password, "S3 secret key": s3_env["AWS_SECRET_ACCESS_KEY"]}

    resources = resources_from_settings(Settings.from_env())
    assert isinstance(resources["stream_db"].url, dg.EnvVar)  # only the variable's name goes to Dagster
    with dg.DagsterInstance.get() as instance:
        materialize("jwst_catalog", resources, instance)
        materialize("raw_products", resources, instance, SPECTRA_OBS_ID)
        materialize("bronze_spectra", resources, instance, SPECTRA_OBS_ID)
        observe("observe_profiles", resources, instance)
        materialize(
            "perturbed_spectra",
            resources,
            instance,
            dg.MultiPartitionKey({"observation": SPECTRA_OBS_ID, "profile": "nominal"}),
        )
        materialize("stream_tables", resources, instance)
        config = {"first_window": 0, "last_window": 1, "start_time": 0.0, "pace": False}
        result = materialize(
            "stream_spectra",
            resources,
            instance,
            "secret-check",
            run_config={"ops": {"stream_spectra": {"config": config}}},
        )
        assert result.success
        compute_logs = Path(instance.root_directory)

    found = []
    engine = sa.create_engine(mariadb.url.rsplit("/", 1)[0] + f"/{dagster_db.database}")
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        assert {"runs", "event_logs", "snapshots"} <= set(tables)
        for table in tables:
            for row in conn.execute(sa.text(f"SELECT * FROM `{table}`")):
                for column, value in row._mapping.items():
                    for text in _texts(value):
                        found += [(table, column, what) for what, secret in secrets.items() if secret in text]
    engine.dispose()
    for path in compute_logs.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            found += [(str(path), "", what) for what, secret in secrets.items() if secret in text]
    printed = capfd.readouterr()
    found += [("output", "", what) for what, secret in secrets.items() if secret in printed.out + printed.err]
    assert not found, f"secrets found: {sorted(set(found))}"
    assert len(tables) > 5
