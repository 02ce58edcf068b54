"""JWST FITS products -> bronze tidy tables (records.SPECTRA_SCHEMA, IMAGE_TILE_SCHEMA).

Which reader applies is decided from each file's headers (``products.identify``:
DATAMODL and the extensions present), never from its name, so a renamed
product reads the same. The values in the tables are astropy's, bit for bit:
floats are only byte-swapped to native order (float32 columns widened to
float64, which is exact), and DQ keeps its bits (see ``_dq_int32`` and
``_image_decoder``). The bronze checks and the perturbation truth masks rely
on that: any later change to a value must be one we made on purpose.

Anything wrong with a file raises ``FitsProductError`` naming the file and
the problem, so a failed asset run says which download to look at.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import polars as pl
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from hwosim_assets.ingest.products import (
    HEADER_FACTS,
    SCIENCE_FACTS,
    FitsProductError,
    ProductInfo,
    UnsupportedProductError,
    check_complete,
    file_errors,
    identify,
    identify_headers,
    raise_warnings,
    verify_fits,
    verify_product,
)
from hwosim_assets.records import IMAGE_TILE_SCHEMA, PIXEL_DTYPES, SPECTRA_SCHEMA, empty

__all__ = [
    "FitsProductError",
    "UnsupportedProductError",
    "assemble_frame",
    "header_facts",
    "read_family",
    "read_images",
    "read_spectra",
    "tile_pixels",
]

# bronze column -> EXTRACT1D column
SPECTRA_COLUMNS = {"wavelength": "WAVELENGTH", "flux": "FLUX", "flux_error": "FLUX_ERROR", "dq": "DQ"}
# optional bronze column -> EXTRACT1D column (NaN where a product has none)
OPTIONAL_SPECTRA_COLUMNS = {
    "flux_var_poisson": "FLUX_VAR_POISSON",
    "flux_var_rnoise": "FLUX_VAR_RNOISE",
    "flux_var_flat": "FLUX_VAR_FLAT",
    "surf_bright": "SURF_BRIGHT",
    "npixels": "NPIXELS",
}


def _opened(
    paths: Iterable[str | os.PathLike], family: str, stack: ExitStack, **open_kwargs: Any
) -> list[tuple[ProductInfo, fits.HDUList]]:
    """Each file opened (closed by ``stack``), identified from its headers and of
    ``family``, none twice, sorted by the product's own name (the order of
    segments and exposures). One open per file serves both."""
    files = [Path(p) for p in paths]
    for name, count in Counter(p.name for p in files).items():
        if count > 1:
            raise FitsProductError(f"{name}: given {count} times")
    opened = []
    for path in files:
        hdul = stack.enter_context(_open(path, **open_kwargs))
        with _reading(path):
            info = identify_headers(path, hdul[0].header, [(hdu.name.upper(), hdu.header) for hdu in hdul[1:]])
            verify_product(hdul, path)
        if info.family != family:
            raise FitsProductError(
                f"{path}: a {info.model} product ({info.product_type}) is read as {info.family}, not {family}"
            )
        opened.append((info, hdul))
    return sorted(opened, key=lambda o: (o[0].name, o[0].path.name))


@contextmanager
def _open(path: Path, **kwargs: Any) -> Iterator[fits.HDUList]:
    """Open a product memory-mapped; every failure becomes a FitsProductError naming the file.

    A truncated file is refused (``products.check_complete``), so is one
    astropy warns about while opening it or whose verification fails
    (``products.verify_fits``). What is done with the file afterwards is
    guarded by ``_reading``, per file, so an error names the file it is about
    even while other files are open.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyWarning)
        try:
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False, **kwargs)
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError... for garbage
            raise FitsProductError(f"{path}: not a readable FITS file ({type(exc).__name__}: {exc})") from exc
    try:
        with _reading(path):
            check_complete(hdul, path)
            raise_warnings(caught, path)
            verify_fits(hdul, path)
        yield hdul
    finally:
        hdul.close()


@contextmanager
def _reading(path: Path, where: str | None = None) -> Iterator[None]:
    """Work on one file (or one HDU, ``where``): astropy's warnings are errors,
    and any exception becomes a FitsProductError naming the file (and HDU)."""
    with warnings.catch_warnings(), file_errors(path, where):
        warnings.simplefilter("error", AstropyWarning)
        yield


