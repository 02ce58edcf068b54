"""The streams stage: the stream tables, and replay runs that deliver perturbed packets into them.

``stream_tables`` creates or migrates the tables and registers every stream of
streams.yaml. ``stream_spectra`` and ``stream_images`` are partitioned like the
perturbed tables they replay (observation x profile); one run replays one
window of one stream, named by run config. The stream's sensor (sensors.py)
fills that config in, tick after tick; a run launched by hand from the UI with
the same config does the same thing. Rerunning a window resumes after its
committed offset and never writes a packet twice (hwosim_assets.stream.replay).
"""

import math

import time

import dagster as dg
import polars as pl
import sqlalchemy as sa
from pydantic import Field

from hwosim_assets.defs.lake.layout import perturbed_key, stream_truth_key
from hwosim_assets.defs.lake.resources import LakeKeyError, LakeResource
from hwosim_assets.defs.metadata import md_table
from hwosim_assets.defs.perturb.assets import PERTURBED
from hwosim_assets.defs.perturb.partitions import BY_PROFILE
from hwosim_assets.defs.resources import HwosimConfig
from hwosim_assets.defs.streams.resources import StreamDatabase, masked
from hwosim_assets.perturb import Profile, load_profiles
from hwosim_assets.stream import (
    StreamSpec,
    create_or_migrate,
    load_streams,
    register_stream,
    replay_window,
    resume_point,
    window_bounds,
    window_packets,
)
from hwosim_assets.stream import schema


def declared_streams(streams_path: str, profiles_path: str) -> tuple[dict[str, Profile], dict[str, StreamSpec]]:
    """The profiles and the streams of streams.yaml, checked against each other (packaged files for empty paths)."""
    profiles = load_profiles(profiles_path or None)
    return profiles, load_streams(streams_path or None, known_profiles=set(profiles))


def stream_partition(spec: StreamSpec) -> dg.MultiPartitionKey:
    """The observation x profile partition a stream replays."""
    return dg.MultiPartitionKey({"observation": spec.observation, "profile": spec.profile})


@dg.asset(group_name="streams", kinds={"sql"})
def stream_tables(
    context: dg.AssetExecutionContext, stream_db: StreamDatabase, hwosim: HwosimConfig
) -> dg.MaterializeResult:
    """The stream tables, created or migrated (idempotent), with every stream of streams.yaml registered.

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
    context.log.info(f"{masked(stream_db.url)}: {'; '.join(changes) or 'up to date'}; {len(specs)} streams")
    streams = pl.DataFrame(
        [
            (s.name, s.family, s.observation, s.profile, s.pacing.mode, s.pacing.rate, s.tick_seconds, s.window, s.loop)
            for s in specs.values()
        ],
        schema=["stream", "family", "observation", "profile", "pacing", "rate", "tick_s", "window", "loop"],
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
    """One window of one stream; the stream's sensor fills this in."""

    stream: str = Field(description="stream name in streams.yaml")
    window: int = Field(description="window index: window n replays source positions [n*window, (n+1)*window)")
    start_time: float = Field(description="UTC epoch seconds at which the window's first packet is due")
    pace: bool = Field(default=True, description="false: write at once (scheduled times are still recorded)")


