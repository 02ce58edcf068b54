"""The code location loads in the real webserver and shows the asset graph."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hwosim_assets_tests import services

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
    env.update(HWOSIM_HOME=str(tmp_path / "hwosim"), DAGSTER_HOME=str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def test_definitions_validate(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=_embedded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_webserver_serves_asset_graph(tmp_path):
    exe = shutil.which("dagster-webserver")
    assert exe, "dagster-webserver is a dependency of the package"
    port = _free_port()
    # in a process group of its own: stopping it stops the code server it starts (dagster api grpc) too
    server = services.ServerProcess(
        "dagster-webserver",
        [exe, "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        tmp_path / "webserver.log",
        env=_embedded_env(tmp_path),
        cwd=REPO,
    )
    server.start()
    query = {"query": "{ assetNodes { assetKey { path } groupName partitionDefinition { description } } }"}
    try:
        deadline, nodes = time.monotonic() + 180, None
        while time.monotonic() < deadline and server.alive:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps(query).encode(),
                    headers={"Content-Type": "application/json"},
                )
                body = json.load(urllib.request.urlopen(req, timeout=10))
                nodes = body["data"]["assetNodes"]
                if nodes:
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert nodes, f"no asset graph from the webserver; log:\n{(tmp_path / 'webserver.log').read_text()[-3000:]}"
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"jwst_catalog", "raw_products", "bronze_spectra", "bronze_images"} <= keys
        raw = next(n for n in nodes if n["assetKey"]["path"] == ["raw_products"])
        assert raw["partitionDefinition"] is not None
    finally:
        server.stop(grace=30)
