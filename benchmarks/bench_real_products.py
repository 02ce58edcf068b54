"""Reading the real JWST products into bronze: what each becomes, and how fast, against astropy.

    python benchmarks/bench_real_products.py [--rounds N] [--markdown]

For every ``*.fits`` in ../shared/data/jwst (the folder the tests use), in
the same process and in interleaved rounds (best of N after a warm-up):

* ours: ``products.identify`` + the family's bronze reader (``read_family``,
  128-pixel tiles), i.e. the work of ``bronze_*`` minus the lake I/O;
* baseline: astropy's own full read of the same file, every HDU's data
  copied into memory (``fits.open`` then ``np.array(hdu.data)``), which any
  reader has to do at least.

Prints, per product: its model and product type as read from the headers,
what a packet is, packets and rows per packet, MB/s of ours and of the
baseline, and ours / baseline. ``--markdown`` prints the README's table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwosim_assets.ingest.fits_reader import read_family  # noqa: E402
from hwosim_assets.ingest.products import identify  # noqa: E402
from hwosim_assets.records import FAMILIES  # noqa: E402
from hwosim_assets_tests.mast_server import REAL_JWST_DIR, real_jwst_files  # noqa: E402


def ours(path: Path):
    info = identify(path)
    return info, read_family(info.family, [path], 128)


def astropy_read(path: Path) -> int:
    with fits.open(path) as hdul:
        return sum(np.array(hdu.data).nbytes for hdu in hdul if hdu.data is not None)


def best(fn, path: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    files = real_jwst_files()
    if not files:
        print(f"no real JWST products in {REAL_JWST_DIR}")
        return 1
    for path in files:  # warm-up: imports, astropy's caches
        ours(path), astropy_read(path)
    rows = []
    for path in files:
        info, table = ours(path)
        t_ours = t_astropy = float("inf")
        for _ in range(args.rounds):  # interleaved, so a noisy spell hits both
            t_ours = min(t_ours, best(ours, path, 1))
            t_astropy = min(t_astropy, best(astropy_read, path, 1))
        mb = path.stat().st_size / 1e6
        packets = table["seq"].n_unique()
        rows.append(
            (
                path.name,
                info.model,
                info.product_type,
                FAMILIES[info.family].packet,
                packets,
                len(table) / packets,
                mb,
                mb / t_ours,
                mb / t_astropy,
                t_astropy / t_ours,
            )
        )
    if args.markdown:
        print("| file | model | type | packets | rows per packet | MB | bronze MB/s | astropy MB/s | ours / astropy |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, model, kind, _, packets, per, mb, ours_mbs, base_mbs, ratio in rows:
            print(
                f"| `{name[:48]}` | {model} | {kind} | {packets} | {per:g} | {mb:.2f} | {ours_mbs:.1f} | "
                f"{base_mbs:.1f} | {ratio:.2f}x |"
            )
        return 0
    print(
        f"{'file':50s} {'model':15s} {'type':8s} {'pkts':>5s} {'rows/pkt':>8s} {'MB':>6s} "
        f"{'ours MB/s':>9s} {'astropy':>8s} {'ratio':>6s}"
    )
    for name, model, kind, _, packets, per, mb, ours_mbs, base_mbs, ratio in rows:
        print(
            f"{name[:50]:50s} {model:15s} {kind:8s} {packets:5d} {per:8g} {mb:6.2f} {ours_mbs:9.1f} "
            f"{base_mbs:8.1f} {ratio:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