def _metadata_value(value):
    """Report values as Dagster takes them: floats rounded, inf/NaN and None as null."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return dg.MetadataValue.null()
    return round(value, 6) if isinstance(value, float) else value


def _wait_for_previous_window(engine, spec, window: int, start_time: float, poll_s: float = 0.05) -> None:
    """Hold a prefetched run until the previous window's last batch is committed.

    The sensor may request window n while window n-1 is still replaying (so
    that launching a run never delays the stream); writes must still go in
    window order, so this run waits, at most until one tick past its own start.
    """
    if window == 0:
        return
    deadline = max(time.time(), start_time) + spec.tick_seconds + 60
    while True:
        state = resume_point(engine, spec.name)
        if state is not None and state.next_window >= window:
            return
        if time.time() > deadline:
            raise dg.Failure(
                f"stream {spec.name}: window {window - 1} is not complete, so window {window} cannot start; "
                f"re-execute the run of window {window - 1} (it resumes from the committed offset), then this one"
            )
        time.sleep(poll_s)


def _replay(
    context: dg.AssetExecutionContext,
    config: ReplayConfig,
    family: str,
    lake: LakeResource,
    stream_db: StreamDatabase,
    hwosim: HwosimConfig,
) -> dg.MaterializeResult:
    profiles, specs = declared_streams(hwosim.streams_path, hwosim.profiles_path)
    spec = specs.get(config.stream)
    if spec is None:
        raise dg.Failure(f"stream {config.stream!r} is not in streams.yaml; declared: {', '.join(sorted(specs))}")
    if spec.family != family:
        raise dg.Failure(f"stream {spec.name} replays {spec.family}: materialize stream_{spec.family}, not stream_{family}")
    wanted = stream_partition(spec)
    if context.partition_key.keys_by_dimension != wanted.keys_by_dimension:
        raise dg.Failure(
            f"stream {spec.name} replays observation {spec.observation} under profile {spec.profile}, "
            f"but this run is for partition {context.partition_key}: launch it for partition {wanted}"
        )
    profile = profiles[spec.profile]
    key = perturbed_key(family, spec.profile, spec.observation)
    try:
        table = lake.read_parquet(key)
    except LakeKeyError:
        raise dg.Failure(f"{lake.uri(key)} is missing: materialize perturbed_{family} partition {wanted} first") from None

    engine = stream_db.engine()
    _wait_for_previous_window(engine, spec, config.window, config.start_time)
    bounds = window_bounds(spec, config.window, table["seq"].n_unique())
    report = replay_window(
        engine,
        spec,
        window_packets(spec, table, config.window),
        window_index=config.window,
        start_time=config.start_time,
        stream_faults=profile.stream_faults,
        seed=hwosim.seed,
        profile_hash=profile.config_hash,
        pace=config.pace,
    )
    if bounds.exhausted:  # a non-looping stream has delivered its last packet
        register_stream(engine, spec, profile.config_hash, status="finished")
    truth = stream_truth_key(spec.name, config.window)
    if report.truth.width:  # absent only when the run found a later window already committed
        lake.write_parquet(truth, report.truth)
    context.log.info(
        f"{spec.name} window {config.window}: {report.packets_delivered} packets, {report.rows_written} rows, "
        f"{report.drops} lost, {report.duplicates} duplicated, lateness p99 {report.lateness_p99:.4f} s"
    )
    return dg.MaterializeResult(
        metadata={
            "rows": report.rows_written,
            "packets": report.packets_delivered,
            **{k: _metadata_value(v) for k, v in report.metadata().items()},
            "exhausted": bounds.exhausted,
            "profile_hash": profile.config_hash,
            "truth": dg.MetadataValue.path(lake.uri(truth)),
        }
    )


def _stream_deps(family: str) -> list:
    return [dg.AssetDep(PERTURBED[family], partition_mapping=dg.IdentityPartitionMapping()), stream_tables]


@dg.asset(group_name="streams", partitions_def=BY_PROFILE["spectra"], deps=_stream_deps("spectra"), kinds={"sql"})
def stream_spectra(
    context: dg.AssetExecutionContext,
    config: ReplayConfig,
    lake: LakeResource,
    stream_db: StreamDatabase,
    hwosim: HwosimConfig,
) -> dg.MaterializeResult:
    """Perturbed time-series spectra replayed as a live downlink into ``hwosim_spectra_rows``, one window per run,
    with the profile's stream faults (truth under truth/streams/)."""
    return _replay(context, config, "spectra", lake, stream_db, hwosim)


@dg.asset(group_name="streams", partitions_def=BY_PROFILE["images"], deps=_stream_deps("images"), kinds={"sql"})
def stream_images(
    context: dg.AssetExecutionContext,
    config: ReplayConfig,
    lake: LakeResource,
    stream_db: StreamDatabase,
    hwosim: HwosimConfig,
) -> dg.MaterializeResult:
    """Perturbed image tiles replayed as a live downlink into ``hwosim_image_packets``, one window per run,
    with the profile's stream faults (truth under truth/streams/)."""
    return _replay(context, config, "images", lake, stream_db, hwosim)


STREAM_ASSETS = {"spectra": stream_spectra, "images": stream_images}
