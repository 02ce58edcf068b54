"""The live-streams acceptance, measured under ``dagster dev`` on this machine.

    python benchmarks/bench_live_acceptance.py [--minutes 10] [--outage 60] [--no-backfill]
                                               [--stream-db sqlite|mariadb]

One ``dagster dev`` (webserver + daemon, the repository's dagster.yaml, SQLite
instance and stream tables) replays, on the sample NIRISS/SOSS time series
(500 rows a packet, profile ``clean``: no stream faults, so every packet due
must arrive):

* ``fast``: 20 packets/s with 5 s ticks;
* ``slow``: 1 packet/s with the default 30 s tick;
* ``five-0`` .. ``five-9``: ten streams at 5 packets/s (default tick).

Three minutes in, a backfill of every profile of both perturbed assets is
launched through the webserver's GraphQL API, as the UI does. After
``--minutes``, per stream over the steady part (from one minute after its
first packet): delivered / target, lateness p50 and p99, and the slope of
lateness against time (lag growth, ms per minute). Then ``dagster dev`` is
killed (SIGKILL to its whole process group: webserver, daemon, code server;
runs already launched are in other groups and finish) for ``--outage``
seconds and started again: per stream, how long after the restart its lag is
back to steady (median lateness of the last 10 s under 250 ms), and that every
packet was delivered exactly once, in order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwosim_assets.cli import observe  # noqa: E402
from hwosim_assets.defs.resources import resources_from_settings  # noqa: E402
from hwosim_assets.ingest.sample import SPECTRA_OBS_ID  # noqa: E402
from hwosim_assets.settings import Settings  # noqa: E402
from hwosim_assets.stream import schema  # noqa: E402
from hwosim_assets.stream.writer import make_engine  # noqa: E402
from hwosim_assets_tests.pipeline import materialize  # noqa: E402

STREAMS = {"fast": (20.0, 5), "slow": (1.0, 30), **{f"five-{i}": (5.0, 30) for i in range(10)}}
PACKETS_PER_LAP = 200  # the sample x1dints
LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


def streams_yaml() -> str:
    return "streams:\n" + "".join(
        f"""  - name: {name}
    observation: {SPECTRA_OBS_ID}
    profile: clean
    family: spectra
    pacing: {{mode: rate, rate: {rate:g}}}
    tick_seconds: {tick}
    loop: true
"""
        for name, (rate, tick) in STREAMS.items()
    )


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["data"]


def start_dev(home: Path, env: dict, port: int) -> subprocess.Popen:
    log = open(home / "dev.log", "ab")
    return subprocess.Popen(
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
            str(port),
        ],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_dev(dev: subprocess.Popen) -> None:
    """SIGTERM to dagster dev's process group; SIGKILL if it has not ended within a minute."""
    os.killpg(dev.pid, signal.SIGTERM)
    try:
        dev.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(dev.pid, signal.SIGKILL)
        dev.wait(10)


def packets(url: str) -> dict[str, np.ndarray]:
    """stream -> (offset, lap, seq, scheduled, emitted) of its packets, by offset."""
    t = schema.spectra_rows
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.stream, t.c.offset, t.c.lap, t.c.seq, t.c.scheduled_time, t.c.emitted_time)
            .where(t.c.channel == 0)
            .order_by(t.c.stream, t.c.offset)
        ).all()
    engine.dispose()
    out: dict[str, list] = {}
    for stream, *values in rows:
        out.setdefault(stream, []).append(values)
    return {name: np.array(v, dtype=float) for name, v in out.items()}


def recent_packets(url: str, last: int = 250) -> dict[str, np.ndarray]:
    """stream -> the same columns for its ``last`` committed packets only: a range of the primary
    key after the stream's committed offset, not a scan of the whole table (25 M rows after ten
    minutes, read every 5 s while the streams catch up, would load the machine being measured)."""
    t, o = schema.spectra_rows, schema.offsets
    engine = make_engine(url)
    out: dict[str, np.ndarray] = {}
    with engine.connect() as conn:
        for stream, next_offset in conn.execute(sa.select(o.c.stream, o.c.next_offset)).all():
            rows = conn.execute(
                sa.select(t.c.offset, t.c.lap, t.c.seq, t.c.scheduled_time, t.c.emitted_time)
                .where(t.c.stream == stream, t.c.offset >= next_offset - last, t.c.channel == 0)
                .order_by(t.c.offset)
            ).all()
            out[stream] = np.array(rows, dtype=float).reshape(-1, 5)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--no-backfill", action="store_true")
    parser.add_argument(
        "--stream-db",
        choices=("sqlite", "mariadb"),
        default="sqlite",
        help="where the stream tables are: a SQLite file, or a MariaDB server started here",
    )
    args = parser.parse_args()
    mariadb = None
    if args.stream_db == "mariadb":
        from hwosim_assets_tests.services import close_mariadb, start_mariadb

        mariadb = start_mariadb()
    try:
        run(args, mariadb)
    finally:
        if mariadb is not None:
            close_mariadb(mariadb)


