"""Twelve replay runs, each in its own process, into one SQLite stream database: no Dagster.

    python benchmarks/bench_many_streams.py [--seconds 60] [--burners 3] [--db PATH]

The streams of the live acceptance (bench_live_acceptance.py): ``fast`` 20
packets/s in 5 s windows, ``slow`` 1/s, ten at 5/s in 30 s windows, 500
rows a packet (35,500 rows/s in all), each one ``replay_run`` over its
windows, all starting together. ``--burners`` adds that many busy Python
processes at normal priority for the length of the run, standing in for run
start-ups and a backfill. Per stream: lateness (emitted - scheduled) p50,
p99 and max, and commit lag p99 (released -> committed), which is what the
database adds and must not reach the schedule.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hwosim_assets.stream import schema  # noqa: E402
from hwosim_assets.stream.config import StreamSpec  # noqa: E402
from hwosim_assets.stream.pacing import Pacing  # noqa: E402
from hwosim_assets.stream.runs import replay_run  # noqa: E402
from hwosim_assets.stream.writer import make_engine  # noqa: E402
from hwosim_assets_tests import synthetic_streams as synthetic  # noqa: E402

STREAMS = {"fast": (20.0, 5), "slow": (1.0, 30), **{f"five-{i}": (5.0, 30) for i in range(10)}}


def one_stream(db: str, name: str, rate: float, tick: float, t0: float, seconds: float, out: mp.Queue) -> None:
    spec = StreamSpec(
        name=name,
        observation="jw09999-o001_t001_niriss_clear-gr700xd",
        profile="clean",
        family="spectra",
        pacing=Pacing("rate", rate=rate),
        tick_seconds=tick,
        window=int(rate * tick),
        loop=True,
    )
    engine = make_engine(f"sqlite:///{db}")
    report = replay_run(
        engine,
        spec,
        synthetic.spectra_table(200, 500),
        first=0,
        last=max(1, int(seconds / tick)) - 1,
        start_time=t0,
        stream_faults={},
        seed=1,
        profile_hash="0badc0de11",
    )
    late = report._concat("emitted") - report._concat("scheduled")
    lag = report._concat("committed_at") - report._concat("emitted")
    out.put(
        (name, *(float(np.percentile(late, q)) * 1e3 for q in (50, 99)), late.max() * 1e3, np.percentile(lag, 99) * 1e3)
    )


def burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        sum(range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burners", type=int, default=0)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    db = args.db or str(Path(tempfile.mkdtemp(prefix="hwosim-many-")) / "streams.db")
    engine = make_engine(f"sqlite:///{db}")
    schema.create_or_migrate(engine)
    engine.dispose()
    t0, out = time.time() + 8, mp.Queue()
    procs = [mp.Process(target=one_stream, args=(db, n, r, t, t0, args.seconds, out)) for n, (r, t) in STREAMS.items()]
    procs += [mp.Process(target=burn, args=(args.seconds + 10,)) for _ in range(args.burners)]
    for p in procs:
        p.start()
    rows = sorted(out.get() for _ in STREAMS)
    for p in procs:
        p.join()
    print(f"{len(STREAMS)} streams, {args.seconds:.0f} s, {args.burners} CPU burners, SQLite {db}")
    print("| stream | lateness p50 ms | p99 ms | max ms | commit lag p99 ms |\n| --- | --- | --- | --- | --- |")
    for name, p50, p99, mx, lag in rows:
        print(f"| {name} | {p50:.2f} | {p99:.1f} | {mx:.1f} | {lag:.0f} |")


if __name__ == "__main__":
    main()
