"""Run the code location's assets in-process, the way the UI would, for tests."""

from __future__ import annotations

import functools

import dagster as dg

from hwosim_assets.cli import QUIET, load_assets

assets = functools.cache(load_assets)  # the code location takes ~0.4 s to load: once per test session


def materialize(
    asset: str,
    resources: dict,
    instance: dg.DagsterInstance,
    partition_key: str | dg.MultiPartitionKey | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets(),
        selection=[asset],
        resources=resources,
        instance=instance,
        partition_key=str(partition_key) if partition_key is not None else None,
        run_config={**QUIET, **(run_config or {})},
        raise_on_error=raise_on_error,
    )


def checks_passed(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def failure(result: dg.ExecuteInProcessResult, node: str) -> str:
    """The failed step's error messages, outermost first (Dagster wraps the asset's own error)."""
    assert not result.success, f"{node} did not fail"
    failed = result.failure_data_for_node(node)
    errors = [failed.error] if failed is not None else []
    if not errors:  # failed before the step ran: a resource's setup check
        errors = [
            e.event_specific_data.error
            for e in result.all_events
            if e.event_type_value in ("STEP_FAILURE", "RESOURCE_INIT_FAILURE", "RUN_FAILURE")
            and getattr(e.event_specific_data, "error", None) is not None
        ]
    messages = []
    for error in errors:
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return "\n".join(messages)
