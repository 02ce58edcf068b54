"""Replay runs write each window's planned deliveries exactly once, abutting, resumable."""

import time

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.faults import plan_window
from hwosim_assets.stream.pacing import Pacing
from hwosim_assets.stream.replay import register_stream, replay_window, resume_point, window_bounds, window_packets
from hwosim_assets.stream.writer import StreamWriter, make_engine
from hwosim_assets_tests import synthetic_streams as synthetic

FAULTS = {
    "packet_loss": {"p_loss": 0.08, "mean_burst": 2.0},
    "duplicates": {"p_dup": 0.05},
    "reordering": {"p_reorder": 0.05, "max_delay_packets": 3},
    "latency_jitter": {"sigma_s": 0.001},
}
KEY = dict(seed=7, profile_hash="0badc0de11")


def spec(name="s1", window=25, loop=True, family="spectra", pacing=None):
    return StreamSpec(
        name=name,
        observation="jw09999-o001_t001_niriss_clear-gr700xd",
        profile="nominal",
        family=family,
        pacing=pacing or Pacing("rate", rate=500.0),
        tick_seconds=1,
        window=window,
        loop=loop,
    )


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'streams.db'}")
    schema.create_or_migrate(engine)
    yield engine
    engine.dispose()


def stored(engine, stream, table=schema.spectra_rows) -> pl.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.stream == stream).order_by("offset")).all()
    return pl.DataFrame([r._asdict() for r in rows])


def test_windows_abut_and_wrap():
    s = spec(window=30)
    bounds = [window_bounds(s, w, 70) for w in range(5)]
    assert [(b.start, b.stop) for b in bounds] == [(0, 30), (30, 60), (60, 90), (90, 120), (120, 150)]
    assert bounds[2].seq_index.tolist() == list(range(60, 70)) + list(range(0, 20))
    assert bounds[2].laps.tolist() == [0] * 10 + [1] * 20
    once = spec(window=30, loop=False)
    assert [(window_bounds(once, w, 70).start, window_bounds(once, w, 70).stop) for w in range(4)] == [
        (0, 30),
        (30, 60),
        (60, 70),
        (70, 70),
    ]
    assert window_bounds(once, 2, 70).exhausted and not window_bounds(s, 2, 70).exhausted


def test_window_packets_orders_rows_by_position_then_channel():
    table = synthetic.spectra_table(10, 3).sample(fraction=1.0, shuffle=True, seed=1)
    rows = window_packets(spec(window=4), table, 2)  # positions 8..11 -> seq 8, 9, 0, 1
    assert rows["seq"].to_list() == [8, 8, 8, 9, 9, 9, 0, 0, 0, 1, 1, 1]
    assert rows["lap"].to_list() == [0] * 6 + [1] * 6 and rows["channel"].to_list() == [0, 1, 2] * 4


def test_windows_deliver_the_plan_exactly_once(engine):
    s, table = spec(), synthetic.spectra_table(60, 8)
    register_stream(engine, s, KEY["profile_hash"])
    reports = [
        replay_window(
            engine,
            s,
            window_packets(s, table, w),
            window_index=w,
            start_time=time.time(),
            stream_faults=FAULTS,
            pace=False,
            **KEY,
        )
        for w in range(4)  # 100 positions: wraps into lap 1
    ]
    rows = stored(engine, "s1")
    packets = rows.unique("offset", keep="first", maintain_order=True)
    assert packets["offset"].to_list() == list(range(sum(r.planned_deliveries for r in reports)))
    assert rows.group_by("offset").len()["len"].unique().to_list() == [8]
    assert [r.first_offset for r in reports[1:]] == [r.last_offset + 1 for r in reports[:-1]]
    for w, report in enumerate(reports):  # each window delivered what its plan says, in its order
        pk = window_packets(s, table, w).unique("position", maintain_order=True)
        plan = plan_window(pk["seq"], pk["lap"], np.arange(25) / 500.0, FAULTS, observation=s.observation, **KEY)
        got = packets.filter(pl.col("offset").is_between(report.first_offset, report.last_offset))
        assert got["seq"].to_list() == pk["seq"].to_numpy()[plan.packet].tolist()
        assert got["lap"].to_list() == pk["lap"].to_numpy()[plan.packet].tolist()
        assert report.drops == plan.truth.filter(kind="packet_loss").height
    assert sum(r.drops for r in reports) > 0 and sum(r.duplicates for r in reports) > 0
    state = resume_point(engine, "s1")
    assert (state.window, state.next_window, state.next_seq_position) == (3, 4, 100)
    with engine.connect() as conn:
        truth = conn.execute(sa.select(sa.func.count()).select_from(schema.truth_stream_faults)).scalar()
    assert truth == sum(r.truth.height for r in reports)


