"""Checks on replay runs, evaluated in the run from what it measured."""

import dagster as dg


def specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "keeps_up",
            asset=asset,
            description=(
                "the stream is not falling behind: this run began within one window of its schedule, "
                "or began later than the stream's previous run did (a lag that grows fails; a lag that drains passes)"
            ),
        )
    ]


def keeps_up(
    asset: str, start_lag_s: float | None, previous_lag_s: float | None, window_s: float | None
) -> dg.AssetCheckResult:
    """Passes when the run started on time (lag below one window, at least 1 s), or when it
    started less late than the run before it: the stream is catching up."""
    bound = max(1.0, window_s or 0.0)
    lag = start_lag_s or 0.0
    passed = lag <= bound or (previous_lag_s is not None and lag < previous_lag_s)
    return dg.AssetCheckResult(
        check_name="keeps_up",
        asset_key=asset,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"start_lag_s": lag, "previous_start_lag_s": previous_lag_s, "bound_s": bound},
    )
