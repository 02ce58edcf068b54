"""One packet as a consumer gets it: the rows of one integration, or one image tile, as arrays.

The stream tables hold one row per spectrum channel (``hwosim_spectra_rows``)
or per tile (``hwosim_image_packets``); a model under test wants the packet
whole, as numpy arrays, the way it would process a downlinked frame. A
:class:`Packet` is that: the same object whether it was read live from a
stream table (:meth:`StreamReader.packets`) or cut from a perturbed table for
offline scoring (``hwosim_assets.evaluate``), so a model runs unchanged in
both.

Every family offers ``values``, ``errors`` and ``dq`` (spectra: flux,
flux_error, dq per channel; images: the SCI, ERR and DQ planes of the tile,
shaped ``(ny, nx)``), so a model written for one family reads the other's
packets too. The arrays are read-only: the harness scores against them after
the model has seen them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwosim_assets.records import PIXEL_DTYPES


@dataclass(frozen=True, eq=False)
class Packet:
    """One delivered packet. ``offset`` is its delivery position in the stream (Kafka-like,
    contiguous); ``(lap, seq)`` names the source packet; times: ``event_time`` MJD (UTC) of
    the observation, ``scheduled_time`` / ``emitted_time`` UTC epoch seconds of the delivery
    (NaN offline, where nothing is emitted)."""

    family: str
    seq: int
    lap: int
    offset: int
    event_time: float
    values: np.ndarray  # spectra: flux [Jy] per channel; images: SCI (ny, nx)
    errors: np.ndarray  # flux_error / ERR, same shape
    dq: np.ndarray  # JWST data-quality flags, same shape (uint32)
    wavelength: np.ndarray | None = None  # micron per channel / pixel (None for plain images)
    channel: np.ndarray | None = None  # spectra: channel numbers
    integration: int | None = None  # spectra: 1-based integration number
    frame: int | None = None  # images: frame index
    source: str | None = None  # images: the product the frame came from
    y0: int | None = None  # images: tile origin in the frame
    x0: int | None = None
    scheduled_time: float = math.nan
    emitted_time: float = math.nan
    stream: str | None = None

    def __repr__(self) -> str:
        return f"Packet({self.family}, seq={self.seq}, lap={self.lap}, offset={self.offset}, shape={self.values.shape})"

    @property
    def where(self) -> str:
        """The packet's name in messages: seq, lap and offset."""
        return f"packet seq={self.seq} lap={self.lap} offset={self.offset}"


def readonly(array: np.ndarray) -> np.ndarray:
    """``array``, made read-only (a packet's arrays are views a model must not change)."""
    array.flags.writeable = False
    return array


def _floats(values: Sequence) -> np.ndarray:
    """A column of DOUBLEs read back from SQL, NULL (a NaN the database could not hold) as NaN."""
    return np.array(values, dtype=np.float64)


def packets_from_rows(rows: Sequence, family: str, stream: str | None = None) -> list[Packet]:
    """Group stream-table rows (in offset order, as :meth:`StreamReader.poll` returns them) into packets."""
    if not rows:
        return []
    if family == "spectra":
        return _spectra_packets(rows, stream)
    return [_tile_packet(row, stream) for row in rows]


def _spectra_packets(rows: Sequence, stream: str | None) -> list[Packet]:
    columns = dict(
        zip(rows[0]._fields, zip(*rows, strict=False), strict=False)
    )  # transpose once: a poll may hold 100k rows
    offset = np.array(columns["offset"], dtype=np.int64)
    cuts = np.flatnonzero(np.diff(offset)) + 1
    bounds = zip(np.r_[0, cuts], np.r_[cuts, len(offset)], strict=False)
    flux, error = _floats(columns["flux"]), _floats(columns["flux_error"])
    wavelength = _floats(columns["wavelength"])
    dq = np.array([0 if v is None else v for v in columns["dq"]], dtype=np.int64).astype(np.uint32)
    channel = np.array(columns["channel"], dtype=np.int32)
    for array in (flux, error, wavelength, dq, channel):
        readonly(array)
    packets = []
    for a, b in bounds:
        packets.append(
            Packet(
                family="spectra",
                seq=int(columns["seq"][a]),
                lap=int(columns["lap"][a]),
                offset=int(offset[a]),
                event_time=float(columns["event_time"][a]),
                values=flux[a:b],
                errors=error[a:b],
                dq=dq[a:b],
                wavelength=wavelength[a:b],
                channel=channel[a:b],
                integration=int(columns["integration"][a]),
                scheduled_time=float(columns["scheduled_time"][a]),
                emitted_time=float(columns["emitted_time"][a]),
                stream=stream,
            )
        )
    return packets


def image_plane(payload: bytes | None, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A tile's plane from its bytes (None stays None), read-only."""
    if payload is None:
        return None
    return np.frombuffer(payload, dtype=PIXEL_DTYPES[name]).reshape(shape)  # frombuffer of bytes: read-only


def required_plane(payload: bytes | None, name: str, shape: tuple[int, int], where: str) -> np.ndarray:
    """A plane every tile has (SCI, ERR, DQ); its absence is an error naming the tile (``where``)."""
    plane = image_plane(payload, name, shape)
    if plane is None:
        raise ValueError(f"image tile {where} has no {name} plane")
    return plane


def _tile_packet(row, stream: str | None) -> Packet:
    shape = (int(row.ny), int(row.nx))
    where = f"seq={row.seq} lap={row.lap} offset={row.offset}"
    return Packet(
        family="images",
        seq=int(row.seq),
        lap=int(row.lap),
        offset=int(row.offset),
        event_time=float(row.event_time),
        values=required_plane(row.sci, "sci", shape, where),
        errors=required_plane(row.err, "err", shape, where),
        dq=required_plane(row.dq, "dq", shape, where),
        wavelength=image_plane(row.wavelength, "wavelength", shape),
        frame=int(row.frame),
        source=row.source,
        y0=int(row.y0),
        x0=int(row.x0),
        scheduled_time=float(row.scheduled_time),
        emitted_time=float(row.emitted_time),
        stream=stream,
    )
