"""Perturbation engine benchmark: speed against two baselines, and memory on
a product larger than memory should allow.

    python benchmarks/bench_perturb.py            # 8 frames of 2048^2, a 2.2 GB product
    python benchmarks/bench_perturb.py --quick    # 2 frames, a 0.3 GB product
    python benchmarks/bench_perturb.py --kinds    # also each kind's cost on one frame

Speed: the ``nominal`` profile on a stack of 2048 x 2048 float32 frames,
against, in the same run,

  (a) the seed project's algorithm, reimplemented from its description:
      Gaussian noise added to a copy, per-pixel Bernoulli NaNs, uniform random
      corruption, Python loops over the (three colour) channels;
  (b) numpy's bare cost of one Gaussian field of the same size,
      ``np.random.default_rng().standard_normal(shape)``.

Targets: at least 15x faster than (a), and at least 0.7x the speed of (b).
"Ours" is timed as the engine runs: the frames cut into 128-pixel tiles (the
packets of a bronze table), including the copy of the input planes; the
whole-frame and DataFrame-in/DataFrame-out figures are printed alongside.
Each figure is the best of several interleaved rounds after a warm-up (the
machine is shared, so the best run is the one least disturbed).

Per kind (``--kinds``): each kind of ``nominal`` applied alone to a fresh
batch of one frame's 256 tiles (the engine's unit of work, one thread), best
of several runs, next to the input copies and the electron-scale estimate
every batch starts with (once per batch, shared by all its kinds) and numpy's
field of the same size - where a speed regression comes from. Where the
profile has both, pointing_jitter is timed as the engine runs it (its
noise-restoring Gaussian left to read_noise's field) and read_noise with
the jitter's variance to fold in.

Memory: a bronze image Parquet file of more than 2 GB is generated batch by
batch (never held in memory), then perturbed with ``perturb_parquet`` in a
fresh child process, whose peak RSS is its VmHWM (/proc/self/status). With
``--memory-profiles all`` every profile of profiles.yaml runs in turn on the
same file, each in its own fresh process; ``--bronze PATH`` keeps the file
for later runs:

    python benchmarks/bench_perturb.py --skip-speed --memory-profiles all --bronze /tmp/bronze-2g.parquet
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hwosim_assets.perturb import load_profiles, perturb_images, perturb_parquet  # noqa: E402
from hwosim_assets.perturb.batch import Batch  # noqa: E402
from hwosim_assets.perturb.draws import Draws  # noqa: E402
from hwosim_assets.perturb.engine import CHUNK_ELEMENTS, _Run, _workers, perturb_tile_stack  # noqa: E402
from hwosim_assets.perturb.kinds import ELEMENT_KINDS  # noqa: E402
from hwosim_assets.perturb.synthetic import tile_rows  # noqa: E402
from hwosim_assets.records import IMAGE_TILE_SCHEMA  # noqa: E402

FRAME = 2048
TILE = 128
SEED = 20261124
MJD0 = 60000.0


# --- baseline (a): the seed's algorithm --------------------------------------


def seed_algorithm(
    frame: np.ndarray, noise_std: float = 10.0, p_missing: float = 0.05, p_corrupt: float = 0.05
) -> np.ndarray:
    """The seed project's perturbation, as described: a single-plane frame is
    stacked into three channels, copied, given Gaussian noise, per-pixel
    Bernoulli NaNs and uniform corruption between each channel's extremes,
    with Python loops over the channels."""
    image = np.stack([frame] * 3, axis=-1)
    out = image.copy().astype(np.float32)
    out += np.random.normal(0, noise_std, out.shape)
    missing = np.random.rand(*out.shape[:2]) < p_missing
    for channel in range(out.shape[2]):
        out[missing, channel] = np.nan
    corrupt = np.random.rand(*out.shape[:2]) < p_corrupt
    for channel in range(out.shape[2]):
        plane = out[:, :, channel]
        out[corrupt, channel] = np.random.uniform(np.nanmin(plane), np.nanmax(plane), size=int(corrupt.sum()))
    return out


# --- inputs --------------------------------------------------------------------


def make_frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n sky frames (background ~1000 +- 10, a few bright stars) and their ERR."""
    rng = np.random.default_rng(1)
    sci = rng.standard_normal((n, FRAME, FRAME), dtype=np.float32)
    sci *= 10
    sci += 1000
    for f in range(n):
        for y, x in rng.integers(16, FRAME - 16, size=(50, 2)):
            sci[f, y - 2 : y + 3, x - 2 : x + 3] += np.float32(rng.uniform(1e3, 1e6))
    err = np.sqrt(np.maximum(sci - 900, 100)).astype(np.float32)
    return sci, err


