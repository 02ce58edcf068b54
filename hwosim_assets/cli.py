"""The ``hwosim`` command.

* ``hwosim demo`` runs every stage of the pipeline in-process on the embedded
  default (simulated sample products, a lake in a local folder, SQLite), with
  a Dagster instance kept in ``$HWOSIM_HOME/dagster``, and says how to open it
  in the UI and continue its stream there.
* ``hwosim stream list | prepare | start | stop | status | reset`` operate the
  streams of streams.yaml against the Dagster instance in ``DAGSTER_HOME``
  (the one ``dagster dev`` or the daemon uses) and the stream database of
  ``HWOSIM_STREAM_DB_URL``.
* ``hwosim score`` scores one model on one observation x profile (offline, or
  live from a stream) and prints its scorecard; ``hwosim robustness`` scores it
  over level-0 ... level-5 (and live at several rates), prints the curves
  against the baselines and writes the plot. Both read the lake and store
  their scorecards in ``hwosim_scores`` (``hwosim_assets/evaluate``).

Progress goes to the terminal as lines (no carriage returns), so it reads the
same in a log file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files as resources_files
from pathlib import Path

import click
import dagster as dg

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
LOCATION = "hwosim"  # the code location name, as workspace.yaml and pyproject.toml give it


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
    from hwosim_assets.definitions import load_defs_folder

    definitions = load_defs_folder()
    return list(definitions.assets or []) + list(definitions.asset_checks or [])


def observe(asset_job: str, resources: dict, instance: dg.DagsterInstance) -> None:
    """Run an observation job (observable source assets cannot be materialized)."""
    from hwosim_assets.defs.perturb.assets import observe_profiles

    jobs = {observe_profiles.name: observe_profiles}
    definitions = dg.Definitions(assets=load_assets(), jobs=[jobs[asset_job]], resources=resources)
    definitions.resolve_job_def(asset_job).execute_in_process(instance=instance, run_config=QUIET)


def run_stages(
    stages: list[Stage],
    resources: dict,
    instance: dg.DagsterInstance,
    out=click.echo,
    first: int = 1,
    total: int | None = None,
) -> dict[str, list[tuple[object, dg.ExecuteInProcessResult]]]:
    """Materialize each stage's asset for each of its partitions, one progress line per run.

    ``first`` and ``total`` number the stages within a longer sequence."""
    assets = load_assets()
    results: dict[str, list] = {}
    total = total or first + len(stages) - 1
    for n, stage in enumerate(stages, start=first):
        keys = stage.partitions(instance) if stage.partitions else [None]
        t0 = time.perf_counter()
        for i, key in enumerate(keys, start=1):
            if key is not None:
                out(f"[{n}/{total}] {stage.label} {i}/{len(keys)} {key}")
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
                raise click.ClickException(f"check failed on {stage.asset} {key}: {[c.check_name for c in failed]}")
        out(f"[{n}/{total}] {stage.label}: {len(keys)} run(s) in {time.perf_counter() - t0:.1f} s")
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


def print_changes(results: dict, out=click.echo) -> None:
    """What each profile changed, per observation: the demo's closing table."""
    out("\nWhat each profile changed (fraction of elements touched, by kind):")
    for asset in ("perturbed_spectra", "perturbed_images"):
        for key, result in results.get(asset, []):
            meta = result.get_asset_materialization_events()[0].materialization.metadata
            dims = key.keys_by_dimension
            rows = [r.data for r in meta["changed_by_kind"].value.records]  # the asset's table: kind, changed [%]
            line = ", ".join(f"{r['kind']} {r['changed [%]']:.2f}%" for r in rows if r["changed [%]"] > 0)
            out(f"  {dims['profile']:10s} {asset.split('_')[1]:8s} {line or 'nothing'}")


def demo_stages() -> list[Stage]:
    from hwosim_assets.records import FAMILIES

    stages = [
        Stage("catalog of sample products", "jwst_catalog"),
        Stage("raw products into the lake", "raw_products", partitions("observations")),
    ]
    stages += [
        Stage(f"bronze {f}", f"bronze_{f}", partitions(family.partitions_name)) for f, family in FAMILIES.items()
    ]
    stages.append(Stage("perturbation profiles", "perturbation_profiles", observe_job="observe_profiles"))
    stages += [
        Stage(f"perturbed {f}", f"perturbed_{f}", by_profile(family.partitions_name)) for f, family in FAMILIES.items()
    ]
    return stages


