"""Perturbed partitions: observation x profile.

Profile names are registered by observing the `perturbation_profiles`
source asset (the profiles YAML), the way `jwst_catalog` registers
observations; a backfill of one profile across all observations fills one
column of the grid in the UI.
"""

import dagster as dg

from hwosim_assets.defs.mast.partitions import FAMILY_PARTITIONS

PROFILES = dg.DynamicPartitionsDefinition(name="profiles")

# one per family: its observations x the profiles
BY_PROFILE = {
    family: dg.MultiPartitionsDefinition({"observation": observations, "profile": PROFILES})
    for family, observations in FAMILY_PARTITIONS.items()
}
