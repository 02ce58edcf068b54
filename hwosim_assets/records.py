"""The record schemas every stage agrees on, and the one registry of product families.

Bronze tables, perturbed tables and stream tables all carry the same columns,
so a packet can be followed from the FITS file to the MySQL row by its
observation and ``seq`` alone. ``seq`` is the packet sequence number: the unit
that is perturbed with its own random stream, paced and delivered as one.

A *family* is a kind of record that JWST products are read into; which
products go into which family is decided from their headers (``DATAMODL``,
see ``ingest/products.py``), never from the file name:

* ``spectra`` (MultiSpecModel: ``x1dints``, ``x1d``): one row per integration x
  wavelength bin. A packet is one integration's spectrum (all its rows share
  ``seq``); an ``x1d`` is one packet.
* ``images`` (ImageModel, CubeModel, SlitModel, MultiSlitModel: ``cal``,
  ``i2d``, ``rate``, ``calints``, ``rateints``, ``s2d``, MSA slitlets): frames
  cut into square tiles. A frame is one 2-D image, one integration of a cube,
  or one slit; a packet is one tile. Pixel planes are stored as raw
  little-endian bytes so the values survive every hop bit for bit. 2-D spectra
  are images that carry their WAVELENGTH plane, or a DISPAXIS in their SCI
  header (resampled s2d products keep their wavelengths in the WCS).

Adding a family is one :class:`Family` entry here and its functions: a reader
(``ingest/fits_reader.py``), the perturbation of its batches, and the row
builder of its stream table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import polars as pl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType  # a DataType or a DataType class (pl.Int64 is a class)

SPECTRA_SCHEMA: dict[str, PolarsDataType] = {
    "seq": pl.Int64,  # packet number: 0-based integration index in the observation
    "integration": pl.Int32,  # 1-based integration number, as in INT_TIMES
    "channel": pl.Int32,  # 0-based index of the wavelength bin within the integration
    "event_time": pl.Float64,  # MJD (UTC) at mid-integration, from INT_TIMES
    "wavelength": pl.Float64,  # micron
    "flux": pl.Float64,  # Jy (the EXTRACT1D table's unit; see its TUNIT)
    "flux_error": pl.Float64,  # Jy
    "dq": pl.Int32,  # JWST data-quality flags, as stored in the EXTRACT1D table
    # Variance components and the extraction aperture, as the pipeline's
    # extract_1d step writes them (NaN where a product lacks the column): the
    # perturbations derive electron counts and read noise from them.
    "flux_var_poisson": pl.Float64,  # Jy^2
    "flux_var_rnoise": pl.Float64,  # Jy^2
    "flux_var_flat": pl.Float64,  # Jy^2
    "surf_bright": pl.Float64,  # MJy/sr
    "npixels": pl.Float64,  # pixels summed into the bin
}

IMAGE_TILE_SCHEMA: dict[str, PolarsDataType] = {
    "seq": pl.Int64,  # packet number: 0-based tile index in the observation
    "frame": pl.Int32,  # 0-based frame index over (product, integration or slit)
    "source": pl.Utf8,  # the product's name (its FILENAME header) the frame came from
    "y0": pl.Int32,  # tile origin (row) in the frame
    "x0": pl.Int32,  # tile origin (column) in the frame
    "ny": pl.Int32,  # tile shape; edge tiles may be smaller than the tile size
    "nx": pl.Int32,
    "event_time": pl.Float64,  # MJD (UTC) at mid-exposure (or mid-integration)
    "sci": pl.Binary,  # ny*nx little-endian float32 (SCI plane)
    "err": pl.Binary,  # ny*nx little-endian float32 (ERR plane)
    "dq": pl.Binary,  # ny*nx little-endian uint32 (DQ plane; zeros where the product has none)
    # Optional planes, null where the product lacks them:
    "wavelength": pl.Binary,  # float32 micron per pixel (2-D spectra: SlitModel, MultiSlitModel)
    "var_poisson": pl.Binary,  # float32 (SCI unit)^2
    "var_rnoise": pl.Binary,
    "var_flat": pl.Binary,
}

PIXEL_DTYPES = {
    "sci": "<f4",
    "err": "<f4",
    "dq": "<u4",
    "wavelength": "<f4",
    "var_poisson": "<f4",
    "var_rnoise": "<f4",
    "var_flat": "<f4",
}
OPTIONAL_PLANES = ("wavelength", "var_poisson", "var_rnoise", "var_flat")
SPECTRA_OPTIONAL = ("flux_var_poisson", "flux_var_rnoise", "flux_var_flat", "surf_bright", "npixels")

# Manifest of the product selection (the jwst_catalog asset): one row per product file.
CATALOG_SCHEMA: dict[str, PolarsDataType] = {
    "obs_id": pl.Utf8,  # observation id (ingest/products.observation_id): the dynamic partition key
    "program": pl.Utf8,  # proposal id, zero-padded to 5 digits ("02734")
    "instrument": pl.Utf8,  # e.g. "NIRISS/SOSS"
    "target": pl.Utf8,
    "product_type": pl.Utf8,  # x1dints, x1d, cal, calints, i2d, rate, rateints, s2d
    "calib_level": pl.Int32,
    "filename": pl.Utf8,
    "data_uri": pl.Utf8,  # mast:JWST/product/<file>, sample://<file> or the file's own URL
    "size": pl.Int64,  # bytes, as reported by the source
    "checksum": pl.Utf8,  # sha256 hex when the source reports one, else null
    "source": pl.Utf8,  # "mast", "sample" or "files"
    "simulated": pl.Boolean,  # True for the project's own sample products
}


@dataclass(frozen=True)
class Family:
    """One kind of record JWST products are read into, and everything keyed on it."""

    name: str
    schema: dict[str, PolarsDataType]
    models: tuple[str, ...]  # JWST data models (DATAMODL) read into this family
    product_types: tuple[str, ...]  # product types (MAST subgroups, file suffixes) of those models
    packet: str  # what one packet (one ``seq``) is, for the docs and the UI
    stream_table: str  # the SQL table consumers read
    stream_columns: tuple[str, ...]  # the record columns a stream row carries, in table order

    @property
    def partitions_name(self) -> str:
        """Name of the family's dynamic partitions (its observations)."""
        return f"{self.name}_observations"


