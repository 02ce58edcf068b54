"""Where JWST products come from: the MAST archive, HWOsim's own samples, or the user's own files.

Assets take a `ProductSource` and never care which one they got: the
environment picks it (`HWOSIM_SOURCE`, see `defs/resources.py`). Each
source answers the same two questions - which products match a selection,
and fetch one of them - by calling one domain function.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg
import polars as pl

from hwosim_assets.checksums import sha256_of
from hwosim_assets.ingest.selection import Selection, select_products

# The sources import their clients (astroquery, astropy) when used, not when
# the code location loads: every replay run loads it, and needs neither.


class ProductSource(dg.ConfigurableResource):
    """The common interface; annotate assets with it to accept either source."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def query(self, selection: Selection) -> pl.DataFrame:
        """The selected products as a catalog manifest (records.CATALOG_SCHEMA)."""
        raise NotImplementedError

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        """Put the file of one manifest row at `dest_dir/<filename>`, checked."""
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
        from hwosim_assets.ingest import mast

        return mast.query_catalog(selection, server_url=self.server_url, timeout=self.timeout, retries=self.retries)

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        from hwosim_assets.ingest import mast

        return mast.download_product(
            row, Path(dest_dir), server_url=self.server_url, timeout=self.timeout, retries=self.retries
        )


class SampleSource(ProductSource):
    """HWOsim's simulated products in JWST format: no network needed."""

    @property
    def name(self) -> str:
        return "sample"

    def query(self, selection: Selection) -> pl.DataFrame:
        from hwosim_assets.ingest import sample

        chosen = select_products(sample.sample_catalog(), selection)
        if chosen.is_empty():
            raise ValueError(f"no sample product matches {selection}: the samples are program {sample.SAMPLE_PROGRAM}")
        return chosen

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        from hwosim_assets.ingest import sample

        return sample.write_sample_product(row["filename"], Path(dest_dir))


class FilesSource(ProductSource):
    """The user's own JWST products: every `*.fits` under a folder or an S3
    prefix (`url`: a path, or `s3://bucket/prefix` reached with the same
    AWS_* credentials as the lake). Observations, types and targets come from
    each file's headers, so any file names work."""

    url: str

    @property
    def name(self) -> str:
        return "files"

    def _store(self):
        from hwosim_assets.defs.lake.resources import lake_from_url  # the lake's readers serve folders and S3 alike

        return lake_from_url(self.url)

    def query(self, selection: Selection) -> pl.DataFrame:
        from hwosim_assets.ingest import files

        store = self._store()
        keys = [k for k in store.list_keys("") if files.is_fits_name(k.rsplit("/", 1)[-1])]
        if not keys:
            raise ValueError(f"no *.fits files under {store.uri()} (HWOSIM_SOURCE_URL)")
        with tempfile.TemporaryDirectory(prefix="hwosim-files-") as tmp:
            local = []
            for i, key in enumerate(keys):
                if self.url.startswith("s3://"):  # headers are read from a local copy
                    path = store.get_file(key, Path(tmp) / str(i) / key.rsplit("/", 1)[-1])
                else:  # a folder: read in place
                    path = Path(self.url).absolute() / key
                local.append((path, store.uri(key)))
            catalog = files.catalog_of_files(local)
        chosen = select_products(catalog, selection)
        if chosen.is_empty():
            raise ValueError(f"none of the {len(catalog)} products under {store.uri()} matches {selection}")
        return chosen

    def fetch(self, row: dict, dest_dir: Path) -> Path:
        store = self._store()
        prefix = store.uri()
        if not row["data_uri"].startswith(prefix):
            raise ValueError(f"{row['data_uri']} is not under the source {prefix} (HWOSIM_SOURCE_URL changed?)")
        key = row["data_uri"][len(prefix) :].lstrip("/")
        path = store.get_file(key, Path(dest_dir) / row["filename"])
        digest = sha256_of(path)
        if row.get("checksum") and digest != row["checksum"]:
            path.unlink()
            raise ValueError(f"{row['data_uri']} changed since the catalog was made: rematerialize jwst_catalog")
        return path
