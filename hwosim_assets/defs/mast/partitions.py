"""Observation partitions, registered by the `jwst_catalog` asset.

Every observation in the catalog is a partition of `raw_products`; each is
also registered under its family (records.FAMILIES), so the bronze and
perturbed assets of a family show only the observations that have products
of that family.
"""

import dagster as dg

from hwosim_assets.records import FAMILIES

OBSERVATIONS = dg.DynamicPartitionsDefinition(name="observations")

# one per family: spectra_observations, images_observations
FAMILY_PARTITIONS = {name: dg.DynamicPartitionsDefinition(name=f.partitions_name) for name, f in FAMILIES.items()}
