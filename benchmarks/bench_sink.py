"""Sink throughput: the stream writer vs pandas.to_sql vs raw LOAD DATA, same rows, same MariaDB.

    python benchmarks/bench_sink.py [--quick] [--rows N]

Starts its own MariaDB in a temp dir (the test suite's ``services`` helper),
writes the same tidy spectra rows three ways into identical tables (same
primary key and index as ``hwosim_spectra_rows``) and prints rows/s and
ratios. Targets: writer >= 3x pandas, >= 0.9x raw LOAD DATA.

* writer: ``replay_window`` as fast as possible (no pacing, no faults): fault
  plan, row building, batches of ``--batch-rows`` each committed with its
  offset; with the default method (LOAD DATA from /dev/shm) and with
  ``method=insert`` (PyMySQL multi-row INSERT), to show why the default is what it is.
* pandas: ``DataFrame.to_sql(chunksize=1000, if_exists="append")``.
* LOAD DATA: one TSV of all rows written by polars, one ``LOAD DATA LOCAL
  INFILE``, one commit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwosim_assets.stream import schema  # noqa: E402
from hwosim_assets.stream.config import StreamSpec  # noqa: E402
from hwosim_assets.stream.pacing import Pacing  # noqa: E402
from hwosim_assets.stream.replay import replay_window, window_packets  # noqa: E402
from hwosim_assets.stream.writer import StreamWriter, make_engine  # noqa: E402
from hwosim_assets_tests import services  # noqa: E402
from hwosim_assets_tests import synthetic_streams as synthetic  # noqa: E402

CHANNELS = 500


def fresh_table(engine, name: str) -> sa.Table:
    """A table shaped like hwosim_spectra_rows (same PK and index) under another name."""
    meta = sa.MetaData()
    table = schema.spectra_rows.to_metadata(meta, name=name)
    for index in list(table.indexes):
        index.name = f"ix_{name}_stream_seq"
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
    return table


def stream_rows(table, target: sa.Table) -> pl.DataFrame:
    """The rows the writer stores for ``table``: with stream, offset and real epoch times, as text of the same length."""
    now = time.time()
    return table.with_columns(
        stream=pl.lit("bench-load_data"),
        offset=pl.col("seq"),
        lap=pl.lit(0),
        scheduled_time=now + pl.col("seq").cast(pl.Float64) * 1e-3,
        emitted_time=pl.lit(now + 0.123456789),
    ).select([c.name for c in target.columns])


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()


def bench_writer(engine, table, method: str, batch_rows: int) -> float:
    name = f"bench-{method}"
    spec = StreamSpec(
        name=name,
        observation="bench",
        profile="nominal",
        family="spectra",
        pacing=Pacing("asap"),
        window=table["seq"].n_unique(),
    )
    rows = window_packets(spec, table, 0)
    writer = StreamWriter(engine, name, "spectra", method=method)
    t = time.perf_counter()
    report = replay_window(
        engine,
        spec,
        rows,
        window_index=0,
        start_time=time.time(),
        stream_faults={},
        seed=1,
        profile_hash="00000000",
        pace=False,
        writer=writer,
        max_batch_rows=batch_rows,
    )
    elapsed = time.perf_counter() - t
    assert report.rows_written == table.height, report
    return elapsed


def bench_pandas(engine, table) -> float:
    target = fresh_table(engine, "bench_pandas")
    frame = stream_rows(table, target)
    pdf = frame.to_pandas()
    t = time.perf_counter()
    pdf.to_sql("bench_pandas", engine, if_exists="append", index=False, chunksize=1000)
    elapsed = time.perf_counter() - t
    assert count(engine, "bench_pandas") == table.height
    return elapsed


def bench_load_data(engine, table) -> float:
    target = fresh_table(engine, "bench_load")
    frame = stream_rows(table, target)
    names = ", ".join(f"`{c.name}`" for c in target.columns)
    t = time.perf_counter()
    fd, path = tempfile.mkstemp(suffix=".tsv", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    with os.fdopen(fd, "wb") as f:
        frame.write_csv(f, separator="\t", include_header=False, null_value="\\N", quote_style="never")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE bench_load FIELDS TERMINATED BY '\\t' "
            f"LINES TERMINATED BY '\\n' ({names})",
            (path,),
        )
    elapsed = time.perf_counter() - t
    os.unlink(path)
    assert count(engine, "bench_load") == table.height
    return elapsed


def reset(engine) -> None:
    """Drop every benchmark table and recreate empty stream tables."""
    with engine.begin() as conn:
        for name in ("bench_pandas", "bench_load", *[t.name for t in reversed(schema.metadata.sorted_tables)]):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    schema.create_or_migrate(engine)


def timed_on_empty_tables(engine, bench) -> float:
    reset(engine)
    seconds = bench()
    reset(engine)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 500k")
    parser.add_argument("--rows", type=int, help="number of rows (multiple of 500)")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per writer transaction")
    args = parser.parse_args()
    n_rows = args.rows or (100_000 if args.quick else 500_000)
    table = synthetic.spectra_table(n_rows // CHANNELS, CHANNELS)
    print(f"{table.height:,} tidy spectra rows ({table.height // CHANNELS} packets x {CHANNELS} channels)")

    db = services.start_mariadb()
    try:
        engine = make_engine(db.url)
        schema.create_or_migrate(engine)
        # each path writes into empty tables, dropped after it, so no path pays
        # for another's rows in the buffer pool; the two fast paths alternate
        # three times and keep their best (this machine is shared and noisy)
        fast = {
            "raw LOAD DATA LOCAL INFILE": lambda: bench_load_data(engine, table),
            "writer, default (LOAD DATA per batch)": lambda: bench_writer(engine, table, "load_data", args.batch_rows),
        }
        times = {name: float("inf") for name in fast}
        for _ in range(1 if args.quick else 3):
            for name, bench in fast.items():
                times[name] = min(times[name], timed_on_empty_tables(engine, bench))
        times["writer, method=insert (multi-row INSERT)"] = timed_on_empty_tables(
            engine, lambda: bench_writer(engine, table, "insert", args.batch_rows)
        )
        times["pandas to_sql(chunksize=1000)"] = timed_on_empty_tables(engine, lambda: bench_pandas(engine, table))
        engine.dispose()
    finally:
        services.close_mariadb(db)

    print(f"\n{'path':44} {'seconds':>8} {'rows/s':>12}")
    for name, seconds in times.items():
        print(f"{name:44} {seconds:8.2f} {table.height / seconds:12,.0f}")
    writer = times["writer, default (LOAD DATA per batch)"]
    vs_pandas = times["pandas to_sql(chunksize=1000)"] / writer
    vs_load = times["raw LOAD DATA LOCAL INFILE"] / writer
    vs_insert = times["writer, method=insert (multi-row INSERT)"] / writer
    print(f"\nwriter vs pandas:         {vs_pandas:5.2f}x  (target >= 3x)   {'OK' if vs_pandas >= 3 else 'MISSED'}")
    print(f"writer vs raw LOAD DATA:  {vs_load:5.2f}x  (target >= 0.9x) {'OK' if vs_load >= 0.9 else 'MISSED'}")
    print(f"LOAD DATA vs multi-row INSERT in the writer: {vs_insert:5.2f}x")


if __name__ == "__main__":
    main()
