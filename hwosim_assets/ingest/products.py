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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from hwosim_assets.records import FAMILIES, SUPPORTED_MODELS


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
# From the science extension (SCI, or the first EXTRACT1D): units and flux calibration.
SCIENCE_FACTS: dict[str, type] = {"BUNIT": str, "PHOTMJSR": float, "PIXAR_SR": float}

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


def _fact(value, kind: type):
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


def _check_structure(model: str, extensions: list[tuple[str, fits.Header]], path: Path) -> None:
    """The extensions the model's reader needs are there, with the right dimensions."""
    sci = [h for name, h in extensions if name == "SCI"]
    if model == "MultiSpecModel":
        if not any(name == "EXTRACT1D" for name, _ in extensions):
            raise FitsProductError(f"{path}: a {model} product without an EXTRACT1D extension")
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
    _check_structure(model, extensions, path)
    try:
        obs_id = observation_id(primary)
    except ValueError as exc:
        raise FitsProductError(f"{path}: {exc}") from None
    facts = {key: _fact(primary.get(key), kind) for key, kind in HEADER_FACTS.items() if key in primary}
    science = next((h for name, h in extensions if name in ("SCI", "EXTRACT1D")), fits.Header())
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


def identify(path: str | os.PathLike) -> ProductInfo:
    """What the file at ``path`` is, from its headers (the data is not read).

    Raises :class:`UnsupportedProductError` for a readable file HWOsim does
    not support and :class:`FitsProductError` for one that is not readable.
    """
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
                primary = hdul[0].header
                extensions = [(hdu.name.upper(), hdu.header) for hdu in hdul[1:]]
                check_complete(hdul, path)
                return identify_headers(path, primary, extensions)
        except FitsProductError:
            raise
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError... for garbage
            raise FitsProductError(f"{path}: not a readable FITS file ({type(exc).__name__}: {exc})") from exc