DEMO_STREAM = "soss-demo"
DEMO_STREAM_YAML = """
  - name: soss-demo
    description: the sample time series under nominal, 50 integrations per second (written by hwosim demo)
    observation: {observation}
    profile: nominal
    family: spectra
    pacing: {{mode: rate, rate: 50}}
    tick_seconds: 5
    run_seconds: 30
    loop: true
    retain: {{hours: 1}}
"""
CONSUMER = """python - <<'EOF' | tail -n 3
from hwosim_assets.stream.reader import StreamReader
reader = StreamReader("{url}", "{stream}")
for row in reader.follow(poll_interval=0.5, idle_timeout=2.0):
    print(row.offset, row.seq, row.event_time, row.wavelength, row.flux)
print(reader.watermark, reader.gaps(), reader.duplicates())
EOF"""


def demo_stream(
    resources: dict, instance: dg.DagsterInstance, home: Path, out=click.echo, stage: int = 0, total: int = 0
) -> None:
    """Replay the sample time series under ``nominal`` through the stream's real sensor decision.

    The packaged stream delivers one integration per second; the demo adds a
    fast one (50 per second) in ``$HWOSIM_HOME/streams.yaml``. One sensor tick
    is evaluated here and the run it asks for is executed in-process (where the
    daemon would launch it): one run of two 5-s windows, paced on the wall clock.
    """
    from hwosim_assets.defs.project import HwosimConfig
    from hwosim_assets.defs.streams.sensors import replay_sensor
    from hwosim_assets.ingest.sample import SPECTRA_OBS_ID
    from hwosim_assets.stream import resume_point
    from hwosim_assets.stream.config import default_streams_path, load_streams

    path = home / "streams.yaml"
    path.write_text(default_streams_path().read_text() + DEMO_STREAM_YAML.format(observation=SPECTRA_OBS_ID))
    hw = resources["hwosim"]
    resources = {
        **resources,
        "hwosim": HwosimConfig(
            seed=hw.seed,
            profiles_path=hw.profiles_path,
            streams_path=str(path),
            tile_size=hw.tile_size,
            models_path=hw.models_path,
        ),
    }
    run_stages([Stage("stream tables", "stream_tables")], resources, instance, out, first=stage, total=total)
    spec = load_streams(path)[DEMO_STREAM]
    engine = resources["stream_db"].engine()
    earlier = resume_point(engine, spec.name)
    if earlier is not None:
        out(
            f"  stream {spec.name}: an earlier demo delivered {earlier.next_offset} packets (windows 0-{earlier.window}); "
            f"continuing after them (`hwosim stream reset {spec.name}` starts it afresh)"
        )
    # The sensor asks for a run one lead (~17 s: tick, daemon loop, launch) before its window is due,
    # for the daemon's sake; the demo runs it in-process at once, so its clock runs 15 s ahead.
    sensor = replay_sensor(spec, clock=lambda: time.time() + 15.0)
    definitions = dg.Definitions(assets=load_assets(), sensors=[sensor], resources=resources)
    out(
        f"[{stage + 1}/{total}] stream {spec.name}: {spec.observation} under {spec.profile}, "
        f"{spec.pacing.rate:g} packets/s, windows of {spec.window}, {spec.windows_per_run} per run"
    )
    context = dg.build_sensor_context(instance=instance, definitions=definitions, resources=resources)
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        tick = sensor.evaluate_tick(context)
    if not tick.run_requests:
        raise click.ClickException(f"replay sensor: {tick.skip_message}")
    [request] = tick.run_requests
    config = request.run_config["ops"]["stream_spectra"]["config"]
    out(
        f"  the sensor asks for run {request.run_key}: windows {config['first_window']}-{config['last_window']}, "
        f"first due in {config['start_time'] - time.time():.1f} s (ahead of time, so a run is waiting when it is due)"
    )
    # the demo replays the first two windows of that run (10 s); the daemon would replay them all
    config = {**config, "last_window": min(config["last_window"], config["first_window"] + 1)}
    result = dg.materialize(
        load_assets(),
        selection=["stream_spectra"],
        resources=resources,
        instance=instance,
        partition_key=spec.name,
        run_config={**QUIET, "ops": {"stream_spectra": {"config": config}}},
        tags=request.tags,
    )
    [event] = result.get_asset_materialization_events()
    m = {k: v.value for k, v in event.materialization.metadata.items()}
    out(
        f"  delivered {m['packets_delivered']} packets ({m['rows_written']} rows) at {m['achieved_rate_per_s']}/s "
        f"of {m['target_rate_per_s']}/s, lateness p50 {m['lateness_p50_ms']} ms p99 {m['lateness_p99_ms']} ms, "
        f"{m['drops']} dropped and {m['duplicates']} duplicated by the profile's stream faults"
    )
    out(
        f"\nContinue it under the daemon (the UI's Automation tab, or the CLI):\n"
        f"  export DAGSTER_HOME={home / 'dagster'} HWOSIM_HOME={home} HWOSIM_STREAMS={path}\n"
        f"  dagster dev        # then, in another terminal with the same three variables:\n"
        f"  hwosim stream start {spec.name} && hwosim stream status"
    )
    out("\nRead the stream as a consumer (a model under test) would:\n")
    out(CONSUMER.format(url=resources["stream_db"].url, stream=spec.name))


