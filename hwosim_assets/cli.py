"""The ``hwosim`` command.

``hwosim demo`` runs every stage of the pipeline in-process on the embedded
default (simulated sample products, a lake in a local folder, SQLite), with a
Dagster instance kept in ``$HWOSIM_HOME/dagster`` so that
``DAGSTER_HOME=$HWOSIM_HOME/dagster dagster dev`` shows the demo's runs after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dagster as dg

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class Stage:
    """One step of the demo: an asset, and the partitions to run it for."""

    label: str
    asset: str
    partitions: Callable[[dg.DagsterInstance], list[str | dg.MultiPartitionKey]] | None = None
    run_config: dict | None = None
    observe_job: str | None = None


def load_assets() -> list:
    """The assets and checks of the code location, as Dagster loads them."""
    definitions = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return list(definitions.assets or []) + list(definitions.asset_checks or [])


def observe(asset_job: str, resources: dict, instance: dg.DagsterInstance) -> None:
    """Run an observation job (observable source assets cannot be materialized)."""
    from hwosim_assets.defs.perturb.assets import observe_profiles

    jobs = {observe_profiles.name: observe_profiles}
    definitions = dg.Definitions(assets=load_assets(), jobs=[jobs[asset_job]], resources=resources)
    definitions.resolve_job_def(asset_job).execute_in_process(instance=instance, run_config=QUIET)


def run_stages(
    stages: list[Stage], resources: dict, instance: dg.DagsterInstance, out=print
) -> dict[str, list[tuple[object, dg.ExecuteInProcessResult]]]:
    """Materialize each stage's asset for each of its partitions, showing progress."""
    assets = load_assets()
    results: dict[str, list] = {}
    known = {key.to_user_string() for a in assets if hasattr(a, "keys") for key in a.keys}
    known |= {a.key.to_user_string() for a in assets if isinstance(a, dg.SourceAsset)}
    stages = [s for s in stages if s.asset in known]
    for n, stage in enumerate(stages, start=1):
        keys = stage.partitions(instance) if stage.partitions else [None]
        t0 = time.perf_counter()
        for i, key in enumerate(keys, start=1):
            shown = f" {i}/{len(keys)} {key}" if key is not None else ""
            out(f"[{n}/{len(stages)}] {stage.label}{shown} ...", end="\r" if key is not None else "\n")
            if stage.observe_job:
                observe(stage.observe_job, resources, instance)
                continue
            result = dg.materialize(
                assets,
                selection=[stage.asset],
                resources=resources,
                instance=instance,
                partition_key=str(key) if key is not None else None,
                run_config={**QUIET, **(stage.run_config or {})},
            )
            results.setdefault(stage.asset, []).append((key, result))
            failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
            if failed:
                raise SystemExit(f"check failed on {stage.asset} {key}: {[c.check_name for c in failed]}")
        out(f"[{n}/{len(stages)}] {stage.label}: {len(keys)} run(s) in {time.perf_counter() - t0:.1f} s" + " " * 30)
    return results


def partitions(name: str) -> Callable[[dg.DagsterInstance], list[str]]:
    return lambda instance: sorted(instance.get_dynamic_partitions(name))


def by_profile(observations: str) -> Callable[[dg.DagsterInstance], list[dg.MultiPartitionKey]]:
    """Every observation x profile key of one family."""
    return lambda instance: [
        dg.MultiPartitionKey({"observation": obs, "profile": profile})
        for profile in sorted(instance.get_dynamic_partitions("profiles"))
        for obs in sorted(instance.get_dynamic_partitions(observations))
    ]


def print_changes(results: dict, out=print) -> None:
    """What each profile changed, per observation: the demo's closing table."""
    out("\nWhat each profile changed (fraction of elements touched, by kind):")
    for asset in ("perturbed_spectra", "perturbed_images"):
        for key, result in results.get(asset, []):
            meta = result.get_asset_materialization_events()[0].materialization.metadata
            dims = key.keys_by_dimension
            out(f"  {dims['profile']:10s} {asset.split('_')[1]:8s} {meta['changed'].value}")


def demo_stages() -> list[Stage]:
    return [
        Stage("catalog of sample products", "jwst_catalog"),
        Stage("raw products into the lake", "raw_products", partitions("observations")),
        Stage("bronze spectra", "bronze_spectra", partitions("spectra_observations")),
        Stage("bronze images", "bronze_images", partitions("images_observations")),
        Stage("perturbation profiles", "perturbation_profiles", observe_job="observe_profiles"),
        Stage("perturbed spectra", "perturbed_spectra", by_profile("spectra_observations")),
        Stage("perturbed images", "perturbed_images", by_profile("images_observations")),
    ]


DEMO_STREAM = "soss-demo"
DEMO_STREAM_YAML = """
  - name: soss-demo
    description: the sample time series under nominal, fast (written by hwosim demo)
    observation: {observation}
    profile: nominal
    family: spectra
    pacing: {{mode: rate, rate: 100}}
    tick_seconds: 2
    loop: true
"""
CONSUMER = """python - <<'EOF' | tail -n 3
from hwosim_assets.stream.reader import StreamReader
reader = StreamReader("{url}", "{stream}")
for row in reader.follow(poll_interval=0.5, idle_timeout=2.0):
    print(row.offset, row.seq, row.event_time, row.wavelength, row.flux)
print(reader.watermark, reader.gaps(), reader.duplicates())
EOF"""