def run(args: argparse.Namespace, mariadb) -> None:
    home = Path(tempfile.mkdtemp(prefix="hwosim-acceptance-"))
    (home / "dagster").mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    (home / "streams.yaml").write_text(streams_yaml())
    url = mariadb.url if mariadb is not None else f"sqlite:///{home / 'streams.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
    env.update(
        HWOSIM_HOME=str(home / "hwosim"),
        HWOSIM_STREAMS=str(home / "streams.yaml"),
        HWOSIM_STREAM_DB_URL=url,
        DAGSTER_HOME=str(home / "dagster"),
        PYTHONWARNINGS="ignore",
    )
    print(f"folder {home}; stream tables in {args.stream_db}; load average {os.getloadavg()[0]:.2f}", flush=True)

    os.environ.update({k: v for k, v in env.items() if k.startswith(("HWOSIM_", "DAGSTER_"))})
    resources = resources_from_settings(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        materialize("jwst_catalog", resources, instance)
        for obs in instance.get_dynamic_partitions("observations"):
            materialize("raw_products", resources, instance, obs)
        for family in ("spectra", "images"):
            for obs in instance.get_dynamic_partitions(f"{family}_observations"):
                materialize(f"bronze_{family}", resources, instance, obs)
        observe("observe_profiles", resources, instance)
        materialize(
            "perturbed_spectra",
            resources,
            instance,
            dg.MultiPartitionKey({"observation": SPECTRA_OBS_ID, "profile": "clean"}),
        )
        materialize("stream_tables", resources, instance)
        profiles = sorted(instance.get_dynamic_partitions("profiles"))
        observations = {f: sorted(instance.get_dynamic_partitions(f"{f}_observations")) for f in ("spectra", "images")}
    subprocess.run(
        [sys.executable, "-m", "dagster", "sensor", "start", "--start-all", "-w", str(REPO / "workspace.yaml")],
        env=env,
        check=True,
        capture_output=True,
    )

    port = _free_port()
    dev = start_dev(home, env, port)
    t_start = time.time()
    print(f"dagster dev started (port {port})", flush=True)
    backfill_at = t_start + 180
    launched = args.no_backfill
    deadline = t_start + 90 + args.minutes * 60
    while time.time() < deadline:
        if not launched and time.time() >= backfill_at:
            params = {
                "partitionsByAssets": [
                    {
                        "assetKey": {"path": [f"perturbed_{f}"]},
                        "partitions": {
                            "ranges": [{"start": f"{o}|{p}", "end": f"{o}|{p}"} for o in obs for p in profiles]
                        },
                    }
                    for f, obs in observations.items()
                ],
                "title": "every profile",
            }
            result = graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
            print(f"{time.time() - t_start:6.0f} s: backfill of every profile launched: {result}", flush=True)
            launched = True
        time.sleep(5)
    steady_end = time.time() - 5
    status = subprocess.run(
        [sys.executable, "-m", "hwosim_assets.cli", "stream", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print("\n$ hwosim stream status\n" + (status.stdout or status.stderr), flush=True)
    print(f"load average over the last 1 / 5 / 15 min: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
    data = packets(url)
    print(
        f"\nsteady state ({args.minutes:g} min under dagster dev"
        f"{'' if args.no_backfill else ', a backfill of every profile from minute 3'}):"
    )
    print(f"{'stream':>8} {'target/s':>8} {'delivered/target':>17} {'p50 ms':>8} {'p99 ms':>8} {'slope ms/min':>12}")
    for name, (rate, _) in STREAMS.items():
        p = data.get(name, np.zeros((0, 5)))
        start = p[0, 3] + 60 if len(p) else steady_end
        inside = p[(p[:, 3] >= start) & (p[:, 3] < steady_end)]
        late = inside[:, 4] - inside[:, 3]
        slope = np.polyfit(inside[:, 3] - start, late, 1)[0] * 60e3 if len(inside) > 2 else float("nan")
        print(
            f"{name:>8} {rate:8g} {len(inside) / (steady_end - start) / rate:17.4f} "
            f"{np.percentile(late, 50) * 1e3:8.2f} {np.percentile(late, 99) * 1e3:8.2f} {slope:12.2f}",
            flush=True,
        )

    os.killpg(dev.pid, signal.SIGKILL)  # webserver, daemon, code server: an outage of everything Dagster
    killed = time.time()
    print(f"\ndagster dev killed; back in {args.outage:g} s", flush=True)
    time.sleep(args.outage)
    dev = start_dev(home, env, port)
    restarted = time.time()
    drained: dict[str, float] = {}
    try:
        while len(drained) < len(STREAMS) and time.time() < restarted + 300:
            time.sleep(5)
            data = recent_packets(url)
            now = time.time()
            for name in STREAMS:
                p = data.get(name)
                recent = p[p[:, 4] > now - 10] if p is not None else np.zeros((0, 5))
                # a stream's own cadence may leave no packet in 10 s when it is slow: look at its last 5
                recent = recent if len(recent) >= 5 else (p[-5:] if p is not None else recent)
                if (
                    name not in drained
                    and len(recent)
                    and now - recent[-1, 4] < 10 + 1 / STREAMS[name][0]
                    and np.median(recent[:, 4] - recent[:, 3]) < 0.25
                    and recent[-1, 3] > restarted
                ):
                    drained[name] = now - restarted
    finally:
        stop_dev(dev)
    data = packets(url)
    print(f"after a {args.outage:g} s outage (killed at +{killed - t_start:.0f} s):")
    for name in STREAMS:
        p = data[name]
        exact = np.array_equal(p[:, 0], np.arange(len(p))) and np.array_equal(
            p[:, 1] * PACKETS_PER_LAP + p[:, 2], np.arange(len(p))
        )
        late_in_outage = (
            p[(p[:, 3] > killed) & (p[:, 3] < restarted), 4] - p[(p[:, 3] > killed) & (p[:, 3] < restarted), 3]
        )
        after = p[p[:, 4] > restarted, 4]
        print(
            f"{name:>8}: first packet written {after.min() - restarted if len(after) else float('nan'):6.1f} s "
            f"after the restart, lag back to steady {drained.get(name, float('nan')):6.1f} s; "
            f"max lateness of packets due in the outage {late_in_outage.max() if len(late_in_outage) else 0:6.1f} s; "
            f"every packet once, in order: {exact}",
            flush=True,
        )
    print(f"folder kept: {home}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
