"""Live streams under a real ``dagster-daemon``, measured from the stream table.

What a user does, the way they do it: ``hwosim stream prepare`` and
``hwosim stream start`` against a Dagster instance, then ``dagster-daemon run``
on the repository's workspace.yaml; the replay sensor and its runs are the
daemon's. A 20 packets/s stream with 5 s ticks (run_seconds 60) on the sample
time series (500 rows a packet), with no stream faults, so every packet due
must arrive. Twice, side by side: SQLite instance + SQLite stream tables, and
the MySQL instance (MariaDB) + MariaDB stream tables.

Measured over two minutes of steady state: delivered rate, p99 lateness, and
that lateness does not grow. Then the daemon is killed (SIGKILL) for 30 s and
restarted: the lag must drain back to its steady state, with every packet
delivered exactly once, in order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from hwosim_assets.ingest.sample import SPECTRA_OBS_ID
from hwosim_assets.stream import schema
from hwosim_assets.stream.writer import make_engine
from hwosim_assets_tests import services

REPO = Path(__file__).resolve().parents[1]
RATE, TICK = 20.0, 5
STEADY_S, OUTAGE_S, DRAIN_LIMIT_S = 120.0, 30.0, 120.0
STREAM = "live-soss"
STREAMS_YAML = f"""streams:
  - name: {STREAM}
    observation: {SPECTRA_OBS_ID}
    profile: clean
    family: spectra
    pacing: {{mode: rate, rate: {RATE:g}}}
    tick_seconds: {TICK}
    loop: true
