"""Exactly-once writes of delivered packets, with the committed offset in the same transaction.

Every batch is one transaction that moves the stream's committed offset
(``hwosim_offsets.next_offset``) and inserts the batch's rows. Normally that
is ``UPDATE ... SET next_offset = <batch end> WHERE next_offset = <batch
start>`` (which also takes the row lock) followed by the INSERT. When the
UPDATE matches nothing (a retry whose commit went through, a rerun overlapping
committed offsets), the transaction locks the row with ``SELECT ... FOR
UPDATE``, drops the rows whose offset is already committed and inserts the
rest. So a crash loses nothing that was committed and a retry or a rerun
repeats nothing: the check is against the committed offset itself, not
``INSERT IGNORE``, which would also silently swallow real key clashes. SQLite
has no ``FOR UPDATE`` (it is left out there); its database-wide write lock
gives the same guarantee for the single writer a stream has.

Connection loss (MySQL client errors 2003/2006/2013 and friends, also
deadlocks and lock-wait timeouts) rolls the transaction back; the batch is
retried with exponential backoff, and because the retry re-reads the committed
offset inside its own transaction, a commit whose acknowledgement was lost is
not written twice. When retries run out the error propagates with nothing
half-committed.

Bulk paths, chosen per dialect (``method``):

* ``load_data`` (MySQL/MariaDB, spectra): the batch is written as TSV to a
  temporary file in ``/dev/shm`` (memory) by polars and sent with
  ``LOAD DATA LOCAL INFILE``. Measured 3.5-5x faster than multi-row INSERT and as fast as one raw LOAD DATA for
  tidy spectra rows (``benchmarks/bench_sink.py``), so it is the default when
  the connection allows it (``local_infile`` on both client and server; use
  :func:`make_engine`). Batches under ``load_data_min_rows`` (2000) rows
  still go by INSERT: for a few rows, the temp file and the extra round trip
  of LOCAL INFILE cost more than they save (2.5x the CPU per batch measured
  for one 4-row packet), which matters when many paced streams share a host.
* ``insert``: DB-API ``executemany``; PyMySQL rewrites it into multi-row
  ``INSERT ... VALUES (...), (...)`` statements. Used for SQLite, for image
  packets (binary payloads) and whenever LOCAL INFILE is not allowed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from hwosim_assets.stream import schema

# MySQL/MariaDB error codes after which the transaction is known to be rolled
# back and a new attempt is safe: can't connect, gone away, lost connection,
# out of sync, server shutting down, connection killed, idle timeout,
# deadlock, lock wait timeout.
RETRYABLE_MYSQL_ERRORS = {2003, 2006, 2013, 2014, 2055, 1053, 1927, 4031, 1213, 1205}

METHODS = ("auto", "load_data", "insert")


T = TypeVar("T")


class StreamStateError(RuntimeError):
    """The committed state of a stream does not allow the requested write."""


@dataclass(frozen=True)
class Committed:
    """The committed delivery state of one stream (a row of ``hwosim_offsets``)."""

    next_offset: int
    next_seq_position: int
    window: int
    window_first_offset: int
    window_end_offset: int
    updated: float | None = field(default=None, compare=False)  # UTC epoch s of the last commit or opening

    @property
    def window_complete(self) -> bool:
        return self.next_offset >= self.window_end_offset

    @property
    def next_window(self) -> int:
        """The window to run next: this one again if a run died in it, else the following one."""
        return self.window + 1 if self.window_complete else self.window


# Per driver, the connect argument that allows LOAD DATA LOCAL INFILE (the
# fast bulk path of the writer); servers also need local_infile=1.
_LOCAL_INFILE_ARGS: dict[str, dict[str, bool | int]] = {
    "pymysql": {"local_infile": True},
    "mysqldb": {"local_infile": 1},
    "mysqlconnector": {"allow_local_infile": True},
}


def make_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """The one engine factory of the stream tables: pre-ping; LOCAL INFILE on MySQL; WAL on SQLite.

    Pre-ping replaces a pooled connection that a server restart dropped
    instead of handing it out; MySQL connections are recycled hourly (servers
    close idle ones). SQLite in WAL mode lets consumers read while a replay
    writes (the default rollback journal would lock them out), and
    ``synchronous=NORMAL`` makes a commit cost no fsync: a killed process
    still loses nothing committed, only a power cut can lose the last
    commits. A SQLite file's folder is created if missing.
    """
    url = sa.make_url(url)
    backend = url.get_backend_name()
    if backend in ("mysql", "mariadb"):
        connect_args = kwargs.setdefault("connect_args", {})
        for key, value in _LOCAL_INFILE_ARGS.get(url.get_driver_name(), {}).items():
            connect_args.setdefault(key, value)
        kwargs.setdefault("pool_recycle", 3600)
    if backend == "sqlite" and url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _mysql_error_code(error: BaseException) -> int | None:
    orig = getattr(error, "orig", error)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_retryable(error: BaseException) -> bool:
    """True for errors after which the whole transaction can simply be retried."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    code = _mysql_error_code(error)
    if code in RETRYABLE_MYSQL_ERRORS:
        return True
    return isinstance(error, sa.exc.OperationalError) and "database is locked" in str(error)


