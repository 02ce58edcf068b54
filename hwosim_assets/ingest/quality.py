"""Independent counts used by the bronze checks.

The NaN check must not trust our own reader, so the source side is counted
straight from astropy's read of the FITS file, and the bronze side from the
table; if the reader ever introduced a NaN, the two would differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from astropy.io import fits

from hwosim_assets.records import PIXEL_DTYPES

SPECTRA_VALUE_COLUMNS = {"wavelength": "WAVELENGTH", "flux": "FLUX", "flux_error": "FLUX_ERROR"}
IMAGE_VALUE_PLANES = ("sci", "err")


def source_nan_counts(paths: list[Path], family: str) -> dict[str, int]:
    """NaN count per bronze column, read from the FITS files with astropy."""
    counts = dict.fromkeys(SPECTRA_VALUE_COLUMNS if family == "spectra" else IMAGE_VALUE_PLANES, 0)
    for path in paths:
        with fits.open(path, memmap=True) as hdul:
            for hdu in hdul:
                if family == "spectra" and hdu.name == "EXTRACT1D":
                    for col, fits_col in SPECTRA_VALUE_COLUMNS.items():
                        counts[col] += int(np.isnan(np.asarray(hdu.data[fits_col], dtype=float)).sum())
                elif family == "images" and hdu.name.lower() in counts and hdu.data is not None:
                    counts[hdu.name.lower()] += int(np.isnan(hdu.data).sum())
    return counts


def bronze_nan_counts(table: pl.DataFrame, family: str) -> dict[str, int]:
    """NaN count per value column of a bronze table (pixel payloads decoded)."""
    if family == "spectra":
        return {col: int(table[col].is_nan().sum()) for col in SPECTRA_VALUE_COLUMNS}
    return {
        plane: sum(int(np.isnan(np.frombuffer(payload, dtype=PIXEL_DTYPES[plane])).sum()) for payload in table[plane])
        for plane in IMAGE_VALUE_PLANES
    }
