"""Replay sensors: one per stream of streams.yaml, each tick asking for the stream's next windows.

The sensor is thin: it gathers what the decision needs and calls
:func:`hwosim_assets.stream.schedule.decide` (pure, unit-tested with a clock),
which holds every rule: windows on one absolute clock, requested ahead of
their due time by the tick interval plus the run launch latency measured
here, a backlog drained by one run, lost windows requested again. What it
gathers:

* the committed state from the stream database (`stream_db`): the single
  source of truth for what was delivered, and whether a non-looping stream
  finished;
* the stream's runs in flight and its latest finished run from the Dagster
  instance (tag `hwosim/stream`), and the launch latency of recent runs
  (created -> started);
* its cursor: the stream's start time `t0` and the next window to request.

The sensors are built when the code location loads, from the streams file
the environment names (HWOSIM_STREAMS, read by the same `Settings` the
assets' resources come from), so a stream added to the file gets its sensor on the next
reload. Each is created STOPPED: a stream writes to a database other people
read, so it starts only when someone turns it on (UI: Automation > Sensors,
or `hwosim stream start NAME`).
"""

import logging
import math
import time
from collections.abc import Callable

import dagster as dg

from hwosim_assets.defs.perturb.assets import PERTURBED
from hwosim_assets.defs.streams.assets import STREAM_ASSETS, declared_streams, perturbed_partition, stream_tables
from hwosim_assets.defs.streams.resources import StreamDatabase
from hwosim_assets.settings import Settings
from hwosim_assets.stream import StreamSpec, resume_point, stream_status
from hwosim_assets.stream.schedule import Cursor, Flight, decide, lead_seconds

STREAM_TAG = "hwosim/stream"
WINDOWS_TAG = "hwosim/windows"  # "first-last"
PRIORITY = "10"  # dagster/priority of replay runs: dequeued before backfill runs
MIN_TICK_S = 5.0  # the sensor daemon's loop: a shorter tick is not evaluated more often
MIN_RUN_S = 10.0  # shorter runs cost more CPU to launch than a 2-core machine has (README, Streams)
log = logging.getLogger(__name__)

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def sensor_name(stream: str) -> str:
    """`replay_<stream>`, with `-` as `_` (sensor names allow no hyphens)."""
    return "replay_" + stream.replace("-", "_")


def _windows(run: dg.DagsterRun) -> tuple[int, int] | None:
    first, _, last = run.tags.get(WINDOWS_TAG, "").partition("-")
    return (int(first), int(last)) if first.isdigit() and last.isdigit() else None


def _materialized(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, partition: str | None = None) -> bool:
    records_filter = dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[partition] if partition else None)
    return bool(instance.fetch_materializations(records_filter, limit=1).records)