class CrashingWriter(StreamWriter):
    """Dies (like a killed process) after ``batches`` committed batches."""

    def __init__(self, *args, batches, **kwargs):
        super().__init__(*args, **kwargs)
        self.left = batches

    def write_batch(self, rows, **kwargs):
        if self.left == 0:
            raise KeyboardInterrupt("killed")
        self.left -= 1
        return super().write_batch(rows, **kwargs)


def test_a_rerun_continues_after_the_committed_offset(engine):
    table = synthetic.spectra_table(50, 4)
    crashed, clean = spec("crashed", window=50), spec("clean", window=50)

    def run(s, **kw):
        return replay_window(
            engine,
            s,
            window_packets(s, table, 0),
            window_index=0,
            start_time=time.time(),
            stream_faults=FAULTS,
            pace=False,
            max_batch_rows=40,
            **KEY,
            **kw,
        )

    with pytest.raises(KeyboardInterrupt):
        run(crashed, writer=CrashingWriter(engine, "crashed", "spectra", batches=3))
    assert resume_point(engine, "crashed").next_offset == 30 and resume_point(engine, "crashed").next_window == 0
    again = run(crashed)
    assert again.resumed_from_offset == 30 and again.packets_delivered == again.planned_deliveries - 30
    reference = run(clean)
    keep = ["offset", "channel", "seq", "lap", "flux", "event_time", "scheduled_time"]
    a, b = stored(engine, "crashed"), stored(engine, "clean")
    assert a.height == b.height == reference.planned_deliveries * 4
    assert a.select(keep[:-1]).equals(b.select(keep[:-1]))
    finished = run(crashed)
    assert finished.already_committed and finished.rows_written == 0


@pytest.mark.timing
def test_paced_replay_keeps_time(engine):
    s = spec("paced", window=100, pacing=Pacing("rate", rate=100.0))
    # due half a second from now, as a run's first window is due seconds after its launch: planning,
    # registering and opening come before it (0.1 s was too little once in CI, right after the
    # parallel pass: the first packets went 0.18 s late and the rate read 122/s)
    start = time.time() + 0.5
    report = replay_window(
        engine,
        s,
        window_packets(s, synthetic.spectra_table(100, 16), 0),
        window_index=0,
        start_time=start,
        stream_faults={},
        **KEY,
    )
    assert report.packets_delivered == 100 and report.achieved_rate == pytest.approx(100, rel=0.02)
    assert report.lateness_p99 < 0.05 and report.next_start_time == pytest.approx(start + 1.0)
    assert report.emitted[0] - start < 0.05  # the first packet on time too
    rows = stored(engine, "paced")
    late = (rows["emitted_time"] - rows["scheduled_time"]).to_numpy()
    assert (late >= 0).all() and rows["scheduled_time"].min() == pytest.approx(start)


def test_cadence_replay_follows_event_times(engine):
    s = spec("cadence", window=10, pacing=Pacing("cadence", speed=100.0, gap_cap_s=60.0))
    table = synthetic.spectra_table(10, 2, cadence_s=5.0)  # 5 s apart -> 50 ms at speed 100
    start = time.time()
    report = replay_window(
        engine, s, window_packets(s, table, 0), window_index=0, start_time=start, stream_faults={}, **KEY
    )
    sched = stored(engine, "cadence").unique("offset", maintain_order=True)["scheduled_time"].to_numpy()
    assert np.diff(sched) == pytest.approx(np.full(9, 0.05), abs=1e-5)  # MJD resolution ~1 us
    assert report.next_start_time == pytest.approx(start + 0.5)


