"""Consumers see the stream as delivered: in offset order, with its gaps and duplicates."""

import textwrap
import threading
import time

import pytest
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.pacing import Pacing
from hwosim_assets.stream.reader import StreamReader
from hwosim_assets.stream.replay import register_stream, replay_window, window_packets
from hwosim_assets.stream.writer import make_engine
from hwosim_assets_tests import synthetic_streams as synthetic

FAULTS = {"packet_loss": {"p_loss": 0.1, "mean_burst": 2.0}, "duplicates": {"p_dup": 0.1}}
KEY = dict(seed=3, profile_hash="5eed5eed00")


@pytest.fixture(params=["sqlite", "mariadb"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'streams.db'}"
    return request.getfixturevalue("mariadb").new_database("stream_reader")


def replay(engine, spec, n_windows, table, pace=False, start=None):
    start = start or time.time()
    return [
        replay_window(
            engine,
            spec,
            window_packets(spec, table, w),
            window_index=w,
            start_time=spec.window_start_time(w, start),
            stream_faults=FAULTS,
            pace=pace,
            **KEY,
        )
        for w in range(n_windows)
    ]


def test_reader_sees_what_the_truth_says(url):
    engine = make_engine(url)
    schema.create_or_migrate(engine)
    spec = StreamSpec(
        name="r1",
        observation="obs-1",
        profile="nominal",
        family="spectra",
        pacing=Pacing("rate", rate=1000.0),
        tick_seconds=1,
        window=40,
        loop=False,
    )
    register_stream(engine, spec, KEY["profile_hash"])
    reports = replay(engine, spec, 3, synthetic.spectra_table(120, 5))
    truth = [t for r in reports for t in r.truth.iter_rows(named=True)]
    lost = sorted((t["lap"], t["seq"]) for t in truth if t["kind"] == "packet_loss")
    dups = sorted((t["lap"], t["seq"]) for t in truth if t["kind"] == "duplicates")

    reader = StreamReader(url, "r1")
    rows = list(reader.follow(poll_interval=0.01, idle_timeout=0.05))
    offsets = [r.offset for r in rows]
    assert offsets == sorted(offsets) and len(rows) == 5 * sum(r.planned_deliveries for r in reports)
    assert reader.duplicates() == dups and len(dups) > 0
    highest = max(r.seq for r in rows)
    assert reader.gaps() == [g for g in lost if g[1] < highest] and len(lost) > 0
    assert reader.watermark.offset == offsets[-1]
    assert reader.watermark.event_time == max(r.event_time for r in rows)
    later = StreamReader(url, "r1", start_offset=50)
    assert [r.offset for r in later.poll()][0] == 50
    engine.dispose()


def test_reader_follows_a_live_replay_and_never_sees_half_a_batch(tmp_path):
    url = f"sqlite:///{tmp_path / 'streams.db'}"
    engine = make_engine(url)
    schema.create_or_migrate(engine)
    spec = StreamSpec(
        name="live",
        observation="obs-1",
        profile="nominal",
        family="spectra",
        pacing=Pacing("rate", rate=200.0),
        tick_seconds=1,
        window=200,
        loop=False,
    )
    register_stream(engine, spec, KEY["profile_hash"])
    writer = threading.Thread(
        target=replay,
        args=(engine, spec, 1, synthetic.spectra_table(200, 10)),
        kwargs={"pace": True, "start": time.time() + 0.2},
    )
    writer.start()
    reader = StreamReader(url, "live")
    seen, polls = [], 0
    deadline = time.time() + 10
    while writer.is_alive() or reader.poll_pending():
        batch = reader.poll()
        polls += bool(batch)
        seen += batch
        by_offset = {}
        for row in batch:
            by_offset[row.offset] = by_offset.get(row.offset, 0) + 1
        assert set(by_offset.values()) <= {10}  # whole packets only
        time.sleep(0.02)
        assert time.time() < deadline
    writer.join()
    assert polls > 5  # it really followed, in many steps
    assert [r.offset for r in seen][::10] == list(range(len(seen) // 10))


def test_the_docstring_example_runs_as_written(tmp_path, monkeypatch, capsys):
    import hwosim_assets.stream.reader as reader_module
    from hwosim_assets.stream.config import load_streams

    doc = reader_module.__doc__
    example = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\nRows come")[0])
    assert len([line for line in example.splitlines() if line.strip()]) == 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".hwosim").mkdir()
    engine = make_engine("sqlite:///.hwosim/streams.db")  # where the embedded default keeps the stream tables
    schema.create_or_migrate(engine)
    spec = load_streams()["soss-nominal"]
    register_stream(engine, spec, KEY["profile_hash"])
    replay_window(
        engine,
        spec,
        window_packets(spec, synthetic.spectra_table(30, 3), 0),
        window_index=0,
        start_time=time.time(),
        stream_faults=FAULTS,
        pace=False,
        **KEY,
    )
    exec(compile(example, "reader-example", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 3 * 25 + 1 and out[-1].startswith("Watermark(")


def test_reader_lag_and_lateness(tmp_path):
    """lag: seconds of schedule between the newest committed packet and the last one read;
    lateness: emitted - scheduled of what was read, as the table says."""
    engine = make_engine(f"sqlite:///{tmp_path / 'streams.db'}")
    schema.create_or_migrate(engine)
    spec = StreamSpec(
        name="lag",
        observation="obs-1",
        profile="nominal",
        family="spectra",
        pacing=Pacing("rate", rate=100.0),
        tick_seconds=1,
        window=50,
        loop=True,
    )
    start = time.time() - 10.0  # every packet already 10 s overdue: delivered at once, about 10 s late
    replay(engine, spec, 1, synthetic.spectra_table(100, 3), start=start)
    reader = StreamReader(engine, "lag", page_packets=10)
    first = reader.poll()
    t = schema.ROW_TABLES["spectra"]
    with engine.connect() as conn:
        scheduled = dict(conn.execute(sa.select(t.c.offset, t.c.scheduled_time).where(t.c.stream == "lag")).all())
    newest = max(scheduled)
    assert newest > 9 and first[-1].offset == 9  # packets 0..9 read, more committed
    assert reader.lag == pytest.approx(scheduled[newest] - scheduled[9], abs=1e-6) and reader.lag > 0.3
    late = reader.lateness()
    assert late["p50"] == pytest.approx(10.0, abs=1.0) and late["max"] >= late["p99"] >= late["p50"]
    while reader.poll():
        pass
    assert reader.lag == 0.0  # caught up
    assert StreamReader(engine, "lag").lateness() == {"p50": None, "p99": None, "max": None}  # nothing read yet
