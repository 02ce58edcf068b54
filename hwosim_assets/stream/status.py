"""How a stream is doing, from the stream database alone: what ``hwosim stream status`` shows.

* target rate: from the stream's registry row (its pacing);
* delivered rate over the last minute: deliveries committed with an emitted
  time in the last 60 s, per second;
* lag: now minus the scheduled time of the last committed packet (small and
  steady while the stream keeps up; growing when it falls behind);
* watermark: the highest event time (MJD) committed, and the last offset;
* position: (lap, seq) of the last committed packet, of how many per lap.

Also :func:`reset`, which removes a stream's rows, offsets and fault truth so
that it starts again from its first packet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import sqlalchemy as sa

from hwosim_assets.stream import schema

WINDOW_S = 60.0  # "the last minute"


@dataclass(frozen=True)
class StreamStatus:
    name: str
    family: str
    status: str  # registry status: registered, running, idle, finished
    target_rate: float | None  # packets per second (rate pacing), None otherwise
    delivered_rate: float  # packets per second over the last minute
    lag_s: float | None  # now - scheduled time of the last committed packet
    watermark_mjd: float | None
    next_offset: int
    lap: int | None
    seq: int | None
    packets_per_lap: int | None
    window: int | None  # last window that committed anything


def _first_offset_emitted_after(
    conn: sa.Connection, table: sa.Table, stream: str, since: float, lo: int, hi: int
) -> int:
    """Bisection on the primary key: emitted time grows with the offset."""
    probe = (
        sa.select(table.c.emitted_time)
        .where(table.c.stream == stream, table.c.offset >= sa.bindparam("o"))
        .order_by(table.c.offset)
        .limit(1)
    )
    while lo < hi:
        mid = (lo + hi) // 2
        value = conn.execute(probe, {"o": mid}).scalar()
        if value is None or value >= since:
            hi = mid
        else:
            lo = mid + 1
    return lo


def stream_status(engine: sa.Engine, name: str, now: float | None = None) -> StreamStatus | None:
    """The status of one registered stream, None if it is not registered."""
    now = time.time() if now is None else now
    s, o = schema.streams, schema.offsets
    with engine.connect() as conn:
        registry = conn.execute(sa.select(s).where(s.c.name == name)).first()
        if registry is None:
            return None
        table = schema.ROW_TABLES[registry.family]
        pacing = json.loads(registry.pacing)
        offsets = conn.execute(sa.select(o).where(o.c.stream == name)).first()
        next_offset = int(offsets.next_offset) if offsets else 0
        last = None
        if next_offset > 0:
            last = conn.execute(
                sa.select(table.c.lap, table.c.seq, table.c.scheduled_time)
                .where(table.c.stream == name, table.c.offset == next_offset - 1)
                .limit(1)
            ).first()
        low = conn.execute(sa.select(sa.func.min(table.c.offset)).where(table.c.stream == name)).scalar()
        delivered = 0
        if low is not None:
            delivered = next_offset - _first_offset_emitted_after(
                conn, table, name, now - WINDOW_S, int(low), next_offset
            )
        watermark = conn.execute(sa.select(sa.func.max(table.c.event_time)).where(table.c.stream == name)).scalar()
    return StreamStatus(
        name=name,
        family=registry.family,
        status=registry.status,
        target_rate=pacing.get("rate") if pacing.get("mode") == "rate" else None,
        delivered_rate=delivered / WINDOW_S,
        lag_s=(now - last.scheduled_time) if last is not None else None,
        watermark_mjd=watermark,
        next_offset=next_offset,
        lap=last.lap if last is not None else None,
        seq=last.seq if last is not None else None,
        packets_per_lap=registry.source_packets,
        window=int(offsets.window) if offsets and offsets.window >= 0 else None,
    )


def registered_streams(engine: sa.Engine) -> list[str]:
    s = schema.streams
    with engine.connect() as conn:
        return [row.name for row in conn.execute(sa.select(s.c.name).order_by(s.c.name))]


def reset(engine: sa.Engine, name: str) -> dict[str, int]:
    """Remove the stream's delivered rows, committed offsets and fault truth, in one transaction;
    the registry row stays (status back to ``registered``). Returns rows removed per table."""
    removed = {}
    with engine.begin() as conn:
        for table in (*schema.ROW_TABLES.values(), schema.offsets, schema.truth_stream_faults):
            removed[table.name] = conn.execute(table.delete().where(table.c.stream == name)).rowcount
        s = schema.streams
        conn.execute(s.update().where(s.c.name == name).values(status="registered", updated=time.time()))
    return removed
