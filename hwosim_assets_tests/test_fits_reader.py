"""FITS -> bronze: values equal astropy's read bit for bit, tiles reassemble,
both x1dints layouts agree, products are identified from their headers (not
their names), and every bad file fails naming itself."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from hwosim_assets.ingest import sample
from hwosim_assets.ingest.fits_reader import (
    FitsProductError,
    UnsupportedProductError,
    assemble_frame,
    header_facts,
    read_images,
    read_spectra,
    tile_pixels,
)
from hwosim_assets.ingest.products import identify
from hwosim_assets.records import IMAGE_TILE_SCHEMA, SPECTRA_SCHEMA

X1D = "jw09999001001_04101_00001-seg001_nis_x1dints.fits"
CAL = "jw09999002001_02101_{:05d}_nrcb1_cal.fits"
CALINTS = "jw09999003001_02101_00001_nrcb1_calints.fits"
N_INT, N_WL = 12, 40


def _write(hdul: fits.HDUList, path: Path) -> Path:
    hdul.writeto(path)
    return path


def _bits(values: np.ndarray) -> np.ndarray:
    """The raw bits of floats in native order: equality here is bit-for-bit, NaN payloads included."""
    values = np.asarray(values)
    return values.astype(values.dtype.newbyteorder("=")).view(f"u{values.dtype.itemsize}")


def _x1dints(n_int: int = N_INT, n_wl: int = N_WL) -> fits.HDUList:
    return sample.make_x1dints(n_int, n_wl)


def _astropy_spectra(path: Path) -> list[fits.FITS_rec]:
    with fits.open(path) as hdul:
        return [hdu.data.copy() for hdu in hdul if hdu.name == "EXTRACT1D"]


# --- spectra -----------------------------------------------------------------


def test_spectra_equal_astropy_bit_for_bit_with_injected_nans(tmp_path):
    hdul = _x1dints()
    rng = np.random.default_rng(3)
    for hdu in hdul[1:4]:
        rows = rng.choice(np.arange(2, N_WL - 2), size=5, replace=False)  # the ends are NaN already
        hdu.data["FLUX"][rows] = np.nan
        hdu.data["FLUX_ERROR"][rows[:2]] = np.nan
    odd_nan = np.array([0x7FF8000000000123], dtype=np.uint64).view(np.float64)[0]  # a NaN with a payload
    hdul[5].data["FLUX"][7] = odd_nan
    hdul[6].data["DQ"][3] = 2**31 + 4  # the top DQ bit
    path = _write(hdul, tmp_path / X1D)

    table = read_spectra([path])
    assert table.schema == pl.Schema(SPECTRA_SCHEMA)
    tables = _astropy_spectra(path)
    assert len(table) == N_INT * N_WL
    for column, fits_name in (("wavelength", "WAVELENGTH"), ("flux", "FLUX"), ("flux_error", "FLUX_ERROR")):
        expected = np.concatenate([t[fits_name] for t in tables])
        assert np.array_equal(_bits(table[column].to_numpy()), _bits(expected)), column
    assert np.isnan(table["flux"].to_numpy()).sum() == 3 * 5 + 2 * 2 * N_INT + 1
    dq = np.concatenate([t["DQ"] for t in tables])
    assert dq.dtype == np.uint32 and np.array_equal(table["dq"].to_numpy().view(np.uint32), dq)
    assert table["dq"].min() < 0  # bit 31 kept as the sign bit of Int32


def test_spectra_keys_times_and_channels(tmp_path):
    path = _write(_x1dints(), tmp_path / X1D)
    table = read_spectra([path])
    with fits.open(path) as hdul:
        mids = hdul["INT_TIMES"].data["int_mid_MJD_UTC"]
    per_int = table.group_by("seq", maintain_order=True).agg(
        pl.col("integration").first(), pl.col("event_time").unique(), pl.col("channel")
    )
    assert per_int["seq"].to_list() == list(range(N_INT))
    assert per_int["integration"].to_list() == list(range(1, N_INT + 1))
    assert [t[0] for t in per_int["event_time"].to_list()] == mids.tolist()
    assert all(c == list(range(N_WL)) for c in per_int["channel"].to_list())


def test_spectra_fall_back_to_header_times_without_int_times(tmp_path):
    hdul = _x1dints()
    with_times = read_spectra([_write(hdul, tmp_path / X1D)])
    del hdul["INT_TIMES"]
    other = tmp_path / "other"
    other.mkdir()
    without = read_spectra([_write(hdul, other / X1D)])
    h = hdul[0].header
    step = (h["EXPEND"] - h["EXPSTART"]) / h["NINTS"]
    expected = h["EXPSTART"] + (without["integration"].to_numpy() - 0.5) * step
    assert np.array_equal(without["event_time"].to_numpy(), expected)
    assert np.allclose(without["event_time"].to_numpy(), with_times["event_time"].to_numpy(), rtol=0, atol=1e-9)
    assert without.drop("event_time").equals(with_times.drop("event_time"))


def test_segments_in_any_order_make_one_observation(tmp_path):
    hdul = _x1dints()
    whole = read_spectra([_write(hdul, tmp_path / X1D)])
    segments = []
    for k, ints in enumerate((range(1, 7), range(7, N_INT + 1)), start=1):
        primary = fits.PrimaryHDU(header=hdul[0].header.copy())
        primary.header["INTSTART"], primary.header["INTEND"] = ints[0], ints[-1]
        tables = [hdul[i].copy() for i in ints]
        seg = tmp_path / "segs" / X1D.replace("seg001", f"seg{k:03d}")
        seg.parent.mkdir(exist_ok=True)
        segments.append(_write(fits.HDUList([primary, *tables, hdul["INT_TIMES"].copy()]), seg))
    assert read_spectra(segments[::-1]).equals(whole)


def test_spectral_orders_share_the_integration_channels(tmp_path):
    hdul = _x1dints()
    order2 = []
    for i in range(1, N_INT + 1):
        table = hdul[i].copy()
        table.header["SPORDER"] = 2
        table.header["EXTVER"] = N_INT + i
        table.data["WAVELENGTH"] = table.data["WAVELENGTH"] / 2
        order2.append(table)
    # Orders in blocks, order 2 first: channels still follow the order number, not the file.
    path = _write(fits.HDUList([hdul[0], *order2, *hdul[1:-1], hdul[-1]]), tmp_path / X1D)
    table = read_spectra([path])
    assert len(table) == 2 * N_INT * N_WL
    first = table.filter(pl.col("seq") == 0)
    assert first["channel"].to_list() == list(range(2 * N_WL))
    wavelength = hdul[1].data["WAVELENGTH"]
    assert np.array_equal(first["wavelength"].to_numpy(), np.concatenate([wavelength, wavelength / 2]))
    assert table["integration"].is_sorted()


def _new_layout(hdul: fits.HDUList, short_row: int, short_by: int) -> fits.HDUList:
    """The same spectra in the jwst >= 1.18 layout: one table, one row per
    integration, array columns padded with NaN beyond NELEMENTS."""
    tables = [hdu.data for hdu in hdul if hdu.name == "EXTRACT1D"]
    n = len(tables[0])
    floats = (
        "WAVELENGTH",
        "FLUX",
        "FLUX_ERROR",
        "FLUX_VAR_POISSON",
        "FLUX_VAR_RNOISE",
        "FLUX_VAR_FLAT",
        "SURF_BRIGHT",
        "NPIXELS",
    )
    stack = {name: np.array([t[name] for t in tables]) for name in (*floats, "DQ")}
    nelements = np.full(len(tables), n)
    nelements[short_row] = n - short_by
    for name in floats:
        stack[name][short_row, n - short_by :] = np.nan
    stack["DQ"][short_row, n - short_by :] = 0
    columns = [fits.Column(name="INT_NUM", format="J", array=np.arange(1, len(tables) + 1))]
    columns += [fits.Column(name=k, format=f"{n}D", array=stack[k]) for k in floats]
    columns += [fits.Column(name="DQ", format=f"{n}J", bzero=2**31, array=stack["DQ"])]
    columns += [fits.Column(name="NELEMENTS", format="J", array=nelements)]
    table = fits.BinTableHDU.from_columns(columns, name="EXTRACT1D")
    table.header["SPORDER"] = 1
    return fits.HDUList([hdul[0].copy(), table, hdul["INT_TIMES"].copy()])


def test_new_layout_reads_like_the_classic_one(tmp_path):
    hdul = _x1dints()
    classic = read_spectra([_write(hdul, tmp_path / X1D)])
    (tmp_path / "new").mkdir()
    new = read_spectra([_write(_new_layout(hdul, short_row=4, short_by=3), tmp_path / "new" / X1D)])
    trimmed = classic.filter(~((pl.col("integration") == 5) & (pl.col("channel") >= N_WL - 3)))
    assert new.equals(trimmed)


def test_empty_input_gives_empty_tables():
    assert read_spectra([]).schema == pl.Schema(SPECTRA_SCHEMA) and read_spectra([]).is_empty()
    assert read_images([]).schema == pl.Schema(IMAGE_TILE_SCHEMA) and read_images([]).is_empty()


# --- images ------------------------------------------------------------------


def test_tiles_reassemble_to_astropy_frames_bit_for_bit(tmp_path):
    paths = [_write(sample.make_image(70, 90, seed=k, dither=(k, -k)), tmp_path / CAL.format(k)) for k in (1, 2)]
    table = read_images(paths[::-1], tile_size=32)
    assert table.schema == pl.Schema(IMAGE_TILE_SCHEMA)
    assert table["seq"].to_list() == list(range(2 * 3 * 3))
    # source is the product's own name (FILENAME), the same for both of these copies
    assert table["source"].to_list() == [fits.getval(p, "FILENAME") for p in paths for _ in range(9)]
    first = table.filter(pl.col("frame") == 0)
    assert list(zip(first["y0"], first["x0"], first["ny"], first["nx"], strict=False)) == [
        (y, x, 32 if y < 64 else 6, 32 if x < 64 else 26) for y in (0, 32, 64) for x in (0, 32, 64)
    ]
    for frame, path in enumerate(paths):
        with fits.open(path) as hdul:
            assert set(table.filter(pl.col("frame") == frame)["event_time"]) == {hdul[0].header["EXPMID"]}
            for plane in ("sci", "err"):
                ours, theirs = assemble_frame(table, frame, plane), hdul[plane.upper()].data
                assert np.isnan(theirs).any() and np.array_equal(_bits(ours), _bits(theirs)), plane
            dq = hdul["DQ"].data
            assert dq.dtype == np.uint32 and (dq >= 2**31).any()
            assert np.array_equal(assemble_frame(table, frame, "dq"), dq)
    corner = table.row(by_predicate=pl.col("seq") == 8, named=True)
    assert tile_pixels(corner, "sci").shape == (6, 26) and tile_pixels(table[8], "dq").dtype == np.uint32


def test_calints_give_one_frame_per_integration(tmp_path):
    hdul = sample.make_image(40, 50, nints=3)
    path = _write(hdul, tmp_path / CALINTS)
    table = read_images([path], tile_size=64)
    assert table["frame"].to_list() == [0, 1, 2] and table["seq"].to_list() == [0, 1, 2]
    assert table["event_time"].to_list() == hdul["INT_TIMES"].data["int_mid_MJD_UTC"].tolist()
    with fits.open(path) as astropy_read:
        for i in range(3):
            for plane in ("sci", "err", "dq"):
                expected = astropy_read[plane.upper()].data[i]
                assert np.array_equal(_bits(tile_pixels(table[i], plane)), _bits(expected))


def test_i2d_without_dq_gets_zero_flags(tmp_path):
    hdul = sample.make_image(30, 30, extra_planes=False)
    del hdul["DQ"]
    hdul.append(fits.ImageHDU(np.ones((30, 30), np.float32), name="WHT"))
    hdul.append(fits.ImageHDU(np.ones((1, 30, 30), np.int32), name="CON"))
    path = _write(hdul, tmp_path / "jw09999-o002_t002_nircam_clear-f200w_i2d.fits")
    table = read_images([path], tile_size=30)
    assert len(table) == 1
    assert not tile_pixels(table, "dq").any()
    assert np.array_equal(_bits(tile_pixels(table, "sci")), _bits(hdul["SCI"].data))


def test_assemble_frame_refuses_missing_tiles(tmp_path):
    table = read_images([_write(sample.make_image(40, 40), tmp_path / CAL.format(1))], tile_size=16)
    with pytest.raises(ValueError, match="gaps"):
        assemble_frame(table.filter(pl.col("seq") != 4), 0, "sci")


# --- bad input ---------------------------------------------------------------


def _broken_products(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Each bad case: (path, words the error must contain besides the file name)."""
    cases = {}

    def case(key: str, hdul_or_bytes, name: str, words: str) -> None:
        path = tmp / key / name
        path.parent.mkdir()
        if isinstance(hdul_or_bytes, bytes):
            path.write_bytes(hdul_or_bytes)
        else:
            hdul_or_bytes.writeto(path)
        cases[key] = (path, words)

    x1d_bytes = sample.x1dints_bytes(4, 10)
    cal_bytes = sample.hdul_bytes(sample.make_image(30, 30))
    case("truncated_data", cal_bytes[:-1000], CAL.format(1), "truncated")
    case("truncated_header", cal_bytes[: 2880 * 2 + 400], CAL.format(1), "after the last complete HDU")
    case("garbage", b"this is not FITS at all " * 200, CAL.format(1), "not a readable FITS")

    hdul = fits.HDUList.fromstring(x1d_bytes)
    case("no_extract1d", fits.HDUList([hdul[0], hdul["INT_TIMES"]]), X1D, "without an EXTRACT1D extension")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul[2] = fits.BinTableHDU.from_columns([c for c in hdul[2].columns if c.name != "FLUX"], name="EXTRACT1D")
    case("no_flux", hdul, X1D, "no column 'FLUX'")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul["INT_TIMES"] = fits.BinTableHDU(hdul["INT_TIMES"].data[:2], name="INT_TIMES")
    case("short_int_times", hdul, X1D, "no row for integration 3")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    del hdul["INT_TIMES"]
    del hdul[0].header["EXPEND"]
    case("no_times", hdul, X1D, "no EXPEND")

    def image(**planes) -> fits.HDUList:
        """The cal product with planes replaced (an array) or removed (None)."""
        hdul = fits.HDUList.fromstring(cal_bytes)
        for name, data in planes.items():
            if data is None:
                del hdul[name]
            else:
                hdul[name].data = data
        return hdul

    sci = fits.HDUList.fromstring(cal_bytes)["SCI"].data
    case("no_sci", image(SCI=None), CAL.format(1), "without a SCI extension")
    case("no_err", image(ERR=None), CAL.format(1), "no ERR")
    case("shape", image(ERR=sci[:20].copy()), CAL.format(1), "differ in shape")
    case("float64", image(SCI=sci.astype(np.float64)), CAL.format(1), "expected float32")
    case(
        "x1d_named_cal",
        fits.HDUList.fromstring(x1d_bytes),
        "jw09999001001_04101_00001_nis_cal.fits",
        "a MultiSpecModel product (x1dints) is read as spectra, not images",
    )
    ramp = image()
    ramp[0].header["DATAMODL"] = "RampModel"
    case("unsupported", ramp, "jw09999002001_02101_00001_nrcb1_uncal.fits", "DATAMODL=RampModel")
    hst = image()
    hst[0].header["TELESCOP"] = "HST"
    case("not_jwst", hst, CAL.format(1), "not a JWST product (DATAMODL=ImageModel, TELESCOP=HST)")
    no_model = image()
    del no_model[0].header["DATAMODL"]
    case("no_model", no_model, CAL.format(1), "no data model in the header")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    case(
        "missing_integrations",
        fits.HDUList([hdul[0], *hdul[1:3], hdul["INT_TIMES"]]),
        X1D,
        "spectral order 1 holds 2 integrations, the header announces 1..4 (4); missing [3, 4]",
    )

    # Issue 12: corrupt files that raised other exceptions, or were read wrong.
    checksummed = tmp / "checksummed.fits"
    fits.HDUList.fromstring(cal_bytes).writeto(checksummed, checksum=True)
    data = bytearray(checksummed.read_bytes())
    with fits.open(checksummed) as hdul:
        sci_data, sci_header = hdul["SCI"].fileinfo()["datLoc"], hdul["SCI"].fileinfo()["hdrLoc"]
    flipped = data.copy()
    flipped[sci_data + 1234] ^= 0x04  # a valid float, another value
    case("datasum", bytes(flipped), CAL.format(1), "HDU 1 (SCI): DATASUM does not match")
    edited = data.copy()
    card = bytes(edited[sci_header : sci_header + 2880]).index(b"BUNIT   = 'MJy/sr")
    edited[sci_header + card + 11 : sci_header + card + 14] = b"MJY"  # still valid FITS, the header changed
    case("checksum", bytes(edited), CAL.format(1), "HDU 1 (SCI): CHECKSUM does not match")
    raw = bytearray(cal_bytes)
    at = raw.index(b"BITPIX  =                  -32")  # the SCI header's BITPIX, to an illegal value
    raw[at : at + 30] = b"BITPIX  =                  -31"
    case("bitpix", bytes(raw), CAL.format(1), "HDU 1 (SCI): BITPIX = -31, expected one of")
    raw = bytearray(cal_bytes)
    at = raw.index(b"NAXIS1  =")
    raw[at + 9 : at + 30] = b"   'not a number'    "
    case("naxis_string", bytes(raw), CAL.format(1), "not a readable FITS file")
    raw = bytearray(x1d_bytes)
    at = raw.index(b"TFORM2  = 'D")
    raw[at + 11] = ord("E")  # FLUX as float32: the row is 4 bytes short of NAXIS1
    case("tform", bytes(raw), X1D, "EXTRACT1D (HDU 1): its columns (TFORMn) need")

    def replace_column(name: str, column: fits.Column) -> fits.HDUList:
        """The x1dints with one column of its second table replaced."""
        hdul = fits.HDUList.fromstring(x1d_bytes)
        table = hdul[2]
        columns = [
            column if c.name == name else fits.Column(c.name, c.format, c.unit, bzero=c.bzero, array=table.data[c.name])
            for c in table.columns
        ]
        hdul[2] = fits.BinTableHDU.from_columns(columns, header=table.header)
        return hdul

    flux = fits.HDUList.fromstring(x1d_bytes)[2].data["FLUX"]
    case(
        "integer_flux",
        replace_column("FLUX", fits.Column("FLUX", "K", array=flux.astype(np.int64))),
        X1D,
        "column FLUX is >i8, expected a floating-point column",
    )
    dq = (fits.HDUList.fromstring(x1d_bytes)[2].data["DQ"].astype(np.int64) - 2**31).astype(np.int32)
    case(
        "int32_dq",
        replace_column("DQ", fits.Column("DQ", "J", array=dq)),
        X1D,
        "column DQ is >i4, expected uint32 flags",
    )
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul[3].columns.change_name("SURF_BRIGHT", "SURF_BRIGHU")
    case("renamed_column", hdul, X1D, "columns ['SURF_BRIGHU'] are not columns of a JWST spectral table")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul[3].header["INT_NUM"] = 2
    case("integration_twice", hdul, X1D, "missing [3]; more than once [2]")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul[0].header["NINTS"] = 3
    case(
        "intend_past_nints", hdul, X1D, "INTSTART = 1, INTEND = 4, NINTS = 3: expected 1 <= INTSTART <= INTEND <= NINTS"
    )
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul[0].header["INTEND"] = "4"
    case("string_intend", hdul, X1D, "primary header: INTEND = '4' is not an integer")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul[0].header["EXPMID"] = True
    case("logical_expmid", hdul, X1D, "primary header: EXPMID = True is not a number")
    hdul = fits.HDUList.fromstring(x1d_bytes)
    hdul["INT_TIMES"].name = "INT_TIMEX"  # else read as a product without INT_TIMES, timed from the header
    case("int_times_renamed", hdul, X1D, "(INT_TIMEX) is not an extension of a MultiSpecModel")
    no_asdf = image()
    no_asdf[0].header["ORIGIN"], no_asdf[0].header["HWOSIM"] = "STSCI", "REAL"
    case("no_asdf", no_asdf, CAL.format(1), "no ASDF extension: the JWST pipeline writes one last in every product")
    return cases


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return _broken_products(tmp_path_factory.mktemp("broken"))


