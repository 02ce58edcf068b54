"""Corrupted variants of real FITS products, and the oracle that judges how the reader takes them.

Used by ``test_fits_fuzz.py`` (a few hundred variants) and
``benchmarks/fuzz_fits.py`` (as many as asked for). Every variant is one
mutation of one real product's bytes, deterministic from a seed:

* ``truncate``: the file cut at an offset: random ones, every HDU boundary
  (where a file is still valid FITS, one or more HDUs short), every end of
  a header, every end of data before its padding;
* ``header_flip``: one bit flipped in a header, half the time anywhere
  (comments, padding after END...), half the time in the value of a
  keyword the reader or FITS itself depends on (BITPIX, NAXISn, TFORMn,
  EXTNAME, INT_NUM, EXPMID, FILENAME...);
* ``data_flip``: one bit flipped in a data unit: in a plane or column the
  reader reads (a quarter of those in the sign/exponent byte of a value:
  huge values, infinities, NaNs), in INT_TIMES, in the ASDF extension, in an
  HDU the reader ignores (WHT, CON, AREA, HDRTAB...), or in the zero padding
  after the data;
* ``header_edit``: one card of one HDU replaced or deleted in place, or
  blanked, or a whole header blanked (BITPIX, NAXIS, NAXISn, TFORMn, TTYPEn,
  TZEROn, EXTNAME, NINTS, INTSTART, INTEND first, round-robin), the rest of
  the file byte for byte as it was.

The oracle (``judge``), for every variant:

1. ``identify``, ``header_facts`` and the family's reader raise nothing but
   ``FitsProductError``, whose message names the file; and what the reader
   accepts, ``identify`` accepts.
2. An accepted file is one astropy's own verification accepts: it opens
   with ``checksum=True`` and no warning, ``verify("exception")`` passes,
   and its HDUs fill the file. (Reading the data is not part of astropy's
   verification, so a file whose ignored HDRTAB astropy could not read may
   be accepted: what we read from it is checked by 3.)
3. An accepted file reads as the original does, bit for bit, except for
   what the mutation legitimately changed. What that may be depends on the
   class: nothing for a truncation or a header edit (both are structural:
   refuse or read the same); for a flip in the ASDF extension, an ignored
   HDU or padding, nothing either; for a flip in a plane or column that is
   read, the values, which must then equal astropy's own read of the mutated
   file (and for a flip in INT_TIMES, the event times); for a header flip,
   the values and the keyword-derived fields (event times from EXPMID or
   INT_TIMES, the source name from FILENAME), which must equal what astropy
   reads from the mutated file. Keys, row order, tiles and integrations must
   always be the original's.
4. A flip in a plane or column that is read, in an ignored HDU or in the
   padding must be accepted: such a file is valid, and refusing it would be
   a reader that cannot tell corrupt structure from unusual values. (Flips
   in INT_TIMES and the ASDF tree may be refused: the integration numbers
   and the tree's references are checked.) Header flips and edits may
   always be refused.

So a reader that accepts a file astropy rejects, or that turns a corrupt
structure into a table with anything but the original's shape, fails; so
does one that refuses a valid file with changed pixel values.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from hwosim_assets.ingest.fits_reader import FitsProductError, assemble_frame, header_facts, read_family
from hwosim_assets.ingest.products import identify
from hwosim_assets.records import PIXEL_DTYPES

CLASSES = ("truncate", "header_flip", "data_flip", "header_edit")
# Keywords whose values the flips aim at half the time.
TARGET_KEYWORDS = (
    "SIMPLE",
    "XTENSION",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "NAXIS3",
    "PCOUNT",
    "GCOUNT",
    "EXTEND",
    "TFIELDS",
    "EXTNAME",
    "EXTVER",
    "BZERO",
    "BSCALE",
    "DATAMODL",
    "TELESCOP",
    "FILENAME",
    "NINTS",
    "INTSTART",
    "INTEND",
    "EXPSTART",
    "EXPMID",
    "EXPEND",
    "INT_NUM",
    "SPORDER",
    "END",
)
TARGET_PREFIXES = ("TFORM", "TTYPE", "TZERO", "TSCAL", "TDIM")
# Data units the reader reads values from, by family (spectra: EXTRACT1D; images: the planes).
READ_HDUS = {"spectra": {"EXTRACT1D"}, "images": {p.upper() for p in PIXEL_DTYPES}}
SPECTRA_COLUMNS = {
    "wavelength": "WAVELENGTH",
    "flux": "FLUX",
    "flux_error": "FLUX_ERROR",
    "flux_var_poisson": "FLUX_VAR_POISSON",
    "flux_var_rnoise": "FLUX_VAR_RNOISE",
    "flux_var_flat": "FLUX_VAR_FLAT",
    "surf_bright": "SURF_BRIGHT",
    "npixels": "NPIXELS",
}


@dataclass(frozen=True)
class Hdu:
    index: int
    name: str
    header: tuple[int, int]  # [start, end) of the header in the file
    data: tuple[int, int]  # [start, end) of the data, without padding
    padded_end: int


@dataclass
class Product:
    """One real product, read once: its bytes, its HDUs' layout and the reader's table."""

    path: Path
    data: bytes
    family: str
    hdus: list[Hdu]
    table: pl.DataFrame

    @classmethod
    def load(cls, path: Path) -> Product:
        data = path.read_bytes()
        info = identify(path)
        hdus = []
        with fits.open(path) as hdul:
            for index, hdu in enumerate(hdul):
                loc = hdu.fileinfo()
                size = hdu.size  # data bytes, no padding
                hdus.append(
                    Hdu(
                        index,
                        hdu.name,
                        (loc["hdrLoc"], loc["datLoc"]),
                        (loc["datLoc"], loc["datLoc"] + size),
                        loc["datLoc"] + loc["datSpan"],
                    )
                )
        return cls(path, data, info.family, hdus, read_family(info.family, [path], 64))

    def cards(self, hdu: Hdu) -> list[tuple[int, str]]:
        """(file offset, 80-character image) of each card up to END."""
        out = []
        for offset in range(hdu.header[0], hdu.header[1], 80):
            image = self.data[offset : offset + 80].decode("ascii", "replace")
            out.append((offset, image))
            if image.startswith("END") and not image[3:].strip():
                break
        return out


@dataclass
class Variant:
    kind: str  # one of CLASSES
    product: Product
    data: bytes
    label: str  # what was done, for messages
    region: str = ""  # data_flip: "read", "int_times", "ignored", "padding"; header_flip: "aimed", "anywhere"


@dataclass
class Outcome:
    variant: Variant
    result: str  # "refused" or "accepted" (or "failed" when the oracle says no)
    detail: str = ""
    problems: list[str] = field(default_factory=list)


# --- mutations ----------------------------------------------------------------


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def _card_key(image: str) -> str:
    return image[:8].strip()


def truncations(product: Product, rng: np.random.Generator, n: int) -> list[Variant]:
    """``n`` cut offsets: every boundary kind first (HDU starts, header ends, data ends), then random ones."""
    size = len(product.data)
    boundaries = sorted(
        {h.header[0] for h in product.hdus[1:]}
        | {h.header[1] for h in product.hdus}
        | {h.data[1] for h in product.hdus}
        | {size - 2880}
    )
    boundaries = [b for b in boundaries if 0 < b < size]
    chosen = list(rng.permutation(boundaries)[: max(1, n * 2 // 3)])
    while len(chosen) < n:
        chosen.append(int(rng.integers(1, size)))
    out = []
    for cut in chosen[:n]:
        at = [f"start of HDU {h.index}" for h in product.hdus if h.header[0] == cut]
        at += [f"end of header {h.index}" for h in product.hdus if h.header[1] == cut]
        at += [f"end of data {h.index}" for h in product.hdus if h.data[1] == cut and h.data[0] != h.data[1]]
        out.append(
            Variant("truncate", product, product.data[:cut], f"cut at {cut} of {size} ({', '.join(at) or 'inside'})")
        )
    return out


def header_flips(product: Product, rng: np.random.Generator, n: int) -> list[Variant]:
    """``n`` single-bit flips in headers: half in values of TARGET_KEYWORDS (or the END card), half anywhere."""
    aimed = []
    for hdu in product.hdus:
        for offset, image in product.cards(hdu):
            key = _card_key(image)
            if key in TARGET_KEYWORDS or key.startswith(TARGET_PREFIXES):
                span = (0, 3) if key == "END" else (0, 31)  # the keyword and its value field
                aimed.append((hdu, offset + span[0], offset + span[1], key))
    out = []
    for i in range(n):
        bit = int(rng.integers(0, 8))
        if i % 2 == 0 and aimed:
            hdu, start, stop, key = aimed[int(rng.integers(0, len(aimed)))]
            offset = int(rng.integers(start, stop))
            region, what = "aimed", f"card {key}"
        else:
            hdu = product.hdus[int(rng.integers(0, len(product.hdus)))]
            offset = int(rng.integers(*hdu.header))
            region, what = "anywhere", "header"
        out.append(
            Variant(
                "header_flip",
                product,
                _flip(product.data, offset, bit),
                f"bit {bit} of byte {offset} ({what} of HDU {hdu.index} {hdu.name})",
                region,
            )
        )
    return out


def _value_start(product: Product, hdu: Hdu, rng: np.random.Generator) -> int:
    """The file offset of the first (most significant) byte of a random value
    the reader reads: a pixel, or a cell of a bronze column of a table."""
    with fits.open(product.path) as hdul:
        header = hdul[hdu.index].header
        if header["BITPIX"] != 8:
            size = abs(header["BITPIX"]) // 8
            return hdu.data[0] + size * int(rng.integers(0, (hdu.data[1] - hdu.data[0]) // size))
        fields = hdul[hdu.index].columns.dtype.fields
        names = [name for name in (*SPECTRA_COLUMNS.values(), "DQ") if name in fields]
        column_offset = fields[names[int(rng.integers(0, len(names)))]][1]
        return hdu.data[0] + header["NAXIS1"] * int(rng.integers(0, header["NAXIS2"])) + column_offset


def data_flips(product: Product, rng: np.random.Generator, n: int) -> list[Variant]:
    """``n`` single-bit flips in data units: half in what is read, a quarter in ignored HDUs, a quarter in padding."""
    read_names = READ_HDUS[product.family]
    regions: dict[str, list[tuple[Hdu, int, int]]] = {
        "read": [],
        "int_times": [],
        "asdf": [],
        "ignored": [],
        "padding": [],
    }
    for hdu in product.hdus:
        if hdu.data[1] > hdu.data[0]:
            kind = {"INT_TIMES": "int_times", "ASDF": "asdf"}.get(hdu.name)
            kind = kind or ("read" if hdu.name in read_names else "ignored")
            regions[kind].append((hdu, *hdu.data))
        if hdu.padded_end > hdu.data[1]:
            regions["padding"].append((hdu, hdu.data[1], hdu.padded_end))
    plan = ["read", "read", "ignored", "padding", "asdf"] + (["int_times"] if regions["int_times"] else [])
    out = []
    for i in range(n):
        region = plan[i % len(plan)]
        if not regions[region]:
            region = "ignored" if region == "asdf" and regions["ignored"] else "read"
        hdu, start, stop = regions[region][int(rng.integers(0, len(regions[region])))]
        offset, bit = int(rng.integers(start, stop)), int(rng.integers(0, 8))
        if region == "read" and i % 4 == 0:  # the first byte of a value read: sign and exponent (huge, NaN, inf...)
            offset, bit = _value_start(product, hdu, rng), int(rng.integers(4, 8))
        out.append(
            Variant(
                "data_flip",
                product,
                _flip(product.data, offset, bit),
                f"bit {bit} of byte {offset} (data of HDU {hdu.index} {hdu.name}, {region})",
                region,
            )
        )
    return out


BLANK_CARD, BLANK_HEADER = "(blank card)", "(blank header)"


def _edit_card(product: Product, hdu: Hdu, key: str, value=None, delete: bool = False) -> bytes | None:
    """The file with one card of ``hdu`` replaced (``value``) or deleted (a blank card
    goes in before END, so nothing moves); None if the HDU has no such card.
    ``value`` BLANK_CARD blanks the card where it is; key BLANK_HEADER blanks
    the whole header, END included."""
    cards = product.cards(hdu)
    if key == BLANK_HEADER:
        start, stop = hdu.header
        return product.data[:start] + b" " * (stop - start) + product.data[stop:]
    found = [i for i, (_, image) in enumerate(cards) if _card_key(image) == key]
    if not found:
        return None
    images = [image for _, image in cards]
    i = found[0]
    if delete:
        del images[i]
        images.insert(len(images) - 1, " " * 80)
    elif value == BLANK_CARD:
        images[i] = " " * 80
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images[i] = fits.Card(key, value).image
    raw = "".join(images).encode("ascii")
    start = cards[0][0]
    return product.data[:start] + raw + product.data[start + len(raw) :]


def _edits_for(product: Product) -> list[tuple[Hdu, str, object, bool]]:
    """Every edit considered for a product: (hdu, keyword, new value, delete)."""
    edits = []
    for hdu in product.hdus:
        header = {(_card_key(image)): image for _, image in product.cards(hdu)}

        def card_value(key: str, header: dict = header) -> object:
            return fits.Card.fromstring(header[key]).value

        edits.append((hdu, BLANK_HEADER, None, False))
        for key in (
            "SIMPLE",
            "XTENSION",
            "BITPIX",
            "NAXIS",
            "NAXIS1",
            "NAXIS2",
            "PCOUNT",
            "GCOUNT",
            "TFIELDS",
            "EXTNAME",
        ):
            if key in header:
                edits.append((hdu, key, BLANK_CARD, False))
        bitpix = card_value("BITPIX")
        for value in sorted({-64, -32, 8, 16, 32, 64, 7} - {bitpix}):
            edits.append((hdu, "BITPIX", value, False))
        naxis = card_value("NAXIS")
        edits += [(hdu, "NAXIS", naxis + 1, False), (hdu, "NAXIS", max(naxis - 1, 0), False)]
        for axis in range(1, naxis + 1):
            length = card_value(f"NAXIS{axis}")
            edits += [
                (hdu, f"NAXIS{axis}", length + 1, False),
                (hdu, f"NAXIS{axis}", max(length - 1, 0), False),
                (hdu, f"NAXIS{axis}", 0, False),
                (hdu, f"NAXIS{axis}", "12", False),
                (hdu, f"NAXIS{axis}", None, True),
            ]
        if naxis >= 2:
            edits.append((hdu, "NAXIS1", card_value("NAXIS2"), False))  # the two swapped, one card at a time
        for key in header:
            if key.startswith("TFORM"):
                for value in ("E", "D", "J", "K", "2D", "A", "1PE(5)", "Q"):
                    edits.append((hdu, key, value, False))
                edits.append((hdu, key, None, True))
            elif key.startswith("TTYPE") and str(card_value(key)).upper() in (*SPECTRA_COLUMNS.values(), "DQ"):
                # the columns the reader reads (an optional one renamed must not read as missing)
                edits += [
                    (hdu, key, "X" + str(card_value(key))[:30], False),
                    (hdu, key, "FLUX", False),
                    (hdu, key, "DQ", False),
                    (hdu, key, None, True),
                ]
            elif key.startswith("TZERO"):
                edits += [(hdu, key, 0, False), (hdu, key, 2**31 + 1, False), (hdu, key, None, True)]
        if "EXTNAME" in header:
            edits += [
                (hdu, "EXTNAME", "SCI", False),
                (hdu, "EXTNAME", "ERR", False),
                (hdu, "EXTNAME", "EXTRACT1D", False),
                (hdu, "EXTNAME", hdu.name[:-1] + "X", False),
                (hdu, "EXTNAME", None, True),
            ]
        if hdu.index == 0:
            for key in ("NINTS", "INTSTART", "INTEND"):
                if key in header:
                    value = card_value(key)
                    edits += [
                        (hdu, key, value + 1, False),
                        (hdu, key, value - 1, False),
                        (hdu, key, 0, False),
                        (hdu, key, str(value), False),
                        (hdu, key, float(value), False),
                        (hdu, key, None, True),
                    ]
    return [e for e in edits if not (e[1] == "EXTNAME" and e[2] == e[0].name)]


def _edit_family(key: str) -> str:
    return key.rstrip("0123456789") if key.startswith(("NAXIS", "TFORM", "TTYPE", "TZERO")) else key


def header_edits(product: Product, rng: np.random.Generator, n: int) -> list[Variant]:
    """``n`` edits drawn from ``_edits_for``, one card replaced or deleted in
    place: round-robin over the keyword families (BITPIX, NAXISn, TFORMn,
    TTYPEn, EXTNAME...), at random within each, so that a few edits per
    product already touch every kind of keyword."""
    families: dict[str, list] = {}
    for edit in _edits_for(product):
        family = _edit_family(edit[1]) + (" blanked" if edit[2] == BLANK_CARD else "")
        families.setdefault(family, []).append(edit)
    # The list first, then blanked cards and headers.
    rank = {
        f: i
        for i, f in enumerate(("TTYPE", "TFORM", "NAXIS", "BITPIX", "EXTNAME", "INTEND", "NINTS", "INTSTART", "TZERO"))
    }
    names = sorted(families, key=lambda f: (rank.get(f, len(rank)), f))
    queues = {f: list(rng.permutation(len(families[f]))) for f in names}
    picked = []
    while len(picked) < n and any(queues.values()):
        for f in names:
            if queues[f] and len(picked) < n:
                picked.append(families[f][int(queues[f].pop())])
    out = []
    for hdu, key, value, delete in picked:
        data = _edit_card(product, hdu, key, value, delete)
        if data is None:
            continue
        what = key if key == BLANK_HEADER else f"{key} deleted" if delete else f"{key} = {value!r}"
        out.append(Variant("header_edit", product, data, f"{what} in HDU {hdu.index} ({hdu.name})"))
    return out


def variants(products: list[Product], per_class: dict[str, int], seed: int) -> list[Variant]:
    """Every product's variants: ``per_class[kind]`` of each kind, from one seeded generator per product."""
    makers = {
        "truncate": truncations,
        "header_flip": header_flips,
        "data_flip": data_flips,
        "header_edit": header_edits,
    }
    out = []
    for k, product in enumerate(products):
        rng = np.random.default_rng([seed, k])
        for kind in CLASSES:
            out += makers[kind](product, rng, per_class[kind])
    return out


