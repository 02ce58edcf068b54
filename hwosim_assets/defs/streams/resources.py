"""The database that holds the stream tables: SQLite by default, MySQL or
MariaDB when HWOSIM_STREAM_DB_URL names one.

The URL is the only setting. A password in it is masked wherever the URL is
shown (errors, logs, `repr`), so only the environment ever holds it.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from hwosim_assets.stream.writer import make_engine

DEFAULT_URL = "sqlite:///.hwosim/streams.db"


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
            self._engine = make_engine(self.url)
        return self._engine

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Every run that uses the stream database checks it first: a clear error at the start,
        naming the setting, rather than a driver's error in the middle of a write."""
        self.check_connection()

    def check_connection(self) -> None:
        """Run `SELECT 1`, or raise an error that says which setting to fix."""
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