def test_image_packets_round_trip_on_mariadb(mariadb):
    engine = make_engine(mariadb.new_database("stream_images"))
    schema.create_or_migrate(engine)
    s = spec("tiles", window=12, family="images", loop=False)
    table = synthetic.image_tiles(12, tile=64)
    report = replay_window(
        engine,
        s,
        window_packets(s, table, 0),
        window_index=0,
        start_time=time.time(),
        stream_faults={"duplicates": {"p_dup": 0.3}},
        pace=False,
        **KEY,
    )
    rows = stored(engine, "tiles", schema.image_packets)
    assert rows.height == report.planned_deliveries == 12 + report.duplicates
    for row in rows.iter_rows(named=True):
        source = table.row(row["seq"], named=True)
        sci = np.frombuffer(row["sci"], dtype=row["dtype"].split(",")[0]).reshape(row["ny"], row["nx"])
        assert np.array_equal(sci, np.frombuffer(source["sci"], "<f4").reshape(64, 64))
        assert row["dq"] == source["dq"]
    engine.dispose()


@pytest.mark.parametrize("keep", [{"laps": 1}, {"hours": 1.0}])
def test_retention_keeps_the_last_laps_or_hours(engine, keep):
    """A looping stream never ends: its rows older than the kept laps (or hours) go, newest first kept."""
    from hwosim_assets.stream.runs import apply_retention

    table = synthetic.spectra_table(10, 3)  # 10 packets a lap
    s = spec(name="keep", window=10, pacing=Pacing("rate", rate=1000.0))
    old = time.time() - 2 * 3600  # two windows emitted "two hours ago", then two now
    for w in range(4):
        start = old if w < 2 else time.time()
        replay_window(
            engine,
            s,
            window_packets(s, table, w),
            window_index=w,
            start_time=start,
            stream_faults={},
            pace=False,
            **KEY,
        )
        if w < 2:  # make the first two laps look two hours old
            with engine.begin() as conn:
                t = schema.spectra_rows
                conn.execute(t.update().where(t.c.stream == "keep", t.c.lap == w).values(emitted_time=old))
    deleted = apply_retention(engine, s, **keep)
    rows = stored(engine, "keep")
    if "laps" in keep:
        assert set(rows["lap"]) == {3} and deleted == 3 * 10 * 3  # laps 0-2 of 10 packets x 3 channels
    else:
        assert set(rows["lap"]) == {2, 3} and deleted == 2 * 10 * 3
    assert rows["offset"].is_sorted() and apply_retention(engine, s, **keep) == 0  # idempotent


@pytest.mark.timing
def test_slow_commits_at_window_and_run_boundaries_do_not_delay_the_schedule(engine, monkeypatch):
    """Under load a commit can take a second (twelve streams' runs committing into one SQLite file),
    and when the next window waited for it its first packets were late by as much. Here every window
    opening takes 0.3 s, windows last 0.2 s, and the second run starts while the first is still
    committing: packets still go out on time, the database's delay shows as commit lag only, and
    every packet is delivered once, in order."""
    import threading

    from hwosim_assets.stream.runs import replay_run

    s = spec("bounds", window=20, pacing=Pacing("rate", rate=100.0))
    table = synthetic.spectra_table(100, 8)
    real_open = StreamWriter.open_window

    def slow_open(self, **kw):
        time.sleep(0.3)
        return real_open(self, **kw)

    monkeypatch.setattr(StreamWriter, "open_window", slow_open)
    # a second's lead: the threads plan their windows before the first is due (in CI, right after the
    # parallel pass, half a second once left the first run's packets 70 ms late from the start)
    start, reports = time.time() + 1.0, {}

    def run(first: int, last: int) -> None:
        reports[first] = replay_run(
            engine, s, table, first=first, last=last, start_time=start + first * 0.2, stream_faults={}, **KEY
        )

    threads = [threading.Thread(target=run, args=(first, first + 2)) for first in (0, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(reports) == [0, 3] and all(r.taken_over_at is None for r in reports.values())
    late = np.concatenate([r._concat("emitted") - r._concat("scheduled") for r in reports.values()])
    lag = np.concatenate([r._concat("committed_at") - r._concat("emitted") for r in reports.values()])
    assert len(late) == 120 and np.percentile(late, 99) < 0.05, np.sort(late)[-5:]
    assert lag.max() > 0.25  # the slow openings are there, after the release
    rows = stored(engine, "bounds").filter(pl.col("channel") == 0)
    assert rows["offset"].to_list() == list(range(120))
    assert (rows["lap"] * 100 + rows["seq"]).to_list() == list(range(120))