def _has(hdul: fits.HDUList, name: str) -> bool:
    return any(hdu.name == name for hdu in hdul)


def _check_row_width(hdu: fits.BinTableHDU, where: str) -> None:
    """The columns' formats (TFORMn) add up to the row width NAXIS1 says.

    astropy does not check this: with one TFORM edited it reads every column
    after it at the wrong offset, or past the end of the row, and neither
    its verification nor its read complains.
    """
    width = hdu.columns.dtype.itemsize
    if width != hdu.header["NAXIS1"]:
        raise FitsProductError(
            f"{where}: its columns (TFORMn) need {width} bytes a row, NAXIS1 says {hdu.header['NAXIS1']} (corrupt header)"
        )


def _header_float(header: fits.Header, key: str, path: Path) -> float:
    if key not in header:
        raise FitsProductError(f"{path}: primary header has no {key}")
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FitsProductError(f"{path}: primary header {key}={value!r} is not a number")
    return float(value)


@overload
def _header_int(header: fits.Header, key: str, where: str, default: int) -> int: ...


@overload
def _header_int(header: fits.Header, key: str, where: str, default: None = None) -> int | None: ...


def _header_int(header: fits.Header, key: str, where: str, default: int | None = None) -> int | None:
    """An integer keyword (NINTS, INTSTART, SPORDER, INT_NUM...): a value of another type is an error."""
    value = header.get(key)
    if value is None or isinstance(value, fits.card.Undefined):
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FitsProductError(f"{where}: {key} = {value!r} is not an integer")
    return int(value)


def _exposure_mid(header: fits.Header, path: Path) -> float:
    """MJD (UTC) at mid-exposure: EXPMID, else halfway from EXPSTART to EXPEND."""
    if "EXPMID" in header:
        return _header_float(header, "EXPMID", path)
    return (_header_float(header, "EXPSTART", path) + _header_float(header, "EXPEND", path)) / 2


def _mid_times(hdul: fits.HDUList, path: Path) -> Callable[[int], float]:
    """MJD (UTC) at mid-integration, by 1-based integration number.

    From the INT_TIMES table (``int_mid_MJD_UTC`` matched on
    ``integration_number``). Only when a file has no INT_TIMES rows (older
    pipeline versions, or a table left empty) are the times interpolated from
    the primary header: integration n of NINTS is centred at
    EXPSTART + (n - 0.5)(EXPEND - EXPSTART)/NINTS, which ignores the short
    resets between integrations.
    """
    table = hdul["INT_TIMES"].data if _has(hdul, "INT_TIMES") else None
    if table is not None and len(table):
        where = f"{path}: HDU {hdul.index_of('INT_TIMES')} (INT_TIMES)"
        _check_row_width(hdul["INT_TIMES"], where)
        for column, kinds in (("integration_number", "iu"), ("int_mid_MJD_UTC", "f")):
            if column not in table.names:
                raise FitsProductError(f"{where} has no column {column!r}")
            if table[column].dtype.kind not in kinds or table[column].ndim != 1:
                raise FitsProductError(f"{where}: column {column} is {table[column].dtype}, expected {kinds!r} scalars")
        numbers = table["integration_number"].tolist()
        if len(set(numbers)) != len(numbers):
            raise FitsProductError(f"{where}: integration_number repeats a value")
        mids = dict(zip(numbers, table["int_mid_MJD_UTC"].tolist(), strict=False))

        def from_table(n: int) -> float:
            if n not in mids:
                raise FitsProductError(f"{path}: INT_TIMES has no row for integration {n}")
            return mids[n]

        return from_table

    header = hdul[0].header
    start, end = _header_float(header, "EXPSTART", path), _header_float(header, "EXPEND", path)
    nints = _header_int(header, "NINTS", f"{path}: primary header")
    if nints is None:
        raise FitsProductError(f"{path}: primary header has no NINTS")
    if nints < 1:
        raise FitsProductError(f"{path}: primary header NINTS={nints}, expected at least 1")
    return lambda n: start + (n - 0.5) * (end - start) / nints


