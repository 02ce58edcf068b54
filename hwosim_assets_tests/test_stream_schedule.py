"""The replay schedule (stream/schedule.py), a pure function, on a clock of our own.

These are unit tests of the decision; that the live path holds its rate under
a real dagster-daemon is test_streams_live.py's job."""

from __future__ import annotations

import pytest

from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.pacing import Pacing
from hwosim_assets.stream.schedule import Cursor, Flight, decide, lead_seconds, stream_phase

T = 1_800_000_000.0  # the clock: some UTC epoch second
RATE, TICK = 20.0, 5.0  # 100 packets (5 s) per window


def spec(mode: str = "rate", **changes) -> StreamSpec:
    pacing = Pacing(mode, rate=RATE) if mode == "rate" else Pacing(mode)
    base = dict(
        name="s",
        observation="jw09999-o001_x",
        profile="nominal",
        family="spectra",
        pacing=pacing,
        tick_seconds=TICK,
        window=100,
        loop=True,
        run_seconds=TICK,
    )  # (one window a run)
    return StreamSpec(**{**base, **changes})


def test_first_request_fixes_the_start_one_lead_ahead():
    d = decide(spec(), Cursor(), now=T, delivered_next=0, in_flight=[], lead_s=12.0)
    assert d.cursor.start_time == T + 12.0
    # every window due within the lead: window 0 at T+12 (<= T+12)
    assert (d.request.first, d.request.last, d.request.start_time) == (0, 0, T + 12.0)
    assert d.request.run_key == f"s@{int(T + 12)}:0-0" and d.request.overdue == 0 and d.lag_s == 0


def test_windows_are_requested_ahead_on_one_clock():
    cursor = Cursor(start_time=T, next_window=1)
    # at T+1 with a 12 s lead, windows due at T+5 and T+10 are within reach: both in one run
    d = decide(spec(), cursor, now=T + 1, delivered_next=0, in_flight=[Flight(0, 0, T - 12)], lead_s=12.0)
    assert (d.request.first, d.request.last) == (1, 2)
    assert d.request.start_time == T + 5.0 and d.cursor.next_window == 3
    # the next tick, 5 s later, asks only for the window that came into reach
    later = decide(spec(), d.cursor, now=T + 6, delivered_next=1, in_flight=[Flight(1, 2, T + 1)], lead_s=12.0)
    assert (later.request.first, later.request.last, later.request.start_time) == (3, 3, T + 15.0)
    # and a tick with nothing new in reach says when the next window is due
    idle = decide(spec(), later.cursor, now=T + 6.5, delivered_next=1, in_flight=[Flight(3, 3, T + 6)], lead_s=12.0)
    assert idle.request is None and idle.skip == "window 4 due in 13.5 s" and idle.cursor == later.cursor


def test_a_run_covers_run_seconds_of_windows_on_a_grid_of_the_streams_own():
    long_runs = spec(run_seconds=60.0)  # 12 windows of 5 s
    assert long_runs.windows_per_run == 12
    phase = stream_phase(long_runs.name, 12)
    first = decide(long_runs, Cursor(), now=T, delivered_next=0, in_flight=[], lead_s=12.0)
    end = 11 - phase % 12  # the first run ends on the stream's grid: at most 12 windows
    assert (first.request.first, first.request.last) == (0, end)
    # no new run until the window after it comes within the lead
    due_next = first.cursor.start_time + (end + 1) * 5.0
    quiet = decide(
        long_runs, first.cursor, now=due_next - 13.0, delivered_next=0, in_flight=[Flight(0, end, T)], lead_s=12.0
    )
    assert quiet.request is None and quiet.skip.startswith(f"window {end + 1} due in")
    nxt = decide(
        long_runs, first.cursor, now=due_next - 11.0, delivered_next=0, in_flight=[Flight(0, end, T)], lead_s=12.0
    )
    assert (nxt.request.first, nxt.request.last, nxt.request.start_time) == (end + 1, end + 12, due_next)
    # streams with other names put their boundaries elsewhere: launches spread over the minute
    phases = {stream_phase(f"five-{i}", 12) for i in range(10)}
    assert len(phases) >= 5


def test_after_downtime_one_run_drains_the_backlog():
    cursor = Cursor(start_time=T, next_window=3)
    # the daemon was away for a minute: windows 3..14 are overdue, 15..16 within the lead
    d = decide(spec(), cursor, now=T + 72, delivered_next=3, in_flight=[], lead_s=12.0)
    assert (d.request.first, d.request.last) == (3, 16)
    assert d.request.overdue == 11  # windows 3..13 are wholly past their due time
    assert d.request.start_time == T + 15.0  # window 3's own due time: lateness records the outage
    assert d.lag_s == pytest.approx(52.0)  # window 3 should have ended at T+20


