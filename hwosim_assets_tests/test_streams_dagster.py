"""Streams through Dagster, tick by tick: the real pipeline up to the perturbed spectra, then a
stream's replay sensor evaluated against a real instance and each requested run executed
in-process, on SQLite (the embedded default) and on MariaDB.

The sensor's clock is ours here, so these are unit tests of the Dagster glue
(prerequisites, run requests, retries, partitions per stream, metadata);
that a stream holds its rate under a real dagster-daemon is
test_streams_live.py's job.
"""

import functools
import time
from collections import Counter

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from hwosim_assets.cli import QUIET, load_assets
from hwosim_assets.defs.lake.layout import stream_truth_key
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.defs.streams.resources import StreamDatabase
from hwosim_assets.defs.streams.sensors import STREAM_TAG, replay_sensor
from hwosim_assets.ingest.sample import SPECTRA_OBS_ID
from hwosim_assets.settings import Settings
from hwosim_assets.stream import load_streams, schema
from hwosim_assets.stream.schedule import Cursor

PROFILES = """
version: 1
profiles:
  clean: {description: untouched, kinds: {}}
  lossy-link:
    description: a link that loses and repeats packets, data untouched
    kinds:
      packet_loss: {params: {p_loss: 0.1, mean_burst: 2}}
      duplicates: {params: {p_dup: 0.05}}
"""
STREAM = """
  - name: {name}
    observation: {obs}
    profile: {profile}
    family: spectra
    pacing: {{mode: rate, rate: 20}}
    tick_seconds: 1
    run_seconds: 1
    loop: true
"""
RATE, WINDOW, CHANNELS, SOURCE_PACKETS = 20.0, 20, 500, 200  # the sample x1dints: 200 integrations x 500 bins


assets = functools.cache(load_assets)  # loaded once: the code location takes ~0.4 s to load


def materialize(asset: str, resources, instance, partition_key=None, config=None, tags=None, raise_on_error=True):
    """pipeline.materialize, with run tags."""
    return dg.materialize(
        assets(),
        selection=[asset],
        resources=resources,
        instance=instance,
        partition_key=partition_key,
        run_config={**QUIET, **({"ops": {asset: {"config": config}}} if config else {})},
        tags=tags,
        raise_on_error=raise_on_error,
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """catalog -> raw -> bronze -> profiles observed -> perturbed (lossy-link) -> stream_tables, on SQLite."""
    home = tmp_path_factory.mktemp("hwosim")
    (home / "profiles.yaml").write_text(PROFILES)
    streams = [("link-a", "lossy-link"), ("link-b", "lossy-link"), ("link-c", "lossy-link"), ("link-clean", "clean")]
    (home / "streams.yaml").write_text(
        "streams:" + "".join(STREAM.format(name=n, obs=SPECTRA_OBS_ID, profile=p) for n, p in streams)
    )
    settings = Settings.from_env(
        {
            "HWOSIM_HOME": str(home),
            "HWOSIM_PROFILES": str(home / "profiles.yaml"),
            "HWOSIM_STREAMS": str(home / "streams.yaml"),
        }
    )
    resources = resources_from_settings(settings)
    (home / "dagster").mkdir()  # a file-backed instance: runs are read while another thread executes one
    instance = dg.DagsterInstance.local_temp(str(home / "dagster"), overrides={"telemetry": {"enabled": False}})
    materialize("jwst_catalog", resources, instance)
    materialize("raw_products", resources, instance, SPECTRA_OBS_ID)
    materialize("bronze_spectra", resources, instance, SPECTRA_OBS_ID)
    materialize("perturbation_profiles", resources, instance)
    materialize(
        "perturbed_spectra",
        resources,
        instance,
        dg.MultiPartitionKey({"observation": SPECTRA_OBS_ID, "profile": "lossy-link"}),
    )
    materialize("stream_tables", resources, instance)
    specs = load_streams(home / "streams.yaml", known_profiles={"clean", "lossy-link"})
    yield resources, instance, specs
    instance.dispose()


class Ticker:
    """A stream's sensor evaluated tick by tick on a clock of ours, keeping its cursor like the daemon."""

    def __init__(self, spec, resources, instance, now: float):
        self.now, self.cursor, self.instance, self.resources = now, None, instance, resources
        self.sensor = replay_sensor(spec, clock=lambda: self.now)
        self.definitions = dg.Definitions(assets=assets(), sensors=[self.sensor], resources=resources)

    def tick(self, advance: float = 1.0):
        self.now += advance
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.definitions, resources=self.resources
        )
        with dg.partition_loading_context(dynamic_partitions_store=self.instance):  # as the daemon does
            result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def run(request: dg.RunRequest, resources, instance, pace=False, raise_on_error=True) -> dg.ExecuteInProcessResult:
    """Execute a sensor's run request in-process: its partition, config (pace overridden) and tags."""
    config = {**request.run_config["ops"]["stream_spectra"]["config"], "pace": pace}
    return materialize(
        "stream_spectra", resources, instance, request.partition_key, config, request.tags, raise_on_error
    )


