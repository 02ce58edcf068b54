"""Corrupted real JWST products: every variant is refused with a FitsProductError
naming the file, or read exactly as the oracle in ``fits_fuzz`` says it must be.

The products are the real ones in shared/data/jwst (skipped without them).
Per product and class (truncate, header_flip, data_flip, header_edit),
``HWOSIM_FITS_FUZZ`` variants (default 9: 252 in all, ~20 s), from seed
``HWOSIM_FITS_FUZZ_SEED`` (default 12, the tracker issue). A longer run:
``benchmarks/fuzz_fits.py``. See ``fits_fuzz``'s docstring for what counts
as a right answer, and why.
"""

from __future__ import annotations

import os

import pytest

from hwosim_assets_tests import fits_fuzz
from hwosim_assets_tests.mast_server import real_jwst_files

REAL = real_jwst_files()
pytestmark = pytest.mark.skipif(not REAL, reason="no real JWST products beside the repository (../shared/data/jwst)")
PER_CLASS = int(os.environ.get("HWOSIM_FITS_FUZZ", "9"))
SEED = int(os.environ.get("HWOSIM_FITS_FUZZ_SEED", "12"))


@pytest.fixture(scope="module")
def products():
    return [fits_fuzz.Product.load(path) for path in REAL]


def test_every_corrupted_variant_is_refused_or_read_right(products, tmp_path):
    variants = fits_fuzz.variants(products, {kind: PER_CLASS for kind in fits_fuzz.CLASSES}, SEED)
    outcomes = [fits_fuzz.judge(variant, tmp_path) for variant in variants]
    report = fits_fuzz.summary(outcomes)
    print(report)
    assert not any(o.problems for o in outcomes), report
    results = {(o.variant.kind, o.result) for o in outcomes}
    # The run exercised both answers where both are possible, and truncation is always an error.
    assert {("header_flip", "refused"), ("header_flip", "accepted"), ("data_flip", "accepted")} <= results
    assert {("header_edit", "refused"), ("truncate", "refused")} <= results
    assert ("truncate", "accepted") not in results


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_every_hdu_boundary_truncation_is_an_error(path, tmp_path):
    """A file cut where an HDU starts is still valid FITS, one HDU short or more:
    the x1dints loses integrations, the others their ASDF extension (and planes)."""
    product = fits_fuzz.Product.load(path)
    for hdu in product.hdus[1:]:
        cut = hdu.header[0]
        variant = fits_fuzz.Variant("truncate", product, product.data[:cut], f"cut at HDU {hdu.index} ({hdu.name})")
        outcome = fits_fuzz.judge(variant, tmp_path)
        assert outcome.result == "refused", fits_fuzz.summary([outcome])


def test_the_truncated_x1dints_of_the_issue_is_an_error(tmp_path):
    """Issue 12: the x1dints cut after its first EXTRACT1D read as 388 rows of
    3,880, silently. It is refused for its missing ASDF extension; and with the
    ASDF extension put back (valid FITS, a pipeline product's every extension
    but nine EXTRACT1D), for its missing integrations."""
    [path] = [p for p in REAL if p.name.endswith("_x1dints.fits")] or pytest.skip("no real x1dints")
    product = fits_fuzz.Product.load(path)
    second = next(h for h in product.hdus if h.name == "EXTRACT1D" and h.index > 2)
    asdf = product.hdus[-1]
    assert asdf.name == "ASDF"
    cut, patched = tmp_path / "cut" / path.name, tmp_path / "patched" / path.name
    for file, data in (
        (cut, product.data[: second.header[0]]),
        (patched, product.data[: second.header[0]] + product.data[asdf.header[0] :]),
    ):
        file.parent.mkdir()
        file.write_bytes(data)
    with pytest.raises(fits_fuzz.FitsProductError, match="no ASDF extension") as error:
        fits_fuzz.read_family("spectra", [cut], 64)
    assert str(cut) in str(error.value)
    with pytest.raises(fits_fuzz.FitsProductError, match="holds 1 integrations, the header announces 1..10") as error:
        fits_fuzz.read_family("spectra", [patched], 64)
    assert str(patched) in str(error.value) and "missing [2, 3, 4, 5, 6]..." in str(error.value)
