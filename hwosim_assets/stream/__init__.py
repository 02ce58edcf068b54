"""Streams: perturbed packets replayed into MySQL/MariaDB (or SQLite) tables as a live downlink.

One arrow per step, no Dagster here:

* :mod:`.config`  streams.yaml -> :class:`StreamSpec` (validated)
* :mod:`.schema`  the stream tables and :func:`create_or_migrate`
* :mod:`.pacing`  due times from one absolute start, and the :class:`Pacer`
* :mod:`.faults`  loss, duplicates, reordering, jitter, outages, with truth
* :mod:`.writer`  exactly-once batches with the offset in the same transaction
* :mod:`.replay`  one window, exactly once: :func:`replay_window`
* :mod:`.runs`    one run = consecutive windows after the run before: :func:`replay_run`
* :mod:`.schedule` what a stream's sensor asks for next (pure): :func:`decide`
* :mod:`.reader`  what a consumer uses: :class:`StreamReader`
"""

from hwosim_assets.stream.config import StreamConfigError, StreamSpec, load_streams
from hwosim_assets.stream.pacing import Pacer, Pacing
from hwosim_assets.stream.reader import StreamReader
from hwosim_assets.stream.replay import (
    WindowBounds,
    WindowReport,
    register_stream,
    replay_window,
    resume_point,
    stream_status,
    window_bounds,
    window_packets,
)
from hwosim_assets.stream.schema import create_or_migrate
from hwosim_assets.stream.writer import Committed, StreamStateError, StreamWriter, make_engine

__all__ = [
    "Committed",
    "Pacer",
    "Pacing",
    "StreamConfigError",
    "StreamReader",
    "StreamSpec",
    "StreamStateError",
    "StreamWriter",
    "WindowBounds",
    "WindowReport",
    "create_or_migrate",
    "load_streams",
    "make_engine",
    "register_stream",
    "replay_window",
    "resume_point",
    "stream_status",
    "window_bounds",
    "window_packets",
]
