"""Checks on perturbed partitions, run in the materializing step."""

import dagster as dg

from hwosim_assets.perturb import PerturbResult


def specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "fractions_within_tolerance",
            asset=asset,
            description="the measured fraction of elements each kind touched is within statistical tolerance of the profile's",
        ),
        dg.AssetCheckSpec(
            "truth_covers_changes",
            asset=asset,
            description="every element whose value differs from bronze has at least one truth bit",
        ),
    ]


def fractions(asset: str, result: PerturbResult) -> dg.AssetCheckResult:
    rows, failed = [], []
    for kind, expected in result.expected_fractions.items():
        measured = result.fractions.get(kind, 0.0)
        if expected is None:
            rows.append(f"| {kind} | {measured:.3g} | - | - |")
            continue
        ok = expected.accepts(measured)
        failed += [] if ok else [kind]
        rows.append(
            f"| {kind} | {measured:.3g} | {expected.fraction:.3g} ± {expected.tolerance:.2g} | {'ok' if ok else 'OUT'} |"
        )
    table = "| kind | measured | expected | |\n| --- | --- | --- | --- |\n" + "\n".join(rows)
    return dg.AssetCheckResult(
        check_name="fractions_within_tolerance",
        asset_key=asset,
        passed=not failed,
        metadata={"fractions": dg.MetadataValue.md(table), "out_of_tolerance": ", ".join(failed) or "none"},
    )


def truth_coverage(asset: str, uncovered: int, checked_rows: int, total_rows: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="truth_covers_changes",
        asset_key=asset,
        passed=uncovered == 0,
        metadata={"uncovered_changes": uncovered, "rows_checked": checked_rows, "rows_total": total_rows},
    )
