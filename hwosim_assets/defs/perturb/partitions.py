"""Perturbed partitions: observation x profile.

Profile names are registered by observing the ``perturbation_profiles``
source asset (the profiles YAML), the way ``jwst_catalog`` registers
observations; a backfill of one profile across all observations fills one
column of the grid in the UI.
"""

import dagster as dg

from hwosim_assets.defs.mast.partitions import IMAGE_OBSERVATIONS, SPECTRA_OBSERVATIONS

PROFILES = dg.DynamicPartitionsDefinition(name="profiles")

SPECTRA_BY_PROFILE = dg.MultiPartitionsDefinition({"observation": SPECTRA_OBSERVATIONS, "profile": PROFILES})
IMAGES_BY_PROFILE = dg.MultiPartitionsDefinition({"observation": IMAGE_OBSERVATIONS, "profile": PROFILES})

FAMILY_BY_PROFILE = {"spectra": SPECTRA_BY_PROFILE, "images": IMAGES_BY_PROFILE}
