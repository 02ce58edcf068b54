"""Where each stage's objects live in the lake: one function per kind of key,
so a reader finds the layout here and nowhere else."""

from __future__ import annotations

CATALOG_KEY = "catalog/jwst_catalog.parquet"


def raw_prefix(program: str, obs_id: str) -> str:
    return f"raw/jwst/{program}/{obs_id}/"


def raw_key(program: str, obs_id: str, filename: str) -> str:
    return raw_prefix(program, obs_id) + filename


def bronze_key(family: str, obs_id: str) -> str:
    return f"bronze/{family}/{obs_id}.parquet"


def bronze_meta_key(family: str, obs_id: str) -> str:
    """The observation's metadata record: one row per product with its header facts."""
    return f"bronze/{family}/{obs_id}.products.parquet"


def perturbed_key(family: str, profile: str, obs_id: str) -> str:
    return f"perturbed/{family}/{profile}/{obs_id}.parquet"


def truth_key(family: str, profile: str, obs_id: str, part: str = "mask") -> str:
    """Ground truth lives under truth/, apart from what consumers read."""
    return f"truth/{family}/{profile}/{obs_id}.{part}.parquet"


def plot_key(stage: str, name: str) -> str:
    return f"plots/{stage}/{name}.png"


PROFILES_KEY = "config/profiles.yaml"


def stream_truth_key(stream: str, window: int) -> str:
    """Stream-fault truth of one replayed window (the answer key, like every truth/ object)."""
    return f"truth/streams/{stream}/window-{window}.parquet"


def score_key(family: str, profile: str, obs_id: str) -> str:
    """The scorecards of every model on one observation x profile (offline), as long rows."""
    return f"scores/{family}/{profile}/{obs_id}.parquet"


RATE_SCORES_PREFIX = "scores/rates/"  # live scorecards of the rate sweep, one object per observation
ROBUSTNESS_KEY = "scores/robustness.parquet"


def rate_score_key(obs_id: str) -> str:
    return f"{RATE_SCORES_PREFIX}{obs_id}.parquet"
