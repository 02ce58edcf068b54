"""Run the code location's assets in-process, the way the UI would, for tests."""

from __future__ import annotations

import dagster as dg

from hwosim_assets.cli import QUIET, load_assets


def materialize(
    asset: str,
    resources: dict,
    instance: dg.DagsterInstance,
    partition_key: str | dg.MultiPartitionKey | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        load_assets(),
        selection=[asset],
        resources=resources,
        instance=instance,
        partition_key=str(partition_key) if partition_key is not None else None,
        run_config={**QUIET, **(run_config or {})},
        raise_on_error=raise_on_error,
    )


def checks_passed(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
