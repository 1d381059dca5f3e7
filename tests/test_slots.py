"""Run slots (playground/slots.py): at most N runs at once, the others wait first come first served and can tell
where they stand and about how long until they start."""
from __future__ import annotations

import threading
import time

import pytest

from playground.slots import QueuePlace, RunSlots


def test_a_run_waits_for_a_free_slot_in_arrival_order():
    slots = RunSlots(1)
    first, second, third = slots.enter(), slots.enter(), slots.enter()
    assert slots.wait(first, 0) and not slots.wait(second, 0.01) and not slots.wait(third, 0.01)
    assert slots.place(second) == QueuePlace(running=1, ahead=0, seconds=None)  # its pace not told yet
    assert slots.place(third).ahead == 1
    slots.leave(first)
    assert not slots.wait(third, 0.01)  # the second came first
    assert slots.wait(second, 0) and slots.place(third) == QueuePlace(1, 0, None)
    slots.leave(second)
    slots.leave(third)  # leaving without ever running (its client went away) frees its place too


def test_the_wait_is_estimated_from_the_running_runs_pace():
    slots = RunSlots(2)
    a, b, waiting, last = slots.enter(), slots.enter(), slots.enter(), slots.enter()
    assert slots.wait(a, 0) and slots.wait(b, 0)
    a.started = b.started = time.monotonic() - 10.0  # both have run 10 s
    slots.report(a, 0.5)  # about 10 s left
    assert slots.place(waiting).seconds is None  # b has not told its pace: no guess
    slots.report(b, 0.8)  # about 2.5 s left
    assert slots.place(waiting).seconds == pytest.approx(2.5, abs=0.5)  # the first slot to free up
    assert slots.place(last).seconds == pytest.approx(10.0, abs=0.5)  # the second
    message = slots.place(last).message(slots.limit)
    assert message.startswith("Queued behind 3 runs (the server runs 2 at once; 1 waiting before this one)")
    assert message.endswith("about 10 s before it starts")


def test_a_waiting_run_starts_as_soon_as_a_slot_frees():
    slots = RunSlots(1)
    holder, waiter = slots.enter(), slots.enter()
    assert slots.wait(holder, 0)
    got = []
    thread = threading.Thread(target=lambda: got.append(slots.wait(waiter, 10)))
    thread.start()
    time.sleep(0.05)
    slots.leave(holder)
    thread.join(10)
    assert got == [True]


def test_slots_must_be_a_whole_number_of_at_least_one():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="run slots"):
            RunSlots(bad)