SPECTRA_CASES = (
    "no_extract1d",
    "no_flux",
    "short_int_times",
    "no_times",
    "missing_integrations",
    "tform",
    "integer_flux",
    "int32_dq",
    "renamed_column",
    "integration_twice",
    "intend_past_nints",
    "string_intend",
    "logical_expmid",
    "int_times_renamed",
)
IMAGE_CASES = (
    "truncated_data",
    "truncated_header",
    "garbage",
    "no_sci",
    "no_err",
    "shape",
    "float64",
    "x1d_named_cal",
    "unsupported",
    "not_jwst",
    "no_model",
    "datasum",
    "checksum",
    "bitpix",
    "naxis_string",
    "no_asdf",
)


@pytest.mark.parametrize("key", SPECTRA_CASES + IMAGE_CASES)
def test_bad_input_raises_naming_the_file(broken, key):
    path, words = broken[key]
    read = read_spectra if key in SPECTRA_CASES else read_images
    with pytest.raises(FitsProductError, match=re.escape(path.name)) as error:
        read([path])
    assert words in str(error.value)


def test_checksummed_products_read_as_without_checksums(tmp_path):
    """CHECKSUM and DATASUM are verified on every HDU (scaled DQ, tables) and
    do not change what is read."""
    for name, hdul, read in (
        (CAL.format(1), sample.make_image(30, 40), read_images),
        (X1D, _x1dints(4, 10), read_spectra),
    ):
        plain, summed = tmp_path / "plain" / name, tmp_path / "summed" / name
        for path, checksum in ((plain, False), (summed, True)):
            path.parent.mkdir(exist_ok=True)
            hdul.writeto(path, checksum=checksum)
        with fits.open(summed) as opened:
            assert all("CHECKSUM" in hdu.header and "DATASUM" in hdu.header for hdu in opened)
        assert read([summed]).equals(read([plain])) and identify(summed).facts == identify(plain).facts


