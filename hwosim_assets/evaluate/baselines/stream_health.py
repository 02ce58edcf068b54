"""Baseline stream-health detector: gaps, duplicates and late packets from the packet numbers alone.

Every packet carries its source position ``(lap, seq)`` and its delivery
``offset``. A position seen before is a duplicate; one below the highest
seen so far arrived late (reordered); positions skipped over are missing. A
missing packet may still come (late), so it is reported as a gap only after
``patience`` more deliveries without it - the largest hold-back the shipped
profiles inject is 32 packets - and every position still missing is reported
when the stream ends. A packet that comes after being reported missing is
then reported late as well: the detector does not take back what it said.

A reader that starts in the middle of a lap sees the packets before its
first one as missing; scoring streams start at offset 0.
"""

from __future__ import annotations

from hwosim_assets.stream.packets import Packet

Position = tuple[int, int]


class StreamHealthDetector:
    """Reports ``health``: gaps (after ``patience`` deliveries), duplicates and late arrivals."""

    families = ("spectra", "images")

    def __init__(self, patience: int = 32, horizon: int = 100_000):
        self.patience, self.horizon = patience, horizon
        self.seen: set[Position] = set()
        self.highest: Position | None = None
        self.missing: dict[Position, int] = {}  # position -> delivery count when it was skipped
        self.deliveries = 0

    def predict_one(self, packet: Packet) -> dict:
        position = (packet.lap, packet.seq)
        duplicates, late = [], []
        if position in self.seen:
            duplicates.append(position)
        else:
            self.seen.add(position)
            if self.highest is not None and position < self.highest:
                late.append(position)
                self.missing.pop(position, None)
            else:
                self._skipped(position)
                self.highest = position
        self.deliveries += 1
        overdue = [p for p, since in self.missing.items() if self.deliveries - since > self.patience]
        for p in overdue:
            del self.missing[p]
        if len(self.seen) > 2 * self.horizon:  # forget the distant past of a long stream
            cut = sorted(self.seen)[-self.horizon]
            self.seen = {p for p in self.seen if p >= cut}
        return {"health": {"gaps": overdue, "duplicates": duplicates, "reordered": late}}

    def _skipped(self, position: Position) -> None:
        lap, seq = position
        if self.highest is None:
            first = (lap, 0)
        elif self.highest[0] == lap:
            first = (lap, self.highest[1] + 1)
        else:  # a new lap: the rest of the previous one is unknown (its length is not known)
            first = (lap, 0)
        for s in range(first[1], seq):
            self.missing.setdefault((lap, s), self.deliveries)

    def finish(self) -> dict:
        gaps = sorted(self.missing)
        self.missing.clear()
        return {"health": {"gaps": gaps}}
