"""Where JWST products come from: the MAST archive or HWOsim's own samples.

Assets take a ``ProductSource`` and never care which one they got: the
environment picks it (``HWOSIM_SOURCE``, see ``defs/resources.py``). Each
source answers the same two questions - which products match a selection,
and fetch one of them - by calling one domain function.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from hwosim_assets.ingest import mast, sample
from hwosim_assets.ingest.mast import Selection


class ProductSource(dg.ConfigurableResource):
    """The common interface; annotate assets with it to accept either source."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def query(self, selection: Selection) -> pl.DataFrame:
        """The selected products as a catalog manifest (records.CATALOG_SCHEMA)."""
        raise NotImplementedError

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        """Put the file of one manifest row at ``dest_dir/<filename>``, checked."""
        raise NotImplementedError


class MastSource(ProductSource):
    """Real JWST products from MAST, through astroquery."""

    server_url: str = "https://mast.stsci.edu"
    timeout: float = 60
    retries: int = 3

    @property
    def name(self) -> str:
        return "mast"

    def query(self, selection: Selection) -> pl.DataFrame:
        return mast.query_catalog(selection, server_url=self.server_url, timeout=self.timeout, retries=self.retries)

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        return mast.download_product(
            row, Path(dest_dir), server_url=self.server_url, timeout=self.timeout, retries=self.retries
        )


class SampleSource(ProductSource):
    """HWOsim's simulated products in JWST format: no network needed."""

    @property
    def name(self) -> str:
        return "sample"

    def query(self, selection: Selection) -> pl.DataFrame:
        chosen = mast.select_products(sample.sample_catalog(), selection)
        if chosen.is_empty():
            raise ValueError(f"no sample product matches {selection}: the samples are program {sample.SAMPLE_PROGRAM}")
        return chosen

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        return sample.write_sample_product(row["filename"], Path(dest_dir))