def test_an_error_names_the_file_it_is_about_while_others_are_open(tmp_path):
    """All files of an observation are open at once; an error in the first
    must not be reported against the last one opened."""
    hdul = _x1dints()
    paths = []
    for k, ints in enumerate((range(1, 7), range(7, N_INT + 1)), start=1):
        primary = fits.PrimaryHDU(header=hdul[0].header.copy())
        primary.header["INTSTART"], primary.header["INTEND"] = ints[0], ints[-1]
        tables = [hdul[i].copy() for i in ints]
        if k == 1:
            tables[2].header["SPORDER"] = "one"  # read while processing, after both files are open
        paths.append(
            _write(
                fits.HDUList([primary, *tables, hdul["INT_TIMES"].copy()]),
                tmp_path / X1D.replace("seg001", f"seg{k:03d}"),
            )
        )
    with pytest.raises(FitsProductError) as error:
        read_spectra(paths[::-1])
    message = str(error.value)
    assert message.startswith(f"{paths[0]}: EXTRACT1D (HDU 3): SPORDER = 'one' is not an integer"), message
    assert paths[1].name not in message


def test_wrong_family_missing_file_and_duplicates_are_refused(tmp_path):
    cal = _write(sample.make_image(20, 20), tmp_path / CAL.format(1))
    with pytest.raises(FitsProductError, match=re.escape(f"{cal.name}: a ImageModel product (cal) is read as images")):
        read_spectra([cal])
    with pytest.raises(FitsProductError, match="given 2 times"):
        read_images([cal, tmp_path / ".." / tmp_path.name / cal.name])
    missing = tmp_path / CAL.format(9)
    with pytest.raises(FitsProductError, match=re.escape(missing.name)):
        read_images([missing])