def test_lost_windows_are_requested_again_then_the_stream_stops():
    cursor = Cursor(start_time=T, next_window=4)
    d = decide(spec(), cursor, now=T + 12, delivered_next=2, in_flight=[], last_failed="FAILURE", lead_s=10.0)
    assert (d.request.first, d.request.last) == (2, 4) and d.request.run_key.endswith(":2-4#1")
    assert d.cursor.retry_window == 2 and d.cursor.attempts == 1 and d.cursor.next_window == 5
    for attempt in (2, 3):
        d = decide(spec(), d.cursor, now=T + 12, delivered_next=2, in_flight=[], last_failed="FAILURE", lead_s=10.0)
        assert d.request.run_key.endswith(f"#{attempt}")
    stopped = decide(spec(), d.cursor, now=T + 12, delivered_next=2, in_flight=[], last_failed="FAILURE", lead_s=10.0)
    assert stopped.request is None and stopped.skip.startswith("stopped: window 2 failed 3 times (last run FAILURE)")
    # once the window is delivered (a re-execution from the UI), counting starts afresh
    moved = decide(spec(), stopped.cursor, now=T + 30, delivered_next=5, in_flight=[], lead_s=10.0)
    assert moved.request.first == 5 and moved.cursor.retry_window is None and moved.cursor.attempts == 0


def test_stale_runs_stop_blocking_and_the_number_in_flight_is_capped():
    cursor = Cursor(start_time=T, next_window=2)
    dead = Flight(0, 1, T - 20)  # still "STARTED" in the instance, its windows long overdue
    d = decide(spec(), cursor, now=T + 200, delivered_next=0, in_flight=[dead], lead_s=10.0, stale_s=60.0)
    assert d.request is not None and d.request.first == 0 and "stale" in d.notes[0]
    crowded = [Flight(n, n, T) for n in range(2, 8)]
    d = decide(spec(), Cursor(start_time=T, next_window=8), now=T + 1, delivered_next=2, in_flight=crowded, lead_s=60.0)
    assert d.request is None and d.skip == "waiting: 6 runs in flight"


def test_cadence_and_asap_run_one_at_a_time():
    cadence = spec("cadence")
    first = decide(cadence, Cursor(), now=T, delivered_next=0, in_flight=[], lead_s=5.0)
    assert (first.request.first, first.request.last, first.request.start_time) == (0, 0, T + 5.0)
    busy = decide(cadence, first.cursor, now=T + 6, delivered_next=0, in_flight=[Flight(0, 0, T)], lead_s=5.0)
    assert busy.request is None and "one at a time" in busy.skip
    chained = decide(cadence, first.cursor, now=T + 40, delivered_next=1, in_flight=[], chained_start=T + 37.5)
    assert (chained.request.first, chained.request.start_time) == (1, T + 37.5)
    asap = decide(spec("asap"), Cursor(), now=T, delivered_next=0, in_flight=[], max_windows=50)
    assert (asap.request.first, asap.request.last) == (0, 49)


def test_finished_streams_skip():
    d = decide(
        spec(loop=False), Cursor(start_time=T, next_window=3), now=T, delivered_next=3, in_flight=[], finished=True
    )
    assert d.request is None and d.skip.startswith("finished")


def test_lead_covers_a_late_tick_and_the_measured_launch():
    assert lead_seconds(spec(), []) == pytest.approx(TICK + 5.0 + 1.5 * 5.0)
    assert lead_seconds(spec(), [2.0, 3.2]) == pytest.approx(TICK + 5.0 + 1.5 * 3.2)


def test_cursor_round_trips_and_reads_the_old_format():
    cursor = Cursor(start_time=T, next_window=7, retry_window=5, attempts=2)
    assert Cursor.from_json(cursor.to_json()) == cursor
    assert Cursor.from_json('{"window": 4, "start_time": 12.5, "behind": 0}') == Cursor(start_time=12.5, next_window=4)
    assert Cursor.from_json(None) == Cursor()


def test_a_lost_cursor_continues_after_what_is_committed():
    d = decide(spec(), Cursor(), now=T, delivered_next=40, in_flight=[], lead_s=12.0)
    assert d.request.first == 40 and d.request.start_time == T + 12.0  # due one lead from now, no gap, no burst
    assert d.cursor.start_time == T + 12.0 - 40 * 5.0


def test_runs_in_flight_when_the_stream_stopped_committing_are_presumed_dead():
    """dagster dev killed with its runs (they are its children): the instance still has them as
    started. Once nothing is committed for the stall limit (2 windows = 10 s here) while a window is
    that overdue, they no longer block a run from the committed offset; a run requested since does."""
    cursor = Cursor(start_time=T, next_window=8)
    in_flight = [Flight(4, 5, T + 5), Flight(6, 7, T + 15)]  # requested before the outage
    before = dict(delivered_next=4, in_flight=in_flight, lead_s=10.0, stale_s=600.0)
    # window 4 was due at T+20; the last commit at T+22, then the outage
    within = decide(spec(), cursor, now=T + 31, last_commit=T + 22, **before)
    assert within.in_flight == 2 and not within.notes  # 9 s without a commit: not yet
    after = decide(spec(), cursor, now=T + 95, last_commit=T + 22, **before)
    assert after.request is not None and after.request.first == 4 and after.request.overdue >= 10
    assert "presumed dead" in after.notes[0] and after.in_flight == 0
    # the run just requested counts as in flight at the next tick; nothing else is asked for
    catching_up = [*in_flight, Flight(4, after.request.last, T + 95)]
    nxt = decide(spec(), after.cursor, now=T + 100, last_commit=T + 22, **{**before, "in_flight": catching_up})
    assert nxt.in_flight == 1 and (nxt.request is None or nxt.request.first > after.request.last)
    # a stream that commits is never judged so, however old its runs
    steady = decide(spec(), cursor, now=T + 95, last_commit=T + 94.9, **before)
    assert steady.in_flight == 2 and not any("presumed dead" in n for n in steady.notes)