# --- the oracle -------------------------------------------------------------------


def astropy_verdict(path: Path) -> str | None:
    """None if astropy's own verification accepts the file, else why not: it
    must open with ``checksum=True`` and no astropy warning (astropy warns
    about truncation, repaired headers, failed checksums), pass
    ``verify("exception")``, and its HDUs must fill the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyWarning)
        try:
            with fits.open(path, checksum=True) as hdul:
                hdul.verify("exception")
                last = hdul[-1].fileinfo()
                if last["datLoc"] + last["datSpan"] != os.path.getsize(path):
                    return "its HDUs do not fill the file"
        except Exception as exc:  # noqa: BLE001 - any failure is astropy's "no"
            return f"{type(exc).__name__}: {exc}"
    astropy = [w for w in caught if issubclass(w.category, AstropyWarning)]
    return f"warning: {astropy[0].message}" if astropy else None


def _bits(values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return values.astype(values.dtype.newbyteorder("=")).view(f"u{values.dtype.itemsize}")
    return values


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype.kind == b.dtype.kind and np.array_equal(_bits(a), _bits(b))


def _differences(expected: pl.DataFrame, got: pl.DataFrame, columns: list[str]) -> list[str]:
    if got.shape != expected.shape or got.columns != expected.columns:
        return [f"table shape {got.shape}, the original's {expected.shape}"]
    out = []
    for name in columns:
        e, g = expected[name], got[name]
        if e.dtype == pl.Binary or e.dtype == pl.Utf8:
            if not e.equals(g):
                out.append(name)
        elif not _same(e.to_numpy(), g.to_numpy()):
            out.append(name)
    return out


def _expected_spectra(product: Product, path: Path, table: pl.DataFrame, keywords: bool) -> list[str]:
    """How ``table`` differs from astropy's read of the mutated file at ``path``,
    with keys, order and integrations from the original's read."""
    original = product.table
    problems = _differences(original, table, ["seq", "integration", "channel"])
    if problems:
        return problems
    with fits.open(path) as hdul:
        tables = [hdu.data for hdu in hdul if hdu.name == "EXTRACT1D"]
        for bronze, name in SPECTRA_COLUMNS.items():
            if not _same(
                np.concatenate([np.asarray(t[name], dtype=np.float64) for t in tables]), table[bronze].to_numpy()
            ):
                problems.append(f"{bronze} differs from astropy's read")
        dq = np.concatenate([np.asarray(t["DQ"]) for t in tables])
        if not np.array_equal(dq.astype(np.uint32), table["dq"].to_numpy().view(np.uint32)):
            problems.append("dq differs from astropy's read")
        if keywords and "INT_TIMES" in [h.name for h in hdul]:
            times = hdul["INT_TIMES"].data
            mids = dict(zip(times["integration_number"].tolist(), times["int_mid_MJD_UTC"].tolist(), strict=False))
            expected_times = np.array([mids[i] for i in table["integration"].to_list()])
        elif keywords:
            expected_times = np.full(len(table), float(hdul[0].header["EXPMID"]))
        else:
            expected_times = original["event_time"].to_numpy()
        if not _same(expected_times, table["event_time"].to_numpy()):
            problems.append("event_time differs from the file's")
    return problems


