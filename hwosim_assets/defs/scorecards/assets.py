"""The scorecards stage: every model of models.yaml scored against the truth, and their robustness.

``scorecards_spectra`` / ``scorecards_images`` are partitioned like the
perturbed tables (observation x profile), so a backfill over the
``level-0`` ... ``level-5`` profiles fills every model's curve; each run
scores every declared model offline (:func:`evaluate.offline.score_offline`)
and stores the rows in the lake (``scores/``) and in ``hwosim_scores``. A
model that fails is recorded in its scorecard and flagged by a warning
check; the others are scored. ``robustness`` gathers every stored scorecard,
runs the live rate sweep of models.yaml (:func:`evaluate.live.score_at_rates`)
and summarises per model and kind (:mod:`evaluate.robustness`), with the
plot in the lake and inline in the UI.
"""

import dagster as dg
import polars as pl

from hwosim_assets.defs.lake.layout import ROBUSTNESS_KEY, perturbed_key, plot_key, rate_score_key, score_key
from hwosim_assets.defs.lake.resources import LakeResource
from hwosim_assets.defs.metadata import figure, md_table
from hwosim_assets.defs.perturb.assets import PERTURBED, _profile
from hwosim_assets.defs.perturb.partitions import BY_PROFILE
from hwosim_assets.defs.priority import at_batch_priority
from hwosim_assets.defs.project import HwosimConfig
from hwosim_assets.defs.scorecards import checks
from hwosim_assets.defs.scorecards.tables import MissingPartition, observations, partition_answers, rows_under
from hwosim_assets.defs.streams.resources import StreamDatabase
from hwosim_assets.evaluate import robustness as summaries
from hwosim_assets.evaluate import store
from hwosim_assets.evaluate.config import ModelsConfigError, load_models
from hwosim_assets.evaluate.scorecard import Scorecard, frame
from hwosim_assets.records import FAMILIES, Family

# the one figure of each prediction kind shown per model in the UI
SHOWN = [
    "flags.f1",
    "flags.error",
    "cleaned.mae_err",
    "events.depth_bias",
    "events.false_alarms_per_hour",
    "events.nab_score",
    "health.f1",
    "timing.model_ms_p99",
]


def _models(hwosim: HwosimConfig):
    try:
        return load_models(hwosim.models_path or None)
    except ModelsConfigError as error:
        raise dg.Failure(str(error)) from None


def headline(cards: list[Scorecard]) -> pl.DataFrame:
    """One row per model: status and the figures of :data:`SHOWN` it has."""
    rows = []
    for card in cards:
        row = {"model": card.model, "status": card.status}
        row.update({name: round(card.metrics[name], 4) for name in SHOWN if card.metrics.get(name) is not None})
        row["error"] = card.error[:120]
        rows.append(row)
    return pl.DataFrame(rows)


def score_partition(
    context: dg.AssetExecutionContext,
    family: Family,
    lake: LakeResource,
    stream_db: StreamDatabase,
    hwosim: HwosimConfig,
) -> dg.MaterializeResult:
    from hwosim_assets.evaluate.offline import score_offline

    keys = context.partition_key.keys_by_dimension
    obs_id, name = keys["observation"], keys["profile"]
    profile = _profile(hwosim, name)
    models = _models(hwosim)
    try:
        key = partition_answers(lake, family.name, obs_id, profile, hwosim.seed)
    except MissingPartition as error:
        raise dg.Failure(str(error)) from None
    cards = []
    for spec in models.models.values():
        card = at_batch_priority(  # a backfill over the levels must not take the CPU from live streams
            lambda spec=spec: score_offline(
                spec,
                key,
                profile=name,
                profile_hash=profile.config_hash,
                seed=hwosim.seed,
                stream_faults=profile.stream_faults,
            )
        )
        (context.log.warning if card.status == "failed" else context.log.info)(
            f"{spec.name} on {obs_id} x {name}: {card.status}{': ' + card.error if card.error else ''}"
        )
        cards.append(card)
    stored = lake.write_parquet(score_key(family.name, name, obs_id), frame(cards))
    rows = store.write(stream_db.engine(), cards)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(profile.config_hash),
        metadata={
            "models": md_table(headline(cards), 50),
            "scored": sum(c.status == "ok" for c in cards),
            "failed": sum(c.status == "failed" for c in cards),
            "skipped": sum(c.status == "skipped" for c in cards),
            "profile_hash": profile.config_hash,
            "seed": hwosim.seed,
            "models_file": models.path,
            "scores": dg.MetadataValue.path(lake.uri(stored.key)),
            "sql_rows": rows,
        },
        check_results=[checks.every_model_scored(context.asset_key, cards)],
    )


