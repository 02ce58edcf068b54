"""Batch work yields the CPU to live streams.

Replay runs must keep their packets on time while backfills (every profile of
every observation, scorecards over every level) run on the same machine. The
run queue limits how many batch runs start (dagster.yaml), but the runs that
do start compete for the same cores as the replay runs: measured under
`dagster dev` on 2 cores, a backfill of every profile beside twelve streams
left their rates whole but pushed the p99 lateness of a 20 packets/s stream
to 1.4 s.

So a batch asset does its heavy work in a thread of its own with a raised
nice value (Linux applies nice values per thread, and a thread's value ends
with it: the rest of the process, and an in-process test, keep theirs).
Raising one's own nice value needs no privilege.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

BATCH_NICE = 10  # added to the nice value of the thread doing batch work (0 = normal, 19 = idlest)


def at_batch_priority(work: Callable[[], T], nice: int = BATCH_NICE) -> T:
    """Run ``work()`` in a thread whose nice value is raised by ``nice``; return its result or raise
    its exception. Where per-thread nice values are not available, it simply runs."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            if nice and hasattr(os, "setpriority"):
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
            outcome["value"] = work()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=run, name="hwosim-batch", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
