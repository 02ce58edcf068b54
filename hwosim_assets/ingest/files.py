"""The user's own JWST products (a folder, or an S3 prefix) as a catalog manifest.

Everything about a file is read from its headers (``products.identify``):
its observation, instrument, target, product type, so files named any way
land in the same partitions as the same products from MAST. A file HWOsim
cannot read is an error naming it, its DATAMODL and TELESCOP, and the
supported models (all such files at once), so nothing of a mixed folder
lands half.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from hwosim_assets.checksums import sha256_of
from hwosim_assets.ingest.products import UnsupportedProductError, identify, instrument_mode
from hwosim_assets.records import CATALOG_SCHEMA

FITS_NAME = re.compile(r".+\.fits$", re.IGNORECASE)


def is_fits_name(name: str) -> bool:
    """Files the source looks at: ``*.fits`` (any case); compressed files are not read."""
    return bool(FITS_NAME.fullmatch(name))


def catalog_of_files(files: list[tuple[Path, str]]) -> pl.DataFrame:
    """A catalog manifest (records.CATALOG_SCHEMA) of local files, one row each.

    ``files`` holds (local path, data URI): the URI says where the file lives
    for the user (``file:///...`` or ``s3://...``) and is what the raw stage
    fetches later. Size and SHA-256 are those of the local bytes, so the raw
    stage can check that it lands exactly what was catalogued.
    """
    rows: list[dict[str, Any]] = []
    unsupported: list[str] = []
    for path, uri in files:
        try:
            info = identify(path)
        except UnsupportedProductError as error:
            unsupported.append(str(error).replace(str(path), uri))
            continue
        facts = info.facts
        rows.append(
            {
                "obs_id": info.obs_id,
                "program": str(facts.get("PROGRAM") or "").zfill(5),
                "instrument": instrument_mode({"EXP_TYPE": facts.get("EXP_TYPE"), "INSTRUME": facts.get("INSTRUME")}),
                "target": facts.get("TARGNAME") or "",
                "product_type": info.product_type,
                # stage-3 products are named after the association (jw02783-o002_...)
                "calib_level": 3 if re.match(r"jw\d{5}-", info.name) else 2,
                "filename": path.name,
                "data_uri": uri,
                "size": path.stat().st_size,
                "checksum": sha256_of(path),
                "source": "files",
                "simulated": False,
            }
        )
    if unsupported:
        listed = "\n  ".join(unsupported)
        raise UnsupportedProductError(f"{len(unsupported)} of {len(files)} files cannot be read:\n  {listed}")
    names = [row["filename"] for row in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"file names appear more than once under the source: {', '.join(twice)}")
    return pl.DataFrame(rows, schema=CATALOG_SCHEMA, orient="row").sort("obs_id", "filename")
