"""Pacing: achieved rate and lateness of real replays into MariaDB, one stream and many.

    python benchmarks/bench_pacing.py [--quick] [--seconds S] [--no-db]

For each target rate (1, 10, 100, 1,000, 5,000 packets/s) one stream replays
``rate x seconds`` spectra packets (4 channels each) through ``replay_window``
into a MariaDB started in a temp dir (the test suite's ``services`` helper):
the pacer, the fault-free plan, and a commit per batch of what is due. Then
10 streams at 100 packets/s run at once, each in its own process (as Dagster
runs would). ``--no-db`` measures the pacer alone with an empty sink.

Reported per run: achieved rate and its error against the target, lateness
(emitted - scheduled) p50 / p99 / max, the mean lateness of the first and of
the last second (equal values mean no cumulative drift), and the p99 commit
lag: from a packet's release by the pacer (its emitted_time) to the commit
that made it visible, which the commit thread adds (replay._Committer).
Targets: rate within +-0.5 %, p99 lateness <= 10 ms, no drift.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwosim_assets.stream import schema  # noqa: E402
from hwosim_assets.stream.config import StreamSpec  # noqa: E402
from hwosim_assets.stream.pacing import Pacer, Pacing, pace_stats  # noqa: E402
from hwosim_assets.stream.replay import replay_window, window_packets  # noqa: E402
from hwosim_assets.stream.writer import make_engine  # noqa: E402
from hwosim_assets_tests import synthetic_streams as synthetic  # noqa: E402

RATES = (1, 10, 100, 1_000, 5_000)
CHANNELS = 4


def prepare(url: str | None, name: str, rate: float, seconds: float):
    """Everything a run needs before its clock starts (engine, packets)."""
    n = max(2, int(round(rate * seconds)))
    if url is None:
        return n, None, None, None
    engine = make_engine(url)
    spec = StreamSpec(
        name=name,
        observation="bench",
        profile="nominal",
        family="spectra",
        pacing=Pacing("rate", rate=float(rate)),
        tick_seconds=seconds,
        window=n,
    )
    return n, engine, spec, window_packets(spec, synthetic.spectra_table(n, CHANNELS), 0)


def run_prepared(prepared, rate: float, start: float) -> dict:
    """One paced replay from ``start``; the pace statistics of what was emitted (read back from the table)."""
    n, engine, spec, packets = prepared
    if engine is None:
        pacer = Pacer()
        for _ in pacer.batches(start + np.arange(n) / rate):
            pass
        return pacer.stats().as_dict()
    report = replay_window(
        engine, spec, packets, window_index=0, start_time=start, stream_faults={}, seed=1, profile_hash="00000000"
    )
    t = schema.spectra_rows
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.scheduled_time, t.c.emitted_time)
            .where(t.c.stream == spec.name, t.c.channel == 0)
            .order_by(t.c.offset)
        ).all()
    engine.dispose()
    scheduled, emitted = (np.array(col) for col in zip(*rows, strict=False))
    return {**pace_stats(scheduled, emitted).as_dict(), "commit_lag_p99": report.commit_lag_p99}


def _child(url, name, rate, seconds, barrier, start, results) -> None:
    """A stream process: prepare, wait for all, then run from the common start time."""
    prepared = prepare(url, name, rate, seconds)
    barrier.wait()
    barrier.wait()  # the parent has set the start time between the two waits
    results.put((name, run_prepared(prepared, rate, start.value)))


def many_streams(url, count: int, rate: float, seconds: float) -> list[dict]:
    ctx = mp.get_context("spawn")
    barrier, start, results = ctx.Barrier(count + 1), ctx.Value("d", 0.0), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(url, f"many-{i}", rate, seconds, barrier, start, results))
        for i in range(count)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start.value = time.time() + 0.5
    barrier.wait()
    out = dict(results.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join(30)
    return [out[f"many-{i}"] for i in range(count)]


def line(label: str, target: float, s: dict) -> str:
    error = (s["achieved_rate"] / target - 1) * 100
    return (
        f"{label:>14} {s['achieved_rate']:11.3f} {error:+8.3f}% {s['lateness_p50'] * 1e3:8.2f} "
        f"{s['lateness_p99'] * 1e3:8.2f} {s['lateness_max'] * 1e3:8.2f} "
        f"{s['first_second_lateness'] * 1e3:9.2f} {s['last_second_lateness'] * 1e3:9.2f} "
        f"{s.get('commit_lag_p99', float('nan')) * 1e3:9.2f}  "
        f"{'OK' if abs(error) <= 0.5 and s['lateness_p99'] <= 0.010 else 'MISSED'}"
    )


HEADER = (
    f"{'target p/s':>14} {'achieved':>11} {'error':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
    f"{'1st s ms':>9} {'last s ms':>9} {'commit ms':>9}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per rate instead of 60 s")
    parser.add_argument("--seconds", type=float, help="seconds per rate")
    parser.add_argument("--no-db", action="store_true", help="pacer only, no database sink")
    parser.add_argument("--rates", type=float, nargs="+", default=RATES, help="target rates, packets/s")
    parser.add_argument("--streams", type=int, default=10, help="streams in the many-streams run (0: skip it)")
    parser.add_argument(
        "--flush-log-at-commit",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="innodb_flush_log_at_trx_commit of the server (1: fsync per commit, the default)",
    )
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 60.0)

    db = None
    if not args.no_db:
        from hwosim_assets_tests import services

        db = services.start_mariadb()
    try:
        url = None
        if db is not None:
            url = db.url
            schema.create_or_migrate(make_engine(url))
            db.admin(f"SET GLOBAL innodb_flush_log_at_trx_commit = {args.flush_log_at_commit}")
        sink = f"MariaDB, {CHANNELS} rows per packet, innodb_flush_log_at_trx_commit={args.flush_log_at_commit}"
        print(f"{seconds:g} s per rate, sink: {sink if url else 'none'}; load average {os.getloadavg()[0]:.2f}")
        print(HEADER)
        for rate in args.rates:
            prepared = prepare(url, f"pace-{rate:g}".replace(".", "_"), rate, seconds)
            stats = run_prepared(prepared, rate, time.time() + 1.0)  # time to plan and open the window
            print(line(f"{rate:,g}", rate, stats), flush=True)

        if args.streams == 0:
            return
        print(f"\n{args.streams} streams at 100 packets/s at once, one process each:")
        print(HEADER)
        results = many_streams(url, args.streams, 100, seconds)
        for i, stats in enumerate(results):
            print(line(f"stream {i}", 100, stats))
        worst = max(r["lateness_p99"] for r in results)
        print(f"worst p99 lateness over the {args.streams} streams: {worst * 1e3:.2f} ms")
    finally:
        if db is not None:
            services.close_mariadb(db)


if __name__ == "__main__":
    main()
