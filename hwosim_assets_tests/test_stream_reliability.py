"""Against a real MariaDB: a replay killed with SIGKILL, or a server restarted mid-run, loses and repeats nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.faults import plan_window
from hwosim_assets.stream.pacing import Pacing
from hwosim_assets.stream.replay import replay_window, resume_point, window_packets
from hwosim_assets.stream.writer import make_engine
from hwosim_assets_tests import synthetic_streams as synthetic

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {
    "packet_loss": {"p_loss": 0.05, "mean_burst": 3.0},
    "duplicates": {"p_dup": 0.05},
    "reordering": {"p_reorder": 0.05, "max_delay_packets": 4},
}
KEY = dict(seed=11, profile_hash="c0ffee0042")
N_PACKETS, CHANNELS = 400, 50
SPEC = StreamSpec(
    name="crash",
    observation="jw09999-o001_t001_niriss_clear-gr700xd",
    profile="nominal",
    family="spectra",
    pacing=Pacing("rate", rate=200.0),
    tick_seconds=2,
    window=N_PACKETS,
    loop=True,
)

# The same replay as a separate process, so that it can be killed for real.
CHILD = textwrap.dedent("""
    import sys, time
    from hwosim_assets_tests import synthetic_streams as synthetic
    from hwosim_assets.stream.replay import replay_window, window_packets
    from hwosim_assets.stream.writer import make_engine
    from hwosim_assets_tests.test_stream_reliability import FAULTS, KEY, SPEC, N_PACKETS, CHANNELS
    packets = window_packets(SPEC, synthetic.spectra_table(N_PACKETS, CHANNELS), 0)
    replay_window(make_engine(sys.argv[1]), SPEC, packets, window_index=0, start_time=float(sys.argv[2]),
                  stream_faults=FAULTS, **KEY)
""")


def expected_seqs(spec=SPEC) -> list[int]:
    """The seq of every delivery the fault plan makes, in offset order."""
    pk = window_packets(spec, synthetic.spectra_table(N_PACKETS, CHANNELS), 0).unique("position", maintain_order=True)
    plan = plan_window(pk["seq"], pk["lap"], np.arange(len(pk)) / 200.0, FAULTS, observation=spec.observation, **KEY)
    return pk["seq"].to_numpy()[plan.packet].tolist()


def check_exactly_the_plan(engine, stream):
    with engine.connect() as conn:
        rows = pl.DataFrame(
            [
                r._asdict()
                for r in conn.execute(
                    sa.select(schema.spectra_rows.c["offset", "seq", "channel"])
                    .where(schema.spectra_rows.c.stream == stream)
                    .order_by("offset", "channel")
                ).all()
            ]
        )
    per_packet = rows.group_by("offset", maintain_order=True).agg(pl.col("seq").first(), pl.len())
    expected = expected_seqs()
    assert per_packet["offset"].to_list() == list(range(len(expected)))  # contiguous offsets
    assert per_packet["len"].unique().to_list() == [CHANNELS]  # every row present, once
    assert per_packet["seq"].to_list() == expected  # seq skips only where a loss was planned


def test_sigkill_mid_window_then_rerun(mariadb):
    url = mariadb.new_database("stream_sigkill")
    engine = make_engine(url)
    schema.create_or_migrate(engine)
    start = time.time() + 2.0  # leave the child time to import; the window then lasts 2 s
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(start)], cwd=ROOT, env=env)
    try:
        deadline = time.time() + 30
        while (state := resume_point(engine, "crash")) is None or state.next_offset < 100:
            assert child.poll() is None, "the replay ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    killed_at = resume_point(engine, "crash")
    assert 100 <= killed_at.next_offset < len(expected_seqs()) and not killed_at.window_complete

    packets = window_packets(SPEC, synthetic.spectra_table(N_PACKETS, CHANNELS), 0)
    report = replay_window(
        engine, SPEC, packets, window_index=0, start_time=start, stream_faults=FAULTS, pace=False, **KEY
    )
    assert report.resumed_from_offset == killed_at.next_offset
    check_exactly_the_plan(engine, "crash")
    assert resume_point(engine, "crash").next_window == 1
    engine.dispose()


def test_server_restart_mid_run(mariadb):
    engine = make_engine(mariadb.new_database("stream_restart"))
    schema.create_or_migrate(engine)
    packets = window_packets(SPEC, synthetic.spectra_table(N_PACKETS, CHANNELS), 0)
    reports, errors = [], []

    def run():
        try:
            reports.append(
                replay_window(
                    engine, SPEC, packets, window_index=0, start_time=time.time() + 0.2, stream_faults=FAULTS, **KEY
                )
            )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    # The replay runs in a thread; the server is restarted from this one (the
    # services start servers with a parent-death signal tied to the starting
    # thread, so a server started from a short-lived thread would not survive it).
    replayer = threading.Thread(target=run)
    replayer.start()
    try:
        deadline = time.time() + 30
        while (state := resume_point(engine, "crash")) is None or state.next_offset < 150:
            assert replayer.is_alive() and time.time() < deadline
            time.sleep(0.02)
        mariadb.restart()
        replayer.join(60)
    finally:
        mariadb.start()  # whatever happened, leave the server up for the other tests
    assert not errors, errors
    (report,) = reports
    assert report.retries > 0  # it really lost the connection
    assert report.packets_delivered == report.planned_deliveries
    check_exactly_the_plan(engine, "crash")
    engine.dispose()