def as_tiles(frames: np.ndarray, tile: int) -> np.ndarray:
    n, k = len(frames), FRAME // tile
    return np.ascontiguousarray(
        frames.reshape(n, k, tile, k, tile).transpose(0, 1, 3, 2, 4).reshape(n * k * k, tile, tile)
    )


def tile_meta(n_frames: int, tile: int) -> dict[str, np.ndarray]:
    k = FRAME // tile
    frame = np.repeat(np.arange(n_frames), k * k)
    return {
        "seq": np.arange(n_frames * k * k),
        "frame": frame,
        "y0": np.tile(np.repeat(np.arange(k) * tile, k), n_frames),
        "x0": np.tile(np.tile(np.arange(k) * tile, k), n_frames),
        "event_time": MJD0 + frame * 100.0 / 86400,
    }


def bronze_table(frames: np.ndarray, err: np.ndarray):
    import polars as pl

    columns: dict[str, list] = {name: [] for name in IMAGE_TILE_SCHEMA}
    for f in range(len(frames)):
        rows = tile_rows(
            frames[f], err[f], tile=TILE, frame=f, first_seq=len(columns["seq"]), event_time=MJD0 + f * 100.0 / 86400
        )
        for name in columns:
            columns[name] += rows[name]
    return pl.DataFrame(columns, schema=IMAGE_TILE_SCHEMA)


# --- timing --------------------------------------------------------------------


def race(contenders: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """(best, median) wall time of each contender over ``rounds`` rounds,
    after one warm-up call each. Rounds interleave the contenders, so a busy
    spell on the shared machine hits all of them rather than one."""
    for fn, _ in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds):
        for name, (fn, every) in contenders.items():
            if round_ % every == 0:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def speed(n_frames: int, repeats: int) -> bool:
    profile = load_profiles()["nominal"]
    print(
        f"== speed: 'nominal' on {n_frames} x {FRAME}x{FRAME} float32 frames ({n_frames * FRAME * FRAME / 1e6:.1f} Mpx), "
        f"{os.cpu_count()} cores, best of {repeats} rounds =="
    )
    print(
        f"  threads: ours {_workers()} (the engine's worker threads over units of {CHUNK_ELEMENTS / 1e6:.1f} Mpx, "
        "as it runs in production), (a) and (b) 1 (as written; numpy's generator is single-threaded)"
    )
    frames, err = make_frames(n_frames)
    tiles_sci, tiles_err, meta = as_tiles(frames, TILE), as_tiles(err, TILE), tile_meta(n_frames, TILE)
    frame_meta = tile_meta(n_frames, FRAME)

    def ours_tiles():
        sci, e = tiles_sci.copy(), tiles_err.copy()
        return perturb_tile_stack(sci, e, **meta, profile=profile, observation="bench", seed=SEED)

    def ours_frames():
        sci, e = frames.copy(), err.copy()
        return perturb_tile_stack(sci, e, **frame_meta, profile=profile, observation="bench", seed=SEED)

    def baseline_a():
        for f in frames:
            seed_algorithm(f)

    def baseline_b():
        np.random.default_rng().standard_normal(frames.shape)

    table = bronze_table(frames, err)

    def ours_table():
        perturb_images(table, profile, observation="bench", seed=SEED)

    results = race(
        {  # name: (function, run every n-th round) - the seed algorithm is slow, run it less
            "(b) numpy standard_normal": (baseline_b, 1),
            "ours, 128-px tiles (engine)": (ours_tiles, 1),
            "ours, whole frames": (ours_frames, 1),
            "ours, DataFrame in/out": (ours_table, 2),
            "(a) seed algorithm": (baseline_a, 2),
        },
        repeats,
    )
    for name, (best, median) in results.items():
        print(
            f"  {name:30s} best {best * 1e3:8.1f} ms   median {median * 1e3:8.1f} ms   {frames.size / best / 1e6:7.1f} Mpx/s"
        )
    ours = results["ours, 128-px tiles (engine)"][0]
    a, b = results["(a) seed algorithm"][0], results["(b) numpy standard_normal"][0]
    vs_a, vs_b = a / ours, b / ours
    print(
        f"  speed-up vs (a) seed algorithm:       {vs_a:6.1f}x   (target >= 15x)   {'PASS' if vs_a >= 15 else 'MISS'}"
    )
    print(
        f"  speed vs (b) bare Gaussian field:     {vs_b:6.2f}x   (target >= 0.7x)  {'PASS' if vs_b >= 0.7 else 'MISS'}"
    )
    whole = results["ours, whole frames"][0]
    print(
        f"  (whole frames: {a / whole:.1f}x vs (a), {b / whole:.2f}x vs (b); DataFrame path: "
        f"{a / results['ours, DataFrame in/out'][0]:.1f}x vs (a), {b / results['ours, DataFrame in/out'][0]:.2f}x vs (b))"
    )
    return vs_a >= 15 and vs_b >= 0.7