def _expected_integrations(header: fits.Header, path: Path) -> range | None:
    """The integrations a per-integration product must hold: INTSTART..INTEND
    (a segment), else 1..NINTS; None when the header says neither.

    The three must agree (1 <= INTSTART <= INTEND <= NINTS): a segment of an
    exposure cannot hold integrations the exposure does not have.
    """
    where = f"{path}: primary header"
    nints, start, end = (_header_int(header, key, where) for key in ("NINTS", "INTSTART", "INTEND"))
    if nints is not None and nints < 1:
        raise FitsProductError(f"{where}: NINTS = {nints}, expected at least 1")
    if (start is None) != (end is None):
        raise FitsProductError(f"{where}: INTSTART = {start} and INTEND = {end}: one without the other")
    if start is not None and end is not None:
        if not 1 <= start <= end or (nints is not None and end > nints):
            raise FitsProductError(
                f"{where}: INTSTART = {start}, INTEND = {end}, NINTS = {nints}: expected 1 <= INTSTART <= INTEND <= NINTS"
            )
        return range(start, end + 1)
    return range(1, nints + 1) if nints is not None else None


# --- spectra -----------------------------------------------------------------


@dataclass
class _Spectrum:
    """One integration's spectrum in one spectral order, from one table HDU (or row)."""

    integration: int
    order: int
    position: tuple[int, int, int]  # (file, HDU, row): keeps the files' own order for ties
    event_time: float
    values: dict[str, np.ndarray]  # bronze column -> 1-D array


def _float64(values: np.ndarray, where: str) -> np.ndarray:
    """A float column in native float64 (exact for float32 and float64 input).

    The spectral-table schema makes these float64; an integer column where a
    float one belongs is an edited TFORM, not something to convert."""
    if values.dtype.kind != "f":
        raise FitsProductError(f"{where} is {values.dtype}, expected a floating-point column")
    return np.asarray(values, dtype=np.float64)


def _dq_int32(values: np.ndarray, where: str) -> np.ndarray:
    """DQ as int32 with the same 32 bits: JWST stores uint32 flags, bronze keeps Int32.

    Flags are bits, so a uint32 is reinterpreted, not converted: bit 31
    (REFERENCE_PIXEL) becomes the sign bit, and ``.view(np.uint32)`` gives the
    original flags back.

    The spectral-table schema makes DQ uint32 (in FITS: TFORM J with TZERO =
    2**31); anything else, an int32 column included, is refused: without its
    TZERO the same bytes are other flags, and astropy reads them without a word.
    """
    if values.dtype.kind != "u" or values.dtype.itemsize != 4:
        raise FitsProductError(f"{where} is {values.dtype}, expected uint32 flags (TFORM J with TZERO = 2**31)")
    return np.asarray(values).astype(np.uint32).view(np.int32)


# The classic EXTRACT1D table (stdatamodels spectable.schema): one spectrum
# per table, these columns and no others. (The jwst >= 1.18 layout, one row
# per integration with an INT_NUM column, has columns of its own.)
SPECTABLE_COLUMNS = frozenset(
    (
        "WAVELENGTH",
        "FLUX",
        "FLUX_ERROR",
        "FLUX_VAR_POISSON",
        "FLUX_VAR_RNOISE",
        "FLUX_VAR_FLAT",
        "SURF_BRIGHT",
        "SB_ERROR",
        "SB_VAR_POISSON",
        "SB_VAR_RNOISE",
        "SB_VAR_FLAT",
        "DQ",
        "BACKGROUND",
        "BKGD_ERROR",
        "BKGD_VAR_POISSON",
        "BKGD_VAR_RNOISE",
        "BKGD_VAR_FLAT",
        "NPIXELS",
    )
)