SPECTRA = Family(
    name="spectra",
    schema=SPECTRA_SCHEMA,
    models=("MultiSpecModel",),
    product_types=("x1dints", "x1d"),
    packet="one integration's spectrum: one row per wavelength bin",
    stream_table="hwosim_spectra_rows",
    stream_columns=("seq", "integration", "channel", "wavelength", "flux", "flux_error", "dq", "event_time"),
)
IMAGES = Family(
    name="images",
    schema=IMAGE_TILE_SCHEMA,
    models=("ImageModel", "CubeModel", "SlitModel", "MultiSlitModel"),
    product_types=("cal", "calints", "i2d", "rate", "rateints", "s2d"),
    packet="one square tile of one frame (image, integration or slit), pixel planes as bytes",
    stream_table="hwosim_image_packets",
    stream_columns=(
        "seq",
        "frame",
        "source",
        "y0",
        "x0",
        "ny",
        "nx",
        "sci",
        "err",
        "dq",
        "wavelength",
        "event_time",
    ),
)
FAMILIES: dict[str, Family] = {f.name: f for f in (SPECTRA, IMAGES)}
FamilyName = Literal["spectra", "images"]  # the keys of FAMILIES, as a type (the models of the config files)
if get_args(FamilyName) != tuple(FAMILIES):
    raise AssertionError(f"records.FamilyName {get_args(FamilyName)} does not list the families {tuple(FAMILIES)}")
SUPPORTED_PRODUCT_TYPES = tuple(t for f in FAMILIES.values() for t in f.product_types)
SUPPORTED_MODELS = {model: f.name for f in FAMILIES.values() for model in f.models}


def family_of_product_type(product_type: str) -> Family:
    """The family a product type is read into (KeyError naming the supported types)."""
    for family in FAMILIES.values():
        if product_type in family.product_types:
            return family
    raise KeyError(f"product type {product_type!r} is not supported: {', '.join(SUPPORTED_PRODUCT_TYPES)}")


def empty(schema: dict[str, PolarsDataType]) -> pl.DataFrame:
    """An empty frame with the given schema (for tests and edge cases)."""
    return pl.DataFrame(schema=schema)


def complete(table: pl.DataFrame, family: str) -> pl.DataFrame:
    """``table`` with the family's optional columns added where missing (NaN
    for spectra, null planes for images), in schema order: for tables made by
    hand (tests, benchmarks, synthetic data)."""
    schema = FAMILIES[family].schema
    fill = math.nan if family == "spectra" else None
    missing = [pl.lit(fill, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in table.columns]
    return table.with_columns(missing).select(list(schema))