def _finite_or_null(df: pl.DataFrame) -> pl.DataFrame:
    """NaN/inf -> NULL: MySQL DOUBLE cannot store them. (Checked first: most batches have none.)"""
    bad = [c for c, t in df.schema.items() if t in (pl.Float64, pl.Float32) and not np.isfinite(df[c].to_numpy()).all()]
    if not bad:
        return df
    return df.with_columns([pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in bad])


def backoff_schedule(backoff_s: float, max_backoff_s: float, retries: int) -> list[float]:
    """The sleeps between attempts: doubling from ``backoff_s``, capped (defaults: 14.3 s in all)."""
    return [min(backoff_s * 2**i, max_backoff_s) for i in range(retries)]


class Transactions:
    """Transactions on one kept connection, each retried after a transient error with backoff.

    :meth:`run` runs ``work(conn)`` in one transaction; after a connection
    loss, a deadlock, a lock-wait timeout or SQLite busy beyond its timeout
    (:func:`is_retryable`) the transaction has been rolled back and the whole
    of ``work`` runs again, up to ``max_retries`` times. The connection is kept
    across transactions (a checkout per transaction would add a pre-ping and a
    reset round trip to every commit); after any error it is dropped, and the
    next attempt connects afresh. ``attempt`` is the number of the attempt
    under way (0 the first), for work that must tell a retry from a first try;
    ``retries`` counts the retries so far.
    """

    def __init__(self, engine: sa.Engine, *, max_retries: int = 8, backoff_s: float = 0.1, max_backoff_s: float = 4.0):
        if max_retries < 0:  # no attempt at all: every transaction would return None
            raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
        self.engine = engine
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retries = 0
        self.attempt = 0
        self._conn: sa.Connection | None = None

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        sleeps = backoff_schedule(self.backoff_s, self.max_backoff_s, self.max_retries)
        for attempt in range(self.max_retries + 1):
            self.attempt = attempt
            try:
                if self._conn is None:
                    self._conn = self.engine.connect()
                with self._conn.begin():
                    return work(self._conn)
            except sa.exc.DBAPIError as error:
                self.close()
                if attempt == self.max_retries or not is_retryable(error):
                    raise
                self.retries += 1
                time.sleep(sleeps[attempt])
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        """Give the connection back (the next transaction connects again)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except sa.exc.DBAPIError:
                pass  # a dead connection: nothing to give back
            self._conn = None


def in_transaction(engine: sa.Engine, work: Callable[[sa.Connection], T], retries: int = 8) -> T:
    """Run ``work(conn)`` in one transaction of a connection of its own, again after a transient error
    (connection lost, SQLite busy beyond its timeout while other streams' runs commit, deadlock), with
    the writer's backoff (:class:`Transactions`)."""
    transactions = Transactions(engine, max_retries=retries)
    try:
        return transactions.run(work)
    finally:
        transactions.close()


class StreamWriter:
    """Writes one stream's batches exactly once, each with its offset, retrying on connection loss."""

    def __init__(
        self,
        engine: sa.Engine,
        stream: str,
        family: str,
        *,
        method: str = "auto",
        max_retries: int = 8,
        backoff_s: float = 0.1,
        max_backoff_s: float = 4.0,
        spool_dir: str | None = None,
        load_data_min_rows: int = 2000,
    ):
        if family not in schema.ROW_TABLES:
            raise ValueError(f"family {family!r} not in {schema.FAMILIES}")
        if method not in METHODS:
            raise ValueError(f"method {method!r} not in {METHODS}")
        self.engine = engine
        self.stream = schema.check_slug(stream)
        self.family = family
        self.table = schema.ROW_TABLES[family]
        self.columns = [str(c.name) for c in self.table.columns]  # plain str, not quoted_name
        # every transaction of the writer (each batch: its rows and its offset) runs here
        self._transactions = Transactions(
            engine, max_retries=max_retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self.spool_dir = spool_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.load_data_min_rows = load_data_min_rows
        self.packets_written = 0  # deliveries (offsets) this writer committed itself
        # the two statements of every batch, as plain SQL (no per-call compile); values bound
        marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        lock = "" if engine.dialect.name == "sqlite" else " FOR UPDATE"
        self._select_state_sql = (
            "SELECT next_offset, next_seq_position, window_, window_first_offset, window_end_offset, updated "
            f"FROM hwosim_offsets WHERE stream = {marker}{lock}"
        ).replace("window_,", engine.dialect.identifier_preparer.quote_identifier("window") + ",")
        self._advance_sql = (
            f"UPDATE hwosim_offsets SET next_offset = {marker}, updated = {marker} WHERE stream = {marker}"
        )
        self._claim_sql = (
            f"{self._advance_sql} AND {engine.dialect.identifier_preparer.quote_identifier('window')} = {marker} "
            f"AND next_offset = {marker}"
        )
        self.method = self._resolve_method(method)

    # -- method selection -------------------------------------------------

    def _resolve_method(self, method: str) -> str:
        is_mysql = self.engine.dialect.name in ("mysql", "mariadb")
        if method == "load_data" and not is_mysql:
            raise ValueError("load_data needs MySQL or MariaDB")
        if method != "auto":
            return method
        if not is_mysql or self.family != "spectra":
            return "insert"
        return "load_data" if self._local_infile_allowed() else "insert"

    def _local_infile_allowed(self) -> bool:
        def check(conn: sa.Connection) -> bool:
            dbapi = conn.connection.dbapi_connection
            client = bool(getattr(dbapi, "_local_infile", False))  # PyMySQL keeps the flag here
            server = conn.exec_driver_sql("SELECT @@local_infile").scalar()
            return client and server is not None and bool(int(server))

        return self._transactions.run(check)

    @property
    def retries(self) -> int:
        """Connection-loss retries so far (reported by replay)."""
        return self._transactions.retries

    def close(self) -> None:
        """Give the connection back (the writer reconnects if used again)."""
        self._transactions.close()

    def _lock_state(self, conn: sa.Connection) -> Committed | None:
        row = conn.exec_driver_sql(self._select_state_sql, (self.stream,)).first()
        if row is None:
            return None
        next_offset, next_seq_position, window, first, end, updated = row
        state = Committed(int(next_offset), int(next_seq_position), int(window), int(first), int(end), float(updated))
        return None if state.window < 0 else state  # window -1: the row of a stream never opened

    def committed(self) -> Committed | None:
        """The committed state, or None for a stream that never delivered."""
        return self._transactions.run(self._lock_state)

    # -- windows and batches ----------------------------------------------

    def open_window(
        self, *, window: int, n_deliveries: int, next_seq_position: int, truth: pl.DataFrame | None = None
    ) -> Committed:
        """Start ``window`` (or find it already started) and return the committed state.

        Opening records the window's first and end offsets, so a rerun after a
        crash knows which offsets the window owns, and stores the window's
        truth (with absolute offsets) in the same transaction, exactly once.
        ``truth`` columns: lap, seq, delivery (index in the window or null),
        kind, detail. Returns the state after opening; a window that is older
        than the committed one is returned untouched (``state.window > window``).
        """

        def work(conn: sa.Connection) -> Committed:
            now = time.time()
            insert_if_absent(conn, schema.offsets, stream=self.stream, **NEVER_DELIVERED, updated=now)
            state = self._lock_state(conn)  # the row exists now: concurrent openers queue on its lock
            if state is not None and state.window >= window:
                return state  # rerun of an opened (maybe finished) window, or an old one
            if state is not None and not state.window_complete:
                raise StreamStateError(
                    f"stream {self.stream}: window {state.window} is incomplete "
                    f"({state.next_offset} of offsets up to {state.window_end_offset} committed); "
                    f"rerun it before window {window}"
                )
            first = state.next_offset if state else 0
            values = dict(
                next_offset=first,
                next_seq_position=next_seq_position,
                window=window,
                window_first_offset=first,
                window_end_offset=first + n_deliveries,
                updated=now,
            )
            o = schema.offsets
            conn.execute(o.update().where(o.c.stream == self.stream).values(**values))
            if truth is not None and truth.height:
                rows = truth.with_columns(
                    (pl.col("delivery") + first).alias("offset"),
                    pl.lit(self.stream).alias("stream"),
                    pl.lit(window).alias("window"),
                ).select("stream", "window", "lap", "seq", "offset", "kind", "detail")
                _executemany(conn, schema.truth_stream_faults, rows)
            return Committed(first, next_seq_position, window, first, first + n_deliveries, updated=now)

        return self._transactions.run(work)

    def write_batch(self, rows: pl.DataFrame, *, window: int, end_offset: int) -> int:
        """Insert ``rows`` (table columns, ``stream`` optional) and advance the offset to ``end_offset``.

        Rows whose offset is already committed are skipped, so calling this
        again with the same or an overlapping batch is harmless (and two runs
        of one window share its batches, each writing what it claimed first).
        Returns the number of rows inserted; ``packets_written`` counts the
        offsets. Raises :class:`StreamStateError` when the batch does not
        continue the committed offsets of ``window``.
        """
        if "stream" not in rows.columns:
            rows = rows.hstack([pl.Series("stream", [self.stream] * rows.height, dtype=pl.Utf8)])
        rows = _finite_or_null(rows[self.columns])  # eager calls: cheap for the many small batches

        first = int(rows["offset"][0]) if rows.height else None  # rows come in offset order

        def work(conn: sa.Connection) -> tuple[int, int]:
            if first is not None:
                # fast path, one statement: claim [first, end_offset) if the committed offset is exactly `first`
                claim = (end_offset, time.time(), self.stream, window, first)
                if conn.exec_driver_sql(self._claim_sql, claim).rowcount == 1:
                    self._insert(conn, rows)
                    return rows.height, end_offset - first
            state = self._lock_state(conn)
            if state is None or state.window != window:
                raise StreamStateError(f"stream {self.stream}: window {window} is not the open window ({state})")
            if state.next_offset >= end_offset:
                # committed before: by this batch, when a retry finds that its lost commit went through
                # (counted as ours), or by another run of the window (not ours)
                retried = self._transactions.attempt > 0
                return (rows.height, end_offset - first) if retried and first is not None else (0, 0)
            pending = rows.filter(pl.col("offset") >= state.next_offset)
            if pending.height and int(pending["offset"][0]) != state.next_offset:
                raise StreamStateError(
                    f"stream {self.stream}: batch starts at offset {int(pending['offset'][0])}, "
                    f"committed next_offset is {state.next_offset}"
                )
            self._insert(conn, pending)
            conn.exec_driver_sql(self._advance_sql, (end_offset, time.time(), self.stream))
            return pending.height, end_offset - state.next_offset

        rows_written, packets = self._transactions.run(work)
        self.packets_written += packets
        return rows_written

    def _insert(self, conn: sa.Connection, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        if self.method == "load_data" and rows.height >= self.load_data_min_rows:
            self._load_data(conn, rows)
        else:
            _executemany(conn, self.table, rows)

    def _load_data(self, conn: sa.Connection, rows: pl.DataFrame) -> None:
        names = ", ".join(f"`{c}`" for c in self.columns)
        fd, path = tempfile.mkstemp(prefix="hwosim-", suffix=".tsv", dir=self.spool_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                rows.write_csv(f, separator="\t", include_header=False, null_value="\\N", quote_style="never")
            conn.exec_driver_sql(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.table.name} "
                f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({names})",
                (path,),
            )
        finally:
            os.unlink(path)


# hwosim_offsets of a stream before its first window: window -1, complete, so window 0 comes next
NEVER_DELIVERED = dict(next_offset=0, next_seq_position=0, window=-1, window_first_offset=0, window_end_offset=0)


def insert_if_absent(conn: sa.Connection, table: sa.Table, **values: Any) -> None:
    """INSERT a row unless one with its primary key exists, without an error
    either way: concurrent callers both succeed (MySQL/MariaDB ``ON DUPLICATE
    KEY UPDATE`` of the key to itself, SQLite ``ON CONFLICT DO NOTHING``).
    Checking first and then inserting races; this does not."""
    dialect = conn.dialect.name
    statement: sa.Insert
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        key = table.primary_key.columns[0].name
        statement = mysql_insert(table).values(**values).on_duplicate_key_update({key: table.c[key]})
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"insert_if_absent: no upsert for {dialect}")
    conn.execute(statement)


def _executemany(conn: sa.Connection, table: sa.Table, rows: pl.DataFrame) -> None:
    """INSERT the frame's columns through DB-API executemany (PyMySQL: multi-row INSERT), values bound."""
    preparer = conn.dialect.identifier_preparer
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(preparer.quote_identifier(c) for c in rows.columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join([marker] * len(rows.columns))})"
    if conn.dialect.name == "sqlite":
        # Rows from an iterator (polars converts 512 at a time) straight to the driver, in the same
        # transaction: .rows() of a 50,000-row catch-up batch holds the GIL ~220 ms at once, and the
        # pacer thread of the same process waits that long; this is also 2.8x faster (50,000 rows).
        driver = conn.connection.driver_connection
        assert driver is not None  # the connection is open: this transaction runs on it
        driver.cursor().executemany(sql, rows.iter_rows())
    else:
        conn.exec_driver_sql(sql, rows.rows())


__all__ = [
    "Committed",
    "StreamStateError",
    "StreamWriter",
    "Transactions",
    "in_transaction",
    "make_engine",
    "insert_if_absent",
    "is_retryable",
    "backoff_schedule",
    "RETRYABLE_MYSQL_ERRORS",
]
