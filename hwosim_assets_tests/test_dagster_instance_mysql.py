"""The repository's dagster.yaml with the MySQL storage section appended (as the README and the
Docker image do) gives a working Dagster instance on MariaDB."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus
from dagster._core.storage.dagster_run import RunsFilter
from dagster_mysql import MySQLEventLogStorage, MySQLRunStorage, MySQLScheduleStorage

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.mariadb


@pytest.fixture
def instance(mariadb, tmp_path, monkeypatch):
    """DagsterInstance.get() as a deployment would call it: DAGSTER_HOME holds the repository's
    dagster.yaml plus the MySQL storage section, the connection comes from the environment."""
    url = sa.make_url(mariadb.new_database("dagster_instance"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    storage = REPO / "hwosim_assets" / "defaults" / "dagster-mysql-storage.yaml"
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text() + storage.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_MYSQL_HOSTNAME", mariadb.host)
    monkeypatch.setenv("DAGSTER_MYSQL_PORT", str(mariadb.port))
    monkeypatch.setenv("DAGSTER_MYSQL_USERNAME", mariadb.user)
    monkeypatch.setenv("DAGSTER_MYSQL_PASSWORD", mariadb.password)
    monkeypatch.setenv("DAGSTER_MYSQL_DB", url.database)
    with dg.DagsterInstance.get() as inst:
        yield inst


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["obs1", "obs2"]))
def tiny(context):
    return dg.MaterializeResult(metadata={"rows": 3, "obs": context.partition_key})


def test_instance_on_mariadb_runs_and_records(instance, mariadb):
    assert isinstance(instance.run_storage, MySQLRunStorage)
    assert isinstance(instance.event_log_storage, MySQLEventLogStorage)
    assert isinstance(instance.schedule_storage, MySQLScheduleStorage)
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
    assert instance.get_settings("sensors")["use_threads"] is True
    assert instance.get_settings("telemetry")["enabled"] is False

    results = [
        dg.materialize([tiny], instance=instance, partition_key=key, tags={"hwosim/stream": key})
        for key in ("obs1", "obs2", "obs1")
    ]
    assert all(r.success for r in results)

    # read it back through the instance: the asset, its partitions and metadata
    key = dg.AssetKey("tiny")
    assert key in instance.get_asset_keys()
    event = instance.get_latest_materialization_event(key)
    assert event.run_id == results[-1].run_id
    assert event.asset_materialization.partition == "obs1"
    assert event.asset_materialization.metadata["rows"].value == 3
    assert instance.get_materialized_partitions(key) == {"obs1", "obs2"}
    records = instance.fetch_materializations(key, limit=10).records
    assert [r.run_id for r in records] == [r.run_id for r in reversed(results)]

    # run queries, including a tag filter (a join on run_tags)
    assert len(instance.get_runs()) == 3
    assert len(instance.get_runs(RunsFilter(tags={"hwosim/stream": "obs1"}))) == 2
    assert instance.get_runs(limit=1)[0].run_id == results[-1].run_id

    # sensor tick storage, with the batch (window function) query MariaDB must support
    assert instance.schedule_storage.supports_batch_queries  # MariaDB 10.11 parses as version 10.11 >= 8.0
    origin_id, selector_id = "hwosim-sensor-origin", "hwosim-sensor-selector"
    for status, run_ids, ts in ((TickStatus.SKIPPED, [], 1.0e9), (TickStatus.SUCCESS, [results[0].run_id], 1.0e9 + 5)):
        instance.create_tick(
            TickData(
                instigator_origin_id=origin_id,
                instigator_name="stream_obs1",
                instigator_type=InstigatorType.SENSOR,
                status=status,
                timestamp=ts,
                selector_id=selector_id,
                run_ids=run_ids,
            )
        )
    ticks = instance.get_batch_ticks([selector_id], limit=1)
    assert [t.status for t in ticks[selector_id]] == [TickStatus.SUCCESS]

    # concurrency pools (a way to cap parallel stream writers) use row locks in MySQL
    instance.event_log_storage.set_concurrency_slots("stream_writer", 1)
    first = instance.event_log_storage.claim_concurrency_slot("stream_writer", results[0].run_id, "tiny")
    second = instance.event_log_storage.claim_concurrency_slot("stream_writer", results[1].run_id, "tiny")
    assert (first.is_claimed, second.is_claimed) == (True, False)

    # and the tables are really in MariaDB, in the configured database
    engine = sa.create_engine(mariadb.url_for("dagster_instance"))
    with engine.connect() as conn:
        tables = {row[0] for row in conn.execute(sa.text("SHOW TABLES"))}
        stored_runs = conn.execute(sa.text("SELECT COUNT(*) FROM runs")).scalar()
        engines = {
            row[0]
            for row in conn.execute(
                sa.text("SELECT DISTINCT engine FROM information_schema.tables WHERE table_schema = DATABASE()")
            )
        }
    engine.dispose()
    assert {
        "runs",
        "run_tags",
        "event_logs",
        "asset_keys",
        "jobs",
        "job_ticks",
        "alembic_version",
        "secondary_indexes",
        "kvs",
        "instance_info",
    } <= tables
    assert stored_runs == 3
    assert engines == {"InnoDB"}


def test_instance_reopens_on_existing_schema(instance, mariadb):
    """A second process (the daemon next to the webserver) opens the same
    database: no migration is due, and it sees the first one's runs."""
    dg.materialize([tiny], instance=instance, partition_key="obs2")
    with dg.DagsterInstance.get() as again:
        assert len(again.get_runs()) == 1
        assert again.get_materialized_partitions(dg.AssetKey("tiny")) == {"obs2"}
        again.upgrade()  # alembic finds the schema at head; a no-op, not an error
