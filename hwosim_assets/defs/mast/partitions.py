"""Observation partitions, registered by the ``jwst_catalog`` asset.

Every observation in the catalog is a partition of ``raw_products``; each is
also registered under its family, so the bronze and perturbed assets of a
family show only the observations that have products of that family.
"""

import dagster as dg

OBSERVATIONS = dg.DynamicPartitionsDefinition(name="observations")
SPECTRA_OBSERVATIONS = dg.DynamicPartitionsDefinition(name="spectra_observations")
IMAGE_OBSERVATIONS = dg.DynamicPartitionsDefinition(name="image_observations")

FAMILY_PARTITIONS = {"spectra": SPECTRA_OBSERVATIONS, "images": IMAGE_OBSERVATIONS}
