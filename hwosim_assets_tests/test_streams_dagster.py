"""Streams through Dagster: the real pipeline up to the perturbed spectra, then the
replay sensor ticked by hand and each requested run executed, on SQLite (the
embedded default) and on MariaDB.

The sensor's clock is a fake advanced one tick per evaluation, as the daemon
would; runs are real in-process materializations on a real instance.
"""

import functools
import json
import threading
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
from hwosim_assets.stream import load_streams
from hwosim_assets.stream import schema

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
    loop: true
"""
RATE, WINDOW, CHANNELS, SOURCE_PACKETS = 20.0, 20, 500, 200  # the sample x1dints: 200 integrations x 500 bins


assets = functools.cache(load_assets)  # loaded once: the code location takes ~0.4 s to load


def materialize(asset: str, resources, instance, partition_key=None, config=None, tags=None, raise_on_error=True):
    """pipeline.materialize, with the assets loaded once and run tags."""
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
        {"HWOSIM_HOME": str(home), "HWOSIM_PROFILES": str(home / "profiles.yaml"), "HWOSIM_STREAMS": str(home / "streams.yaml")}
    )
    resources = resources_from_settings(settings)
    (home / "dagster").mkdir()  # a file-backed instance: runs are read while another thread executes one
    instance = dg.DagsterInstance.local_temp(str(home / "dagster"), overrides={"telemetry": {"enabled": False}})
    materialize("jwst_catalog", resources, instance)
    materialize("raw_products", resources, instance, SPECTRA_OBS_ID)
    materialize("bronze_spectra", resources, instance, SPECTRA_OBS_ID)
    materialize("perturbation_profiles", resources, instance)
    materialize("perturbed_spectra", resources, instance, dg.MultiPartitionKey({"observation": SPECTRA_OBS_ID, "profile": "lossy-link"}))
    materialize("stream_tables", resources, instance)
    specs = load_streams(home / "streams.yaml", known_profiles={"clean", "lossy-link"})
    yield resources, instance, specs
    instance.dispose()


class Ticker:
    """A stream's sensor evaluated tick by tick on a fake clock, keeping its cursor like the daemon."""

    def __init__(self, spec, resources, instance, now: float):
        self.now, self.cursor, self.instance = now, None, instance
        self.sensor = replay_sensor(spec, clock=lambda: self.now)
        self.definitions = dg.Definitions(assets=assets(), sensors=[self.sensor], resources=resources)

    def tick(self, advance: float = 1.0):
        self.now += advance
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=self.definitions)
        with dg.partition_loading_context(dynamic_partitions_store=self.instance):  # as the daemon does
            result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def run(request: dg.RunRequest, resources, instance, pace=False, raise_on_error=True) -> dg.ExecuteInProcessResult:
    """Execute a sensor's run request in-process: its partition, config (pace overridden) and tags."""
    config = {**request.run_config["ops"]["stream_spectra"]["config"], "pace": pace}
    return materialize("stream_spectra", resources, instance, request.partition_key, config, request.tags, raise_on_error)


