"""A long run of the FITS fuzz test: corrupted variants of the real products, judged by the same oracle.

    python benchmarks/fuzz_fits.py [--per-class N] [--seeds 1 2 3] [--kinds truncate header_flip ...]

For each seed, ``N`` variants per product and class (truncate, header_flip,
data_flip, header_edit; see ``hwosim_assets_tests/fits_fuzz.py`` for the
mutations and the oracle). Prints the outcomes by class, every failure, and
for the refusals, how many astropy's own verification also rejects and the
reasons the reader gave where it does not (those are our consistency checks:
worth reading, to see that none refuses a valid file for a bad reason).
Exit status 1 if any variant failed. The test suite runs 9 per class, seed 12.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwosim_assets_tests import fits_fuzz  # noqa: E402
from hwosim_assets_tests.mast_server import REAL_JWST_DIR, real_jwst_files  # noqa: E402


def reason(message: str) -> str:
    """A refusal's message without the path and the numbers, to count alike ones together."""
    message = message.split(".fits: ", 1)[-1]
    return re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'...'", message))[:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--kinds", nargs="+", default=list(fits_fuzz.CLASSES), choices=fits_fuzz.CLASSES)
    args = parser.parse_args()
    files = real_jwst_files()
    if not files:
        print(f"no real JWST products in {REAL_JWST_DIR}")
        return 1
    products = [fits_fuzz.Product.load(path) for path in files]
    outcomes, unshared = [], Counter()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            per_class = {kind: args.per_class if kind in args.kinds else 0 for kind in fits_fuzz.CLASSES}
            for variant in fits_fuzz.variants(products, per_class, seed):
                outcome = fits_fuzz.judge(variant, Path(folder))
                outcomes.append(outcome)
                if outcome.result == "refused":
                    path = Path(folder) / variant.product.path.name
                    path.write_bytes(variant.data)
                    if fits_fuzz.astropy_verdict(path) is None:
                        unshared[variant.kind, reason(outcome.detail)] += 1
                    path.unlink()
    elapsed = time.perf_counter() - started
    print(fits_fuzz.summary(outcomes))
    refused = Counter(o.variant.kind for o in outcomes if o.result == "refused")
    print(f"\n{elapsed:.1f} s, {1e3 * elapsed / max(len(outcomes), 1):.0f} ms a variant")
    print("\nrefused by the reader though astropy's verification accepts (our consistency checks):")
    for kind in fits_fuzz.CLASSES:
        mine = sum(n for (k, _), n in unshared.items() if k == kind)
        print(f"  {kind:12s} {mine:4d} of {refused[kind]:4d} refusals")
    for (kind, why), n in unshared.most_common():
        print(f"  {n:4d}  {kind:12s} {why}")
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