def _expected_images(product: Product, path: Path, table: pl.DataFrame, keywords: bool) -> list[str]:
    """How ``table`` differs from astropy's read of the mutated file (one frame per real product)."""
    original = product.table
    problems = _differences(original, table, ["seq", "frame", "y0", "x0", "ny", "nx"])
    if problems:
        return problems
    with fits.open(path) as hdul:
        names = {hdu.name for hdu in hdul}
        for plane in PIXEL_DTYPES:
            if table[plane].null_count() == len(table):
                if original[plane].null_count() != len(original):
                    problems.append(f"{plane} is missing")
                continue
            got = assemble_frame(table, 0, plane)
            if plane.upper() in names:
                expected = np.asarray(hdul[plane.upper()].data)
                if not _same(expected.astype(expected.dtype.newbyteorder("=")), got):
                    problems.append(f"{plane} differs from astropy's read")
            elif plane != "dq" or got.any():
                problems.append(f"{plane} read from a file without it")
        header = hdul[0].header
        expected_time = float(header["EXPMID"]) if keywords else original["event_time"][0]
        expected_source = str(header["FILENAME"]).strip() if keywords else original["source"][0]
        if set(table["event_time"]) != {expected_time}:
            problems.append("event_time differs from the file's EXPMID")
        if set(table["source"]) != {expected_source}:
            problems.append("source differs from the file's FILENAME")
    return problems


