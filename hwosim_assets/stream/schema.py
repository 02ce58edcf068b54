"""The stream tables consumers read, and the one migration step that makes them.

Tables (SQLAlchemy Core, portable to MySQL 8, MariaDB 10.11 and SQLite):

* ``hwosim_streams``: registry, one row per configured stream.
* ``hwosim_spectra_rows``: delivered spectra, one row per packet x channel.
* ``hwosim_image_packets``: delivered image tiles, one row per packet.
* ``hwosim_offsets``: per stream, the committed delivery position. It is
  written in the same transaction as the rows, so it is exactly "what has been
  delivered" and a restarted replay continues from it.
* ``hwosim_truth_stream_faults``: the evaluator's record of every stream fault.
  Consumers (the models under test) must not read it: it is the answer key.

Offsets and sequence numbers:

* ``offset`` is the delivery position in the stream: 0, 1, 2, ... in emit order
  with no holes, like a Kafka offset. A spectra packet spans several rows that
  share one offset (one per channel).
* ``seq`` is the source packet number (``records.py``). Because faults act on
  delivery, ``seq`` may skip (loss), repeat (duplicates) or go backwards
  (reordering) while ``offset`` stays contiguous.
* ``lap`` counts passes over the source in looping streams (0 for the first), so
  ``(lap, seq)`` names a source packet uniquely.

Times: ``event_time`` is MJD (UTC) as in the records; ``scheduled_time`` and
``emitted_time`` are UTC epoch seconds as DOUBLE (sub-microsecond resolution,
same type on every dialect, no timezone conversion anywhere). Lateness is
``emitted_time - scheduled_time``: ``emitted_time`` is when the replay
released the packet (sent it down the link); it becomes visible to readers
when its batch commits, a few milliseconds later (each run reports that
commit lag apart, as ``commit_lag_p99_ms``).

Flux values that are NaN or infinite in the source are stored as NULL (MySQL
DOUBLE cannot hold NaN).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from hwosim_assets.records import FAMILIES as RECORD_FAMILIES

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # stream names; matched with fullmatch ("abc\n" is not one)
# Observation ids as the catalogue makes them (ingest.products.partition_safe), at most as long as the column.
OBSERVATION = re.compile(r"[a-z0-9][a-z0-9._+-]{0,127}")
FAMILIES = tuple(RECORD_FAMILIES)

metadata = sa.MetaData()

# LONGBLOB on MySQL (BLOB is capped at 64 KiB, a 128x128 float32 tile is 64 KiB).
_blob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


streams = sa.Table(
    "hwosim_streams",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("observation", sa.String(128), nullable=False),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("profile_hash", sa.String(64), nullable=False),
    sa.Column("family", sa.String(16), nullable=False),
    sa.Column("pacing", sa.Text, nullable=False),  # JSON of the pacing block
    sa.Column("status", sa.String(16), nullable=False),  # registered | running | idle | finished
    sa.Column("source_packets", sa.BigInteger),  # packets per lap of the source, once a run has read it
    sa.Column("created", sa.Double, nullable=False),  # UTC epoch seconds
    sa.Column("updated", sa.Double, nullable=False),
)

spectra_rows = sa.Table(
    "hwosim_spectra_rows",
    metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("offset", sa.BigInteger, primary_key=True, quote=True),
    sa.Column("channel", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("lap", sa.Integer, nullable=False),
    sa.Column("integration", sa.Integer, nullable=False),
    sa.Column("wavelength", sa.Double),
    sa.Column("flux", sa.Double),
    sa.Column("flux_error", sa.Double),
    sa.Column("dq", sa.Integer),
    sa.Column("event_time", sa.Double, nullable=False),
    sa.Column("scheduled_time", sa.Double, nullable=False),
    sa.Column("emitted_time", sa.Double, nullable=False),
    sa.Index("ix_hwosim_spectra_rows_stream_seq", "stream", "seq"),
)

image_packets = sa.Table(
    "hwosim_image_packets",
    metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("offset", sa.BigInteger, primary_key=True, quote=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("lap", sa.Integer, nullable=False),
    sa.Column("frame", sa.Integer, nullable=False),
    sa.Column("source", sa.String(255)),
    sa.Column("y0", sa.Integer, nullable=False),
    sa.Column("x0", sa.Integer, nullable=False),
    sa.Column("ny", sa.Integer, nullable=False),
    sa.Column("nx", sa.Integer, nullable=False),
    # numpy dtype strings of the planes, "sci,err,dq" (records.PIXEL_DTYPES)
    sa.Column("dtype", sa.String(32), nullable=False),
    sa.Column("sci", _blob),
    sa.Column("err", _blob),
    sa.Column("dq", _blob),
    sa.Column("wavelength", _blob),  # float32 micron per pixel, 2-D spectra only (NULL for images)
    sa.Column("event_time", sa.Double, nullable=False),
    sa.Column("scheduled_time", sa.Double, nullable=False),
    sa.Column("emitted_time", sa.Double, nullable=False),
    sa.Index("ix_hwosim_image_packets_stream_seq", "stream", "seq"),
)

offsets = sa.Table(
    "hwosim_offsets",
    metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),  # first offset not yet delivered
    # source position (over laps) where the window after `window` starts
    sa.Column("next_seq_position", sa.BigInteger, nullable=False),
    sa.Column("window", sa.BigInteger, nullable=False),  # last window that committed anything
    sa.Column("window_first_offset", sa.BigInteger, nullable=False),
    sa.Column("window_end_offset", sa.BigInteger, nullable=False),  # complete when next_offset reaches it
    sa.Column("updated", sa.Double, nullable=False),
)

truth_stream_faults = sa.Table(
    "hwosim_truth_stream_faults",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(64), nullable=False),
    sa.Column("window", sa.BigInteger, nullable=False),
    sa.Column("lap", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("offset", sa.BigInteger, quote=True),  # delivery offset, NULL for a lost packet
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.String(255), nullable=False),
    sa.Index("ix_hwosim_truth_stream_faults_stream_window", "stream", "window"),
)

ROW_TABLES = {name: metadata.tables[f.stream_table] for name, f in RECORD_FAMILIES.items()}


def check_slug(name: str, what: str = "stream name") -> str:
    """Return ``name`` if it is a safe identifier; names reach SQL only after this."""
    if not isinstance(name, str) or not SLUG.fullmatch(name):
        raise ValueError(f"{what} {name!r} must match {SLUG.pattern}")
    return name


def create_or_migrate(engine: sa.Engine) -> list[str]:
    """Create missing tables and add missing columns; return what was changed.

    Idempotent: running it on an up-to-date database changes nothing. Added
    columns are nullable (or get a server default) so existing rows stay valid.
    Primary keys and indexes are only created with their table.
    """
    changes: list[str] = []
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in existing:
                table.create(conn)
                changes.append(f"created {table.name}")
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                preparer = conn.dialect.identifier_preparer
                ddl_type = column.type.compile(dialect=conn.dialect)
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {preparer.format_table(table)} "
                        f"ADD COLUMN {preparer.format_column(column)} {ddl_type} NULL"
                    )
                )
                changes.append(f"added {table.name}.{column.name}")
    return changes
