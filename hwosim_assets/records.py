"""The record schemas every stage agrees on.

Bronze tables, perturbed tables and stream tables all carry the same columns,
so a packet can be followed from the FITS file to the MySQL row by its
observation and ``seq`` alone. ``seq`` is the packet sequence number: the unit
that is perturbed with its own random stream, paced and delivered as one.

* Time-series spectra (``x1dints``): one row per integration x wavelength bin.
  A packet is one integration's spectrum (all its rows share ``seq``).
* Images (``cal``, ``calints``, ``i2d``): frames cut into square tiles. A
  packet is one tile; pixel planes are stored as raw little-endian bytes so
  the values survive every hop bit for bit.
"""

from __future__ import annotations

import polars as pl

SPECTRA_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64,  # packet number: 0-based integration index in the observation
    "integration": pl.Int32,  # 1-based integration number, as in INT_TIMES
    "channel": pl.Int32,  # 0-based index of the wavelength bin within the integration
    "event_time": pl.Float64,  # MJD (UTC) at mid-integration, from INT_TIMES
    "wavelength": pl.Float64,  # micron
    "flux": pl.Float64,  # Jy
    "flux_error": pl.Float64,  # Jy
    "dq": pl.Int32,  # JWST data-quality flags, as stored in the x1dints table
}

IMAGE_TILE_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64,  # packet number: 0-based tile index in the observation
    "frame": pl.Int32,  # 0-based frame index over (source file, integration)
    "source": pl.Utf8,  # FITS file name the frame came from
    "y0": pl.Int32,  # tile origin (row) in the frame
    "x0": pl.Int32,  # tile origin (column) in the frame
    "ny": pl.Int32,  # tile shape; edge tiles may be smaller than the tile size
    "nx": pl.Int32,
    "event_time": pl.Float64,  # MJD (UTC) at mid-exposure (or mid-integration)
    "sci": pl.Binary,  # ny*nx little-endian float32 (SCI plane)
    "err": pl.Binary,  # ny*nx little-endian float32 (ERR plane)
    "dq": pl.Binary,  # ny*nx little-endian uint32 (DQ plane)
}

PIXEL_DTYPES = {"sci": "<f4", "err": "<f4", "dq": "<u4"}

# Manifest of the MAST selection (the jwst_catalog asset): one row per product file.
CATALOG_SCHEMA: dict[str, pl.DataType] = {
    "obs_id": pl.Utf8,  # observation id: the dynamic partition key
    "program": pl.Utf8,  # proposal id, zero-padded to 5 digits ("02734")
    "instrument": pl.Utf8,  # e.g. "NIRISS/SOSS"
    "target": pl.Utf8,
    "product_type": pl.Utf8,  # lower-case file suffix: x1dints, calints, cal, i2d
    "calib_level": pl.Int32,
    "filename": pl.Utf8,
    "data_uri": pl.Utf8,  # mast:JWST/product/<file> or sample://<file>
    "size": pl.Int64,  # bytes, as reported by the source
    "checksum": pl.Utf8,  # sha256 hex when the source reports one, else null
    "source": pl.Utf8,  # "mast" or "sample"
    "simulated": pl.Boolean,  # True for the project's own sample products
}

SPECTRA_PRODUCT_TYPES = ("x1dints",)
IMAGE_PRODUCT_TYPES = ("calints", "cal", "i2d")
SUPPORTED_PRODUCT_TYPES = SPECTRA_PRODUCT_TYPES + IMAGE_PRODUCT_TYPES


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given schema (for tests and edge cases)."""
    return pl.DataFrame(schema=schema)