# --- product models from the headers ------------------------------------------


def _x1d(tmp_path: Path) -> tuple[Path, fits.HDUList]:
    """An x1d (one spectrum per exposure): the first integration of the sample, no INT_NUM, no INT_TIMES."""
    hdul = _x1dints(4, 10)
    table = hdul[1].copy()
    del table.header["INT_NUM"]
    primary = fits.PrimaryHDU(header=hdul[0].header.copy())
    primary.header["TSOVISIT"] = False
    return _write(fits.HDUList([primary, table]), tmp_path / "jw09999001001_04101_00001_nis_x1d.fits"), hdul


def test_x1d_is_one_packet_at_mid_exposure_with_its_variances(tmp_path):
    path, hdul = _x1d(tmp_path)
    info = identify(path)
    assert (info.model, info.family, info.product_type) == ("MultiSpecModel", "spectra", "x1d")
    table = read_spectra([path])
    assert table["seq"].unique().to_list() == [0] and table["integration"].unique().to_list() == [1]
    assert table["event_time"].unique().to_list() == [hdul[0].header["EXPMID"]]
    for column in ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT", "SURF_BRIGHT", "NPIXELS"):
        assert np.array_equal(_bits(table[column.lower()].to_numpy()), _bits(hdul[1].data[column].astype(np.float64)))