def _launch_latencies(instance: dg.DagsterInstance, stream: str) -> list[float]:
    """Seconds from created to started of the stream's recent runs (its measured launch latency)."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={STREAM_TAG: stream}, statuses=FINISHED), limit=5)
    return [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]


def _last_report(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> dict:
    if run is None:
        return {}
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}
    return {}


def replay_sensor(spec: StreamSpec, clock: Callable[[], float] = time.time) -> dg.SensorDefinition:
    """The sensor of one stream (module docstring); `clock` is replaceable in tests."""
    asset = STREAM_ASSETS[spec.family]
    perturbed = PERTURBED[spec.family]
    warnings = []
    if spec.tick_seconds < MIN_TICK_S:
        warnings.append(
            f"tick_seconds {spec.tick_seconds:g} is below {MIN_TICK_S:g} s: the daemon evaluates sensors about every "
            f"{MIN_TICK_S:g} s, so the tick will be longer than configured"
        )
    if spec.pacing.mode == "rate" and spec.run_seconds < MIN_RUN_S:
        warnings.append(
            f"run_seconds {spec.run_seconds:g} is below {MIN_RUN_S:g} s: starting a run costs ~5 CPU-seconds here, "
            "so runs this short keep a 2-core machine busy launching them"
        )
    for text in warnings:
        log.warning(f"stream {spec.name}: {text}")
    warning = "".join(f" Warning: {text}." for text in warnings)

    @dg.sensor(
        name=sensor_name(spec.name),
        target=asset,
        # The sensor daemon looks at sensors every 5 s: an interval one second short of the tick
        # makes the tick land on every tick-th second instead of every other look (5 s -> 5 or 10 s).
        minimum_interval_seconds=max(1, math.ceil(spec.tick_seconds) - 1),
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Replays stream {spec.name} ({spec.observation} under {spec.profile}, "
            f"{spec.pacing.mode}{f' {spec.pacing.rate:g}/s' if spec.pacing.rate else ''}) into the stream tables, "
            f"windows of {spec.window} packets, {spec.windows_per_run} per run, requested ahead of their due time.{warning}"
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, stream_db: StreamDatabase):
        cursor = Cursor.from_json(context.cursor)
        instance = context.instance

        def skip(reason: str) -> dg.SensorResult:
            return dg.SensorResult(skip_reason=f"{spec.name}: {reason}", cursor=context.cursor)

        partition = perturbed_partition(spec)
        if not _materialized(instance, perturbed, str(partition)):
            return skip(f"{perturbed.key.to_user_string()} partition {partition} is not materialized: backfill it")
        if not _materialized(instance, stream_tables) or not instance.has_dynamic_partition(
            asset.partitions_def.name, spec.name
        ):
            return skip("stream_tables has not registered this stream: materialize stream_tables")

        engine = stream_db.engine()
        committed = resume_point(engine, spec.name)
        finished = stream_status(engine, spec.name) == "finished"
        records = instance.get_run_records(filters=dg.RunsFilter(tags={STREAM_TAG: spec.name}, statuses=IN_FLIGHT))
        flights = [
            Flight(w[0], w[1], r.create_timestamp.timestamp()) for r in records if (w := _windows(r.dagster_run))
        ]
        latest = instance.get_runs(filters=dg.RunsFilter(tags={STREAM_TAG: spec.name}, statuses=FINISHED), limit=1)
        last = latest[0] if latest else None
        last_failed = last.status.value if last is not None and last.status != dg.DagsterRunStatus.SUCCESS else None
        chained = _last_report(instance, last).get("next_start_time") if spec.pacing.mode == "cadence" else None
        decision = decide(
            spec,
            cursor,
            now=clock(),
            delivered_next=committed.next_window if committed else 0,
            in_flight=flights,
            last_failed=last_failed,
            finished=finished,
            lead_s=lead_seconds(spec, _launch_latencies(instance, spec.name)),
            chained_start=chained if isinstance(chained, (int, float)) else None,
            last_commit=committed.updated if committed else None,
        )
        for note in decision.notes:
            context.log.info(f"{spec.name}: {note}")
        if decision.request is None:
            return dg.SensorResult(
                skip_reason=f"{spec.name}: {decision.skip} (lag {decision.lag_s:.1f} s, {decision.in_flight} in flight)",
                cursor=decision.cursor.to_json(),
            )
        request = decision.request
        # its windows' span, the wait before its first, and slack for a slow start
        span = (request.last - request.first + 1) * (spec.window_seconds or spec.tick_seconds)
        max_runtime = max(0.0, request.start_time - clock()) + span + 600
        context.log.info(
            f"{spec.name}: windows {request.first}-{request.last} due at {request.start_time:.3f} "
            f"({request.overdue} overdue), lag {decision.lag_s:.1f} s"
        )
        config = {"first_window": request.first, "last_window": request.last, "start_time": request.start_time}
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=request.run_key,
                    partition_key=spec.name,
                    run_config={"ops": {asset.op.name: {"config": config}}},
                    tags={
                        STREAM_TAG: spec.name,
                        WINDOWS_TAG: f"{request.first}-{request.last}",
                        "dagster/priority": PRIORITY,
                        # a run whose process died (machine restart) would stay STARTED forever: the
                        # default launcher cannot see it, run monitoring fails it after this long
                        "dagster/max_runtime": str(round(max_runtime)),
                    },
                )
            ],
            cursor=decision.cursor.to_json(),
        )

    return _sensor


def stream_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """One replay sensor per stream of the environment's streams.yaml, read once, at load time."""
    _, specs = declared_streams(settings.streams_path, settings.profiles_path)
    names: dict[str, str] = {}
    for spec in specs.values():
        other = names.setdefault(sensor_name(spec.name), spec.name)
        if other != spec.name:
            raise ValueError(
                f"streams {other!r} and {spec.name!r} would both have the sensor {sensor_name(spec.name)!r} "
                f"(sensor names turn '-' into '_'): rename one in {settings.streams_path or 'streams.yaml'}"
            )
    return [replay_sensor(spec) for spec in specs.values()]
