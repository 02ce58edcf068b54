"""The perturbation engine: controlled, reproducible, physically grounded
perturbations of bronze JWST records at severity levels 0-5, with ground
truth for every change. Plain numpy/polars/pyarrow - no Dagster here.

Public API (what the Dagster assets, the fidelity report and the scorecards call):

* :func:`load_profiles`, :class:`Profile`, :class:`ProfileError` - profiles.yaml
* :func:`perturb_spectra`, :func:`perturb_images`, :func:`perturb_parquet`,
  :func:`perturb_tile_stack` (arrays), :class:`PerturbResult`,
  :class:`PerturbError` - the engine
* :data:`KINDS`, :func:`levels_markdown`, :func:`bit_table_markdown` - the catalogue
"""

from typing import Any

from hwosim_assets.perturb.engine import (
    PerturbError,
    PerturbResult,
    perturb_images,
    perturb_parquet,
    perturb_spectra,
    perturb_tile_stack,
    reference_time,
)
from hwosim_assets.perturb.kinds import ELEMENT_KINDS, KINDS, STREAM_KINDS
from hwosim_assets.perturb.profiles import Profile, ProfileError, load_profiles, parse_profiles
from hwosim_assets.perturb.spec import Expectation
from hwosim_assets.perturb.truth import BITS, bit_table_markdown, kinds_of, tile_truth

__all__ = [
    "BITS",
    "ELEMENT_KINDS",
    "KINDS",
    "STREAM_KINDS",
    "Expectation",
    "PerturbError",
    "PerturbResult",
    "Profile",
    "ProfileError",
    "bit_table_markdown",
    "kinds_of",
    "levels_markdown",
    "load_profiles",
    "parse_profiles",
    "perturb_images",
    "perturb_parquet",
    "perturb_spectra",
    "perturb_tile_stack",
    "reference_time",
    "tile_truth",
]


def __getattr__(name: str) -> Any:
    """levels_markdown, imported on first use so that
    ``python -m hwosim_assets.perturb.levels`` runs the module cleanly."""
    if name == "levels_markdown":
        from hwosim_assets.perturb import levels

        return getattr(levels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
