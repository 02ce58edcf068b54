"""What a FITS file is, from its headers: its JWST data model, the family it
is read into, its product type and its observation.

The JWST pipeline writes the name of its data model in ``DATAMODL``, and the
model (with the extensions present) says how to read the file. So that, and
not the file-name suffix, decides: a product saved under another name reads
the same. Whatever HWOsim cannot read (raw ramps, IFU cubes, files without a
data model, other telescopes) is refused here with an error that names the
file, its DATAMODL and TELESCOP, and the models that are supported, before
anything lands in the lake.

The observation id is derived from the headers too, by one rule for every
source (sample products, MAST, the user's own files), so the same file always
lands in the same partition.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from astropy.io import fits
from astropy.io.fits.card import Card
from astropy.utils.exceptions import AstropyWarning

from hwosim_assets.records import FAMILIES, SUPPORTED_MODELS

if TYPE_CHECKING:
    from astropy.io.fits.hdu.base import _BaseHDU


class FitsProductError(ValueError):
    """A FITS product that cannot be read; the message names the file and what is wrong."""


class UnsupportedProductError(FitsProductError):
    """A readable FITS file that is not a product HWOsim supports."""


def supported_models_text() -> str:
    """'MultiSpecModel (x1dints, x1d); ImageModel, CubeModel, ... (cal, ...)': for error messages."""
    return "; ".join(f"{', '.join(f.models)} ({', '.join(f.product_types)})" for f in FAMILIES.values())


# Primary-header facts kept per product (bronze metadata record): what the
# perturbations' physics and a reader of the data need to know about it.
HEADER_FACTS: dict[str, type] = {
    "TELESCOP": str,
    "INSTRUME": str,
    "DETECTOR": str,
    "EXP_TYPE": str,
    "SUBARRAY": str,
    "READPATT": str,
    "FILTER": str,
    "PUPIL": str,
    "GRATING": str,
    "FXD_SLIT": str,
    "PROGRAM": str,
    "OBSERVTN": str,
    "TARGNAME": str,
    "CAL_VER": str,
    "TSOVISIT": bool,
    "NINTS": int,
    "INTSTART": int,
    "INTEND": int,
    "NGROUPS": int,
    "NFRAMES": int,
    "TGROUP": float,  # s
    "EFFINTTM": float,  # s, effective integration time
    "EFFEXPTM": float,  # s, effective exposure time
    "EXPSTART": float,  # MJD UTC
    "EXPMID": float,
    "EXPEND": float,
}
# From the science extension (SCI, or the first EXTRACT1D): units, flux calibration and
# the dispersion direction of spectra (DISPAXIS: 1 = along x, 2 = along y; e.g. 2 for MIRI LRS).
SCIENCE_FACTS: dict[str, type] = {"BUNIT": str, "PHOTMJSR": float, "PIXAR_SR": float, "DISPAXIS": int}

_UNSET = ("", "n/a", "none", "any", "full", "generic")

# MAST's instrument_name (instrument/mode) by JWST exposure type.
INSTRUMENT_MODES = {
    "NIS_SOSS": "NIRISS/SOSS",
    "NIS_IMAGE": "NIRISS/IMAGE",
    "NIS_WFSS": "NIRISS/WFSS",
    "NIS_AMI": "NIRISS/AMI",
    "NRS_BRIGHTOBJ": "NIRSPEC/SLIT",
    "NRS_FIXEDSLIT": "NIRSPEC/SLIT",
    "NRS_MSASPEC": "NIRSPEC/MSA",
    "NRS_IFU": "NIRSPEC/IFU",
    "NRC_TSGRISM": "NIRCAM/GRISM",
    "NRC_WFSS": "NIRCAM/GRISM",
    "NRC_TSIMAGE": "NIRCAM/IMAGE",
    "NRC_IMAGE": "NIRCAM/IMAGE",
    "MIR_IMAGE": "MIRI/IMAGE",
    "MIR_LRS-SLITLESS": "MIRI/SLITLESS",
    "MIR_LRS-FIXEDSLIT": "MIRI/SLIT",
    "MIR_MRS": "MIRI/IFU",
}


def instrument_mode(header: Mapping) -> str:
    """The instrument as MAST names it ("NIRISS/SOSS"), from EXP_TYPE; else the bare INSTRUME."""
    return INSTRUMENT_MODES.get(_value(header, "EXP_TYPE").upper()) or _value(header, "INSTRUME").upper()


@dataclass(frozen=True)
class ProductInfo:
    """What :func:`identify` found out about one file."""

    path: Path
    name: str  # the product's own name: its FILENAME header, else the file name
    model: str  # DATAMODL
    family: str  # records.FAMILIES key
    product_type: str  # x1dints, x1d, cal, calints, i2d, rate, rateints, s2d
    obs_id: str  # observation_id(primary header)
    facts: dict = field(default_factory=dict, repr=False)  # HEADER_FACTS and SCIENCE_FACTS present in the file


def _value(header: Mapping, key: str) -> str:
    return str(header.get(key, "") or "").strip()


def _fact(value: Any, kind: type) -> Any:
    if value is None or isinstance(value, fits.card.Undefined):
        return None
    try:
        if kind is bool:
            return bool(value)
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None


def partition_safe(text: str) -> str:
    """Lower case, and anything but [a-z0-9._+-] replaced by "-": Dagster
    partition keys may not hold commas or slashes, and object keys in the lake
    are built from them."""
    return re.sub(r"[^a-z0-9._+-]+", "-", text.strip().lower()).strip("-")


def observation_id(header: Mapping) -> str:
    """The observation a JWST product belongs to, from its primary header.

    The form is the pipeline's stage-3 product name without the target or
    source number, which no primary header carries:
    ``jw<program>-o<observation>_<instrument>_<optical elements>``, e.g.
    ``jw02783-o002_miri_p750l-slitlessprism``. Optical elements are FILTER,
    PUPIL and GRATING in alphabetical order (as the pipeline joins them:
    ``clear-gr700xd``, ``f444w-grismr``), then the fixed slit of fixed-slit
    exposures and a subarray other than FULL (or GENERIC). Files of one
    observation taken with other filters get other ids, as in MAST. A MAST
    stage-3 id gives the same string once its target part is removed
    (:func:`observation_id_from_mast`).
    """
    program = _value(header, "PROGRAM")
    if not program:
        raise ValueError("header has no PROGRAM keyword: not a JWST product")
    observation = _value(header, "OBSERVTN")
    if not observation:  # OBS_ID looks like V02734002001P0000000004101
        observation = _value(header, "OBS_ID")[6:9]
    value = lambda key: _value(header, key).lower()  # noqa: E731
    elements = sorted(v for v in map(value, ("FILTER", "PUPIL", "GRATING")) if v not in _UNSET)
    for key in ("FXD_SLIT", "SUBARRAY"):
        if value(key) not in _UNSET and (key != "FXD_SLIT" or value("EXP_TYPE") == "nrs_fixedslit"):
            elements.append(value(key))
    parts = [f"jw{program.zfill(5)}-o{observation.zfill(3)}", value("INSTRUME"), "-".join(elements)]
    return partition_safe("_".join(p for p in parts if p))


def observation_id_from_mast(mast_obs_id: str) -> str:
    """The observation id of a MAST observation: its stage-3 name without the
    target (``_t001``) or source (``_s00004``) part, so that it equals
    :func:`observation_id` of its files' headers. Other ids (a stage-2
    exposure listed on its own) are kept, made partition-safe."""
    return partition_safe(re.sub(r"^(jw\d{5}-[a-z]\d{3,})_(?:t\d{3}|s\d{5,})_", r"\1_", mast_obs_id.strip().lower()))


# --- identification ----------------------------------------------------------


def _product_type(model: str, primary: fits.Header, extensions: list[tuple[str, fits.Header]]) -> str:
    """The product type the archive would list this file under, from its headers.

    Processing-step keywords (S_RESAMP, S_PHOTOM) decide where present; the
    extensions and units decide where a file lost them (cut-outs made by
    hand keep the headers of an earlier step).
    """
    names = {name for name, _ in extensions}
    resampled = _value(primary, "S_RESAMP").upper() == "COMPLETE" or {"WHT", "CON"} <= names
    science = next((h for name, h in extensions if name in ("SCI", "EXTRACT1D")), fits.Header())
    calibrated = _value(primary, "S_PHOTOM").upper() == "COMPLETE" or "JY" in _value(science, "BUNIT").upper()
    if model == "MultiSpecModel":
        per_integration = any("INT_NUM" in h for name, h in extensions if name == "EXTRACT1D") or any(
            str(h.get(f"TTYPE{i}", "")).upper() == "INT_NUM"
            for name, h in extensions
            if name == "EXTRACT1D"
            for i in range(1, int(h.get("TFIELDS", 0)) + 1)
        )
        tso = bool(primary.get("TSOVISIT", False)) and int(primary.get("NINTS", 1) or 1) > 1
        return "x1dints" if per_integration or tso else "x1d"
    if model == "ImageModel":
        return "i2d" if resampled else ("cal" if calibrated else "rate")
    if model == "CubeModel":
        return "calints" if calibrated else "rateints"
    return "s2d" if resampled else "cal"  # SlitModel, MultiSlitModel


# Every extension a MultiSpecModel file can have (stdatamodels multispec schema, and the ASDF tree).
MULTISPEC_EXTENSIONS = ("EXTRACT1D", "INT_TIMES", "ASDF")


def _check_structure(model: str, extensions: list[tuple[str, fits.Header]], path: Path) -> None:
    """The extensions the model's reader needs are there, with the right dimensions."""
    sci = [h for name, h in extensions if name == "SCI"]
    if model == "MultiSpecModel":
        if not any(name == "EXTRACT1D" for name, _ in extensions):
            raise FitsProductError(f"{path}: a {model} product without an EXTRACT1D extension")
        for index, (name, _) in enumerate(extensions, start=1):
            if name not in MULTISPEC_EXTENSIONS:  # e.g. INT_TIMES with a damaged EXTNAME, read as absent
                raise FitsProductError(
                    f"{path}: HDU {index} ({name or 'no EXTNAME'}) is not an extension of a {model} "
                    f"({', '.join(MULTISPEC_EXTENSIONS)})"
                )
        return
    if not sci:
        raise FitsProductError(f"{path}: a {model} product without a SCI extension")
    want = 3 if model == "CubeModel" else 2
    for header in sci:
        if int(header.get("NAXIS", 0)) != want:
            raise FitsProductError(
                f"{path}: a {model} product whose SCI has {header.get('NAXIS', 0)} dimensions, expected {want}"
            )
    if model != "MultiSlitModel" and len(sci) > 1:
        raise FitsProductError(f"{path}: a {model} product with {len(sci)} SCI extensions, expected one")