def demo_stream_stages(resources: dict, instance: dg.DagsterInstance, home: Path, windows: int = 3, out=print) -> None:
    """Replay the sample time series under ``nominal`` into the stream tables, driven by its replay sensor.

    The packaged stream delivers one integration per second; the demo adds a
    fast one (100 per second, 2-s windows) in ``$HWOSIM_HOME/streams.yaml``
    so that a few paced windows take seconds. Each sensor tick's run request
    is executed in-process, where the daemon would launch a run.
    """
    from hwosim_assets.defs.resources import HwosimConfig
    from hwosim_assets.defs.streams.sensors import replay_sensor
    from hwosim_assets.ingest.sample import SPECTRA_OBS_ID
    from hwosim_assets.stream.config import default_streams_path, load_streams

    path = home / "streams.yaml"
    path.write_text(default_streams_path().read_text() + DEMO_STREAM_YAML.format(observation=SPECTRA_OBS_ID))
    hw = resources["hwosim"]
    resources = {
        **resources,
        "hwosim": HwosimConfig(seed=hw.seed, profiles_path=hw.profiles_path, streams_path=str(path), tile_size=hw.tile_size),
    }
    run_stages([Stage("stream tables", "stream_tables")], resources, instance, out)
    spec = load_streams(path)[DEMO_STREAM]
    sensor = replay_sensor(spec)
    replay = dg.define_asset_job("demo_replay", selection=["stream_spectra"])  # built once: a run starts in ~0.1 s
    definitions = dg.Definitions(assets=load_assets(), sensors=[sensor], jobs=[replay], resources=resources)
    job = definitions.resolve_job_def("demo_replay")
    out(f"stream {spec.name}: {spec.observation} under {spec.profile}, {spec.pacing.rate:g} packets/s, "
        f"{spec.window} per window, sensor tick {spec.tick_seconds:g} s")
    cursor, totals = None, {"rows": 0, "packets": 0, "drops": 0, "duplicates": 0}
    for _ in range(windows):
        while True:  # tick until the next window is requested (the sensor skips while a window is not due)
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
            with dg.partition_loading_context(dynamic_partitions_store=instance):
                tick = sensor.evaluate_tick(context)
            cursor = tick.cursor
            if tick.run_requests:
                break
            if "due in" not in (tick.skip_message or ""):
                raise SystemExit(f"replay sensor: {tick.skip_message}")
            time.sleep(0.05)
        [request] = tick.run_requests
        result = job.execute_in_process(
            run_config={**QUIET, **request.run_config},
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
        )
        [event] = result.get_asset_materialization_events()
        m = {k: v.value for k, v in event.materialization.metadata.items()}
        for k in totals:
            totals[k] += m[k]
        rate = f"{m['achieved_rate']:.1f}/s" if m["achieved_rate"] is not None else "-"
        out(f"  run {request.run_key}: {m['rows']} rows, {m['packets']} packets, rate {rate}, "
            f"lateness p50 {m['lateness_p50'] * 1e3:.1f} ms p99 {m['lateness_p99'] * 1e3:.1f} ms, "
            f"{m['drops']} dropped, {m['duplicates']} duplicated")
    out(f"  {windows} windows: {totals['rows']} rows, {totals['packets']} packets, "
        f"{totals['drops']} dropped, {totals['duplicates']} duplicated -> {resources['stream_db'].url}")
    out("\nRead the stream as a consumer (a model under test) would:\n")
    out(CONSUMER.format(url=resources["stream_db"].url, stream=spec.name))


def demo(home: Path) -> int:
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.settings import Settings

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env({"HWOSIM_HOME": str(home), "HWOSIM_SOURCE": "sample"})
    resources = resources_from_settings(settings)
    (home / "dagster").mkdir(exist_ok=True)
    instance = dg.DagsterInstance.local_temp(
        tempdir=str(home / "dagster"), overrides={"telemetry": {"enabled": False}}
    )
    print(f"HWOsim demo: sample products (simulated, JWST format) -> {settings.lake_url}")
    t0 = time.perf_counter()
    results = run_stages(demo_stages(), resources, instance)
    print_changes(results)
    demo_stream_stages(resources, instance, home)
    lake = resources["lake"]
    print(f"\nDone in {time.perf_counter() - t0:.1f} s. Outputs:")
    for prefix in ("catalog/", "raw/", "bronze/", "perturbed/", "truth/", "plots/"):
        found = lake.list_keys(prefix)
        if found:
            print(f"  {lake.uri(prefix):60s} {len(found)} objects")
    print(f"  stream tables: {settings.stream_db_url}")
    print(f"  Dagster runs:  DAGSTER_HOME={home / 'dagster'} dagster dev")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hwosim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run the whole pipeline offline on sample products")
    p_demo.add_argument("--home", type=Path, default=Path(os.environ.get("HWOSIM_HOME", ".hwosim")))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    if args.command == "demo":
        return demo(args.home.absolute())
    return 2


if __name__ == "__main__":
    sys.exit(main())
