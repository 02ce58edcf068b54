"""The streams stage: the stream tables, and replay runs that deliver perturbed packets into them.

`stream_tables` creates or migrates the tables, registers every stream of
streams.yaml and one partition per stream. `stream_spectra` and
`stream_images` are partitioned by stream: one run replays one or more
consecutive windows of one stream (:func:`hwosim_assets.stream.runs.replay_run`),
named by run config. The stream's sensor (sensors.py) fills that config in,
tick after tick; a run launched by hand from the UI with the same config
does the same thing. Rerunning a window resumes after its committed offset
and never writes a packet twice.
"""

import math

import dagster as dg
import polars as pl
import sqlalchemy as sa
from pydantic import Field

from hwosim_assets.defs.lake.layout import perturbed_key, stream_truth_key
from hwosim_assets.defs.lake.resources import LakeKeyError, LakeResource
from hwosim_assets.defs.metadata import md_table
from hwosim_assets.defs.perturb.assets import PERTURBED
from hwosim_assets.defs.project import HwosimConfig
from hwosim_assets.defs.streams import checks
from hwosim_assets.defs.streams.partitions import STREAM_PARTITIONS
from hwosim_assets.defs.streams.resources import StreamDatabase, masked
from hwosim_assets.perturb import Profile, load_profiles
from hwosim_assets.records import FAMILIES, Family
from hwosim_assets.stream import StreamSpec, create_or_migrate, load_streams, register_stream, schema
from hwosim_assets.stream.runs import replay_run


def declared_streams(streams_path: str, profiles_path: str) -> tuple[dict[str, Profile], dict[str, StreamSpec]]:
    """The profiles and the streams of streams.yaml, checked against each other (packaged files for empty paths)."""
    profiles = load_profiles(profiles_path or None)
    return profiles, load_streams(streams_path or None, known_profiles=set(profiles))


def perturbed_partition(spec: StreamSpec) -> dg.MultiPartitionKey:
    """The observation x profile partition of the perturbed table a stream replays."""
    return dg.MultiPartitionKey({"observation": spec.observation, "profile": spec.profile})


@dg.asset(group_name="streams", kinds={"sql"})
def stream_tables(
    context: dg.AssetExecutionContext, stream_db: StreamDatabase, hwosim: HwosimConfig
) -> dg.MaterializeResult:
    """The stream tables, created or migrated (idempotent), with every stream of streams.yaml registered
    and given its partition of `stream_spectra` / `stream_images`.

    Materialize it again after editing streams.yaml or the profiles: a
    stream's registry row holds its pacing and its profile's config hash,
    which tell consumers what they are reading. A stream already replaying
    keeps its status.
    """
    engine = stream_db.engine()
    changes = create_or_migrate(engine)
    profiles, specs = declared_streams(hwosim.streams_path, hwosim.profiles_path)
    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(schema.streams.c.name, schema.streams.c.status)).all())
    for spec in specs.values():
        register_stream(engine, spec, profiles[spec.profile].config_hash, status=status.get(spec.name, "registered"))
    for family, partitions in STREAM_PARTITIONS.items():
        names = sorted(s.name for s in specs.values() if s.family == family)
        context.instance.add_dynamic_partitions(partitions.name, names)
    context.log.info(f"{masked(stream_db.url)}: {'; '.join(changes) or 'up to date'}; {len(specs)} streams")
    streams = pl.DataFrame(
        [
            (s.name, s.family, s.observation, s.profile, s.pacing.mode, s.pacing.rate, s.tick_seconds, s.window, s.loop)
            for s in specs.values()
        ],
        schema=[
            "stream",
            "family",
            "observation",
            "profile",
            "pacing",
            "rate_per_s",
            "tick_s",
            "window_packets",
            "loop",
        ],
        orient="row",
    )
    return dg.MaterializeResult(
        metadata={
            "database": masked(stream_db.url),
            "tables": md_table(pl.DataFrame({"table": [str(t.name) for t in schema.metadata.sorted_tables]})),
            "changes": dg.MetadataValue.md("\n".join(f"- {c}" for c in changes) or "none: up to date"),
            "streams": md_table(streams, 50),
        }
    )


class ReplayConfig(dg.Config):
    """Windows `first_window`..`last_window` of the partition's stream; its sensor fills this in."""

    first_window: int = Field(
        ge=0, description="first window: window n replays source positions [n*window, (n+1)*window)"
    )
    last_window: int = Field(ge=0, description="last window of this run (the same as first_window for one)")
    start_time: float = Field(description="UTC epoch seconds at which first_window's first packet is due")
    pace: bool = Field(default=True, description="false: write at once (scheduled times are still recorded)")