def report(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def delivered(engine, stream: str) -> pl.DataFrame:
    t = schema.spectra_rows
    query = sa.select(t.c.offset, t.c.channel, t.c.seq, t.c.lap, t.c.scheduled_time, t.c.emitted_time)
    with engine.connect() as conn:
        rows = conn.execute(query.where(t.c.stream == stream).order_by(t.c.offset, t.c.channel)).all()
    return pl.DataFrame([r._asdict() for r in rows])


def check_windows(engine, lake, stream: str, reports: list[dict]) -> pl.DataFrame:
    """Windows abut, rows are window x rows per packet, and the packets are the windows' minus truth's drops, plus its duplicates."""
    assert [r["first_offset"] for r in reports[1:]] == [r["last_offset"] + 1 for r in reports[:-1]]
    rows = delivered(engine, stream)
    packets = rows.unique("offset", keep="first", maintain_order=True)
    deliveries = sum(r["planned_deliveries"] for r in reports)
    assert packets["offset"].to_list() == list(range(deliveries))  # contiguous from 0, no holes
    assert len(rows) == deliveries * CHANNELS == sum(r["rows"] for r in reports)
    truth = pl.concat([lake.read_parquet(stream_truth_key(stream, r["window_index"])) for r in reports])
    positions = range(len(reports) * WINDOW)
    expected = Counter((p // SOURCE_PACKETS, p % SOURCE_PACKETS) for p in positions)
    expected -= Counter(truth.filter(pl.col("kind") == "packet_loss").select("lap", "seq").iter_rows())
    expected += Counter(truth.filter(pl.col("kind") == "duplicates").select("lap", "seq").iter_rows())
    assert Counter(packets.select("lap", "seq").iter_rows()) == expected
    assert sum(r["drops"] for r in reports) == truth.filter(pl.col("kind") == "packet_loss").height
    return rows


def test_sensor_replays_abutting_windows_on_sqlite(pipeline):
    resources, instance, specs = pipeline
    spec, engine, lake = specs["link-a"], resources["stream_db"].engine(), resources["lake"]
    # the first tick at "now + 2 s": window 0 is due 3 s ahead, time enough to start a run in-process
    ticker = Ticker(spec, resources, instance, now=time.time() + 1.0)

    first = ticker.tick()
    [request] = first.run_requests
    t0 = json.loads(first.cursor)["start_time"]
    assert request.run_key == "link-a:0" and t0 == pytest.approx(ticker.now + 1.0)  # first window one tick ahead
    assert request.partition_key == dg.MultiPartitionKey({"observation": SPECTRA_OBS_ID, "profile": "lossy-link"})
    ticker.cursor = None
    assert ticker.tick(advance=0.0).run_requests == [request]  # the same tick again asks for the same run

    # window 0 paced on the wall clock, in a thread; a tick meanwhile prefetches window 1,
    # whose run (started at once, unpaced) must wait for window 0's last commit
    results = {}
    worker = threading.Thread(target=lambda: results.__setitem__(0, run(request, resources, instance, pace=True)))
    worker.start()
    while not any(r.status == dg.DagsterRunStatus.STARTED for r in instance.get_runs(dg.RunsFilter(tags={STREAM_TAG: "link-a"}))):
        time.sleep(0.02)
    ahead = ticker.tick()
    [request] = ahead.run_requests
    assert request.run_key == "link-a:1" and json.loads(ahead.cursor)["window"] == 2
    follower = threading.Thread(target=lambda: results.__setitem__(1, run(request, resources, instance)))
    follower.start()
    busy = ticker.tick(advance=0.0)  # two runs in flight: no third
    assert not busy.run_requests and "waiting" in busy.skip_message and json.loads(busy.cursor)["window"] == 2
    worker.join()
    follower.join()
    reports = [report(results[0]), report(results[1])]
    assert reports[1]["first_offset"] == reports[0]["last_offset"] + 1  # waited, then abutted
    window0 = delivered(engine, "link-a").filter(pl.col("offset") <= reports[0]["last_offset"])
    sent = window0.unique("offset", keep="first")
    scheduled_rate = (len(sent) - 1) / (sent["scheduled_time"].max() - sent["scheduled_time"].min())
    assert scheduled_rate == pytest.approx(RATE, rel=0.15)  # 20/s, less where the profile dropped packets
    assert reports[0]["achieved_rate"] == pytest.approx(scheduled_rate, rel=0.03)
    assert reports[0]["lateness_p99"] < 0.05 and sent["scheduled_time"].min() == pytest.approx(t0)

    # windows 2..3 at speed: one request per tick, start times on one clock
    for n in (2, 3):
        tick = ticker.tick()
        [request] = tick.run_requests
        config = request.run_config["ops"]["stream_spectra"]["config"]
        assert request.run_key == f"link-a:{n}" and config["start_time"] == pytest.approx(t0 + n * WINDOW / RATE)
        assert json.loads(tick.cursor) == {"window": n + 1, "start_time": t0, "behind": 0}
        reports.append(report(run(request, resources, instance)))

    # after 10 s of downtime (11 s since the last tick): still one window per tick, none skipped, the backlog said
    for n in (4, 5):
        tick = ticker.tick(advance=11.0 if n == 4 else 1.0)
        [request] = tick.run_requests
        assert request.run_key == f"link-a:{n}" and json.loads(tick.cursor)["behind"] >= 9
        reports.append(report(run(request, resources, instance)))

    check_windows(engine, lake, "link-a", reports)
    assert sum(r["drops"] for r in reports) > 0 and sum(r["duplicates"] for r in reports) > 0
    with engine.connect() as conn:
        truth_rows = conn.execute(
            sa.select(sa.func.count()).select_from(schema.truth_stream_faults).where(schema.truth_stream_faults.c.stream == "link-a")
        ).scalar()
    assert truth_rows == sum(len(lake.read_parquet(stream_truth_key("link-a", n))) for n in range(6))


def test_sensor_waits_for_its_partition_and_stops_on_a_failed_run(pipeline):
    resources, instance, specs = pipeline
    unmaterialized = Ticker(specs["link-clean"], resources, instance, time.time()).tick()
    assert not unmaterialized.run_requests
    assert f"perturbed_spectra partition {SPECTRA_OBS_ID}|clean is not materialized" in unmaterialized.skip_message

    ticker = Ticker(specs["link-c"], resources, instance, time.time())
    [request] = ticker.tick().run_requests
    wrong = dg.RunRequest(
        run_key=request.run_key,
        run_config=request.run_config,
        tags=request.tags,
        partition_key=dg.MultiPartitionKey({"observation": SPECTRA_OBS_ID, "profile": "clean"}),
    )
    failed = run(wrong, resources, instance, raise_on_error=False)
    assert not failed.success
    message = failed.failure_data_for_node("stream_spectra").error.message
    assert f"launch it for partition {request.partition_key}" in message
    stopped = ticker.tick()
    assert not stopped.run_requests and "FAILURE" in stopped.skip_message and "re-execute" in stopped.skip_message


def test_sensor_replays_into_mariadb(pipeline, mariadb):
    resources, instance, specs = pipeline
    resources = {**resources, "stream_db": StreamDatabase(url=mariadb.new_database("hwosim_streams_dagster"))}
    materialize("stream_tables", resources, instance)
    engine, lake = resources["stream_db"].engine(), resources["lake"]
    ticker = Ticker(specs["link-b"], resources, instance, time.time())
    reports, requests = [], []
    for n in range(3):
        [request] = ticker.tick().run_requests
        requests.append(request)
        reports.append(report(run(request, resources, instance)))
    check_windows(engine, lake, "link-b", reports)
    rerun = report(run(requests[1], resources, instance))  # a window run twice writes nothing the second time
    assert rerun["already_committed"] and rerun["rows"] == 0
    assert len(delivered(engine, "link-b")) == sum(r["rows"] for r in reports)