"""

pytestmark = [pytest.mark.slow, pytest.mark.timing]


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HWOSIM_", "DAGSTER_"))}
    env.update(
        HWOSIM_HOME=str(home / "hwosim"),
        HWOSIM_STREAMS=str(home / "streams.yaml"),
        DAGSTER_HOME=str(home / "dagster"),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


def _hwosim(env: dict, *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hwosim_assets.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"hwosim {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


class Deployment:
    """One Dagster instance + stream database, prepared with the CLI, and its daemon."""

    def __init__(self, name: str, home: Path, stream_url: str, dagster_yaml: str, extra_env: dict[str, str]):
        self.name, self.home, self.stream_url = name, home, stream_url
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(dagster_yaml)
        (home / "streams.yaml").write_text(STREAMS_YAML)
        self.env = _env(home, {"HWOSIM_STREAM_DB_URL": stream_url, **extra_env})
        self.daemon: services.ServerProcess | None = None

    def prepare_and_start(self) -> None:
        _hwosim(self.env, "stream", "prepare", STREAM)
        _hwosim(self.env, "stream", "start", STREAM)

    def start_daemon(self) -> None:
        if self.daemon is None:  # after a crash, the same server again: stopping it stops what both started
            self.daemon = services.ServerProcess(
                f"dagster-daemon ({self.name})",
                [sys.executable, "-m", "dagster._daemon", "run", "-w", str(REPO / "workspace.yaml")],
                self.home / "daemon.log",
                env=self.env,
            )
        self.daemon.start()

    def kill_daemon(self) -> None:
        self.daemon.crash()  # SIGKILL by PID, as a crash would: its code servers live on until stop()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop(grace=20)

    def packets(self) -> np.ndarray:
        """(offset, lap, seq, scheduled, emitted) of every delivered packet, by offset."""
        t = schema.spectra_rows
        engine = make_engine(self.stream_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(t.c.offset, t.c.lap, t.c.seq, t.c.scheduled_time, t.c.emitted_time)
                    .where(t.c.stream == STREAM, t.c.channel == 0)
                    .order_by(t.c.offset)
                ).all()
        finally:
            engine.dispose()
        return np.array(rows, dtype=float).reshape(-1, 5)


def steady_figures(p: np.ndarray, start: float, seconds: float) -> dict:
    """Rate and lateness of the packets scheduled in [start, start + seconds)."""
    inside = (p[:, 3] >= start) & (p[:, 3] < start + seconds)
    late = p[inside, 4] - p[inside, 3]
    half = len(late) // 2
    return {
        "delivered_per_s": inside.sum() / seconds,
        "p50_ms": float(np.percentile(late, 50) * 1e3),
        "p99_ms": float(np.percentile(late, 99) * 1e3),
        "first_half_p50_ms": float(np.percentile(late[:half], 50) * 1e3),
        "second_half_p50_ms": float(np.percentile(late[half:], 50) * 1e3),
    }


def wait_for(predicate, timeout: float, what: str, poll: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def deployments(tmp_path, mariadb):
    mysql = sa.make_url(mariadb.new_database("dagster_live"))
    storage = (REPO / "hwosim_assets" / "defaults" / "dagster-mysql-storage.yaml").read_text()
    base = (REPO / "dagster.yaml").read_text()
    sqlite = Deployment("sqlite", tmp_path / "sqlite", f"sqlite:///{tmp_path / 'sqlite' / 'streams.db'}", base, {})
    maria = Deployment(
        "mariadb",
        tmp_path / "mariadb",
        mariadb.new_database("streams_live"),
        base + storage,
        {
            "DAGSTER_MYSQL_HOSTNAME": mariadb.host,
            "DAGSTER_MYSQL_PORT": str(mariadb.port),
            "DAGSTER_MYSQL_USERNAME": mariadb.user,
            "DAGSTER_MYSQL_PASSWORD": mariadb.password,
            "DAGSTER_MYSQL_DB": mysql.database,
        },
    )
    with ExitStack() as stack:
        for d in (sqlite, maria):
            stack.callback(d.stop)
        yield [sqlite, maria]


def test_streams_hold_their_rate_under_the_daemon_and_recover_from_an_outage(deployments):
    for d in deployments:
        d.prepare_and_start()
    for d in deployments:
        d.start_daemon()

    # the first packets: the first run is asked one lead ahead of its window
    first = {
        d.name: wait_for(lambda d=d: len(p := d.packets()) and p[0, 3], 120, f"{d.name}: first packets")
        for d in deployments
    }
    steady_start = {name: t + 20.0 for name, t in first.items()}  # past the first run's start-up
    time.sleep(max(steady_start.values()) + STEADY_S + 2 - time.time())
    report = []
    for d in deployments:
        fig = steady_figures(d.packets(), steady_start[d.name], STEADY_S)
        report.append((d.name, fig))
        assert fig["delivered_per_s"] >= 0.99 * RATE, (d.name, fig, d.daemon.tail())
        assert fig["p99_ms"] <= 250, (d.name, fig)
        assert fig["second_half_p50_ms"] <= fig["first_half_p50_ms"] + 50, (d.name, fig)  # lateness does not grow

    # the daemon dies; 30 s later it is back
    for d in deployments:
        d.kill_daemon()
    killed_at = time.time()
    time.sleep(OUTAGE_S)
    for d in deployments:
        d.start_daemon()

    def caught_up(d):
        p = d.packets()
        recent = p[p[:, 4] > time.time() - 10]
        return len(recent) > 10 and np.percentile(recent[:, 4] - recent[:, 3], 50) < 0.25

    for d in deployments:
        took = wait_for(
            lambda d=d: caught_up(d) and time.time(), OUTAGE_S + DRAIN_LIMIT_S, f"{d.name}: the lag to drain"
        )
        report.append((d.name, {"drained_s_after_restart": took - killed_at - OUTAGE_S}))
        p = d.packets()
        positions = p[:, 1] * 200 + p[:, 2]  # 200 packets a lap in the sample
        assert np.array_equal(p[:, 0], np.arange(len(p))), f"{d.name}: offsets are not contiguous"
        assert np.array_equal(positions, np.arange(len(p))), f"{d.name}: a packet was lost, repeated or reordered"
        outage = p[(p[:, 3] > killed_at) & (p[:, 3] < killed_at + OUTAGE_S)]
        # runs launched before the kill keep replaying (their processes outlive the daemon); what was
        # not requested in time is delivered late, stamped with its schedule, then the lag drains
        report.append((d.name, {"outage_max_lateness_s": round(float((outage[:, 4] - outage[:, 3]).max()), 3)}))
    print("\nlive streams under dagster-daemon:", *report, sep="\n  ")