# --- per kind ------------------------------------------------------------------


def per_kind(repeats: int) -> None:
    """Each kind of ``nominal`` alone on a fresh one-frame batch of 128-px
    tiles, one thread, best of ``repeats`` (kinds in chain order)."""
    profile = load_profiles()["nominal"]
    frames, err = make_frames(1)
    sci, e, meta = as_tiles(frames, TILE), as_tiles(err, TILE), tile_meta(1, TILE)
    columns = np.arange(TILE)[None, :]

    run = _Run(profile, "bench", SEED, "images", MJD0)  # what the engine folds for this profile
    fold, defer = run.fold_noise, run.defer_rnoise

    def batch(planes: tuple[np.ndarray, np.ndarray] | None = None) -> Batch:
        value, error = planes if planes is not None else (sci.copy(), e.copy())
        fresh = Batch(
            family="images",
            value=value,
            error=error,
            wavelength=None,
            seq=meta["seq"],
            epoch=meta["frame"],
            time_mjd=meta["event_time"],
            cols=meta["x0"][:, None] + columns,
            rows=meta["y0"][:, None] + columns,
            t_ref=MJD0,
            stage=profile.stage,
        )
        fresh.fold_noise = fold
        fresh.defer_rnoise = defer
        return fresh

    def before(kind: str) -> Batch:
        """A fresh batch as ``kind`` finds it: for read_noise, with the jitter's folded sigma and
        the striping's variance left to its pass."""
        fresh = batch()
        for earlier, left in (("pointing_jitter", fold), ("striping_1f", defer)):
            if left and kind == "read_noise":
                setting = next(s for s in profile.element_kinds if s.kind == earlier)
                draws = Draws(SEED, profile.config_hash, "bench", earlier)
                ELEMENT_KINDS[earlier].apply(fresh, setting.params, draws)  # type: ignore[misc]
        return fresh

    def best(fn, setup=lambda: None) -> float:
        times = []
        for _ in range(repeats):
            arg = setup()
            t0 = time.perf_counter()
            fn(arg)
            times.append(time.perf_counter() - t0)
        return min(times)

    print(f"== per kind: 'nominal' on one {FRAME}x{FRAME} frame of {TILE}-px tiles, one thread, best of {repeats} ==")
    if fold:
        print("  (pointing_jitter's noise-restoring Gaussian is drawn in read_noise's field, as the engine runs them)")
    if defer:
        print("  (striping_1f's ERR growth is done in read_noise's pass, as the engine runs them)")
    rows = [
        ("input copies (sci, err)", best(lambda _: (sci.copy(), e.copy()))),
        ("electron scale (every batch)", best(batch, lambda: (sci.copy(), e.copy()))),
    ]
    for setting in profile.element_kinds:
        spec = ELEMENT_KINDS[setting.kind]
        if "images" not in spec.families:
            continue
        draws = Draws(SEED, profile.config_hash, "bench", setting.kind)
        setup = lambda kind=setting.kind: before(kind)  # noqa: E731
        rows.append((setting.kind, best(lambda b, spec=spec, s=setting, d=draws: spec.apply(b, s.params, d), setup)))
    field = best(lambda _: np.random.default_rng().standard_normal((FRAME, FRAME)))
    for name, seconds in rows:
        print(f"  {name:30s} {seconds * 1e3:7.1f} ms   {seconds / field:5.2f} x numpy's field")
    total = sum(seconds for _, seconds in rows)
    print(f"  {'sum':30s} {total * 1e3:7.1f} ms   {total / field:5.2f} x numpy's field ({field * 1e3:.1f} ms)")


# --- memory --------------------------------------------------------------------


