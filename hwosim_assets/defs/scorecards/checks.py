"""Checks on scorecards, run in the materializing step."""

import dagster as dg

from hwosim_assets.evaluate.scorecard import Scorecard


def specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "every_model_scored",
            asset=asset,
            description="every model of models.yaml loaded, ran over every packet and answered well-formed predictions "
            "(a failure is recorded in its scorecard; the other models are scored regardless)",
        )
    ]


def every_model_scored(asset: str, cards: list[Scorecard]) -> dg.AssetCheckResult:
    failed = [c for c in cards if c.status == "failed"]
    return dg.AssetCheckResult(
        check_name="every_model_scored",
        asset_key=asset,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": ", ".join(c.model for c in failed) or "none",
            "errors": dg.MetadataValue.md("\n".join(f"- **{c.model}**: {c.error}" for c in failed) or "none"),
        },
    )
