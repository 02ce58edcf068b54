"""Ingest throughput into SeaweedFS: raw_products and bronze vs boto3, HTTP GET and cp.

    python benchmarks/bench_ingest.py [--quick] [--rounds N]

Makes a large product set with ``hwosim_assets.ingest.sample`` (full: a
2048 x 2048 NIRCam-like calints with 6 integrations and a 1000-integration
x 2048-channel x1dints, ~0.8 GB; --quick: ~30 MB), serves it with the test
suite's MAST replay server and starts SeaweedFS with the test suite's
``services`` helper. Then, per round, in the same process:

* ours: ``jwst_catalog``, ``raw_products`` per observation (MAST download
  through astroquery to a temp file, size and SHA-256 checked, S3 multipart
  put with the SHA-256 as metadata), ``bronze_*`` per family (S3 get, FITS
  read, Parquet write, S3 put), each materialized as the UI would, on a fresh bucket;
* baselines on the same files: plain ``boto3 upload_file`` (default transfer
  settings) into another fresh bucket; ``download_product`` alone (the
  download half of raw_products); a plain streaming ``requests`` GET of each
  file from the replay server to disk; ``cp`` to local disk.

Prints MB/s (best of the rounds), the RSS each step adds at its peak, and ours / baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwosim_assets.defs.mast.partitions import FAMILY_PARTITIONS  # noqa: E402
from hwosim_assets.defs.resources import resources_from_settings  # noqa: E402
from hwosim_assets.ingest import sample  # noqa: E402
from hwosim_assets.ingest.mast import DOWNLOAD_PATH, download_product  # noqa: E402
from hwosim_assets.settings import Settings  # noqa: E402
from hwosim_assets_tests import services  # noqa: E402
from hwosim_assets_tests.mast_server import MastReplayServer  # noqa: E402
from hwosim_assets_tests.pipeline import materialize  # noqa: E402

MB = 1e6


def make_products(folder: Path, quick: bool) -> list[Path]:
    """One calints (image observation) and one x1dints (spectra observation) with sample headers."""
    side, nints = (512, 3) if quick else (2048, 6)
    n_int, n_wl = (200, 500) if quick else (1000, 2048)
    images, spectra = sample.SAMPLE_EXPOSURES["images"], sample.SAMPLE_EXPOSURES["spectra"]
    calints = folder / images.filename("calints")
    sample.make_image(side, side, nints, exposure=images).writeto(calints)
    x1dints = folder / spectra.filename("x1dints")
    x1dints.write_bytes(sample.x1dints_bytes(n_int, n_wl, exposure=spectra))
    return [calints, x1dints]


def peak_rss_mb(reset: bool = False) -> float:
    """The process's peak RSS (VmHWM); ``reset`` first brings it down to the current RSS."""
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb * 1024 / MB


def timed(fn) -> tuple[float, float]:
    """(seconds, MB of RSS the call added at its peak) of one call."""
    start = peak_rss_mb(reset=True)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, peak_rss_mb() - start


def ours(fs: services.SeaweedFS, mast: MastReplayServer) -> dict[str, tuple[int, float, float]]:
    """{step: (input bytes, seconds, peak RSS MB)} for one run of the pipeline on a fresh bucket."""
    bucket = fs.new_bucket()
    env = {"HWOSIM_LAKE_URL": f"s3://{bucket}/bench", "HWOSIM_SOURCE": "mast", "HWOSIM_MAST_URL": mast.url}
    resources, instance = resources_from_settings(Settings.from_env(env)), dg.DagsterInstance.ephemeral()
    selection = {"programs": [sample.SAMPLE_PROGRAM], "product_types": ["x1dints", "calints"]}
    materialize("jwst_catalog", resources, instance, run_config={"ops": {"jwst_catalog": {"config": selection}}})
    manifest = resources["lake"].read_parquet("catalog/jwst_catalog.parquet")
    size_of = {obs: int(manifest.filter(manifest["obs_id"] == obs)["size"].sum()) for obs in manifest["obs_id"]}
    steps = {}
    for obs_id in instance.get_dynamic_partitions("observations"):
        seconds, rss = timed(lambda obs_id=obs_id: materialize("raw_products", resources, instance, obs_id))
        steps[f"raw_products {obs_id}"] = (size_of[obs_id], seconds, rss)
    for family in ("spectra", "images"):
        for obs_id in instance.get_dynamic_partitions(FAMILY_PARTITIONS[family].name):
            seconds, rss = timed(
                lambda family=family, obs_id=obs_id: materialize(f"bronze_{family}", resources, instance, obs_id)
            )
            steps[f"bronze_{family} {obs_id}"] = (size_of[obs_id], seconds, rss)
    fs.drop_bucket(bucket)
    return steps