def _column_names(hdu: fits.BinTableHDU, where: str) -> set[str]:
    """The table's column names, upper case: every column named, none twice,
    and in a classic table only the schema's. An optional column (FLUX_VAR_*,
    SURF_BRIGHT, NPIXELS) reads as NaN where a product lacks it, so a column
    whose TTYPE was damaged must not pass for a missing one."""
    names = []
    for number in range(1, hdu.header["TFIELDS"] + 1):
        name = hdu.header.get(f"TTYPE{number}")
        if not isinstance(name, str) or not name.strip():
            raise FitsProductError(f"{where}: column {number} has no name (TTYPE{number} = {name!r})")
        names.append(name.strip().upper())
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FitsProductError(f"{where}: column names {repeated} appear more than once")
    if "INT_NUM" not in names:
        unknown = [name for name in names if name not in SPECTABLE_COLUMNS]
        if unknown:
            raise FitsProductError(
                f"{where}: columns {unknown} are not columns of a JWST spectral table (stdatamodels spectable schema)"
            )
    return set(names)


def _table_columns(data: fits.FITS_rec, names: set[str], where: str) -> dict[str, np.ndarray]:
    """Bronze columns of one EXTRACT1D table: the required ones (an error if
    missing) and the optional ones (NaN where the table has none)."""
    columns = {}
    for bronze, fits_name in SPECTRA_COLUMNS.items():
        if fits_name not in names:
            raise FitsProductError(f"{where} has no column {fits_name!r}")
        convert = _dq_int32 if bronze == "dq" else _float64
        columns[bronze] = convert(np.asarray(data[fits_name]), f"{where} column {fits_name}")
    shape = columns["wavelength"].shape
    for bronze, fits_name in OPTIONAL_SPECTRA_COLUMNS.items():
        if fits_name in names:
            columns[bronze] = _float64(np.asarray(data[fits_name]), f"{where} column {fits_name}")
        else:
            columns[bronze] = np.full(shape, np.nan)
    for bronze, values in columns.items():
        if values.shape != shape:
            raise FitsProductError(f"{where}: column {bronze} has shape {values.shape}, WAVELENGTH {shape}")
    return columns


def _spectra_in_file(hdul: fits.HDUList, info: ProductInfo, file_index: int) -> list[_Spectrum]:
    """Every spectrum in one MultiSpecModel file, in either layout.

    ``x1dints``, classic layout: one EXTRACT1D table per integration and
    spectral order, integration number from the INT_NUM keyword (else counted
    from INTSTART per order, as EXTVER runs). jwst >= 1.18 layout: one
    EXTRACT1D table per order with one row per integration, array columns and
    an INT_NUM column; rows are padded to a common length and NELEMENTS says
    how much is data. ``x1d``: every table is the one integration of the
    exposure (one packet, at mid-exposure), spectral orders and slits in turn.

    An ``x1dints`` must hold every integration its header announces
    (INTSTART..INTEND, else 1..NINTS) in every spectral order: a file cut at
    an HDU boundary is otherwise still a valid FITS file.
    """
    path = info.path
    tables = [(i, hdu) for i, hdu in enumerate(hdul) if hdu.name == "EXTRACT1D"]
    if not tables:
        raise FitsProductError(f"{path}: no EXTRACT1D extension")
    header = hdul[0].header
    per_integration = info.product_type == "x1dints"
    time_of = _mid_times(hdul, path) if per_integration else None
    first = _header_int(header, "INTSTART", f"{path}: primary header", default=1)
    exposure_mid = None if per_integration else _exposure_mid(header, path)
    seen_per_order: Counter[int] = Counter()
    lengths: dict[int, tuple[int, int]] = {}  # classic x1dints: spectral order -> (length, HDU) of its first table
    spectra: list[_Spectrum] = []
    for index, hdu in tables:
        where = f"{path}: EXTRACT1D (HDU {index})"
        with _reading(path, where):
            found = _spectra_in_table(hdu, index, where, file_index, first, seen_per_order, time_of, exposure_mid)
        classic = "INT_NUM" not in {name.upper() for name in hdu.columns.names}
        if per_integration and classic and found:
            # One table per integration: every integration of an order is extracted on the same grid.
            n = len(found[0].values["wavelength"])
            length, other = lengths.setdefault(found[0].order, (n, index))
            if n != length:
                raise FitsProductError(
                    f"{where}: {n} rows, HDU {other} of the same spectral order {length} (every integration of "
                    "an order has the same wavelength grid: a corrupt NAXIS2?)"
                )
        spectra += found
    if per_integration:
        _check_integrations(spectra, _expected_integrations(header, path), path)
    return spectra


