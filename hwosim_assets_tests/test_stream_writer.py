"""The writer commits each batch exactly once, together with its offset."""

import math

import numpy as np
import polars as pl
import pymysql
import pytest
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.writer import StreamStateError, StreamWriter, backoff_schedule, is_retryable, make_engine


def batch_rows(first: int, stop: int, channels: int = 50) -> pl.DataFrame:
    offset = np.repeat(np.arange(first, stop, dtype=np.int64), channels)
    n = len(offset)
    return pl.DataFrame(
        {
            "offset": offset,
            "channel": np.tile(np.arange(channels, dtype=np.int32), stop - first),
            "seq": offset,
            "lap": np.zeros(n, np.int32),
            "integration": (offset + 1).astype(np.int32),
            "wavelength": np.linspace(0.6, 2.8, n),
            "flux": np.random.default_rng(first).random(n),
            "flux_error": np.full(n, 0.01),
            "dq": np.zeros(n, np.int32),
            "event_time": 60000 + offset / 86400,
            "scheduled_time": np.full(n, 1.7e9),
            "emitted_time": np.full(n, 1.7e9 + 0.001),
        }
    )


@pytest.fixture(params=["sqlite-insert", "mariadb-insert", "mariadb-load_data"])
def writer(request, tmp_path):
    backend, method = request.param.split("-")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'streams.db'}"
    else:
        url = request.getfixturevalue("mariadb").new_database("stream_writer")
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            table.drop(conn, checkfirst=True)
    schema.create_or_migrate(engine)
    yield StreamWriter(engine, "w1", "spectra", method=method, load_data_min_rows=0)  # LOAD DATA even for small batches
    engine.dispose()


def stored(writer) -> pl.DataFrame:
    with writer.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.spectra_rows).order_by("offset", "channel")).all()
    return pl.DataFrame([r._asdict() for r in rows])


def test_auto_method_prefers_load_data_on_mariadb(mariadb):
    engine = make_engine(mariadb.new_database("stream_writer_auto"))
    schema.create_or_migrate(engine)
    assert StreamWriter(engine, "a", "spectra").method == "load_data"
    assert StreamWriter(engine, "a", "images").method == "insert"
    plain = sa.create_engine(mariadb.new_database("stream_writer_auto"))  # no local_infile on the client
    assert StreamWriter(plain, "a", "spectra").method == "insert"


def test_batches_are_written_once_whatever_is_retried(writer):
    writer.open_window(window=0, n_deliveries=30, next_seq_position=30)
    assert writer.write_batch(batch_rows(0, 10), window=0, end_offset=10) == 500
    assert writer.write_batch(batch_rows(0, 10), window=0, end_offset=10) == 0  # retry of a committed batch
    assert writer.write_batch(batch_rows(5, 20), window=0, end_offset=20) == 500  # overlapping: only 10..19
    assert writer.write_batch(batch_rows(20, 30), window=0, end_offset=30) == 500
    state = writer.committed()
    assert (state.next_offset, state.window_complete, state.next_window) == (30, True, 1)
    rows = stored(writer)
    assert rows.height == 1500
    assert rows.select("offset", "channel").is_unique().all()
    expected = pl.concat([batch_rows(0, 10), batch_rows(5, 20).filter(pl.col("offset") >= 10), batch_rows(20, 30)])
    assert np.array_equal(rows["flux"].to_numpy(), expected["flux"].to_numpy())  # bit-exact round trip


def test_a_batch_that_skips_offsets_is_refused(writer):
    writer.open_window(window=0, n_deliveries=30, next_seq_position=30)
    with pytest.raises(StreamStateError, match="starts at offset 5"):
        writer.write_batch(batch_rows(5, 10), window=0, end_offset=10)
    assert writer.committed().next_offset == 0
    assert stored(writer).height == 0


def test_next_window_waits_for_the_incomplete_one(writer):
    writer.open_window(window=0, n_deliveries=20, next_seq_position=20)
    writer.write_batch(batch_rows(0, 10), window=0, end_offset=10)
    with pytest.raises(StreamStateError, match="window 0 is incomplete"):
        writer.open_window(window=1, n_deliveries=20, next_seq_position=40)
    reopened = writer.open_window(window=0, n_deliveries=20, next_seq_position=20)  # rerun: same window
    assert (reopened.window_first_offset, reopened.next_offset) == (0, 10)
    writer.write_batch(batch_rows(10, 20), window=0, end_offset=20)
    nxt = writer.open_window(window=1, n_deliveries=5, next_seq_position=40)
    assert (nxt.window_first_offset, nxt.window_end_offset) == (20, 25)


def test_non_finite_values_become_null(writer):
    writer.open_window(window=0, n_deliveries=1, next_seq_position=1)
    rows = batch_rows(0, 1, channels=3).with_columns(flux=pl.Series([math.nan, math.inf, 1.5]))
    writer.write_batch(rows, window=0, end_offset=1)
    assert stored(writer)["flux"].to_list() == [None, None, 1.5]


def test_truth_is_stored_once_with_absolute_offsets(writer):
    truth = pl.DataFrame(
        {
            "lap": [0, 0],
            "seq": [3, 4],
            "delivery": [None, 2],
            "kind": ["packet_loss", "duplicates"],
            "detail": ["lost", "second copy"],
        },
        schema_overrides={"delivery": pl.Int64, "lap": pl.Int32},
    )
    writer.open_window(window=0, n_deliveries=0, next_seq_position=5)
    writer.open_window(window=1, n_deliveries=4, next_seq_position=10, truth=truth)
    writer.open_window(window=1, n_deliveries=4, next_seq_position=10, truth=truth)  # rerun: not stored again
    with writer.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.truth_stream_faults.c.seq, schema.truth_stream_faults.c.offset).order_by("seq")
        ).all()
    assert [tuple(r) for r in rows] == [(3, None), (4, 2)]


def test_connection_errors_are_retryable_others_not():
    lost = sa.exc.OperationalError("COMMIT", {}, pymysql.err.OperationalError(2013, "Lost connection"))
    syntax = sa.exc.ProgrammingError("SELEC", {}, pymysql.err.ProgrammingError(1064, "syntax"))
    assert is_retryable(lost) and not is_retryable(syntax)
    assert backoff_schedule(0.1, 1.0, 6) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