def demo(home: Path) -> int:
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.settings import Settings

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env({"HWOSIM_HOME": str(home), "HWOSIM_SOURCE": "sample"})
    resources = resources_from_settings(settings)
    (home / "dagster").mkdir(exist_ok=True)
    # the instance settings `dagster dev` will find there (run queue, limits, sensor threads)
    settings_yaml = Path(str(resources_files("hwosim_assets") / "defaults" / "dagster.yaml"))
    shutil.copyfile(settings_yaml, home / "dagster" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    click.echo(f"HWOsim demo: sample products (simulated, JWST format) -> {settings.lake_url}")
    t0 = time.perf_counter()
    stages = demo_stages()
    total = len(stages) + 2  # + stream tables + the stream
    results = run_stages(stages, resources, instance, total=total)
    print_changes(results)
    demo_stream(resources, instance, home, stage=len(stages) + 1, total=total)
    lake = resources["lake"]
    click.echo(f"\nDone in {time.perf_counter() - t0:.1f} s. Outputs:")
    for prefix in ("catalog/", "raw/", "bronze/", "perturbed/", "truth/", "plots/"):
        found = lake.list_keys(prefix)
        if found:
            click.echo(f"  {lake.uri(prefix):60s} {len(found)} objects")
    click.echo(f"  stream tables: {settings.stream_db_url}")
    click.echo(f"  Dagster runs:  DAGSTER_HOME={home / 'dagster'} dagster dev")
    return 0


# --- streams ------------------------------------------------------------------


def _settings():
    from hwosim_assets.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _specs(settings) -> dict:
    from hwosim_assets.defs.streams.assets import declared_streams

    try:
        return declared_streams(settings.streams_path, settings.profiles_path)[1]
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _spec(settings, name: str):
    specs = _specs(settings)
    if name not in specs:
        raise click.ClickException(
            f"no stream {name!r} in {settings.streams_path or 'the packaged streams.yaml'}; "
            f"declared: {', '.join(sorted(specs)) or 'none'}"
        )
    return specs[name]


def _instance() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        raise click.ClickException(
            "DAGSTER_HOME is not set: set it to the folder of the Dagster instance your `dagster dev` or "
            "dagster-daemon uses (the demo's is $HWOSIM_HOME/dagster)"
        )
    return dg.DagsterInstance.get()


def _dagster_sensor(*args: str) -> None:
    """Run ``dagster sensor ARGS`` on the code location as the UI and the daemon load it
    (location ``hwosim``), against the instance in DAGSTER_HOME."""
    with tempfile.TemporaryDirectory(prefix="hwosim-cli-") as tmp:
        workspace = Path(tmp) / "workspace.yaml"
        workspace.write_text(
            f"load_from:\n  - python_module:\n      module_name: hwosim_assets.definitions\n      location_name: {LOCATION}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "dagster", "sensor", *args, "-w", str(workspace)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise click.ClickException(f"dagster sensor {' '.join(args)} failed: {lines[-1] if lines else done.stdout}")


def _sensor_states(instance: dg.DagsterInstance) -> dict[str, str]:
    """Sensor name -> RUNNING or STOPPED, for sensors the instance knows (default STOPPED)."""
    from dagster._core.scheduler.instigation import InstigatorType

    return {
        state.name: state.status.value for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    }


@click.group()
def main() -> None:
    """HWOsim: archival JWST data replayed as live, perturbed streams."""
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@main.command("demo")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("HWOSIM_HOME", ".hwosim"),
    show_default=".hwosim",
    help="working folder (lake, SQLite files, Dagster instance)",
)
def demo_command(home: Path) -> None:
    """Run the whole pipeline offline on the sample products, then replay a stream."""
    sys.exit(demo(Path(home).absolute()))


@main.group("stream")
def stream_group() -> None:
    """Operate the streams of streams.yaml (HWOSIM_STREAMS) on the instance in DAGSTER_HOME."""


@stream_group.command("list")
def stream_list() -> None:
    """The declared streams, their pacing and whether their sensor runs."""
    from hwosim_assets.defs.streams.sensors import sensor_name

    settings = _settings()
    specs = _specs(settings)
    states = _sensor_states(_instance()) if os.environ.get("DAGSTER_HOME") else {}
    rows = [
        (
            s.name,
            s.family,
            s.observation,
            s.profile,
            f"{s.pacing.mode} {s.pacing.rate:g}/s" if s.pacing.rate else s.pacing.mode,
            f"{s.tick_seconds:g}",
            str(s.window),
            states.get(sensor_name(s.name), "STOPPED"),
        )
        for s in specs.values()
    ]
    _table(["stream", "family", "observation", "profile", "pacing", "tick s", "window", "sensor"], rows)


@stream_group.command("start")
@click.argument("name")
def stream_start(name: str) -> None:
    """Turn the stream's replay sensor on (the daemon then replays it)."""
    from hwosim_assets.defs.streams.sensors import sensor_name

    _spec(_settings(), name)
    _instance()
    _dagster_sensor("start", sensor_name(name))
    click.echo(f"started {sensor_name(name)}: the daemon replays {name} from its next tick")


@stream_group.command("stop")
@click.argument("name")
def stream_stop(name: str) -> None:
    """Turn the stream's replay sensor off (runs already launched finish their windows)."""
    from hwosim_assets.defs.streams.sensors import sensor_name

    _spec(_settings(), name)
    _instance()
    _dagster_sensor("stop", sensor_name(name))
    click.echo(f"stopped {sensor_name(name)}")


@stream_group.command("status")
@click.argument("name", required=False)
def stream_status_command(name: str | None) -> None:
    """Target vs delivered rate over the last minute, lag, watermark, position, last run."""
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.defs.streams.sensors import STREAM_TAG, sensor_name
    from hwosim_assets.stream.status import stream_status

    settings = _settings()
    specs = _specs(settings)
    names = [_spec(settings, name).name] if name else sorted(specs)
    engine = resources_from_settings(settings, secrets_by_name=False)["stream_db"].engine()
    instance = _instance() if os.environ.get("DAGSTER_HOME") else None
    states = _sensor_states(instance) if instance else {}
    rows = []
    for stream in names:
        try:
            st = stream_status(engine, stream)
        except Exception as error:  # noqa: BLE001 - no tables yet, database down: say so per stream
            st, problem = None, f"({type(error).__name__}: {str(error).splitlines()[0][:60]})"
        else:
            problem = "(not registered: materialize stream_tables)"
        last = "-"
        if instance is not None:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={STREAM_TAG: stream}), limit=1)
            if runs:
                run = runs[0]
                last = f"{run.run_id[:8]} {run.status.value} windows {run.tags.get('hwosim/windows', '?')}"
        if st is None:
            rows.append((stream, states.get(sensor_name(stream), "STOPPED"), "-", "-", "-", "-", problem, last))
            continue
        position = (
            f"lap {st.lap}, seq {st.seq}" + (f" of {st.packets_per_lap}" if st.packets_per_lap else "")
            if st.lap is not None
            else "-"
        )
        rows.append(
            (
                stream,
                states.get(sensor_name(stream), "STOPPED"),
                f"{st.target_rate:g}" if st.target_rate else "-",
                f"{st.delivered_rate:.2f}",
                f"{st.lag_s:.2f}" if st.lag_s is not None else "-",
                f"{st.watermark_mjd:.6f} @ offset {st.next_offset - 1}" if st.watermark_mjd is not None else "-",
                position,
                last,
            )
        )
    _table(
        ["stream", "sensor", "target /s", "delivered /s (1 min)", "lag s", "watermark (MJD)", "position", "last run"],
        rows,
    )