def test_missing_variance_columns_read_as_nan(tmp_path):
    hdul = _x1dints(3, 8)
    for i in range(1, 4):
        hdul[i] = fits.BinTableHDU.from_columns(
            [c for c in hdul[i].columns if not c.name.startswith("FLUX_VAR")], header=hdul[i].header
        )
    table = read_spectra([_write(hdul, tmp_path / X1D)])
    assert table.schema == pl.Schema(SPECTRA_SCHEMA)
    assert table["flux_var_poisson"].is_nan().all() and not table["npixels"].is_nan().any()


def _slit_hdus(ny: int, nx: int, seed: int, ver: int = 1) -> list[fits.ImageHDU]:
    rng = np.random.default_rng(seed)
    planes = {
        "SCI": rng.normal(1.0, 0.1, (ny, nx)).astype(np.float32),
        "ERR": np.full((ny, nx), 0.1, np.float32),
        "DQ": rng.integers(0, 4, (ny, nx)).astype(np.uint32),
        "WAVELENGTH": np.tile(np.linspace(0.6, 5.3, nx, dtype=np.float32), (ny, 1)),
        "VAR_POISSON": np.full((ny, nx), 0.008, np.float32),
        "VAR_RNOISE": np.full((ny, nx), 0.002, np.float32),
    }
    planes["WAVELENGTH"][:, :3] = np.nan  # outside the slit's trace
    hdus = []
    for name, data in planes.items():
        hdu = fits.ImageHDU(data, name=name, ver=ver)
        if name == "SCI":
            hdu.header["SLTNAME"], hdu.header["BUNIT"] = f"S{ver}", "MJy/sr"
        hdus.append(hdu)
    return hdus


