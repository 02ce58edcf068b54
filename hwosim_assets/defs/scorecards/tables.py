"""The three tables a scorecard needs from the lake: clean (bronze), perturbed and truth."""

from __future__ import annotations

import polars as pl

from hwosim_assets.defs.lake.layout import bronze_key, perturbed_key, truth_key
from hwosim_assets.defs.lake.resources import LakeKeyError, LakeResource
from hwosim_assets.evaluate.answers import AnswerKey, answer_key
from hwosim_assets.perturb import Profile, perturb_images, perturb_spectra
from hwosim_assets.records import FAMILIES


class MissingPartition(LookupError):
    """A table the scorecard needs is not in the lake; the message says what to materialize."""


def family_of(lake: LakeResource, obs_id: str) -> str:
    """The family whose bronze table holds ``obs_id``."""
    for family in FAMILIES:
        if lake.exists(bronze_key(family, obs_id)):
            return family
    raise MissingPartition(
        f"observation {obs_id!r} has no bronze table in {lake.uri('bronze/')}: materialize its bronze asset first"
    )


def observations(lake: LakeResource) -> dict[str, str]:
    """Every observation with a bronze table: obs_id -> family."""
    found = {}
    for family in FAMILIES:
        for key in lake.list_keys(f"bronze/{family}/"):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".parquet") and not name.endswith(".products.parquet"):
                found[name[: -len(".parquet")]] = family
    return found


def partition_answers(
    lake: LakeResource, family: str, obs_id: str, profile: Profile, seed: int, *, perturb_missing: bool = False
) -> AnswerKey:
    """The answer key of one observation x profile from the lake.

    With ``perturb_missing`` (the command line), a perturbed partition that was never materialized
    is made in memory from bronze: the engine gives the same bytes as the asset would."""
    try:
        clean = lake.read_parquet(bronze_key(family, obs_id))
    except LakeKeyError:
        raise MissingPartition(
            f"bronze {family} partition {obs_id!r} is missing: materialize bronze_{family} first"
        ) from None
    try:
        perturbed = lake.read_parquet(perturbed_key(family, profile.name, obs_id))
        truth = lake.read_parquet(truth_key(family, profile.name, obs_id))
    except LakeKeyError:
        if not perturb_missing:
            raise MissingPartition(
                f"perturbed_{family} partition {obs_id}|{profile.name} is missing: materialize it first"
            ) from None
        perturb = perturb_spectra if family == "spectra" else perturb_images
        result = perturb(clean, profile, observation=obs_id, seed=seed)
        perturbed, truth = result.data, result.truth
    return answer_key(family, clean, perturbed, truth, obs_id)


def rows_under(lake: LakeResource, prefix: str) -> pl.DataFrame | None:
    """Every scorecard-rows object under ``prefix``, concatenated (None when there is none)."""
    frames = [lake.read_parquet(k) for k in lake.list_keys(prefix) if k.endswith(".parquet")]
    return pl.concat(frames, how="vertical_relaxed") if frames else None
