"""Stream tables are created and migrated idempotently on SQLite and MariaDB."""

import pytest
import sqlalchemy as sa

from hwosim_assets.stream import schema


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'streams.db'}"
    else:
        url = request.getfixturevalue("mariadb").new_database("stream_schema")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a clean slate in the shared server
        for table in reversed(schema.metadata.sorted_tables):
            table.drop(conn, checkfirst=True)
    yield engine
    engine.dispose()


def test_create_then_nothing_to_do(engine):
    created = schema.create_or_migrate(engine)
    assert sorted(created) == sorted(f"created {t.name}" for t in schema.metadata.sorted_tables)
    assert schema.create_or_migrate(engine) == []
    inspector = sa.inspect(engine)
    pk = inspector.get_pk_constraint("hwosim_spectra_rows")["constrained_columns"]
    assert pk == ["stream", "offset", "channel"]
    assert inspector.get_pk_constraint("hwosim_image_packets")["constrained_columns"] == ["stream", "offset"]
    indexed = [ix["column_names"] for ix in inspector.get_indexes("hwosim_spectra_rows")]
    assert ["stream", "seq"] in indexed


def test_migrate_adds_missing_columns_and_keeps_rows(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE hwosim_offsets (stream VARCHAR(64) PRIMARY KEY, next_offset BIGINT NOT NULL)")
        )
        conn.execute(sa.text("INSERT INTO hwosim_offsets (stream, next_offset) VALUES ('old', 7)"))
    changes = schema.create_or_migrate(engine)
    assert "added hwosim_offsets.window_end_offset" in changes
    assert "created hwosim_spectra_rows" in changes
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.offsets).where(schema.offsets.c.stream == "old")).one()
    assert row.next_offset == 7 and row.window_end_offset is None
    assert schema.create_or_migrate(engine) == []


def test_blobs_hold_a_full_tile(engine):
    schema.create_or_migrate(engine)
    payload = bytes(range(256)) * 1024  # 256 KiB: more than a MySQL BLOB (64 KiB)
    values = dict(
        stream="s",
        offset=0,
        seq=0,
        lap=0,
        frame=0,
        y0=0,
        x0=0,
        ny=256,
        nx=256,
        dtype="<f4,<f4,<u4",
        sci=payload,
        err=payload,
        dq=payload,
        event_time=60000.0,
        scheduled_time=1.0,
        emitted_time=1.5,
    )
    with engine.begin() as conn:
        conn.execute(schema.image_packets.insert().values(**values))
        back = conn.execute(sa.select(schema.image_packets.c.sci)).scalar()
    assert back == payload


@pytest.mark.parametrize("name", ["", "Upper", "a b", "x;drop table t", "-lead", "a" * 65])
def test_names_must_be_slugs(name):
    with pytest.raises(ValueError):
        schema.check_slug(name)
    assert schema.check_slug("soss-nominal_2") == "soss-nominal_2"