def write_bronze(path: Path, target_bytes: int) -> tuple[int, int]:
    """Write a bronze image file of at least ``target_bytes`` frame by frame
    (plain encoding, no compression, so the size on disk is the data size).
    Returns (frames, bytes)."""
    import polars as pl

    # the bronze schema itself (optional planes included, null here), so the file stays readable as bronze
    schema = pl.DataFrame(schema=IMAGE_TILE_SCHEMA).to_arrow(compat_level=pl.CompatLevel.oldest()).schema
    rng = np.random.default_rng(2)
    frame_bytes = 3 * FRAME * FRAME * 4  # sci, err, dq
    frames = -(-target_bytes // frame_bytes)
    seq = 0
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as writer:
        for frame in range(frames):
            sci = rng.standard_normal((FRAME, FRAME), dtype=np.float32)
            sci *= 10
            sci += 1000
            err = np.sqrt(np.abs(sci))
            rows = tile_rows(sci, err, tile=TILE, frame=frame, first_seq=seq, event_time=MJD0 + frame * 100.0 / 86400)
            writer.write_table(pa.table(rows, schema=schema))
            seq += len(rows["seq"])
    return frames, path.stat().st_size


def peak_rss_kb() -> int:
    """This process's peak resident set (kB): VmHWM of /proc/self/status.

    Not getrusage's ru_maxrss: Linux carries that over fork and exec, so a
    child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_perturb(src: str, dst: str, truth: str, profile: str = "nominal") -> None:
    """Run in a fresh process: perturb the file, print peak RSS and timing."""
    t0 = time.perf_counter()
    result = perturb_parquet(src, dst, truth, "images", load_profiles()[profile], "bench-big", SEED, batch_rows=256)
    seconds = time.perf_counter() - t0
    print(f"{peak_rss_kb()} {seconds:.3f} {result.rows}")


def memory_profiles(choice: str) -> list[str]:
    """``all`` (every profile of the packaged profiles.yaml, file order) or a
    comma-separated list of names."""
    known = list(load_profiles())
    if choice == "all":
        return known
    names = [name.strip() for name in choice.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def memory(target_gb: float, profiles: list[str], bronze: Path | None = None) -> bool:
    """Perturb one >= ``target_gb`` bronze file with each profile in turn, each
    in a fresh child process, and report each child's peak RSS. ``bronze``:
    reuse (or, if absent, generate and keep) the file there."""
    tmp = Path(tempfile.mkdtemp(prefix="hwosim-bench-perturb-"))
    try:
        src = bronze if bronze is not None else tmp / "bronze.parquet"
        t0 = time.perf_counter()
        if src.exists():
            size = src.stat().st_size
            frames = pq.ParquetFile(src).metadata.num_rows // (FRAME // TILE) ** 2
            made = f"reused {src}"
        else:
            frames, size = write_bronze(src, int(target_gb * 1e9))
            made = f"generated in {time.perf_counter() - t0:.0f} s"
        print(
            f"== memory: perturb_parquet on a {size / 1e9:.2f} GB bronze file ({frames} frames, "
            f"{frames * (FRAME // TILE) ** 2} tiles; {made}), {len(profiles)} profile(s), "
            f"each in a fresh process =="
        )
        print(
            f"  {'profile':22s} {'rows':>7s} {'time':>8s} {'MB/s':>6s} {'out GB':>7s} {'truth MB':>9s} {'peak RSS':>9s}"
        )
        ok = True
        for name in profiles:
            dst, truth = tmp / "perturbed.parquet", tmp / "truth.parquet"
            run = subprocess.run(
                [sys.executable, __file__, "--child", str(src), str(dst), str(truth), "--child-profile", name],
                capture_output=True,
                text=True,
            )
            if run.returncode != 0:
                tail = (run.stderr.strip().splitlines() or ["?"])[-1]
                print(f"  {name:22s} FAILED (exit {run.returncode}): {tail}")
                ok = False
                continue
            out = run.stdout.split()
            peak_mb, seconds, rows = int(out[0]) / 1024, float(out[1]), int(out[2])
            passed = peak_mb < 1024
            ok = ok and passed
            print(
                f"  {name:22s} {rows:7d} {seconds:7.1f}s {size / 1e6 / seconds:6.0f} {dst.stat().st_size / 1e9:7.2f} "
                f"{truth.stat().st_size / 1e6:9.0f} {peak_mb:6.0f} MB   (target < 1024 MB)  {'PASS' if passed else 'MISS'}",
                flush=True,
            )
            dst.unlink(missing_ok=True)
            truth.unlink(missing_ok=True)
        return ok
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 frames and a 0.3 GB product")
    parser.add_argument("--skip-memory", action="store_true", help="speed only")
    parser.add_argument("--kinds", action="store_true", help="also time each kind on one frame")
    parser.add_argument("--skip-speed", action="store_true", help="memory only (with --kinds: kinds and memory)")
    parser.add_argument(
        "--memory-profiles",
        default="nominal",
        metavar="NAMES",
        help="profiles for the memory run: 'all' (every profile of profiles.yaml) or a comma-separated list "
        "(default nominal)",
    )
    parser.add_argument(
        "--bronze",
        type=Path,
        metavar="PATH",
        help="bronze file for the memory run: reused if it exists, else generated there and kept",
    )
    parser.add_argument("--child", nargs=3, metavar=("SRC", "DST", "TRUTH"), help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", default="nominal", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_perturb(*args.child, profile=args.child_profile)
        return 0
    profiles = memory_profiles(args.memory_profiles)
    if args.kinds:
        per_kind(9)
    ok = True
    if not args.skip_speed:
        ok = speed(2 if args.quick else 8, 5 if args.quick else 6)
    if not args.skip_memory:
        ok = memory(0.3 if args.quick else 2.2, profiles, args.bronze) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