def _metadata_value(value):
    """Report values as Dagster takes them: floats rounded, inf/NaN and None as null."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return dg.MetadataValue.null()
    return round(value, 6) if isinstance(value, float) else value


def _previous_start_lag(context: dg.AssetExecutionContext) -> float | None:
    """The start lag the stream's previous run reported (for the keeps_up check)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get("start_lag_s")
    return value.value if value is not None and isinstance(value.value, (int, float)) else None


def replay(
    context: dg.AssetExecutionContext,
    config: ReplayConfig,
    family: Family,
    lake: LakeResource,
    stream_db: StreamDatabase,
    hwosim: HwosimConfig,
) -> dg.MaterializeResult:
    """Replay the run's windows of the partition's stream (see the module docstring)."""
    profiles, specs = declared_streams(hwosim.streams_path, hwosim.profiles_path)
    spec = specs.get(context.partition_key)
    if spec is None:
        raise dg.Failure(
            f"stream {context.partition_key!r} is not in streams.yaml; declared: {', '.join(sorted(specs))}"
        )
    if spec.family != family.name:
        raise dg.Failure(
            f"stream {spec.name} replays {spec.family}: materialize stream_{spec.family}, not stream_{family.name}"
        )
    if config.last_window < config.first_window:
        raise dg.Failure(f"last_window {config.last_window} is before first_window {config.first_window}")
    profile = profiles[spec.profile]
    key = perturbed_key(family.name, spec.profile, spec.observation)
    try:
        table = lake.read_parquet(key)
    except LakeKeyError:
        raise dg.Failure(
            f"{lake.uri(key)} is missing: materialize perturbed_{family.name} partition {perturbed_partition(spec)} first"
        ) from None
    previous_lag = _previous_start_lag(context)
    report = replay_run(
        stream_db.engine(),
        spec,
        table,
        first=config.first_window,
        last=config.last_window,
        start_time=config.start_time,
        stream_faults=profile.stream_faults,
        seed=hwosim.seed,
        profile_hash=profile.config_hash,
        pace=config.pace,
        max_wait_s=spec.tick_seconds * 4 + 600,
        retain_laps=spec.retain_laps,
        retain_hours=spec.retain_hours,
    )
    for window in report.windows:
        if window.truth.width:  # absent only when the run found a later window already committed
            lake.write_parquet(stream_truth_key(spec.name, window.window_index), window.truth)
    meta = report.metadata()
    context.log.info(
        f"{spec.name} windows {meta['windows']}: {meta['packets_delivered']} packets, {meta['rows_written']} rows, "
        f"rate {meta['achieved_rate_per_s']} of {meta['target_rate_per_s']} /s, start lag {meta['start_lag_s']} s, "
        f"p99 lateness {meta['lateness_p99_ms']} ms, {meta['backlog_packets']} backlog packets"
    )
    last = report.windows[-1] if report.windows else None
    return dg.MaterializeResult(
        metadata={
            **{k: _metadata_value(v) for k, v in meta.items()},
            "next_start_time": (  # shown as a date in the UI; the sensor chains the next window on its value
                dg.MetadataValue.timestamp(last.next_start_time)
                if last and last.next_start_time is not None
                else dg.MetadataValue.null()
            ),
            "profile_hash": profile.config_hash,
            "truth": dg.MetadataValue.path(lake.uri(stream_truth_key(spec.name, config.first_window))),
        },
        check_results=[checks.keeps_up(context.asset_key, meta["start_lag_s"], previous_lag, spec.window_seconds)],
    )


def stream_asset(family: Family) -> dg.AssetsDefinition:
    """The stream asset of one family: one partition per stream of that family."""

    @dg.asset(
        name=f"stream_{family.name}",
        group_name="streams",
        partitions_def=STREAM_PARTITIONS[family.name],
        # a stream replays one observation x profile, named in streams.yaml, not by a partition mapping
        deps=[dg.AssetDep(PERTURBED[family.name], partition_mapping=dg.AllPartitionMapping()), stream_tables],
        check_specs=checks.specs(f"stream_{family.name}"),
        kinds={"sql"},
        description=(
            f"Perturbed {family.name} replayed as a live downlink into `{family.stream_table}`, one partition per "
            "stream, each run one or more windows on the stream's absolute clock, with the profile's stream "
            "faults (truth under truth/streams/)."
        ),
    )
    def _stream(
        context: dg.AssetExecutionContext,
        config: ReplayConfig,
        lake: LakeResource,
        stream_db: StreamDatabase,
        hwosim: HwosimConfig,
    ) -> dg.MaterializeResult:
        return replay(context, config, family, lake, stream_db, hwosim)

    return _stream


STREAM_ASSETS = {name: stream_asset(family) for name, family in FAMILIES.items()}
stream_assets = list(STREAM_ASSETS.values())