@stream_group.command("reset")
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def stream_reset(name: str, yes: bool) -> None:
    """Remove the stream's rows, offsets and fault truth, and its sensor's cursor: it starts again from packet 0."""
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.defs.streams.resources import masked
    from hwosim_assets.defs.streams.sensors import sensor_name
    from hwosim_assets.stream.status import reset

    settings = _settings()
    _spec(settings, name)
    resources = resources_from_settings(settings, secrets_by_name=False)
    stream_db = resources["stream_db"]
    if not yes:
        click.confirm(f"Remove every delivered row of stream {name} from {masked(stream_db.url)}?", abort=True)
    instance = _instance()
    if _sensor_states(instance).get(sensor_name(name)) == "RUNNING":
        raise click.ClickException(f"the sensor of {name} is running: `hwosim stream stop {name}` first")
    removed = reset(stream_db.engine(), name)
    _dagster_sensor("cursor", sensor_name(name), "--delete")
    truth = [k for k in resources["lake"].list_keys(f"truth/streams/{name}/")]
    for key in truth:
        resources["lake"].delete(key)
    click.echo(
        f"reset {name}: "
        + ", ".join(f"{n} {t}" for t, n in removed.items())
        + f", {len(truth)} truth objects, sensor cursor"
    )


@stream_group.command("prepare")
@click.argument("name")
def stream_prepare(name: str) -> None:
    """Materialize everything stream NAME needs on this instance: its observation's catalog entry,
    raw products, bronze table, the profiles, its perturbed partition and the stream tables."""
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.records import FAMILIES

    settings = _settings()
    spec = _spec(settings, name)
    instance = _instance()
    resources = resources_from_settings(settings)
    family = FAMILIES[spec.family]
    key = dg.MultiPartitionKey({"observation": spec.observation, "profile": spec.profile})
    stages = [Stage("catalog", "jwst_catalog")]
    run_stages(stages, resources, instance, total=6)
    if spec.observation not in instance.get_dynamic_partitions(family.partitions_name):
        raise click.ClickException(
            f"observation {spec.observation} is not among the catalog's {spec.family} observations "
            f"({', '.join(instance.get_dynamic_partitions(family.partitions_name)) or 'none'}): "
            "materialize jwst_catalog with a selection that includes it"
        )
    run_stages(
        [
            Stage("raw products", "raw_products", lambda _: [spec.observation]),
            Stage(f"bronze {spec.family}", f"bronze_{spec.family}", lambda _: [spec.observation]),
            Stage("perturbation profiles", "perturbation_profiles", observe_job="observe_profiles"),
            Stage(f"perturbed {spec.family}", f"perturbed_{spec.family}", lambda _: [key]),
            Stage("stream tables", "stream_tables"),
        ],
        resources,
        instance,
        first=2,
        total=6,
    )
    click.echo(f"{name} is ready: `hwosim stream start {name}` (or turn its sensor on in the UI)")


