"""The fidelity report as an asset: how closely each perturbation delivers
its level's physical figure on the real and sample products
(:mod:`hwosim_assets.perturb.fidelity`), with a figure in the lake.

Not partitioned and not upstream of anything: materialize it after changing
a kind or the level table, and read the table in the UI.
"""

import dagster as dg
import polars as pl

from hwosim_assets.defs.lake.layout import plot_key
from hwosim_assets.defs.lake.resources import LakeResource
from hwosim_assets.defs.metadata import figure


@dg.asset(
    group_name="perturb",
    kinds={"numpy"},
    check_specs=[
        dg.AssetCheckSpec(
            "within_20_percent",
            asset="perturbation_fidelity",
            description="every measurable kind delivers its level's figure within 20 %",
        )
    ],
)
def perturbation_fidelity(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The fidelity report: per kind, the statistic measured on the real and sample products next to
    its level's target and their ratio, at levels 1, 3 and 5, with a figure of the ratios
    (`python -m hwosim_assets.perturb.fidelity`; about two minutes of CPU)."""
    from hwosim_assets import plots
    from hwosim_assets.perturb import fidelity

    rows = fidelity.report((1, 3, 5))
    png = plots.fidelity_ratios(rows, "perturbation fidelity: measured / target")
    plot = figure(lake, plot_key("perturbation_fidelity", "ratios"), png)
    outside = [f"{r.kind} L{r.level}" for r in rows if r.ok is False and not r.kind.startswith("(")]
    table = pl.DataFrame(
        {
            "kind": [r.kind for r in rows],
            "level": [r.level for r in rows],
            "ratio": [None if r.ratio is None else round(r.ratio, 3) for r in rows],
        }
    )
    context.log.info(f"{len(rows)} rows, {len(outside)} outside 20 %")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(fidelity.markdown(rows)),
            **plot,
            "rows": len(table),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="within_20_percent",
                passed=not outside,
                metadata={"outside": ", ".join(outside) or "none"},
            )
        ],
    )