# Keywords the readers use besides the facts, and the type each must have.
READER_KEYWORDS: dict[str, type] = {"DATAMODL": str, "FILENAME": str, "S_RESAMP": str, "S_PHOTOM": str}


def _has_type(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_keyword_types(header: fits.Header, where: str, path: Path) -> None:
    """The keywords HWOsim reads have the types JWST writes them with (NINTS
    an integer, EXPMID a number, TSOVISIT a logical...); a value of another
    type is a corrupt or hand-edited header. A keyword without a value
    (``KEY =`` and a blank) counts as absent."""
    kinds = {**HEADER_FACTS, **READER_KEYWORDS} if where == "primary header" else SCIENCE_FACTS
    for key, kind in kinds.items():
        value = header.get(key)
        if key in header and value is not None and not isinstance(value, fits.card.Undefined):
            if not _has_type(value, kind):
                raise FitsProductError(f"{path}: {where}: {key} = {value!r} is not {_TYPE_NAMES[kind]}")


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "T or F"}


def identify_headers(path: Path, primary: fits.Header, extensions: list[tuple[str, fits.Header]]) -> ProductInfo:
    """:func:`identify`, from headers already read (primary, then (EXTNAME, header) per extension)."""
    model, telescope = _value(primary, "DATAMODL"), _value(primary, "TELESCOP")
    found = f"DATAMODL={model or '(none)'}, TELESCOP={telescope or '(none)'}"
    supported = f"supported models: {supported_models_text()}"
    if telescope.upper() != "JWST":
        raise UnsupportedProductError(f"{path}: not a JWST product ({found}); {supported}")
    if not model:
        raise UnsupportedProductError(
            f"{path}: no data model in the header ({found}): not a JWST pipeline product in FITS; {supported}"
        )
    if model not in SUPPORTED_MODELS:
        exp_type = _value(primary, "EXP_TYPE") or "(none)"
        raise UnsupportedProductError(f"{path}: {found}, EXP_TYPE={exp_type} is not supported; {supported}")
    check_keyword_types(primary, "primary header", path)
    science_index, science = next(
        ((i, h) for i, (name, h) in enumerate(extensions, start=1) if name in ("SCI", "EXTRACT1D")), (0, fits.Header())
    )
    check_keyword_types(
        science, f"HDU {science_index} ({extensions[science_index - 1][0]})" if science_index else "", path
    )
    _check_structure(model, extensions, path)
    try:
        obs_id = observation_id(primary)
    except ValueError as exc:
        raise FitsProductError(f"{path}: {exc}") from None
    facts = {key: _fact(primary.get(key), kind) for key, kind in HEADER_FACTS.items() if key in primary}
    facts.update({key: _fact(science.get(key), kind) for key, kind in SCIENCE_FACTS.items() if key in science})
    for i in range(1, int(science.get("TFIELDS", 0) or 0) + 1):  # a table's flux unit is its column's TUNIT
        if str(science.get(f"TTYPE{i}", "")).upper() == "FLUX" and science.get(f"TUNIT{i}"):
            facts.setdefault("BUNIT", str(science[f"TUNIT{i}"]).strip())
    return ProductInfo(
        path=path,
        name=_value(primary, "FILENAME") or path.name,
        model=model,
        family=SUPPORTED_MODELS[model],
        product_type=_product_type(model, primary, extensions),
        obs_id=obs_id,
        facts=facts,
    )