def baselines(fs: services.SeaweedFS, mast: MastReplayServer, files: list[Path], scratch: Path) -> dict[str, tuple]:
    """{baseline: (seconds, peak RSS added MB)} for all files, one after the other."""
    bucket = fs.new_bucket()
    client = fs.client()
    out = {"boto3 upload_file": timed(lambda: [client.upload_file(str(p), bucket, p.name) for p in files])}
    fs.drop_bucket(bucket)

    def download_all():  # the download half of raw_products alone: astroquery, size checked
        for p in files:
            row = {"filename": p.name, "data_uri": f"mast:JWST/product/{p.name}", "size": p.stat().st_size}
            download_product(row, scratch, server_url=mast.url).unlink()

    out["download_product (astroquery download_file, checked)"] = timed(download_all)

    def get_all():
        with requests.Session() as session:
            for p in files:
                url = f"{mast.url}{DOWNLOAD_PATH}?uri=mast:JWST/product/{p.name}"
                with session.get(url, stream=True) as r, open(scratch / p.name, "wb") as f:
                    r.raise_for_status()
                    for block in r.iter_content(1 << 20):
                        f.write(block)
                (scratch / p.name).unlink()

    out["HTTP GET from the replay server (requests)"] = timed(get_all)
    out["cp to local disk"] = timed(lambda: subprocess.run(["cp", *map(str, files), str(scratch)], check=True))
    for p in files:
        (scratch / p.name).unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~30 MB of products instead of ~0.8 GB, one round")
    parser.add_argument("--rounds", type=int, help="rounds (best kept); default 1 quick, 2 full")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)

    work = Path(tempfile.mkdtemp(prefix="hwosim-bench-ingest-"))
    fs = None
    try:
        (work / "products").mkdir()
        (work / "scratch").mkdir()
        t = time.perf_counter()
        files = make_products(work / "products", args.quick)
        total = sum(p.stat().st_size for p in files)
        print(f"products ({time.perf_counter() - t:.0f} s to make):")
        for p in files:
            print(f"  {p.name}  {p.stat().st_size / MB:8.1f} MB")

        fs = services.start_seaweedfs()
        os.environ.update({**fs.env(), "AWS_EC2_METADATA_DISABLED": "true"})
        best_ours: dict[str, tuple[int, float, float]] = {}
        best_base: dict[str, tuple[float, float]] = {}
        with MastReplayServer(work / "products") as mast:
            for r in range(rounds):  # ours and the baselines alternate; best of the rounds is kept
                for step, (nbytes, seconds, rss) in ours(fs, mast).items():
                    if step not in best_ours or seconds < best_ours[step][1]:
                        best_ours[step] = (nbytes, seconds, rss)
                for name, (seconds, rss) in baselines(fs, mast, files, work / "scratch").items():
                    if name not in best_base or seconds < best_base[name][0]:
                        best_base[name] = (seconds, rss)
                print(f"round {r + 1}/{rounds} done")
    finally:
        if fs is not None:
            services.close_seaweedfs(fs)
        shutil.rmtree(work, ignore_errors=True)

    upload = total / MB / best_base["boto3 upload_file"][0]
    row = "{:62} {:>7} {:>7} {:>7} {:>9} {:>14}"
    print("\n" + row.format("step (ours)", "MB", "s", "MB/s", "+RSS MB", "vs boto3 put"))
    raw_bytes = raw_seconds = 0.0
    for step, (nbytes, seconds, rss) in best_ours.items():
        speed = nbytes / MB / seconds
        print(
            row.format(
                step, f"{nbytes / MB:.1f}", f"{seconds:.2f}", f"{speed:.1f}", f"{rss:.0f}", f"{speed / upload:.2f}x"
            )
        )
        if step.startswith("raw_products"):
            raw_bytes, raw_seconds = raw_bytes + nbytes, raw_seconds + seconds
    raw_speed = raw_bytes / MB / raw_seconds
    print(
        row.format(
            "raw_products, all observations",
            f"{raw_bytes / MB:.1f}",
            f"{raw_seconds:.2f}",
            f"{raw_speed:.1f}",
            "",
            f"{raw_speed / upload:.2f}x",
        )
    )
    print("\n" + row.format("baseline, all files", "MB", "s", "MB/s", "+RSS MB", "raw / this"))
    for name, (seconds, rss) in best_base.items():
        speed = total / MB / seconds
        print(
            row.format(
                name, f"{total / MB:.1f}", f"{seconds:.2f}", f"{speed:.1f}", f"{rss:.0f}", f"{raw_speed / speed:.2f}x"
            )
        )
    serial = best_base["boto3 upload_file"][0] + best_base["HTTP GET from the replay server (requests)"][0]
    print(
        row.format(
            "HTTP GET then upload_file (sum of the two)",
            f"{total / MB:.1f}",
            f"{serial:.2f}",
            f"{total / MB / serial:.1f}",
            "",
            f"{raw_speed / (total / MB / serial):.2f}x",
        )
    )


if __name__ == "__main__":
    main()
