"""Replay sensors: one per stream of streams.yaml, each tick launching the stream's next window.

The sensors are built when the code location loads (``stream_sensors``), from
the streams file the environment names (HWOSIM_STREAMS, via
:class:`~hwosim_assets.settings.Settings`), so a stream added to the file gets
its sensor on the next reload. Each sensor is created STOPPED: a stream
writes to a database other people read, so it starts only when someone turns
it on in the UI (Automation > Sensors).

What a tick does (``minimum_interval_seconds = tick_seconds``):

* Prerequisites: the stream's perturbed partition and ``stream_tables`` must
  be materialized; if not, the tick skips and names what to materialize.
* One writer at a time: the stream's latest run (tag ``hwosim/stream``) must have
  finished, except that in rate mode the next window may be requested while
  the previous one is still replaying (prefetch), so that launching a run
  never delays the stream; that run waits for the previous window's last
  commit before it writes, so at most two runs exist, one writing. A failed run stops the stream until it is re-executed from the UI
  (a re-execution resumes from the committed offset); the sensor does not
  retry it itself, since a window's run key is taken once.
* Schedule: the first request fixes the stream start ``t0`` (``start`` from
  streams.yaml, else one tick after that first tick, so the first run has
  time to launch). In rate mode window ``n`` is due at
  ``spec.window_start_time(n, t0)``: windows abut on one absolute clock and
  pacing never drifts. A window due before the next tick is requested now;
  the run waits for its due time in the pacer. Cadence streams chain each
  window from the previous run's ``next_start_time``; asap streams are due
  at once.
* Each request has run key ``<stream>:<window>`` (a replayed tick cannot
  launch a window twice) and the cursor becomes
  ``{"window": next, "start_time": t0, "behind": k}``.
* Catch-up is capped and nothing is skipped: after downtime, when ``k``
  further windows are overdue, a tick still requests only the next one (one
  run at a time anyway) and says ``k`` in the cursor and the run's tags.
  Windows are never skipped: a consumer sees every packet, late, rather than
  a hole no fault profile asked for, and the lateness (emitted minus
  scheduled time) records the downtime. With one window per tick a backlog
  is carried as a constant delay, not drained.
* A non-looping stream whose last run reported ``exhausted`` has finished:
  its ticks skip from then on.
"""

import json
import math
import time
from typing import Callable

import dagster as dg

from hwosim_assets.defs.perturb.assets import PERTURBED
from hwosim_assets.defs.streams.assets import STREAM_ASSETS, declared_streams, stream_partition, stream_tables
from hwosim_assets.settings import Settings
from hwosim_assets.stream import StreamSpec

STREAM_TAG = "hwosim/stream"
WINDOW_TAG = "hwosim/window"
BEHIND_TAG = "hwosim/behind"


def sensor_name(stream: str) -> str:
    return "replay_" + stream.replace("-", "_")


def _latest_run(instance: dg.DagsterInstance, stream: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={STREAM_TAG: stream}), limit=1)
    return runs[0] if runs else None


def _run_report(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> dict:
    """The metadata the stream asset reported in ``run`` (empty if none)."""
    if run is None:
        return {}
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}
    return {}


def _materialized(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, partition: str | None = None) -> bool:
    records_filter = dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[partition] if partition else None)
    return bool(instance.fetch_materializations(records_filter, limit=1).records)


def replay_sensor(spec: StreamSpec, clock: Callable[[], float] = time.time) -> dg.SensorDefinition:
    """The sensor of one stream (semantics in the module docstring); ``clock`` is replaceable in tests."""
    asset = STREAM_ASSETS[spec.family]
    perturbed = PERTURBED[spec.family]
    partition = stream_partition(spec)

    @dg.sensor(
        name=sensor_name(spec.name),
        target=asset,
        minimum_interval_seconds=max(1, math.ceil(spec.tick_seconds)),
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Replays stream {spec.name} ({spec.observation} under {spec.profile}), one window per tick.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        n = int(cursor.get("window", 0))
        instance = context.instance

        def skip(reason: str) -> dg.SensorResult:
            return dg.SensorResult(skip_reason=f"{spec.name} window {n}: {reason}", cursor=context.cursor)

        if not _materialized(instance, perturbed, str(partition)):
            return skip(f"{perturbed.key.to_user_string()} partition {partition} is not materialized: backfill it")
        if not _materialized(instance, stream_tables):
            return skip("stream_tables is not materialized: materialize it to create the tables")
        last = _latest_run(instance, spec.name)
        # Prefetch: in rate mode the next window may be requested while the
        # previous one is still replaying, so the run launch latency does not
        # delay the stream; that run writes only after the previous window's
        # last commit (see assets._wait_for_previous_window). At most two runs
        # per stream: one writing, one waiting for its turn.
        prefetch = (
            last is not None
            and not last.is_finished
            and spec.pacing.mode == "rate"
            and last.tags.get(WINDOW_TAG) == str(n - 1)
        )
        if last is not None and not last.is_finished and not prefetch:
            return skip(f"waiting: run {last.run_id} (window {last.tags.get(WINDOW_TAG)}) is {last.status.value}")
        if last is not None and last.is_finished and last.status != dg.DagsterRunStatus.SUCCESS:
            return skip(
                f"run {last.run_id} (window {last.tags.get(WINDOW_TAG)}) {last.status.value}: "
                "re-execute it from the UI; it resumes from the committed offset"
            )
        report = {} if prefetch else _run_report(instance, last)
        if report.get("exhausted"):
            return skip("finished: the stream has delivered its last packet (loop: false)")

        now = clock()
        t0 = cursor.get("start_time") or spec.start or now + spec.tick_seconds
        if spec.pacing.mode == "rate":
            start = spec.window_start_time(n, t0)
            behind = max(0, math.floor((now - t0) / spec.window_seconds) - n)
        else:
            chained = report.get("next_start_time") if spec.pacing.mode == "cadence" and n > 0 else None
            start, behind = (chained or (t0 if n == 0 else now)), 0
        if start > now + spec.tick_seconds:
            return skip(f"due in {start - now:.1f} s")

        new_cursor = json.dumps({"window": n + 1, "start_time": t0, "behind": behind})
        request = dg.RunRequest(
            run_key=f"{spec.name}:{n}",
            partition_key=partition,
            run_config={"ops": {asset.op.name: {"config": {"stream": spec.name, "window": n, "start_time": start}}}},
            tags={STREAM_TAG: spec.name, WINDOW_TAG: str(n), BEHIND_TAG: str(behind)},
        )
        if behind:
            context.log.info(f"{spec.name}: {behind} more window(s) overdue after window {n}; one per tick")
        return dg.SensorResult(run_requests=[request], cursor=new_cursor)

    return _sensor


@dg.definitions
def stream_sensors() -> dg.Definitions:
    """One replay sensor per stream of the environment's streams.yaml, read once, at load time."""
    settings = Settings.from_env()
    _, specs = declared_streams(settings.streams_path, settings.profiles_path)
    return dg.Definitions(sensors=[replay_sensor(spec) for spec in specs.values()])