def check_complete(hdul: fits.HDUList, path: Path) -> None:
    """The last HDU ends exactly where the file ends, as FITS's 2880-byte blocks
    guarantee. astropy reads a truncated file with only a warning (zero-filling
    the tail, or silently dropping a half-written HDU), so this is the check."""
    size = os.path.getsize(path)
    last = hdul[len(hdul) - 1].fileinfo()  # the HDU's own (HDUList.fileinfo re-serialises every header)
    end = last["datLoc"] + last["datSpan"]
    if end > size:
        raise FitsProductError(f"{path}: truncated: its HDUs need {end} bytes, the file has {size}")
    if end < size:
        raise FitsProductError(f"{path}: {size - end} bytes after the last complete HDU (truncated or corrupt header)")


# --- verification --------------------------------------------------------------
#
# astropy opens damaged files with warnings, or not at all, or as HDUs of a
# placeholder class, and its own ``verify("exception")`` costs as much as
# reading the file (a regex per card, and a linear search per required card:
# 40 ms for the 820 cards of an s2d's HDRTAB). ``verify_fits`` makes the same
# checks in a few milliseconds, so that every file the reader accepts is one
# astropy's verification accepts too: the card syntax on the raw header bytes
# (astropy's own regular expressions, astropy's Card.verify for anything
# unusual), the mandatory keywords in their places with legal values, and
# CHECKSUM / DATASUM where a header has them. ``verify_product`` then checks
# what a JWST pipeline product has to be beyond FITS (its ASDF extension).

