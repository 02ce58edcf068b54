"""Batch work runs at a raised nice value in a thread of its own; the caller keeps its own."""

import os
import threading

import pytest

from hwosim_assets.defs.priority import BATCH_NICE, at_batch_priority


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_batch_work_runs_nicer_and_the_caller_keeps_its_priority():
    before = _nice()
    inside = at_batch_priority(_nice)
    assert inside == min(19, before + BATCH_NICE) and _nice() == before


def test_batch_work_hands_back_its_result_and_its_error():
    assert at_batch_priority(lambda: [1, 2]) == [1, 2]
    with pytest.raises(ZeroDivisionError):
        at_batch_priority(lambda: 1 / 0)
