"""Reading a stream as a consumer (a model under test) sees it: in offset order, faults and all.

Five lines, against the embedded default database (``$HWOSIM_HOME/streams.db``,
HWOSIM_HOME defaulting to ``.hwosim``) once a replay has run::

    from hwosim_assets.stream.reader import StreamReader

    reader = StreamReader("sqlite:///.hwosim/streams.db", "soss-nominal")
    for row in reader.follow(poll_interval=0.5, idle_timeout=2.0):
        print(row.offset, row.seq, row.event_time, row.wavelength, row.flux)
    print(reader.watermark, reader.gaps(), reader.duplicates())

Rows come in delivery order (``offset``, then ``channel``), only up to the
committed offset, so a batch is never seen half-written. ``reader.lag`` says
how far behind the newest committed packet the reader is (seconds of the
stream's schedule), ``reader.lateness()`` how late what it read was emitted. The reader hides
nothing: a lost packet is a ``seq`` that never comes (:meth:`gaps`), a
duplicate is a ``seq`` that comes twice (:meth:`duplicates`), a late packet
comes after higher ones. ``(lap, seq)`` names a packet in looping streams.
It reads only the stream tables, never the truth table.

A model wants whole packets rather than rows: :meth:`StreamReader.packets`
follows the stream like :meth:`follow` and yields one
:class:`~hwosim_assets.stream.packets.Packet` per delivery (an integration's
spectrum or an image tile, as numpy arrays).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from hwosim_assets.stream import schema
from hwosim_assets.stream.packets import Packet, packets_from_rows
from hwosim_assets.stream.writer import make_engine


@dataclass(frozen=True)
class Watermark:
    """How far the consumer has got: the highest event time seen and the last offset read."""

    event_time: float | None = None  # MJD
    offset: int = -1


class StreamReader:
    """Follows one stream from ``start_offset``; rows are SQLAlchemy Rows with attribute access."""

    def __init__(self, url_or_engine: str | sa.Engine, stream: str, start_offset: int = 0, page_packets: int = 1000):
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, (str, sa.URL)) else url_or_engine
        self.stream = schema.check_slug(stream)
        self.start_offset = start_offset
        self.next_offset = start_offset
        self.page_packets = page_packets
        self.watermark = Watermark()
        self._seen: Counter[tuple[int, int]] = Counter()  # (lap, seq) -> times delivered
        self.family, self._table = self._table_of_stream()
        self._late: deque[float] = deque(maxlen=100_000)  # emitted - scheduled of the last packets read
        self._newest_scheduled: float | None = None  # of the newest committed packet, at the last poll
        self._read_scheduled: float | None = None  # of the last packet read

    def _table_of_stream(self) -> tuple[str, sa.Table]:
        with self.engine.connect() as conn:
            family = conn.execute(
                sa.select(schema.streams.c.family).where(schema.streams.c.name == self.stream)
            ).scalar()
        if family is None:
            raise LookupError(f"stream {self.stream!r} is not registered in hwosim_streams")
        return family, schema.ROW_TABLES[family]

    def _committed_end(self, conn: sa.Connection) -> int:
        o = schema.offsets
        value = conn.execute(sa.select(o.c.next_offset).where(o.c.stream == self.stream)).scalar()
        return int(value or 0)

    @property
    def lag(self) -> float:
        """Seconds (of the stream's schedule) between the newest committed packet and the last one
        read, as of the last poll: 0 when the reader has caught up."""
        if self._newest_scheduled is None:
            return 0.0
        return max(
            0.0,
            self._newest_scheduled
            - (self._read_scheduled if self._read_scheduled is not None else self._newest_scheduled),
        )

    def lateness(self) -> dict[str, float | None]:
        """Emitted minus scheduled time of the packets read (the last 100,000), in seconds."""
        if not self._late:
            return {"p50": None, "p99": None, "max": None}
        late = np.fromiter(self._late, dtype=float)
        return {"p50": float(np.percentile(late, 50)), "p99": float(np.percentile(late, 99)), "max": float(late.max())}

    def poll(self) -> Sequence[sa.Row]:
        """Rows delivered since the last call (at most ``page_packets`` packets), in offset order."""
        t = self._table
        with self.engine.connect() as conn:
            committed = self._committed_end(conn)
            if committed > 0:
                self._newest_scheduled = conn.execute(
                    sa.select(t.c.scheduled_time).where(t.c.stream == self.stream, t.c.offset == committed - 1).limit(1)
                ).scalar()
            end = min(committed, self.next_offset + self.page_packets)
            if end <= self.next_offset:
                return []
            order = [t.c.offset, t.c.channel] if "channel" in t.c else [t.c.offset]
            rows = conn.execute(
                sa.select(t)
                .where(t.c.stream == self.stream, t.c.offset >= self.next_offset, t.c.offset < end)
                .order_by(*order)
            ).all()
        self._account(rows)
        self.next_offset = end
        return rows

    def poll_packets(self) -> list[Packet]:
        """Like :meth:`poll`, grouped into packets (one per offset)."""
        return packets_from_rows(self.poll(), self.family, self.stream)

    def packets(self, poll_interval: float = 1.0, idle_timeout: float | None = None) -> Iterator[Packet]:
        """Like :meth:`follow`, one :class:`Packet` at a time."""
        idle_since = time.monotonic()
        while True:
            packets = self.poll_packets()
            yield from packets
            if packets:
                idle_since = time.monotonic()
                continue
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            time.sleep(poll_interval)

    def poll_pending(self) -> bool:
        """True when committed rows are waiting to be polled."""
        with self.engine.connect() as conn:
            return self._committed_end(conn) > self.next_offset

    def _account(self, rows: Sequence[sa.Row]) -> None:
        last_offset = None
        high = self.watermark.event_time
        for row in rows:
            if row.offset != last_offset:
                self._seen[(row.lap, row.seq)] += 1
                self._late.append(row.emitted_time - row.scheduled_time)
                self._read_scheduled = row.scheduled_time
                last_offset = row.offset
            high = row.event_time if high is None else max(high, row.event_time)
        if rows:
            self.watermark = Watermark(event_time=high, offset=rows[-1].offset)

    def follow(self, poll_interval: float = 1.0, idle_timeout: float | None = None) -> Iterator[sa.Row]:
        """Yield rows as they are committed; stop after ``idle_timeout`` s without new rows (None: never)."""
        idle_since = time.monotonic()
        while True:
            rows = self.poll()
            yield from rows
            if rows:
                idle_since = time.monotonic()
                continue
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            time.sleep(poll_interval)

    def gaps(self) -> list[tuple[int, int]]:
        """(lap, seq) not delivered (yet) below the highest seq seen in each lap: losses, or late packets."""
        lowest: dict[int, int] = {}
        highest: dict[int, int] = {}
        for lap, seq in self._seen:
            lowest[lap] = min(lowest.get(lap, seq), seq)
            highest[lap] = max(highest.get(lap, seq), seq)
        first_lap = min(lowest, default=0)
        # a lap starts at seq 0, except the first one of a reader that joined mid-stream
        start = {lap: lowest[lap] if lap == first_lap and self.start_offset > 0 else 0 for lap in lowest}
        return [
            (lap, s)
            for lap in sorted(highest)
            for s in range(start[lap], highest[lap] + 1)
            if (lap, s) not in self._seen
        ]

    def duplicates(self) -> list[tuple[int, int]]:
        """(lap, seq) delivered more than once, as often as extra copies came."""
        return sorted(key for key, count in self._seen.items() for _ in range(count - 1))
