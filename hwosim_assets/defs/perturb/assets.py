"""The perturb stage: bronze tables under each profile, with ground truth.

`perturbation_profiles` is the profiles YAML seen as an external source:
observing it registers one partition per profile and records each profile's
config hash as its data version. Each perturbed partition (observation x
profile) depends on its profile's partition, so editing one profile makes
exactly that profile's partitions stale in the UI.
"""

import tempfile
from pathlib import Path

import dagster as dg
import polars as pl

from hwosim_assets.defs.bronze.assets import BRONZE
from hwosim_assets.defs.lake.layout import bronze_key, bronze_meta_key, perturbed_key, plot_key, truth_key
from hwosim_assets.defs.lake.resources import LakeKeyError, LakeResource
from hwosim_assets.defs.metadata import figure
from hwosim_assets.defs.perturb import checks
from hwosim_assets.defs.perturb.partitions import BY_PROFILE, PROFILES
from hwosim_assets.defs.priority import at_batch_priority
from hwosim_assets.defs.project import HwosimConfig
from hwosim_assets.perturb import Profile, load_profiles, perturb_parquet
from hwosim_assets.perturb.exposure import exposures
from hwosim_assets.perturb.truth import uncovered_changes
from hwosim_assets.records import FAMILIES, Family

# rows of each table read back for the truth-coverage check and the figure;
# the perturbation itself streams the whole table at bounded memory
CHECK_ROWS = {"spectra": 200_000, "images": 2_000}


@dg.observable_source_asset(
    group_name="perturb",
    partitions_def=PROFILES,
    description=(
        "The perturbation profiles: the packaged profiles.yaml, or the file named by $HWOSIM_PROFILES. "
        "One partition per profile; a profile's config hash is its data version, so editing one profile "
        "makes only its perturbed partitions stale. Observe it after editing the file."
    ),
)
def perturbation_profiles(context: dg.AssetExecutionContext, hwosim: HwosimConfig) -> dg.DataVersionsByPartition:
    """The perturbation profiles (packaged profiles.yaml, or $HWOSIM_PROFILES).

    Observe it (UI: "Observe sources", or `hwosim demo`) after editing the
    file: new profiles become partitions, removed ones are dropped, and each
    profile's config hash becomes its data version.
    """
    profiles = load_profiles(hwosim.profiles_path or None)
    known = set(context.instance.get_dynamic_partitions(PROFILES.name))
    context.instance.add_dynamic_partitions(PROFILES.name, sorted(set(profiles) - known))
    for gone in sorted(known - set(profiles)):
        context.instance.delete_dynamic_partition(PROFILES.name, gone)
    context.log.info(f"{len(profiles)} profiles: {', '.join(sorted(profiles))}")
    return dg.DataVersionsByPartition({name: p.config_hash for name, p in profiles.items()})


observe_profiles = dg.define_asset_job("observe_profiles", selection=[perturbation_profiles])


def _profile(hwosim: HwosimConfig, name: str) -> Profile:
    profiles = load_profiles(hwosim.profiles_path or None)
    if name not in profiles:
        raise dg.Failure(
            f"profile {name!r} is not in {hwosim.profiles_path or 'the packaged profiles.yaml'}; "
            "observe perturbation_profiles after editing the file"
        )
    return profiles[name]


def _header_facts(context: dg.AssetExecutionContext, lake: LakeResource, family: str, obs_id: str):
    """The observation's products' header facts (bronze metadata record): what
    puts the perturbations in the product's own electrons and seconds. A
    bronze partition written before the record existed has none: the engine
    then assumes a generic 100 s H2RG exposure, and the log says so."""
    try:
        return exposures(lake.read_parquet(bronze_meta_key(family, obs_id)))
    except LakeKeyError:
        context.log.warning(
            f"{obs_id}: no header facts at {lake.uri(bronze_meta_key(family, obs_id))}; "
            "perturbing with a generic 100 s exposure - rematerialize bronze_" + family
        )
        return None