def scorecards_asset(family: Family) -> dg.AssetsDefinition:
    """The scorecards of one family: its observations x the profiles, like its perturbed tables."""

    @dg.asset(
        name=f"scorecards_{family.name}",
        group_name="scorecards",
        partitions_def=BY_PROFILE[family.name],
        deps=[PERTURBED[family.name]],
        check_specs=checks.specs(f"scorecards_{family.name}"),
        kinds={"numpy", "sql"},
        description=(
            f"Every model of models.yaml run over the perturbed {family.name} of one observation x profile, as its "
            "stream faults would deliver them, and scored against the truth; rows in scores/ and hwosim_scores."
        ),
    )
    def _scorecards(
        context: dg.AssetExecutionContext, lake: LakeResource, stream_db: StreamDatabase, hwosim: HwosimConfig
    ) -> dg.MaterializeResult:
        return score_partition(context, family, lake, stream_db, hwosim)

    return _scorecards


SCORECARDS = {name: scorecards_asset(family) for name, family in FAMILIES.items()}
scorecards_assets = list(SCORECARDS.values())


def _rate_sweep(
    context, lake: LakeResource, stream_db: StreamDatabase, hwosim: HwosimConfig, models
) -> list[Scorecard]:
    """Every model scored live at the configured rates, on every observation whose partition of the
    sweep's profile is in the lake."""
    from hwosim_assets.evaluate.live import score_at_rates

    sweep = models.rates
    profile = _profile(hwosim, sweep.profile)
    cards = []
    for obs_id, family in sorted(observations(lake).items()):
        if not lake.exists(perturbed_key(family, sweep.profile, obs_id)):
            continue
        key = partition_answers(lake, family, obs_id, profile, hwosim.seed)
        found = []
        for spec in models.models.values():
            found += score_at_rates(
                spec,
                key,
                stream_db.engine(),
                list(sweep.per_second),
                profile=sweep.profile,
                profile_hash=profile.config_hash,
                seed=hwosim.seed,
                stream_faults=profile.stream_faults,
                n_packets=sweep.packets,
            )
        context.log.info(f"rate sweep on {obs_id}: {len(found)} live scorecards at {list(sweep.per_second)} packets/s")
        lake.write_parquet(rate_score_key(obs_id), frame(found))
        cards += found
    return cards


@dg.asset(
    group_name="scorecards",
    deps=[dg.AssetDep(asset, partition_mapping=dg.AllPartitionMapping()) for asset in scorecards_assets],
    kinds={"matplotlib", "sql"},
)
def robustness(
    context: dg.AssetExecutionContext, lake: LakeResource, stream_db: StreamDatabase, hwosim: HwosimConfig
) -> dg.MaterializeResult:
    """Per model and prediction kind: error against level 0-5 (ImageNet-C's corruption error, normalised
    by the baseline of models.yaml: mCE and relative mCE) and, live, how it keeps up as the stream rate
    rises; the plot in the lake and inline here. Backfill the scorecards over level-0 ... level-5 first."""
    from hwosim_assets import plots

    models = _models(hwosim)
    rows = rows_under(lake, "scores/spectra/"), rows_under(lake, "scores/images/")
    offline = [r for r in rows if r is not None]
    if not offline:
        raise dg.Failure(
            "no scorecards in the lake: backfill scorecards_spectra / scorecards_images over level-0 ... level-5"
        )
    live_cards = _rate_sweep(context, lake, stream_db, hwosim, models) if models.rates else []
    store.write(stream_db.engine(), live_cards)
    everything = pl.concat(offline + [frame(live_cards)], how="vertical_relaxed")
    curves = summaries.level_curves(everything)
    table = summaries.summary(curves, list(models.baselines))
    rates = summaries.rate_curves(everything)
    lake.write_parquet(ROBUSTNESS_KEY, table)
    png = plots.robustness(curves, rates, "HWOsim robustness: error per perturbation level, and keeping up")
    return dg.MaterializeResult(
        metadata={
            "summary": md_table(table.with_columns(pl.selectors.float().round(4)), 50),
            "rates": md_table(rates.with_columns(pl.selectors.float().round(4)), 50),
            **figure(lake, plot_key("robustness", "robustness"), png),
            "models_file": models.path,
        }
    )
