"""The README's first quickstart command and its consumer example, as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_demo_then_readme_consumer_example(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
    demo = subprocess.run(
        [sys.executable, "-m", "hwosim_assets.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    lake = tmp_path / ".hwosim" / "lake"
    for prefix in ("catalog", "raw", "bronze", "perturbed", "truth", "plots"):
        assert any((lake / prefix).rglob("*.*")), f"demo left nothing under {prefix}/"
    assert "What each profile changed" in demo.stdout
    level_5 = [line for line in demo.stdout.splitlines() if line.strip().startswith("level-5")]
    assert level_5 and all("%" in line for line in level_5), level_5  # read from the changed_by_kind table
    assert "RuntimeWarning" not in demo.stderr, demo.stderr[-3000:]  # matplotlib's overflow, once

    block = README.read_text().split("<!-- consumer-example -->\n```python\n", 1)[1].split("```", 1)[0]
    consumer = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert consumer.returncode == 0, consumer.stderr[-3000:]
    lines = consumer.stdout.strip().splitlines()
    assert len(lines) > 100, "the consumer read no rows"
    assert lines[0].split()[0] == "0"  # first offset