def _perturb(context: dg.AssetExecutionContext, lake: LakeResource, hwosim: HwosimConfig, family: str):
    keys = context.partition_key.keys_by_dimension
    obs_id, name = keys["observation"], keys["profile"]
    profile = _profile(hwosim, name)
    asset = context.asset_key
    with tempfile.TemporaryDirectory(prefix="hwosim-perturb-") as tmp:
        bronze, data, truth = (Path(tmp) / f for f in ("bronze.parquet", "data.parquet", "truth.parquet"))
        try:
            lake.get_file(bronze_key(family, obs_id), bronze)
        except LakeKeyError:
            raise dg.Failure(
                f"bronze {family} partition {obs_id!r} is missing: materialize bronze_{family} first"
            ) from None
        facts = _header_facts(context, lake, family, obs_id)
        result = at_batch_priority(  # a backfill must not take the CPU from live streams
            lambda: perturb_parquet(bronze, data, truth, family, profile, obs_id, hwosim.seed, exposures=facts)
        )

        n = CHECK_ROWS[family]
        before, after, mask = (pl.read_parquet(p, n_rows=n) for p in (bronze, data, truth))
        uncovered = uncovered_changes(before, after, mask, family)
        from hwosim_assets import plots  # matplotlib: imported where a figure is drawn

        draw = plots.spectra_before_after if family == "spectra" else plots.images_before_after
        png = draw(before, after, mask, f"{obs_id} under {name}")

        # truth first, data last: a partition's data is only there once its truth is
        lake.put_file(truth_key(family, name, obs_id), truth)
        lake.write_parquet(truth_key(family, name, obs_id, "summary"), result.summary)
        stored = lake.put_file(perturbed_key(family, name, obs_id), data)
    plot = figure(lake, plot_key(f"perturbed_{family}", f"{name}--{obs_id}"), png)

    changed = dg.MetadataValue.table(  # a table the UI shows and the demo's closing table reads
        records=[dg.TableRecord({"kind": k, "changed [%]": round(100 * v, 4)}) for k, v in result.fractions.items()],
        schema=dg.TableSchema(columns=[dg.TableColumn("kind", "string"), dg.TableColumn("changed [%]", "float")]),
    )
    context.log.info(
        f"{obs_id} x {name}: {result.rows} rows perturbed -> {lake.uri(perturbed_key(family, name, obs_id))}"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(profile.config_hash),
        metadata={
            "rows": result.rows,
            "profile_hash": profile.config_hash,
            "stage": result.stage,
            "electron_scale_from": electron_scale_from(result.scale_sources),
            "seed": hwosim.seed,
            "parquet_bytes": stored.size,
            "table": dg.MetadataValue.path(lake.uri(perturbed_key(family, name, obs_id))),
            "truth": dg.MetadataValue.path(lake.uri(truth_key(family, name, obs_id))),
            "changed_by_kind": changed,
            **plot,
        },
        check_results=[
            checks.fractions(asset, result),
            checks.truth_coverage(asset, uncovered, len(before), result.rows),
        ],
    )


SCALE_SOURCES = {  # batch.py's scale_source -> how the UI names it
    "poisson": "F^2 / VAR_POISSON",
    "header": "gain x EFFINTTM (header)",
    "err": "ERR^2 / F (shot-noise limited)",
    "err16": "ERR = 16 e- (synthetic table)",
}


def electron_scale_from(sources: dict[str, int]) -> str:
    """Where the electron scale came from, e.g. 'F^2 / VAR_POISSON: 131,072 elements'."""
    return "; ".join(f"{SCALE_SOURCES.get(k, k)}: {n:,} elements" for k, n in sorted(sources.items())) or "-"


def perturbed_asset(family: Family) -> dg.AssetsDefinition:
    """The perturbed asset of one family: its observations x the profiles."""
    on_observation = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="observation")
    on_profile = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="profile")

    @dg.asset(
        name=f"perturbed_{family.name}",
        group_name="perturb",
        partitions_def=BY_PROFILE[family.name],
        deps=[
            dg.AssetDep(BRONZE[family.name], partition_mapping=on_observation),
            dg.AssetDep(perturbation_profiles, partition_mapping=on_profile),
        ],
        check_specs=checks.specs(f"perturbed_{family.name}"),
        kinds={"parquet", "numpy"},
        description=(
            f"{family.name.capitalize()} under one profile (observation x profile); ground truth (a bit mask per "
            "element and a per-packet summary) under truth/, apart from what consumers read."
        ),
    )
    def _perturbed(context: dg.AssetExecutionContext, lake: LakeResource, hwosim: HwosimConfig) -> dg.MaterializeResult:
        return _perturb(context, lake, hwosim, family.name)

    return _perturbed


PERTURBED = {name: perturbed_asset(family) for name, family in FAMILIES.items()}
perturbed_assets = list(PERTURBED.values())