def _integer_column(data: fits.FITS_rec, name: str, where: str) -> list[int]:
    values = np.asarray(data[name])
    if values.dtype.kind not in "iu" or values.ndim != 1:
        raise FitsProductError(f"{where}: column {name} is {values.dtype} {values.shape[1:]}, expected integer scalars")
    return values.tolist()


def _spectra_in_table(
    hdu: fits.hdu.base.ExtensionHDU,
    index: int,
    where: str,
    file_index: int,
    first: int,
    seen_per_order: Counter[int],
    time_of: Callable[[int], float] | None,
    exposure_mid: float | None,
) -> list[_Spectrum]:
    """The spectra of one EXTRACT1D table (see ``_spectra_in_file``)."""
    if not isinstance(hdu, fits.BinTableHDU):
        raise FitsProductError(f"{where} is not a binary table")
    names = _column_names(hdu, where)  # from the header: before astropy parses the columns
    _check_row_width(hdu, where)
    order = _header_int(hdu.header, "SPORDER", where, default=1)
    data = hdu.data

    def timed(integration: int) -> float:
        """Mid-integration (x1dints), else mid-exposure (x1d): ``_spectra_in_file`` gives one of the two."""
        if time_of is not None:
            return time_of(integration)
        if exposure_mid is None:
            raise FitsProductError(f"{where}: neither integration times nor an exposure time")
        return exposure_mid

    spectra: list[_Spectrum] = []
    if data is None or len(data) == 0:
        return spectra
    columns = _table_columns(data, names, where)
    if columns["wavelength"].ndim == 2 and "INT_NUM" in names:  # one row per integration
        width = columns["wavelength"].shape[1]
        widths = _integer_column(data, "NELEMENTS", where) if "NELEMENTS" in names else [width] * len(data)
        if any(not 0 <= w <= width for w in widths):
            raise FitsProductError(f"{where}: NELEMENTS outside 0..{width}, the width of its array columns")
        for row, (integration, w) in enumerate(zip(_integer_column(data, "INT_NUM", where), widths, strict=False)):
            values = {name: column[row, :w] for name, column in columns.items()}
            spectra.append(_Spectrum(integration, order, (file_index, index, row), timed(integration), values))
    elif columns["wavelength"].ndim == 1:
        if time_of:
            seen_per_order[order] += 1
            integration = _header_int(hdu.header, "INT_NUM", where, default=first - 1 + seen_per_order[order])
        else:
            integration = first
        spectra.append(_Spectrum(integration, order, (file_index, index, 0), timed(integration), columns))
    else:
        shape = columns["wavelength"].shape
        raise FitsProductError(f"{where}: WAVELENGTH has shape {shape} and there is no INT_NUM column")
    return spectra


