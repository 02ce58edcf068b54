"""The database that holds the stream tables: SQLite by default, MySQL or
MariaDB when HWOSIM_STREAM_DB_URL names one.

The URL is the only setting. A password in it is masked wherever the URL is
shown (errors, logs, ``repr``), so only the environment ever holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from hwosim_assets.stream.writer import make_engine

DEFAULT_URL = "sqlite:///.hwosim/streams.db"

# Per driver, the connect argument that allows LOAD DATA LOCAL INFILE (the
# fast bulk path of the stream writers); servers also need local_infile=1.
_LOCAL_INFILE_ARGS = {
    "pymysql": {"local_infile": True},
    "mysqldb": {"local_infile": 1},
    "mysqlconnector": {"allow_local_infile": True},
}


class StreamDatabaseError(RuntimeError):
    """The stream database cannot be reached; the message names the setting."""


def masked(url: str | sa.URL) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


class StreamDatabase(dg.ConfigurableResource):
    """A SQLAlchemy engine on the stream tables, built once per resource instance."""

    url: str = DEFAULT_URL

    _engine: Any = PrivateAttr(default=None)

    def __repr_args__(self):  # repr() and str() show the URL with its password masked
        for name, value in super().__repr_args__():
            yield name, masked(value) if name == "url" and isinstance(value, str) else value

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = _make_engine(sa.make_url(self.url))
        return self._engine

    def check_connection(self) -> None:
        """Run ``SELECT 1``, or raise an error that says which setting to fix."""
        try:
            with self.engine().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as e:
            reason = str(getattr(e, "orig", None) or e).splitlines()[0]
            password = sa.make_url(self.url).password
            if password:
                reason = reason.replace(password, "***")
            raise StreamDatabaseError(
                f"cannot connect to the stream database {masked(self.url)} (HWOSIM_STREAM_DB_URL): {reason}"
            ) from None


def _make_engine(url: sa.URL) -> sa.Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # the stream layer's engine: WAL (consumers keep reading while a replay
        # run writes), synchronous=NORMAL (no fsync per packet commit), busy timeout
        return make_engine(url)
    connect_args = dict(_LOCAL_INFILE_ARGS.get(url.get_driver_name(), {})) if backend in ("mysql", "mariadb") else {}
    # pre-ping: a pooled connection dropped by a server restart is replaced, not handed out
    return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=connect_args)
