"""The asset graph as a reviewed text file: keys, groups, partitions, dependencies, checks, sensors and
jobs of the code location, compared with ``snapshots/asset_graph.txt``. A change to the graph is then a
visible diff in review; after an intended change, rewrite the file with

    HWOSIM_UPDATE_SNAPSHOT=1 pytest hwosim_assets_tests/test_asset_graph.py

The graph is built with the embedded default environment (no HWOSIM_* set), as `dagster dev` in a fresh
clone loads it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.txt"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "none"
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return " x ".join(f"{d.name}={_partitions(d.partitions_def)}" for d in partitions_def.partitions_defs)
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return f"dynamic({partitions_def.name})"
    return type(partitions_def).__name__


def describe_graph(defs: dg.Definitions) -> str:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    lines = ["# assets: key | group | kind | partitions | deps"]
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        kind = "observable source" if node.is_observable else "external" if node.is_external else "asset"
        deps = ", ".join(sorted(p.to_user_string() for p in node.parent_keys)) or "-"
        lines.append(
            f"{key.to_user_string()} | {node.group_name} | {kind} | {_partitions(node.partitions_def)} | {deps}"
        )
    lines.append("# checks: asset:check | blocking")
    for check in sorted(graph.asset_check_keys, key=lambda c: c.to_user_string()):
        lines.append(f"{check.to_user_string()} | {graph.get(check).blocking}")
    lines.append("# sensors: name | job or assets | minimum interval s")
    for sensor in sorted(repo.sensor_defs, key=lambda s: s.name):
        targets = sorted(t.job_name for t in sensor.targets) if sensor.targets else ["-"]
        lines.append(f"{sensor.name} | {', '.join(targets)} | {sensor.minimum_interval_seconds}")
    lines.append("# jobs")
    lines.extend(sorted(job.name for job in repo.get_all_jobs()))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def code_location() -> dg.Definitions:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("HWOSIM_")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from hwosim_assets.definitions import defs

            return defs()
    finally:
        os.environ.update(saved)


def test_asset_graph_matches_its_snapshot(code_location):
    text = describe_graph(code_location)
    if os.environ.get("HWOSIM_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: write it with HWOSIM_UPDATE_SNAPSHOT=1"
    assert text == SNAPSHOT.read_text(), (
        "the asset graph changed: review the diff against hwosim_assets_tests/snapshots/asset_graph.txt, "
        "then rewrite it with HWOSIM_UPDATE_SNAPSHOT=1"
    )


def test_every_definition_says_what_it_is_in_markdown(code_location):
    """The UI renders descriptions as markdown: each asset, check and sensor has one, without RST markup."""
    repo = code_location.get_repository_def()
    graph = repo.asset_graph
    described = {key.to_user_string(): graph.get(key).description for key in graph.get_all_asset_keys()}
    described |= {c.to_user_string(): graph.get(c).description for c in graph.asset_check_keys}
    described |= {f"sensor {s.name}": s.description for s in repo.sensor_defs}
    missing = sorted(name for name, text in described.items() if not (text or "").strip())
    rst = sorted(name for name, text in described.items() if "``" in (text or "") or ":func:" in (text or ""))
    assert not missing, f"no description: {missing}"
    assert not rst, f"RST markup in the UI's markdown: {rst}"