def _slit_primary(model: str) -> fits.PrimaryHDU:
    primary = sample.make_image(8, 8)[0].copy()
    primary.header["DATAMODL"] = model
    primary.header["EXP_TYPE"] = "NRS_MSASPEC"
    primary.header["S_PHOTOM"] = "COMPLETE"
    return primary


def test_slit_model_keeps_its_wavelength_and_variance_planes(tmp_path):
    hdul = fits.HDUList([_slit_primary("SlitModel"), *_slit_hdus(25, 41, seed=1)])
    path = _write(hdul, tmp_path / "renamed_slitlet.fits")
    info = identify(path)
    assert (info.model, info.family, info.product_type) == ("SlitModel", "images", "cal")
    table = read_images([path], tile_size=16)
    for plane in ("sci", "err", "dq", "wavelength", "var_poisson", "var_rnoise"):
        assert np.array_equal(_bits(assemble_frame(table, 0, plane)), _bits(hdul[plane.upper()].data)), plane
    assert table["var_flat"].null_count() == len(table)  # the product has no VAR_FLAT


def test_multislit_model_gives_one_frame_per_slit(tmp_path):
    slits = [_slit_hdus(11, 30, seed=1, ver=1), _slit_hdus(9, 45, seed=2, ver=2)]
    hdul = fits.HDUList([_slit_primary("MultiSlitModel"), *slits[0], *slits[1]])
    path = _write(hdul, tmp_path / "jw09999005001_03101_00001_nrs1_cal.fits")
    table = read_images([path], tile_size=64)
    assert table["frame"].to_list() == [0, 1]
    for frame, hdus in enumerate(slits):
        for hdu in hdus:
            got = assemble_frame(table, frame, hdu.name.lower())
            assert np.array_equal(_bits(got), _bits(hdu.data)), (frame, hdu.name)