# --- scoring ------------------------------------------------------------------


def _model_spec(reference: str, params: tuple[str, ...], name: str | None):
    """The model named on the command line; a bad reference fails here, before any data is read."""
    from hwosim_assets.evaluate.model import ModelError, load_model
    from hwosim_assets.evaluate.offline import ModelSpec
    from hwosim_assets.userconfig import ConfigFileError, read_yaml

    if os.getcwd() not in sys.path:  # a model file in the current folder imports, as with `python -m`
        sys.path.insert(0, os.getcwd())
    values = {}
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--param")
        try:
            values[key] = read_yaml(raw) if raw else ""
        except ConfigFileError as error:
            raise click.BadParameter(f"{item!r}: {error}", param_hint="--param") from None
    try:
        loaded = load_model(reference, values, name=name)
    except ModelError as error:
        raise click.ClickException(str(error)) from None
    return ModelSpec(loaded.name, reference, values)


def _scoring_context(observation: str, profile_name: str, settings):
    """(answer key, profile) of one observation x profile from the lake (perturbed in memory if needed)."""
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.defs.scorecards.tables import MissingPartition, family_of, partition_answers
    from hwosim_assets.perturb import ProfileError, load_profiles

    try:
        profiles = load_profiles(settings.profiles_path or None)
    except ProfileError as error:
        raise click.ClickException(str(error)) from None
    if profile_name not in profiles:
        raise click.ClickException(f"no profile {profile_name!r}; known: {', '.join(sorted(profiles))}")
    lake = resources_from_settings(settings, secrets_by_name=False)["lake"]
    try:
        family = family_of(lake, observation)
        return partition_answers(
            lake, family, observation, profiles[profile_name], settings.seed, perturb_missing=True
        ), profiles[profile_name]
    except MissingPartition as error:
        raise click.ClickException(str(error)) from None


