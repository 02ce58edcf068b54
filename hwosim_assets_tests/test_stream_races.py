"""Runs that race for the same window of a stream, on SQLite and on a real MariaDB.

Two runs of a stream's first window used to crash with IntegrityError (check,
then INSERT, in register_stream and open_window): 8 of 12 races. Now both end
cleanly, the data is there exactly once, and what each run reports sums to
what was written.
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.pacing import Pacing
from hwosim_assets.stream.runs import replay_run
from hwosim_assets.stream.writer import make_engine
from hwosim_assets_tests import synthetic_streams as synthetic

FAULTS = {"packet_loss": {"p_loss": 0.05, "mean_burst": 2.0}, "duplicates": {"p_dup": 0.05}}
KEY = dict(seed=5, profile_hash="abad1dea00")
CHANNELS = 40
TABLE = synthetic.spectra_table(200, CHANNELS)


def spec(name: str) -> StreamSpec:
    return StreamSpec(
        name=name,
        observation="jw09999-o001_x",
        profile="nominal",
        family="spectra",
        pacing=Pacing("rate", rate=2000.0),
        tick_seconds=5,
        window=100,
        loop=True,
    )


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request, tmp_path):
    if request.param == "mariadb":
        url = request.getfixturevalue("mariadb").new_database("hwosim_races")
    else:
        url = f"sqlite:///{tmp_path / 'streams.db'}"
    engine = make_engine(url)
    schema.create_or_migrate(engine)
    yield engine
    engine.dispose()


def test_twenty_races_for_a_first_window_end_cleanly(engine):
    for race in range(20):
        stream = spec(f"race-{race}")
        reports, errors, barrier = [], [], threading.Barrier(2)

        def run(pace: bool, stream=stream, reports=reports, errors=errors, barrier=barrier):
            try:
                barrier.wait()
                reports.append(
                    replay_run(
                        engine,
                        stream,
                        TABLE,
                        first=0,
                        last=0,
                        start_time=time.time(),
                        stream_faults=FAULTS,
                        pace=pace,
                        **KEY,
                    )
                )
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(pace,)) for pace in (True, False)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, (race, errors)
        t = schema.spectra_rows
        with engine.connect() as conn:
            rows = pl.DataFrame(
                [
                    r._asdict()
                    for r in conn.execute(sa.select(t.c.offset, t.c.channel).where(t.c.stream == stream.name)).all()
                ]
            )
        packets = rows["offset"].unique().sort()
        assert packets.to_list() == list(range(len(packets))) and len(rows) == len(packets) * CHANNELS
        meta = [r.metadata() for r in reports]
        assert sum(m["rows_written"] for m in meta) == len(rows), (race, meta)
        assert sum(m["packets_delivered"] for m in meta) == len(packets), (race, meta)


def test_a_run_whose_windows_were_taken_over_ends_cleanly(engine, monkeypatch):
    """A run starved for longer than the stall limit has its windows taken over by the next run (seen
    under a loaded daemon); when it wakes, its writer refuses the taken window, and the run ends there
    without an error instead of failing in the UI. Data stay exactly once."""
    from hwosim_assets.stream import replay

    stream, real = spec("taken"), replay.open_window

    def stalls_before_window_1(writer, window):
        if window.window_index == 1:  # while this run slept, the next one took windows 1-2 and delivered them
            monkeypatch.setattr(replay, "open_window", real)
            replay_run(
                engine, stream, TABLE, first=1, last=2, start_time=time.time(), stream_faults=FAULTS, pace=False, **KEY
            )
        return real(writer, window)

    monkeypatch.setattr(replay, "open_window", stalls_before_window_1)
    report = replay_run(
        engine, stream, TABLE, first=0, last=1, start_time=time.time(), stream_faults=FAULTS, pace=False, **KEY
    )
    assert report.taken_over_at == 1 and [w.window_index for w in report.windows] == [0]
    assert report.metadata()["taken_over_at_window"] == 1
    t = schema.spectra_rows
    with engine.connect() as conn:
        offsets = [
            r[0]
            for r in conn.execute(
                sa.select(t.c.offset).where(t.c.stream == "taken", t.c.channel == 0).order_by(t.c.offset)
            )
        ]
    assert offsets == list(range(len(offsets))) and len(offsets) > 250  # windows 0-2 once each, no hole


def test_a_run_launched_after_an_outage_takes_over_a_dead_run_at_once(engine):
    """The run before was killed in window 1 (with the daemon, its parent) long ago: the stall clock
    starts at the stream's last commit, so the next run takes over at once instead of first watching
    for a whole stall limit of its own."""
    from hwosim_assets.stream.runs import wait_for_turn
    from hwosim_assets.stream.writer import StreamWriter

    stream = spec("outage")
    replay_run(engine, stream, TABLE, first=0, last=0, start_time=time.time(), stream_faults={}, pace=False, **KEY)
    writer = StreamWriter(engine, "outage", "spectra")
    writer.open_window(window=1, n_deliveries=100, next_seq_position=200)  # and then the process died
    writer.close()
    time.sleep(2.2)
    turn = wait_for_turn(engine, stream, 2, time.time() - 5.0, stall_s=2.0)
    assert (turn.window, turn.ready) == (1, True) and turn.waited_s < 0.5