def _check_integrations(spectra: list[_Spectrum], expected: range | None, path: Path) -> None:
    """Each spectral order holds each integration the header announces, once."""
    if expected is None:
        return
    wanted = set(expected)
    by_order: dict[int, Counter[int]] = {}
    for s in spectra:
        by_order.setdefault(s.order, Counter())[s.integration] += 1
    for order, counts in sorted(by_order.items()):
        found = set(counts)
        twice = sorted(n for n, c in counts.items() if c > 1)
        if found != wanted or twice:
            missing, extra = sorted(wanted - found), sorted(found - wanted)
            raise FitsProductError(
                f"{path}: spectral order {order} holds {len(found)} integrations, the header announces "
                f"{expected.start}..{expected.stop - 1} ({len(expected)})"
                + (f"; missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "")
                + (f"; unexpected {extra[:5]}" if extra else "")
                + (f"; more than once {twice[:5]}" if twice else "")
                + " (truncated or edited file?)"
            )


def read_spectra(paths: Iterable[str | os.PathLike]) -> pl.DataFrame:
    """All MultiSpecModel files (x1dints, x1d) of one observation -> one table in SPECTRA_SCHEMA.

    Rows are sorted by integration; ``seq`` is the 0-based index of the
    integration among those present, and ``channel`` runs across everything
    of that integration: spectral orders in order, then files (e.g. NIRSpec
    NRS1 before NRS2) by product name. ``event_time`` comes from INT_TIMES;
    see ``_mid_times`` for the header fallback.
    """
    spectra: list[_Spectrum] = []
    with ExitStack() as stack:
        for file_index, (info, hdul) in enumerate(_opened(paths, "spectra", stack)):
            with _reading(info.path):
                spectra += _spectra_in_file(hdul, info, file_index)
    if not spectra:
        return empty(SPECTRA_SCHEMA)
    spectra.sort(key=lambda s: (s.integration, s.order, s.position))

    integrations = np.array([s.integration for s in spectra], dtype=np.int64)
    lengths = np.array([len(s.values["wavelength"]) for s in spectra], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    first_of_integration = starts[np.searchsorted(integrations, integrations, side="left")]
    seq = np.unique(integrations, return_inverse=True)[1]
    table = {
        "seq": np.repeat(seq, lengths).astype(np.int64),
        "integration": np.repeat(integrations, lengths).astype(np.int32),
        "channel": (np.arange(lengths.sum()) - np.repeat(first_of_integration, lengths)).astype(np.int32),
        "event_time": np.repeat([s.event_time for s in spectra], lengths).astype(np.float64),
    }
    for name in (*SPECTRA_COLUMNS, *OPTIONAL_SPECTRA_COLUMNS):
        table[name] = np.concatenate([s.values[name] for s in spectra])
    return pl.DataFrame(table, schema=SPECTRA_SCHEMA)


# --- images ------------------------------------------------------------------


def _image_decoder(hdu: fits.ImageHDU, plane: str, where: str) -> Callable[[np.ndarray], np.ndarray]:
    """Turn raw (unscaled, memory-mapped) frames of a plane into PIXEL_DTYPES[plane].

    Files are opened with ``do_not_scale_image_data`` because astropy refuses
    to memory-map scaled data, and JWST stores its uint32 DQ as int32 with
    BZERO = 2**31. Adding 2**31 modulo 2**32 is flipping the top bit, so we
    do that per frame, lazily, with exactly the result of astropy's scaled read.
    Any other scaling is not something JWST writes, and is refused.
    """
    header = hdu.header
    raw = hdu.data.dtype
    if header.get("BSCALE", 1) != 1:
        raise FitsProductError(f"{where}: scaled data (BSCALE={header['BSCALE']}) is not supported")
    bzero = header.get("BZERO", 0)
    unsigned = raw.kind == "i" and bzero == 2 ** (8 * raw.itemsize - 1)
    if bzero and not unsigned:
        raise FitsProductError(f"{where}: BZERO={bzero} on {raw} data is not supported")
    target = np.dtype(PIXEL_DTYPES[plane])
    stored = np.dtype(raw.str.replace("i", "u")) if unsigned else raw
    if target.kind == "f" and (stored.kind != "f" or stored.itemsize != 4):
        raise FitsProductError(f"{where} holds {stored}, expected float32")
    if target.kind == "u" and (stored.kind != "u" or stored.itemsize != 4):
        raise FitsProductError(f"{where} holds {stored}, expected uint32 data-quality flags (BITPIX 32, BZERO 2**31)")
    top_bit = np.array(1 << (8 * raw.itemsize - 1), dtype=stored) if unsigned else None

    def decode(frame: np.ndarray) -> np.ndarray:
        if unsigned:
            frame = frame.view(stored) ^ top_bit
        return np.ascontiguousarray(frame, dtype=target)

    return decode


def _plane_hdus(hdul: fits.HDUList, version: int | None) -> dict[str, fits.ImageHDU]:
    """The pixel planes of one frame set: SCI, ERR, DQ and the optional planes,
    of EXTVER ``version`` (a slit of a MultiSlitModel) or the first of each name."""
    hdus = {}
    for plane in PIXEL_DTYPES:
        name = plane.upper()
        for hdu in hdul:
            if hdu.name == name and (version is None or hdu.ver == version):
                if hdu.data is not None:
                    hdus[plane] = hdu
                break
    return hdus


def _frames(hdul: fits.HDUList, info: ProductInfo) -> Iterator[tuple[float, dict[str, np.ndarray]]]:
    """(event time, {plane: 2-D array}) for each frame of an image-family product.

    SCI and ERR are required; a missing DQ (i2d and s2d products have WHT and
    CON instead) gives all-zero flags; WAVELENGTH and the VAR_* planes are
    kept where present. ImageModel and SlitModel: one frame at mid-exposure;
    CubeModel (calints, rateints): one frame per integration, timed by
    ``_mid_times``; MultiSlitModel: one frame per slit (SCI EXTVER), each of
    its own shape, at mid-exposure. Frames are decoded one at a time from the
    memory map.
    """
    path = info.path
    versions = [hdu.ver for hdu in hdul if hdu.name == "SCI"] if info.model == "MultiSlitModel" else [None]
    header = hdul[0].header
    for version in versions:
        label = f" (slit EXTVER {version})" if version is not None else ""
        hdus = _plane_hdus(hdul, version)
        for plane in ("sci", "err"):
            if plane not in hdus:
                raise FitsProductError(f"{path}: no {plane.upper()} image extension{label}")
        shapes = {plane: hdu.data.shape for plane, hdu in hdus.items()}
        shape = shapes["sci"]
        if any(s != shape for s in shapes.values()):
            raise FitsProductError(f"{path}: planes differ in shape{label}: {shapes}")
        want = 3 if info.model == "CubeModel" else 2
        if len(shape) != want:
            raise FitsProductError(f"{path}: SCI has {len(shape)} dimensions, a {info.model} needs {want}")
        if want == 3:
            expected = _expected_integrations(header, path)
            if expected is not None and shape[0] != len(expected):
                raise FitsProductError(
                    f"{path}: SCI holds {shape[0]} integrations, the header announces "
                    f"{expected.start}..{expected.stop - 1} ({len(expected)}) (truncated or edited file?)"
                )
        decoders = {plane: _image_decoder(hdu, plane, f"{path}: {plane.upper()}{label}") for plane, hdu in hdus.items()}
        zeros = np.zeros(shape[-2:], dtype=PIXEL_DTYPES["dq"])

        def frame(
            index: tuple, decoders: dict = decoders, hdus: dict = hdus, zeros: np.ndarray = zeros
        ) -> dict[str, np.ndarray]:
            planes = {plane: decoders[plane](hdus[plane].data[index]) for plane in hdus}
            planes.setdefault("dq", zeros)
            return planes

        if want == 2:
            yield _exposure_mid(header, path), frame(())
            continue
        time_of = _mid_times(hdul, path)
        first = _header_int(header, "INTSTART", f"{path}: primary header", default=1)
        for i in range(shape[0]):
            yield time_of(first + i), frame((i,))


def _tiles(planes: dict[str, np.ndarray], tile_size: int) -> dict[str, list]:
    """One frame cut into tiles in row-major order: origins, shapes and pixel
    bytes (None for an optional plane the frame does not have)."""
    ny, nx = planes["sci"].shape
    tiles: dict[str, list] = {name: [] for name in ("y0", "x0", "ny", "nx", *PIXEL_DTYPES)}
    for y0 in range(0, ny, tile_size):
        for x0 in range(0, nx, tile_size):
            tile = np.s_[y0 : y0 + tile_size, x0 : x0 + tile_size]
            th, tw = planes["sci"][tile].shape
            for name, value in (("y0", y0), ("x0", x0), ("ny", th), ("nx", tw)):
                tiles[name].append(value)
            for plane in PIXEL_DTYPES:
                tiles[plane].append(planes[plane][tile].tobytes() if plane in planes else None)
    return tiles


def read_images(paths: Iterable[str | os.PathLike], tile_size: int = 128) -> pl.DataFrame:
    """Image-family products (ImageModel, CubeModel, SlitModel, MultiSlitModel)
    of one observation -> tiles in IMAGE_TILE_SCHEMA.

    Products are taken in order of their names, frames in file order, and each
    frame is cut into ``tile_size`` squares in row-major order (edge tiles are
    smaller); ``seq`` and ``frame`` count across all of them from 0. Payloads
    are the raw little-endian pixel bytes (``tile_pixels`` decodes them);
    ``source`` is the product's own name (its FILENAME header), so a renamed
    copy gives the same table.

    Each frame becomes its own polars chunk as soon as it is cut, so the peak
    memory is the table plus one frame, not twice the table.
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    chunks = [empty(IMAGE_TILE_SCHEMA)]
    seq = frame = 0
    with ExitStack() as stack:
        for info, hdul in _opened(paths, "images", stack, do_not_scale_image_data=True):
            with _reading(info.path):
                for event_time, planes in _frames(hdul, info):
                    tiles = _tiles(planes, tile_size)
                    n = len(tiles["y0"])
                    keys = {"seq": range(seq, seq + n), "frame": [frame] * n, "source": [info.name] * n}
                    frame_table = pl.DataFrame(
                        {**keys, **tiles, "event_time": [event_time] * n}, schema=IMAGE_TILE_SCHEMA
                    )
                    chunks.append(frame_table)
                    seq, frame = seq + n, frame + 1
    return pl.concat(chunks, rechunk=False)


READERS: dict[str, Callable[..., pl.DataFrame]] = {
    "spectra": lambda paths, tile_size: read_spectra(paths),
    "images": read_images,
}


def read_family(family: str, paths: Iterable[str | os.PathLike], tile_size: int = 128) -> pl.DataFrame:
    """The bronze table of one family (records.FAMILIES) from its products."""
    return READERS[family](list(paths), tile_size)


def header_facts(paths: Iterable[str | os.PathLike]) -> pl.DataFrame:
    """One row per product: its name, model, family, product type,
    observation and the header facts the physics downstream needs
    (products.HEADER_FACTS, SCIENCE_FACTS; null where a header lacks one).
    This is the bronze metadata record of an observation."""
    kinds = {**HEADER_FACTS, **SCIENCE_FACTS}
    polars_type = {str: pl.Utf8, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}
    schema = {
        "product": pl.Utf8,
        "file": pl.Utf8,
        "model": pl.Utf8,
        "family": pl.Utf8,
        "product_type": pl.Utf8,
        "obs_id": pl.Utf8,
        **{key.lower(): polars_type[kind] for key, kind in kinds.items()},
    }
    rows = []
    for path in paths:
        info = identify(path)
        rows.append(
            {
                "product": info.name,
                "file": info.path.name,
                "model": info.model,
                "family": info.family,
                "product_type": info.product_type,
                "obs_id": info.obs_id,
                **{key.lower(): info.facts.get(key) for key in kinds},
            }
        )
    return pl.DataFrame(rows, schema=schema, orient="row").sort("product", "file")


def tile_pixels(tile: Mapping | pl.DataFrame, plane: str) -> np.ndarray:
    """A tile's payload for ``plane`` ("sci", "err", "dq") as a (ny, nx) array.

    ``tile`` is a row as a mapping (``iter_rows(named=True)``) or a one-row frame.
    """
    if isinstance(tile, pl.DataFrame):
        if len(tile) != 1:
            raise ValueError(f"expected one tile, got {len(tile)} rows")
        tile = tile.row(0, named=True)
    return np.frombuffer(tile[plane], dtype=PIXEL_DTYPES[plane]).reshape(tile["ny"], tile["nx"])


def assemble_frame(table: pl.DataFrame, frame: int, plane: str) -> np.ndarray:
    """Put one frame of a tile table back together; every pixel must come from exactly one tile."""
    tiles = table.filter(pl.col("frame") == frame)
    if tiles.is_empty():
        raise ValueError(f"no tiles for frame {frame}")
    bottom, right = (tiles["y0"] + tiles["ny"]).max(), (tiles["x0"] + tiles["nx"]).max()
    if not isinstance(bottom, int) or not isinstance(right, int):
        raise ValueError(f"tiles of frame {frame} have no origins")
    ny, nx = bottom, right
    out = np.zeros((ny, nx), dtype=PIXEL_DTYPES[plane])
    covered = np.zeros((ny, nx), dtype=np.int32)
    for tile in tiles.iter_rows(named=True):
        where = np.s_[tile["y0"] : tile["y0"] + tile["ny"], tile["x0"] : tile["x0"] + tile["nx"]]
        out[where] = tile_pixels(tile, plane)
        covered[where] += 1
    if not (covered == 1).all():
        raise ValueError(f"tiles of frame {frame} overlap or leave gaps")
    return out