def _save(cards, settings) -> None:
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.evaluate import store

    rows = store.write(resources_from_settings(settings, secrets_by_name=False)["stream_db"].engine(), cards)
    click.echo(f"stored {rows} rows in hwosim_scores")


MODEL_OPTIONS = [
    click.option("--model", "reference", required=True, help="the model: package.module:factory"),
    click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="a factory parameter (VALUE read as YAML); repeatable",
    ),
    click.option("--name", default=None, help="the model's name in the scores (default: the factory's name)"),
    click.option("--save/--no-save", default=True, show_default=True, help="store the scorecards in hwosim_scores"),
]


def model_options(command):
    for option in reversed(MODEL_OPTIONS):
        command = option(command)
    return command


@main.command("score")
@model_options
@click.option("--observation", help="observation id (a bronze table in the lake); with --live, the stream's by default")
@click.option("--profile", "profile_name", help="perturbation profile; with --live, the stream's by default")
@click.option(
    "--live", "stream", default=None, metavar="STREAM", help="score live from this stream, at its pace, through the SDK"
)
@click.option(
    "--idle-timeout", default=10.0, show_default=True, help="--live: stop after this many seconds without a packet"
)
@click.option("--max-packets", type=int, default=None, help="--live: stop after this many packets")
def score_command(reference, params, name, save, observation, profile_name, stream, idle_timeout, max_packets) -> None:
    """Score one model on one observation x profile and print its scorecard.

    Offline (default) the model reads the perturbed partition as its stream faults would deliver it;
    with --live it follows the stream table through the SDK as the stream is replayed."""
    from hwosim_assets.evaluate.live import score_live
    from hwosim_assets.evaluate.offline import score_offline

    settings = _settings()
    spec = _model_spec(reference, params, name)
    if stream:
        declared = _spec(settings, stream)
        if observation not in (None, declared.observation) or profile_name not in (None, declared.profile):
            raise click.ClickException(
                f"stream {stream} replays {declared.observation} under {declared.profile}, "
                f"not {observation or declared.observation} under {profile_name or declared.profile}"
            )
        observation, profile_name = declared.observation, declared.profile
    if not observation or not profile_name:
        raise click.UsageError("give --observation and --profile (or --live STREAM)")
    key, profile = _scoring_context(observation, profile_name, settings)
    if stream:
        from hwosim_assets.defs.resources import resources_from_settings

        engine = resources_from_settings(settings, secrets_by_name=False)["stream_db"].engine()
        card = score_live(
            spec,
            key,
            engine,
            stream,
            profile=profile_name,
            profile_hash=profile.config_hash,
            seed=settings.seed,
            idle_timeout=idle_timeout,
            max_packets=max_packets,
        )
    else:
        card = score_offline(
            spec,
            key,
            profile=profile_name,
            profile_hash=profile.config_hash,
            seed=settings.seed,
            stream_faults=profile.stream_faults,
        )
    click.echo(card.text())
    if save:
        _save([card], settings)
    if card.status == "failed":
        sys.exit(1)


