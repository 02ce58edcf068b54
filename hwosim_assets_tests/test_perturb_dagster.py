"""The perturb stage as Dagster runs it: partitions observation x profile,
profiles as an observable source, staleness when one profile is edited, and
a backfill of one profile's column through the webserver and the daemon."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import dagster as dg
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
import yaml
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from hwosim_assets import cli, plots
from hwosim_assets.defs.lake.layout import bronze_key, perturbed_key, plot_key, truth_key
from hwosim_assets.defs.resources import resources_from_settings
from hwosim_assets.perturb import load_profiles
from hwosim_assets.perturb.profiles import DEFAULT_PROFILES
from hwosim_assets.settings import Settings
from hwosim_assets_tests import services
from hwosim_assets_tests.pipeline import checks_passed, materialize

REPO = Path(__file__).resolve().parents[1]
SPECTRA = dg.AssetKey("perturbed_spectra")
IMAGES = dg.AssetKey("perturbed_images")
PROFILES_KEY = dg.AssetKey("perturbation_profiles")


def _quiet(*_args, **_kwargs) -> None:
    pass


def _upstream(home: Path, instance: dg.DagsterInstance, profiles: Path | None = None) -> dict:
    """catalog -> raw -> bronze (both families), then observe the profiles."""
    env = {"HWOSIM_HOME": str(home)}
    if profiles is not None:
        env["HWOSIM_PROFILES"] = str(profiles)
    resources = resources_from_settings(Settings.from_env(env))
    stages = cli.demo_stages()
    assert [s.asset for s in stages[:5]] == [
        "jwst_catalog",
        "raw_products",
        "bronze_spectra",
        "bronze_images",
        "perturbation_profiles",
    ]
    cli.run_stages(stages[:5], resources, instance, out=_quiet)
    return resources


def _key(obs: str, profile: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"observation": obs, "profile": profile})


def _observe(resources: dict, instance: dg.DagsterInstance) -> None:
    cli.observe("observe_profiles", resources, instance)


# --- 1. in-process: one observation x two profiles ---------------------------------


def test_perturbed_spectra_partitions_write_data_truth_and_plot(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = _upstream(tmp_path / "hwosim", instance)
    lake = resources["lake"]
    profiles = load_profiles()
    assert set(instance.get_dynamic_partitions("profiles")) == set(profiles)

    obs = sorted(instance.get_dynamic_partitions("spectra_observations"))[0]
    bronze = lake.read_parquet(bronze_key("spectra", obs))
    resolver_assets = cli.load_assets()
    for name in ("nominal", "level-3"):
        key = _key(obs, name)
        result = materialize("perturbed_spectra", resources, instance, key)
        assert result.success
        assert checks_passed(result) == {"fractions_within_tolerance": True, "truth_covers_changes": True}

        (event,) = result.get_asset_materialization_events()
        mat = event.materialization
        assert mat.partition == str(key)
        assert mat.tags["dagster/data_version"] == profiles[name].config_hash
        assert mat.metadata["profile_hash"].value == profiles[name].config_hash
        assert mat.metadata["rows"].value == bronze.height
        resolver = get_stale_status_resolver(instance, resolver_assets)
        assert resolver.get_current_data_version(SPECTRA, str(key)) == dg.DataVersion(profiles[name].config_hash)
        assert resolver.get_status(SPECTRA, str(key)) == StaleStatus.FRESH

        # the objects at the layout's keys
        data_key = perturbed_key("spectra", name, obs)
        for k in (data_key, truth_key("spectra", name, obs), truth_key("spectra", name, obs, "summary")):
            assert lake.exists(k), k
        full = lake.read_bytes(plot_key("perturbed_spectra", f"{name}--{obs}"))
        assert full.startswith(b"\x89PNG\r\n\x1a\n")
        # the UI shows a small copy inline: a markdown image whose data: URL decodes to a PNG
        preview = mat.metadata["plot_preview"].value
        encoded = preview.split("data:image/png;base64,", 1)[1].rstrip(")")
        small = plt.imread(io.BytesIO(base64.b64decode(encoded)), format="png")
        assert small.shape[1] <= plots.PREVIEW_WIDTH and len(encoded) < min(len(full), 100_000)

        # consumers read exactly the bronze schema, same rows; truth is apart
        perturbed = lake.read_parquet(data_key)
        assert perturbed.schema == bronze.schema
        assert perturbed.height == bronze.height
        assert perturbed.select("seq", "channel").equals(bronze.select("seq", "channel"))
        truth = lake.read_parquet(truth_key("spectra", name, obs))
        assert truth.columns == ["seq", "channel", "truth"] and truth.height == bronze.height
        assert truth["truth"].dtype == pl.UInt32 and truth["truth"].sum() > 0
        summary = lake.read_parquet(truth_key("spectra", name, obs, "summary"))
        assert {"seq", "kind", "affected"} <= set(summary.columns) and summary.height > 0
        assert not perturbed.equals(bronze)

    # only the two partitions of that observation exist, nothing of images
    assert instance.get_materialized_partitions(SPECTRA) == {str(_key(obs, "nominal")), str(_key(obs, "level-3"))}
    assert not instance.get_materialized_partitions(IMAGES)
    assert sorted(lake.list_keys("perturbed/")) == sorted(
        perturbed_key("spectra", n, obs) for n in ("nominal", "level-3")
    )


# --- 2. staleness: edit one profile, re-observe ------------------------------------


def test_editing_one_profile_makes_only_its_partitions_stale(tmp_path):
    profiles_file = tmp_path / "profiles.yaml"
    shutil.copyfile(DEFAULT_PROFILES, profiles_file)
    instance = dg.DagsterInstance.ephemeral()
    resources = _upstream(tmp_path / "hwosim", instance, profiles_file)
    assert resources["hwosim"].profiles_path == str(profiles_file)
    assets = cli.load_assets()

    obs = sorted(instance.get_dynamic_partitions("spectra_observations"))[0]
    edited, kept = "nominal", "level-2"
    keys = {name: str(_key(obs, name)) for name in (edited, kept)}
    for key in keys.values():
        assert checks_passed(materialize("perturbed_spectra", resources, instance, key)) == {
            "fractions_within_tolerance": True,
            "truth_covers_changes": True,
        }

    def statuses() -> dict[str, StaleStatus]:
        resolver = get_stale_status_resolver(instance, assets)
        return {name: resolver.get_status(SPECTRA, key) for name, key in keys.items()}

    assert statuses() == {edited: StaleStatus.FRESH, kept: StaleStatus.FRESH}
    # observing an unchanged file records the same versions: nothing goes stale
    _observe(resources, instance)
    assert statuses() == {edited: StaleStatus.FRESH, kept: StaleStatus.FRESH}

    # change one level of one profile
    before = load_profiles(profiles_file)
    doc = yaml.safe_load(profiles_file.read_text())
    assert doc["profiles"][edited]["kinds"]["cosmic_rays"] == 1  # nominal: the measured galactic rate
    doc["profiles"][edited]["kinds"]["cosmic_rays"] = 3
    profiles_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    after = load_profiles(profiles_file)
    assert after[edited].config_hash != before[edited].config_hash
    assert {n: p.config_hash for n, p in after.items() if n != edited} == {
        n: p.config_hash for n, p in before.items() if n != edited
    }

    # not stale until the source is observed again
    assert statuses() == {edited: StaleStatus.FRESH, kept: StaleStatus.FRESH}
    _observe(resources, instance)
    assert statuses() == {edited: StaleStatus.STALE, kept: StaleStatus.FRESH}
    resolver = get_stale_status_resolver(instance, assets)
    (cause,) = resolver.get_stale_causes(SPECTRA, keys[edited])
    assert cause.category == StaleCauseCategory.DATA
    assert (cause.dependency_asset_key, cause.dependency_partition_key) == (PROFILES_KEY, edited)
    assert resolver.get_current_data_version(PROFILES_KEY, edited) == dg.DataVersion(after[edited].config_hash)

    # re-materializing the edited partition makes it fresh with the new hash
    result = materialize("perturbed_spectra", resources, instance, keys[edited])
    assert result.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"] == (
        after[edited].config_hash
    )
    assert statuses() == {edited: StaleStatus.FRESH, kept: StaleStatus.FRESH}

    # a profile removed from the file leaves the "profiles" partitions when observed
    assert "storm" in instance.get_dynamic_partitions("profiles")
    del doc["profiles"]["storm"]
    profiles_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    _observe(resources, instance)
    assert set(instance.get_dynamic_partitions("profiles")) == set(after) - {"storm"}


# --- 3. backfill of one profile through the webserver and the daemon ---------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    body = json.load(urllib.request.urlopen(req, timeout=30))
    assert "errors" not in body, body
    return body["data"]


def _start(name: str, args: list[str], env: dict, log: Path) -> services.ServerProcess:
    """A Dagster server in a process group of its own: stopping it stops its code servers too."""
    server = services.ServerProcess(name, args, log, env=env, cwd=REPO)
    server.start()
    return server


LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}"""

STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed
          }
        }
      }
    }
    ... on PythonError { message }
  }
}"""


@pytest.mark.slow
def test_backfill_one_profile_through_the_daemon(tmp_path):
    for exe in ("dagster-webserver", "dagster-daemon"):
        assert shutil.which(exe), f"{exe} is a dependency of the package"
    home, dagster_home = tmp_path / "hwosim", tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n"
        "  module: dagster._core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n"
        "  config:\n    dequeue_interval_seconds: 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
    env.update(HWOSIM_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    profile = "level-3"
    port = _free_port()
    started: list[services.ServerProcess] = []
    try:
        started.append(
            _start(
                "dagster-webserver",
                [shutil.which("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                env,
                tmp_path / "webserver.log",
            )
        )
        # upstream in-process, against the same instance the servers use
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            resources = _upstream(home, instance)
            spectra_obs = sorted(instance.get_dynamic_partitions("spectra_observations"))
            image_obs = sorted(instance.get_dynamic_partitions("images_observations"))
            assert profile in instance.get_dynamic_partitions("profiles")
        assert spectra_obs and image_obs

        deadline = time.monotonic() + 90
        while True:
            assert started[0].alive, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                nodes = _graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
                if any(n["assetKey"]["path"] == ["perturbed_images"] for n in nodes):
                    break
            except (OSError, AssertionError, KeyError, TypeError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "webserver.log").read_text()[-3000:]
            time.sleep(0.5)

        # one column of the grid: every observation of each family under one profile
        params = {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": [asset]},
                    "partitions": {
                        "ranges": [{"start": str(_key(o, profile)), "end": str(_key(o, profile))} for o in obs]
                    },
                }
                for asset, obs in (("perturbed_spectra", spectra_obs), ("perturbed_images", image_obs))
            ],
            "title": f"perturb {profile}",
        }
        launched = _graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        # the daemon's first backfill iteration runs as soon as it starts
        started.append(
            _start(
                "dagster-daemon",
                [shutil.which("dagster-daemon"), "run", "-w", "workspace.yaml"],
                env,
                tmp_path / "daemon.log",
            )
        )
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            assert started[1].alive, (tmp_path / "daemon.log").read_text()[-3000:]
            got = _graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            assert got["__typename"] == "PartitionBackfill", got
            status = got["status"]
            if status not in ("REQUESTED", "CANCELING", "FAILING"):
                break
            time.sleep(1)
        assert status == "COMPLETED_SUCCESS", (
            f"backfill {status}; daemon log:\n" + ((tmp_path / "daemon.log").read_text()[-3000:])
        )
        counts = {
            "/".join(c["assetKey"]["path"]): (
                c["numPartitionsTargeted"],
                c["numPartitionsMaterialized"],
                c["numPartitionsFailed"],
            )
            for c in got["assetBackfillData"]["assetBackfillStatuses"]
        }
        assert counts == {
            "perturbed_spectra": (len(spectra_obs), len(spectra_obs), 0),
            "perturbed_images": (len(image_obs), len(image_obs), 0),
        }
    finally:
        for server in reversed(started):
            server.stop(grace=30)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_materialized_partitions(SPECTRA) == {str(_key(o, profile)) for o in spectra_obs}
        assert instance.get_materialized_partitions(IMAGES) == {str(_key(o, profile)) for o in image_obs}
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    lake = resources["lake"]
    assert sorted(lake.list_keys("perturbed/")) == sorted(
        [perturbed_key("spectra", profile, o) for o in spectra_obs]
        + [perturbed_key("images", profile, o) for o in image_obs]
    )
    assert {k.split("/")[2] for k in lake.list_keys("truth/")} == {profile}


def test_before_after_figure_draws_infinite_and_huge_perturbed_values():
    """A level-5 bit flip leaves inf or 1.5e308 in the flux (an exponent bit of a float64): the figure is
    still drawn (the axis range overflowed: OverflowError, failing the partition)."""
    n = 50
    before = pl.DataFrame(
        {
            "seq": np.repeat(np.arange(5), 10),
            "channel": np.tile(np.arange(10), 5),
            "wavelength": np.tile(np.linspace(1, 2, 10), 5),
            "flux": np.ones(n),
            "event_time": np.repeat(np.arange(5.0), 10),
        }
    )
    flux = np.ones(n)
    flux[::7], flux[3], flux[20:23] = np.inf, -np.inf, 1.5e308  # seq 2: the integration drawn
    flux[31:33], flux[41] = 1.2e308, -1.7e308  # white-light sums of inf and -1.7e308: no finite axis range
    truth = before.select("seq", "channel").with_columns(truth=pl.lit(1, dtype=pl.UInt32))
    png = plots.spectra_before_after(before, before.with_columns(flux=pl.Series(flux)), truth, "bit flips")
    assert png.startswith(b"\x89PNG")