def test_empty_int_times_fall_back_to_the_exposure(tmp_path):
    hdul = sample.make_image(20, 30, nints=2)
    hdul["INT_TIMES"] = fits.BinTableHDU(hdul["INT_TIMES"].data[:0], name="INT_TIMES")
    table = read_images([_write(hdul, tmp_path / CALINTS)], tile_size=64)
    h = hdul[0].header
    step = (h["EXPEND"] - h["EXPSTART"]) / h["NINTS"]
    assert table["event_time"].to_list() == [h["EXPSTART"] + 0.5 * step, h["EXPSTART"] + 1.5 * step]


def test_product_types_come_from_the_headers_not_the_names(tmp_path):
    cases = {
        "a.fits": (sample.make_image(10, 10), "cal"),
        "b_x1dints.fits": (sample.make_image(10, 10, nints=2), "calints"),
        "c.fits": (_x1dints(2, 5), "x1dints"),
    }
    rate = sample.make_image(10, 10)
    rate[0].header["S_PHOTOM"] = "SKIPPED"
    rate["SCI"].header["BUNIT"] = "DN/s"
    cases["d_cal.fits"] = (rate, "rate")
    i2d = sample.make_image(10, 10)
    i2d[0].header["S_RESAMP"] = "COMPLETE"
    cases["e.fits"] = (i2d, "i2d")
    for name, (hdul, expected) in cases.items():
        assert identify(_write(hdul, tmp_path / name)).product_type == expected, name


def test_header_facts_one_row_per_product(tmp_path):
    paths = [_write(_x1dints(3, 5), tmp_path / X1D), _x1d(tmp_path)[0]]
    facts = header_facts(paths)
    assert facts["file"].to_list() == sorted(p.name for p in paths)
    row = facts.row(0, named=True)
    header = fits.getheader(paths[0])
    assert row["effinttm"] == header["EFFINTTM"] and row["nints"] == header["NINTS"]
    assert row["detector"] == header["DETECTOR"] and row["bunit"] == "Jy"
    assert set(facts["product_type"]) == {"x1dints", "x1d"}


def test_unsupported_models_name_file_model_and_the_supported_ones(tmp_path):
    cube = sample.make_image(6, 6, nints=2)
    cube[0].header["DATAMODL"] = "IFUCubeModel"
    path = _write(cube, tmp_path / "jw09999001001_04101_00001_nrs1_s3d.fits")
    with pytest.raises(UnsupportedProductError) as error:
        identify(path)
    message = str(error.value)
    assert path.name in message and "DATAMODL=IFUCubeModel" in message and "TELESCOP=JWST" in message
    assert "MultiSpecModel (x1dints, x1d)" in message and "MultiSlitModel" in message