@main.command("robustness")
@model_options
@click.option(
    "--observation",
    "chosen",
    multiple=True,
    help="observation id; repeatable (default: every bronze table in the lake)",
)
@click.option("--rates", default="", metavar="R1,R2,...", help="also score live at these rates (packets per second)")
@click.option("--rate-profile", default="level-2", show_default=True, help="the profile the rate sweep replays")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    default=None,
    help="where to write the plot (default robustness-NAME.png)",
)
def robustness_command(reference, params, name, save, chosen, rates, rate_profile, plot_path) -> None:
    """Score a model over level-0 ... level-5 (and live at --rates), print its curves against the
    baselines of models.yaml (ImageNet-C's mCE and relative mCE) and write the plot."""
    import polars as pl

    from hwosim_assets import plots
    from hwosim_assets.defs.lake.layout import plot_key
    from hwosim_assets.defs.resources import resources_from_settings
    from hwosim_assets.defs.scorecards.tables import observations
    from hwosim_assets.evaluate import robustness
    from hwosim_assets.evaluate.config import ModelsConfigError, load_models
    from hwosim_assets.evaluate.live import score_at_rates
    from hwosim_assets.evaluate.offline import score_offline
    from hwosim_assets.evaluate.scorecard import frame, level_of
    from hwosim_assets.perturb import load_profiles

    settings = _settings()
    spec = _model_spec(reference, params, name)
    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise click.BadParameter(f"{rates!r}: expected numbers separated by commas", param_hint="--rates") from None
    try:
        declared = [m for m in load_models(settings.models_path or None).models.values() if m.baseline]
    except ModelsConfigError as error:
        raise click.ClickException(str(error)) from None
    baselines = [m for m in declared if m.name != spec.name]  # scored beside the model, for its mCE
    resources = resources_from_settings(settings, secrets_by_name=False)
    found = observations(resources["lake"])
    chosen = list(chosen) or sorted(found)
    if not chosen:
        raise click.ClickException(
            f"no bronze table in {resources['lake'].uri('bronze/')}: materialize the bronze assets first"
        )
    levels = sorted((p for p in load_profiles(settings.profiles_path or None) if level_of(p) is not None), key=level_of)
    cards = []
    for observation in chosen:
        for profile_name in levels:
            key, profile = _scoring_context(observation, profile_name, settings)
            for model in [spec, *baselines]:
                cards.append(
                    score_offline(
                        model,
                        key,
                        profile=profile_name,
                        profile_hash=profile.config_hash,
                        seed=settings.seed,
                        stream_faults=profile.stream_faults,
                    )
                )
            click.echo(f"{observation} {profile_name}: {cards[-1 - len(baselines)].status}")
        if rate_list:
            key, profile = _scoring_context(observation, rate_profile, settings)
            cards += score_at_rates(
                spec,
                key,
                resources["stream_db"].engine(),
                rate_list,
                profile=rate_profile,
                profile_hash=profile.config_hash,
                seed=settings.seed,
                stream_faults=profile.stream_faults,
            )
    failed = [c for c in cards if c.status == "failed" and c.model == spec.name]
    for card in failed[:1]:
        click.echo(f"FAILED: {card.error}", err=True)
    rows = frame(cards)
    curves = robustness.level_curves(rows)
    summary = robustness.summary(curves, [b.name for b in declared])
    mine = curves.filter(pl.col("model") == spec.name)
    click.echo(f"\n{spec.name}: error per level")
    _table(["kind", "observation", *map(str, range(6))], _curve_rows(mine))
    click.echo("\nagainst the baselines (mCE, relative mCE: the baseline = 100 %)")
    _table(
        ["model", "kind", "baseline", "mCE %", "relative mCE %"],
        [
            (r["model"], r["kind"], r["baseline"], _num(r["mce_pct"]), _num(r["relative_mce_pct"]))
            for r in summary.iter_rows(named=True)
        ],
    )
    rate_table = robustness.rate_curves(rows)
    if len(rate_table):
        click.echo("\nkeeping up, live")
        _table(
            ["observation", "rate /s", "within cadence", "latency p99 ms", "backlog max"],
            [
                (
                    r["observation"],
                    _num(r["rate"]),
                    _num(r["within_cadence"]),
                    _num(r["latency_ms_p99"]),
                    _num(r["backlog_max"]),
                )
                for r in rate_table.iter_rows(named=True)
            ],
        )
    png = plots.robustness(curves, rate_table, f"{spec.name} ({reference}) and the baselines")
    plot_path = plot_path or Path(f"robustness-{spec.name}.png")
    plot_path.write_bytes(png)
    stored = resources["lake"].put_bytes(plot_key("robustness", spec.name), png)
    click.echo(f"\nplot: {plot_path} and {resources['lake'].uri(stored.key)}")
    if save:
        _save(cards, settings)
    if failed:
        sys.exit(1)


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _curve_rows(curves) -> list[tuple]:
    table: dict[tuple, dict[int, float]] = {}
    for row in curves.iter_rows(named=True):
        table.setdefault((row["kind"], row["observation"]), {})[row["level"]] = row["error"]
    return [(kind, obs, *(_num(levels.get(s)) for s in range(6))) for (kind, obs), levels in sorted(table.items())]


def _table(header: list[str], rows: list[tuple]) -> None:
    """A table: rich's on a terminal, tab-separated lines otherwise (for scripts and logs)."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header)
        for row in rows:
            table.add_row(*map(str, row))
        Console().print(table)
        return
    click.echo("\t".join(header))
    for row in rows:
        click.echo("\t".join(map(str, row)))


if __name__ == "__main__":
    main()
