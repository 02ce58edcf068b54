"""Live streams under ``dagster dev`` (webserver + daemon): what N concurrent streams achieve.

    python benchmarks/bench_live.py [--streams 1 10 30] [--rates 1 20 100] [--minutes 3] [--channels 20]

For each (number of streams, rate) a fresh Dagster instance (the repository's
dagster.yaml, SQLite) and stream database (SQLite) are prepared with the
``hwosim`` CLI from a small x1dints written with the project's own sample
code (``--channels`` rows a packet, 200 integrations, looping), every stream's
sensor is started, and ``dagster dev -w workspace.yaml`` runs them for the
warm-up plus ``--minutes``. Measured from the stream table and the instance,
over the steady part only (after the warm-up):

* delivered / target: packets scheduled in the period that were delivered, per second, over the target;
* lateness (emitted - scheduled) p50 and p99, over every stream's packets;
* lag slope: the least-squares slope of lateness against time, ms per minute
  (0 when the stream keeps up; positive when lag accumulates);
* run launch latency: created -> started of the replay runs, p50 and max;
* CPU per stream: the whole machine's busy CPU-seconds per second (every
  process: daemon, code server, webserver, runs), divided by the streams.

The baseline is the target itself: a stream that holds its rate reads 1.000.
Runs take minutes; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwosim_assets.ingest import sample  # noqa: E402
from hwosim_assets.ingest.products import identify  # noqa: E402
from hwosim_assets.stream import schema  # noqa: E402
from hwosim_assets.stream.writer import make_engine  # noqa: E402

WARMUP_S = 75.0  # first run requested one lead ahead, launched, and a full run boundary behind us


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(env: dict, *args: str) -> None:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def streams_yaml(obs_id: str, n: int, rate: float) -> str:
    tick = 5 if n <= 10 else 15  # 30 sensors ticking every 5 s would cost a core of sensor evaluation alone
    entries = [
        f"""  - name: bench-{i}
    observation: {obs_id}
    profile: clean
    family: spectra
    pacing: {{mode: rate, rate: {rate:g}}}
    tick_seconds: {tick}
    window: {max(1, round(rate * tick))}
    loop: true
"""
        for i in range(n)
    ]
    return "streams:\n" + "".join(entries)


def one(n: int, rate: float, minutes: float, channels: int, keep: bool) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"hwosim-live-{n}x{rate:g}-"))
    try:
        products = home / "products"
        products.mkdir()
        x1dints = products / sample.SAMPLE_EXPOSURES["spectra"].filename("x1dints")
        x1dints.write_bytes(sample.x1dints_bytes(200, channels))
        obs_id = identify(x1dints).obs_id
        (home / "dagster").mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
        (home / "streams.yaml").write_text(streams_yaml(obs_id, n, rate))
        url = f"sqlite:///{home / 'streams.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
        env.update(
            HWOSIM_HOME=str(home / "hwosim"),
            HWOSIM_SOURCE="files",
            HWOSIM_SOURCE_URL=str(products),
            HWOSIM_STREAMS=str(home / "streams.yaml"),
            HWOSIM_STREAM_DB_URL=url,
            DAGSTER_HOME=str(home / "dagster"),
            PYTHONWARNINGS="ignore",
        )
        _run(env, sys.executable, "-m", "hwosim_assets.cli", "stream", "prepare", "bench-0")
        _run(env, sys.executable, "-m", "dagster", "sensor", "start", "--start-all", "-w", str(REPO / "workspace.yaml"))
        dev = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(_free_port()),
            ],
            cwd=home,
            env=env,
            stdout=open(home / "dev.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            engine = make_engine(url)
            t = schema.spectra_rows
            deadline = time.time() + 300
            while True:
                with engine.connect() as conn:
                    first = conn.execute(sa.select(sa.func.min(t.c.scheduled_time))).scalar()
                if first is not None:
                    break
                if time.time() > deadline or dev.poll() is not None:
                    raise SystemExit(f"no packet after 300 s; see {home / 'dev.log'}")
                time.sleep(2)
            start = first + WARMUP_S
            time.sleep(max(0.0, start - time.time()))
            cpu0 = psutil.cpu_times()
            period = minutes * 60
            time.sleep(period + 3)
            cpu1 = psutil.cpu_times()
        finally:
            os.killpg(dev.pid, signal.SIGTERM)  # dagster dev and everything it started (its own session)
            try:
                dev.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
        with engine.connect() as conn:
            rows = np.array(
                conn.execute(
                    sa.select(t.c.scheduled_time, t.c.emitted_time).where(
                        t.c.channel == 0, t.c.scheduled_time >= start, t.c.scheduled_time < start + period
                    )
                ).all(),
                dtype=float,
            ).reshape(-1, 2)
        engine.dispose()
        busy = lambda c: c.user + c.nice + c.system + c.irq + c.softirq + getattr(c, "steal", 0)  # noqa: E731
        late = rows[:, 1] - rows[:, 0]
        slope = np.polyfit(rows[:, 0] - start, late, 1)[0] * 60e3 if len(rows) > 2 else float("nan")
        launch = _launch_latencies(home / "dagster")
        return {
            "streams": n,
            "rate": rate,
            "delivered/target": len(rows) / period / (n * rate),
            "p50_ms": float(np.percentile(late, 50) * 1e3),
            "p99_ms": float(np.percentile(late, 99) * 1e3),
            "slope_ms_per_min": slope,
            "launch_p50_s": float(np.percentile(launch, 50)) if launch else float("nan"),
            "launch_max_s": max(launch) if launch else float("nan"),
            "cpu_per_stream": (busy(cpu1) - busy(cpu0)) / (period + 3) / n,
        }
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"  kept {home}")


def _launch_latencies(dagster_home: Path) -> list[float]:
    """created -> started of the replay runs (tag hwosim/stream) in the instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records()
        return [
            r.start_time - r.create_timestamp.timestamp()
            for r in records
            if r.start_time and "hwosim/stream" in r.dagster_run.tags
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 20, 100])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--channels", type=int, default=20, help="rows a packet (wavelength bins)")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (logs, databases)")
    args = parser.parse_args()
    print(
        f"warm-up {WARMUP_S:g} s, then {args.minutes:g} min measured; {args.channels} rows a packet; "
        f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores"
    )
    header = (
        f"{'streams':>7} {'rate/s':>7} {'delivered/target':>17} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'slope ms/min':>12} {'launch p50 s':>12} {'launch max s':>12} {'CPU/stream':>10}"
    )
    print(header, flush=True)
    for n in args.streams:
        for rate in args.rates:
            r = one(n, rate, args.minutes, args.channels, args.keep)
            print(
                f"{n:7d} {rate:7g} {r['delivered/target']:17.4f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                f"{r['slope_ms_per_min']:12.2f} {r['launch_p50_s']:12.2f} {r['launch_max_s']:12.2f} "
                f"{r['cpu_per_stream']:10.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