def report(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def delivered(engine, stream: str) -> pl.DataFrame:
    t = schema.spectra_rows
    query = sa.select(t.c.offset, t.c.channel, t.c.seq, t.c.lap, t.c.scheduled_time, t.c.emitted_time)
    with engine.connect() as conn:
        rows = conn.execute(query.where(t.c.stream == stream).order_by(t.c.offset, t.c.channel)).all()
    return pl.DataFrame([r._asdict() for r in rows])


def check_windows(engine, lake, stream: str, windows: int, reports: list[dict]) -> pl.DataFrame:
    """Windows 0..windows-1 delivered exactly once: offsets contiguous, every row, and the packets are the
    windows' minus the truth's drops plus its duplicates; the runs' metadata sums to what was written."""
    rows = delivered(engine, stream)
    packets = rows.unique("offset", keep="first", maintain_order=True)
    assert packets["offset"].to_list() == list(range(len(packets)))  # contiguous from 0, no holes
    assert len(rows) == len(packets) * CHANNELS == sum(r["rows_written"] for r in reports)
    assert len(packets) == sum(r["packets_delivered"] for r in reports)
    truth = pl.concat([lake.read_parquet(stream_truth_key(stream, n)) for n in range(windows)])
    expected = Counter((p // SOURCE_PACKETS, p % SOURCE_PACKETS) for p in range(windows * WINDOW))
    expected -= Counter(truth.filter(pl.col("kind") == "packet_loss").select("lap", "seq").iter_rows())
    expected += Counter(truth.filter(pl.col("kind") == "duplicates").select("lap", "seq").iter_rows())
    assert Counter(packets.select("lap", "seq").iter_rows()) == expected
    assert sum(r["drops"] for r in reports) == truth.filter(pl.col("kind") == "packet_loss").height
    return rows


@pytest.mark.timing
def test_sensor_requests_windows_ahead_and_a_run_drains_a_backlog(pipeline):
    resources, instance, specs = pipeline
    spec, engine, lake = specs["link-a"], resources["stream_db"].engine(), resources["lake"]
    ticker = Ticker(spec, resources, instance, now=time.time())

    first = ticker.tick()
    [request] = first.run_requests
    t0 = Cursor.from_json(first.cursor).start_time
    assert request.partition_key == "link-a"  # the stream's own partition: its history is its own
    assert request.tags[STREAM_TAG] == "link-a" and request.tags["dagster/priority"] == "10"
    config = request.run_config["ops"]["stream_spectra"]["config"]
    assert config["first_window"] == 0 and config["start_time"] == pytest.approx(t0)
    assert t0 > ticker.now + spec.tick_seconds  # due one lead ahead: time for the run to launch
    ticker.cursor = None
    assert ticker.tick(advance=0.0).run_requests == [request]  # the same tick again asks for the same run
    reports = [report(run(request, resources, instance, pace=True))]
    assert reports[0]["windows"] == f"0-{config['last_window']}" and reports[0]["target_rate_per_s"] == RATE
    assert reports[0]["lateness_p99_ms"] < 50 and reports[0]["backlog_packets"] == 0
    # paced on the wall clock: delivered at 20/s (less where the profile dropped packets)
    assert reports[0]["achieved_rate_per_s"] == pytest.approx(RATE, rel=0.2)

    # ticks follow the clock: each asks for the windows that came within the lead
    ticker.now = max(ticker.now, time.time())
    nxt = ticker.tick()
    [request] = nxt.run_requests
    config = request.run_config["ops"]["stream_spectra"]["config"]
    assert config["first_window"] == int(reports[0]["windows"].split("-")[1]) + 1
    assert config["start_time"] == pytest.approx(spec.window_start_time(config["first_window"], t0))
    reports.append(report(run(request, resources, instance)))

    # the stream's clock a minute ahead of its deliveries (as after a minute without ticks): one run
    # asks for every overdue window and delivers them at once, then paces the rest
    cursor = Cursor.from_json(ticker.cursor)
    ticker.cursor = Cursor(cursor.start_time - 60.0, cursor.next_window).to_json()
    ticker.now = time.time()
    backlog = ticker.tick(advance=0.0)
    [request] = backlog.run_requests
    config = request.run_config["ops"]["stream_spectra"]["config"]
    # every window due within the shifted minute is asked for (counted from window 0: the runs before
    # delivered some ahead of the clock, by the sensor's lead, which follows the measured launch latency)
    assert config["first_window"] == cursor.next_window and config["last_window"] + 1 >= 60 // (WINDOW / RATE)
    reports.append(report(run(request, resources, instance, pace=True)))
    assert reports[-1]["backlog_packets"] > 0 and reports[-1]["start_lag_s"] > 30
    check_windows(engine, lake, "link-a", config["last_window"] + 1, reports)
    assert sum(r["drops"] for r in reports) > 0 and sum(r["duplicates"] for r in reports) > 0


def test_sensor_waits_for_its_partition_and_retries_a_failed_run(pipeline):
    resources, instance, specs = pipeline
    unmaterialized = Ticker(specs["link-clean"], resources, instance, time.time()).tick()
    assert not unmaterialized.run_requests
    assert f"perturbed_spectra partition {SPECTRA_OBS_ID}|clean is not materialized" in unmaterialized.skip_message

    ticker = Ticker(specs["link-c"], resources, instance, time.time())
    [request] = ticker.tick().run_requests
    broken = request.run_config["ops"]["stream_spectra"]["config"]
    bad = {**broken, "first_window": 1, "last_window": 0}  # a run that fails: last before first
    failed = materialize("stream_spectra", resources, instance, "link-c", bad, request.tags, raise_on_error=False)
    assert "last_window 0 is before first_window 1" in failed.failure_data_for_node("stream_spectra").error.message
    retry = ticker.tick(advance=10.0)
    [again] = retry.run_requests  # the lost windows are asked for again, under a new run key
    assert again.run_key.endswith("#1") and again.run_config["ops"]["stream_spectra"]["config"]["first_window"] == 0
    assert Cursor.from_json(retry.cursor).attempts == 1


def test_sensor_replays_into_mariadb(pipeline, mariadb):
    resources, instance, specs = pipeline
    resources = {**resources, "stream_db": StreamDatabase(url=mariadb.new_database("hwosim_streams_dagster"))}
    materialize("stream_tables", resources, instance)
    engine, lake = resources["stream_db"].engine(), resources["lake"]
    ticker = Ticker(specs["link-b"], resources, instance, time.time())
    reports, requests = [], []
    for advance in (1.0, 10.0, 10.0):
        [request] = ticker.tick(advance=advance).run_requests
        requests.append(request)
        reports.append(report(run(request, resources, instance)))
    last = requests[-1].run_config["ops"]["stream_spectra"]["config"]["last_window"]
    check_windows(engine, lake, "link-b", last + 1, reports)
    rerun = report(run(requests[1], resources, instance))  # windows run twice write nothing the second time
    assert rerun["already_committed"] and rerun["rows_written"] == 0
    assert len(delivered(engine, "link-b")) == sum(r["rows_written"] for r in reports)


def test_stream_commands_list_status_and_reset(pipeline):
    """`hwosim stream list | status | reset` against the instance and stream database above, as a user runs them."""
    import os
    import subprocess
    import sys

    resources, instance, specs = pipeline
    hw = resources["hwosim"]
    # one paced run of its own (the tests above may not have run: CI runs the timing one apart)
    [request] = Ticker(specs["link-a"], resources, instance, now=time.time()).tick().run_requests
    run(request, resources, instance, pace=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=instance.root_directory,
        HWOSIM_PROFILES=hw.profiles_path,
        HWOSIM_STREAMS=hw.streams_path,
        HWOSIM_STREAM_DB_URL=resources["stream_db"].url,
        PYTHONWARNINGS="ignore",
    )

    def hwosim(*args):
        done = subprocess.run(
            [sys.executable, "-m", "hwosim_assets.cli", "stream", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return [line.split("\t") for line in done.stdout.strip().splitlines()]

    listed = {row[0]: row for row in hwosim("list")[1:]}
    assert set(listed) == set(specs) and listed["link-a"][4] == "rate 20/s" and listed["link-a"][7] == "STOPPED"
    header, row = hwosim("status", "link-a")
    status = dict(zip(header, row, strict=False))
    assert status["target /s"] == "20" and float(status["lag s"]) > 0 and status["position"].startswith("lap ")
    assert "SUCCESS windows" in status["last run"]
    with resources["stream_db"].engine().connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.spectra_rows)
                .where(schema.spectra_rows.c.stream == "link-a")
            ).scalar()
            > 0
        )
    hwosim("reset", "link-a", "--yes")
    with resources["stream_db"].engine().connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).select_from(schema.spectra_rows).where(schema.spectra_rows.c.stream == "link-a")
        ).scalar()
    assert left == 0
    header, row = hwosim("status", "link-a")
    assert dict(zip(header, row, strict=False))["delivered /s (1 min)"] == "0.00"