_BITPIX = (8, 16, 32, 64, -32, -64)
_STANDARD_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8} *")  # an 8-character keyword field, left-justified
_COMMENTARY = ("COMMENT ", "HISTORY ", " " * 8)
_END_CARD = b"END" + b" " * 77
_NOT_PRINTABLE = re.compile(rb"[^ -~]")
# astropy's own pattern for a FITS-standard value field (private: without it, every card takes the slow path)
_VALUE_FSC = getattr(Card, "_value_FSC_RE", None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hdu_label(index: int, hdu: _BaseHDU) -> str:
    name = hdu.name if isinstance(getattr(hdu, "name", None), str) and hdu.name else "no EXTNAME"
    return f"HDU {index} ({name})"


def _raw_header(stream: BinaryIO, hdu: _BaseHDU) -> bytes:
    info = hdu.fileinfo()
    stream.seek(info["hdrLoc"])
    return stream.read(info["datLoc"] - info["hdrLoc"])


def _card_groups(text: str) -> Iterator[tuple[int, str]]:
    """(card number, image) up to END; a card continued by CONTINUE cards is one long image."""
    images = [text[i : i + 80] for i in range(0, len(text), 80)]
    i = 0
    while i < len(images):
        start, image = i, images[i]
        i += 1
        while i < len(images) and images[i].startswith("CONTINUE"):
            image += images[i]
            i += 1
        yield start, image


def _check_cards(raw: bytes, where: str) -> None:
    """Every card as astropy's Card verification wants it, from the header's raw bytes.

    The cards up to END are printable ASCII (anything else is refused
    outright); a card of the common shape (keyword, "= " in columns 9-10, a
    value astropy's FITS-standard value pattern matches) passes here,
    anything else (long strings, HIERARCH, odd spacing) goes to astropy's
    ``Card.verify``, whose verdict is final. (What follows END should be
    blanks; like astropy, we let anything there pass: nothing reads it.)
    """
    end = next((i for i in range(0, len(raw), 80) if raw[i : i + 80] == _END_CARD), None)
    if end is None:
        raise FitsProductError(f"{where}: the header has no END card (corrupt header)")
    bad = _NOT_PRINTABLE.search(raw, 0, end)
    if bad:
        card, column = divmod(bad.start(), 80)
        raise FitsProductError(
            f"{where}: byte 0x{raw[bad.start()]:02x} in card {card + 1}, column {column + 1} of the header: "
            "FITS headers are printable ASCII (corrupt header)"
        )
    for number, image in _card_groups(raw[:end].decode("ascii")):
        keyword = image[:8]
        if len(image) == 80 and keyword in _COMMENTARY:
            continue
        if (
            len(image) == 80
            and _STANDARD_KEYWORD.fullmatch(keyword)
            and keyword not in ("HIERARCH", "CONTINUE")
            and image[8:10] == "= "
            and _VALUE_FSC is not None
            and _VALUE_FSC.match(image[10:])
        ):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", AstropyWarning)
                Card.fromstring(image).verify("exception")
        except Exception as exc:  # VerifyError, or a warning raised as one
            raise FitsProductError(
                f"{where}: card {number + 1} {image[:80].rstrip()!r} is not valid FITS ({exc})"
            ) from None


def _check_mandatory(hdu: _BaseHDU, index: int, where: str) -> None:
    """The mandatory keywords in their places with legal values: what astropy's
    ``_ValidHDU._verify`` and its subclasses check (``req_cards``), without
    their linear search per keyword."""
    header = hdu.header
    keys = list(header.keys())
    first: dict[str, int] = {}
    for position, key in enumerate(keys):
        first.setdefault(key, position)

    def require(key: str, position: int | None, test: Callable[[Any], bool] | None = None, what: str = "") -> None:
        if key not in first:
            raise FitsProductError(f"{where}: no {key} keyword (FITS requires it)")
        if position is not None and first[key] != position:
            raise FitsProductError(
                f"{where}: {key} is card {first[key] + 1} of the header, FITS requires card {position + 1}"
            )
        if test is not None and not test(header[key]):
            raise FitsProductError(f"{where}: {key} = {header[key]!r}, {what}")

    primary = index == 0
    require("SIMPLE" if primary else "XTENSION", 0)
    require("BITPIX", 1, lambda v: _is_int(v) and v in _BITPIX, f"expected one of {_BITPIX}")
    require("NAXIS", 2, lambda v: _is_int(v) and 0 <= v <= 999, "expected an integer 0..999")
    naxis = header["NAXIS"]
    for axis in range(1, naxis + 1):
        require(f"NAXIS{axis}", axis + 2, lambda v: _is_int(v) and v >= 0, "expected an integer >= 0")
    for key in first:
        if key.startswith("NAXIS") and len(key) > 5 and not (key[5:].isdigit() and 1 <= int(key[5:]) <= naxis):
            raise FitsProductError(f"{where}: {key} is out of range for NAXIS = {naxis}")
    if "EXTNAME" in first and not isinstance(header["EXTNAME"], str):
        raise FitsProductError(f"{where}: EXTNAME = {header['EXTNAME']!r} is not a string")
    if primary:
        if "EXTEND" in first:
            require("EXTEND", naxis + 3, lambda v: isinstance(v, bool), "expected T or F")
        return
    table = isinstance(hdu, fits.BinTableHDU)
    require("PCOUNT", naxis + 3, lambda v: _is_int(v) and (v >= 0 if table else v == 0), "not a legal PCOUNT")
    require("GCOUNT", naxis + 4, lambda v: _is_int(v) and v == 1, "expected 1")
    if table:
        require("XTENSION", 0, lambda v: isinstance(v, str) and v.rstrip() == "BINTABLE", "expected 'BINTABLE'")
        require("NAXIS", None, lambda v: v == 2, "a binary table has 2")
        require("BITPIX", None, lambda v: v == 8, "a binary table has 8")
        require("TFIELDS", 7, lambda v: _is_int(v) and 0 <= v <= 999, "expected an integer 0..999")
        for column in range(1, header["TFIELDS"] + 1):
            require(f"TFORM{column}", None)
    else:
        require("XTENSION", 0, lambda v: isinstance(v, str) and v.rstrip() == "IMAGE", "expected 'IMAGE'")
        if "BLANK" in first and not (_is_int(header["BLANK"]) and header["BITPIX"] > 0):
            raise FitsProductError(f"{where}: BLANK = {header['BLANK']!r} on BITPIX = {header['BITPIX']} data")


def verify_fits(hdul: fits.HDUList, path: Path) -> None:
    """The file is FITS as astropy's own verification (``verify("exception")``
    with CHECKSUM / DATASUM checked) would have it, else FitsProductError
    naming the file, the HDU and what is wrong."""
    if not isinstance(hdul[0], fits.PrimaryHDU) or isinstance(hdul[0], fits.GroupsHDU):
        raise FitsProductError(f"{path}: HDU 0 is not a primary image HDU (corrupt SIMPLE/BITPIX/NAXIS)")
    if len(hdul) > 1 and hdul[0].header.get("EXTEND") is not True:
        raise FitsProductError(f"{path}: HDU 0 (PRIMARY): EXTEND is not T although the file has extensions")
    with open(path, "rb") as stream:
        for index, hdu in enumerate(hdul):
            where = f"{path}: {_hdu_label(index, hdu)}"
            if index and type(hdu) not in (fits.ImageHDU, fits.BinTableHDU):
                kind = type(hdu).__name__.lstrip("_")
                raise FitsProductError(
                    f"{where} is not an image or binary-table extension (astropy reads it as {kind}: corrupt header)"
                )
            _check_cards(_raw_header(stream, hdu), where)
            _check_mandatory(hdu, index, where)
    for index, hdu in enumerate(hdul):  # DATASUM first: it says whether the data or the header changed
        header = hdu.header
        if "DATASUM" in header and hdu.verify_datasum() != 1:
            raise FitsProductError(f"{path}: {_hdu_label(index, hdu)}: DATASUM does not match the data (corrupt)")
        if "CHECKSUM" in header and hdu.verify_checksum() != 1:
            raise FitsProductError(
                f"{path}: {_hdu_label(index, hdu)}: CHECKSUM does not match the HDU's bytes (corrupt)"
            )


# datatype in a product's ASDF tree -> (BITPIX, BZERO) of the HDU holding the array
_ASDF_DATATYPES = {
    "float32": (-32, 0),
    "float64": (-64, 0),
    "int8": (8, -128),
    "uint8": (8, 0),
    "int16": (16, 0),
    "uint16": (16, 2**15),
    "int32": (32, 0),
    "uint32": (32, 2**31),
    "int64": (64, 0),
    "uint64": (64, 2**63),
}
_ASDF_ARRAY = re.compile(rb"source: fits:([A-Z0-9_]+),(\d+)\n *datatype: (\w+)\n")
_ASDF_SOURCE = re.compile(rb"source: fits:([A-Z0-9_]+),(\d+)")


def _tree_rows(tree: bytes, source: re.Match, limit: int) -> int | None:
    """The row count the ASDF tree gives a table: the ``shape: [n]`` at the
    indentation of its ``source:`` line, before the next array's source."""
    indent = source.start() - tree.rfind(b"\n", 0, source.start()) - 1
    shape = re.compile(rb"\n" + b" " * indent + rb"shape: \[(\d+)\]").search(tree, source.end(), limit)
    return int(shape.group(1)) if shape else None


def simulated(primary: Mapping) -> bool:
    """HWOsim's own sample products, which say so (``sample.py``) and have no ASDF extension."""
    return _value(primary, "HWOSIM").upper() == "SIMULATED"


def verify_product(hdul: fits.HDUList, path: Path) -> None:
    """What the JWST pipeline's writer guarantees, checked so that a product
    that lost or renamed an extension is refused instead of read without it.

    stdatamodels writes every product with an ASDF extension, last, whose
    tree names each array's HDU (``source: fits:SCI,1``) and its datatype.
    So a pipeline product without one was cut at an HDU boundary (a file
    that is still valid FITS, one HDU short), and a named HDU that is missing,
    or whose BITPIX and BZERO do not give the tree's datatype, was renamed or
    edited; so is a table whose NAXIS2 is not the tree's row count (a table
    grown into its padding, or shrunk, is otherwise valid FITS). Image shapes
    are not compared: cut-outs made with astropy keep the tree of the full
    frame. HWOsim's simulated products have no ASDF extension and are exempt.
    """
    primary = hdul[0].header
    asdf = [(index, hdu) for index, hdu in enumerate(hdul) if hdu.name == "ASDF"]
    if not asdf:
        if simulated(primary):
            return
        raise FitsProductError(
            f"{path}: no ASDF extension: the JWST pipeline writes one last in every product, so this file was "
            f"cut at an HDU boundary (truncated) or rebuilt without it; its {len(hdul)} HDUs end with "
            f"{_hdu_label(len(hdul) - 1, hdul[-1])}"
        )
    index, hdu = asdf[-1]
    where = f"{path}: {_hdu_label(index, hdu)}"
    if hdu.header.get("TFIELDS") != 1 or hdu.header.get("NAXIS2") != 1:
        raise FitsProductError(f"{where}: not one row of one byte column, as stdatamodels writes it")
    info = hdu.fileinfo()
    with open(path, "rb") as stream:
        stream.seek(info["datLoc"])
        tree = stream.read(hdu.header["NAXIS1"])
    hdus = {(h.name, h.ver): h for h in hdul[1:]}
    datatypes = {(n.decode("ascii"), int(v)): t.decode("ascii", "replace") for n, v, t in _ASDF_ARRAY.findall(tree)}
    sources = list(_ASDF_SOURCE.finditer(tree))
    for k, match in enumerate(sources):
        name, ver = match.groups()
        key = (name.decode("ascii"), int(ver))
        target = hdus.get(key)
        if target is None:
            raise FitsProductError(
                f"{path}: the ASDF extension names HDU {key[0]},{key[1]}, which the file does not have "
                "(an extension lost or renamed)"
            )
        if isinstance(target, fits.BinTableHDU):
            limit = sources[k + 1].start() if k + 1 < len(sources) else len(tree)
            rows = _tree_rows(tree, match, limit)
            if rows is not None and rows != target.header["NAXIS2"]:
                raise FitsProductError(
                    f"{path}: {_hdu_label(hdul.index(target), target)}: NAXIS2 = {target.header['NAXIS2']} rows, "
                    f"the product's ASDF tree says {rows} (corrupt or edited header)"
                )
        wanted = _ASDF_DATATYPES.get(datatypes.get(key, ""))
        if wanted and isinstance(target, fits.ImageHDU):
            found = (target.header["BITPIX"], target.header.get("BZERO", 0))
            if found != wanted:
                raise FitsProductError(
                    f"{path}: {_hdu_label(hdul.index(target), target)}: BITPIX, BZERO = {found}, the product's ASDF "
                    f"tree says {datatypes[key]} {wanted}"
                )


@contextmanager
def file_errors(path: Path, where: str | None = None) -> Iterator[None]:
    """Any exception but FitsProductError becomes one naming ``where`` (the file, or the file and HDU)."""
    try:
        yield
    except FitsProductError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError... for garbage
        raise FitsProductError(f"{where or path}: unreadable ({type(exc).__name__}: {exc})") from exc


def identify(path: str | os.PathLike) -> ProductInfo:
    """What the file at ``path`` is, from its headers (the data is not read,
    but for DATASUM where a header has one).

    Raises :class:`UnsupportedProductError` for a readable file HWOsim does
    not support and :class:`FitsProductError` for one that is not readable,
    incomplete, or not valid FITS (``verify_fits``, ``verify_product``).
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyWarning)
        try:
            hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError... for garbage
            raise FitsProductError(f"{path}: not a readable FITS file ({type(exc).__name__}: {exc})") from exc
        with hdul, file_errors(path):
            primary = hdul[0].header
            extensions = [(hdu.name.upper(), hdu.header) for hdu in hdul[1:]]
            check_complete(hdul, path)
            raise_warnings(caught, path)
            verify_fits(hdul, path)
            info = identify_headers(path, primary, extensions)
            verify_product(hdul, path)
            return info


def raise_warnings(caught: list[warnings.WarningMessage], path: Path) -> None:
    """astropy's warnings while opening a file (a header it had to repair, bytes
    it skipped) are errors here: a file it warns about is not one we read."""
    for warning in caught:
        if issubclass(warning.category, AstropyWarning):
            raise FitsProductError(f"{path}: astropy: {str(warning.message).strip()} (corrupt file)")