def _call(fn, path: Path):
    """("ok", value) or ("refused", message); any other exception is returned as ("error", text)."""
    try:
        return "ok", fn()
    except FitsProductError as exc:
        return "refused", str(exc)
    except Exception:  # noqa: BLE001
        return "error", traceback.format_exc(limit=4)


def judge(variant: Variant, folder: Path) -> Outcome:
    """Write the variant under its product's own name in ``folder`` and apply the oracle (module docstring)."""
    product = variant.product
    path = folder / product.path.name
    if path.resolve() == product.path.resolve():
        raise ValueError(f"{folder}: variants are written beside the original, choose another folder")
    path.write_bytes(variant.data)
    try:
        found = _call(lambda: identify(path), path)
        facts = _call(lambda: header_facts([path]), path)
        read = _call(lambda: read_family(product.family, [path], 64), path)
        problems = []
        for what, (status, value) in (("identify", found), ("header_facts", facts), ("read", read)):
            if status == "error":
                problems.append(f"{what} raised something other than FitsProductError:\n{value}")
            elif status == "refused" and path.name not in value:
                problems.append(f"{what}'s error does not name the file: {value}")
        if read[0] == "ok" and found[0] != "ok":
            problems.append(f"read accepts what identify refuses: {found[1]}")
        if read[0] != "ok":
            if (
                variant.kind == "data_flip"
                and variant.region in ("read", "padding", "ignored")
                and read[0] == "refused"
            ):
                problems.append(f"a valid file (flip in {variant.region} data) refused: {read[1]}")
            return Outcome(variant, "failed" if problems else "refused", read[1][:300], problems)

        table = read[1]
        verdict = astropy_verdict(path)
        if verdict is not None:
            problems.append(f"accepted a file astropy's verification rejects: {verdict[:300]}")
        if variant.kind in ("truncate", "header_edit") or (
            variant.kind == "data_flip" and variant.region in ("ignored", "padding", "asdf")
        ):
            changed = _differences(product.table, table, product.table.columns)
            if changed:
                problems.append(f"accepted with output unlike the original's: {changed}")
        else:
            check = _expected_spectra if product.family == "spectra" else _expected_images
            from_file = variant.kind == "header_flip" or variant.region == "int_times"
            changed = check(product, path, table, keywords=from_file)
            if changed:
                problems.append(f"accepted with output unlike astropy's read of the mutated file: {changed}")
        return Outcome(variant, "failed" if problems else "accepted", "", problems)
    finally:
        path.unlink(missing_ok=True)


def summary(outcomes: list[Outcome]) -> str:
    """Counts by class and result, then every failure with its variant."""
    counts = Counter((o.variant.kind, o.result) for o in outcomes)
    lines = [f"{len(outcomes)} variants of {len({o.variant.product.path for o in outcomes})} products"]
    for kind in CLASSES:
        row = {r: counts[kind, r] for r in ("refused", "accepted", "failed")}
        lines.append(f"  {kind:12s} " + "  ".join(f"{r} {n:4d}" for r, n in row.items()))
    for o in outcomes:
        if o.problems:
            lines.append(f"FAIL {o.variant.product.path.name}: {o.variant.kind}: {o.variant.label}")
            lines += [f"    {p}" for p in o.problems]
    return "\n".join(lines)
