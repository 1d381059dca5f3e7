"""Run slots: how many page and API runs (Generate, Sweep, /generate, /sweep) go at once, and a queue for the rest.

Runs in a slot share the engine step by step (engine/turns.py). A run that finds every slot busy waits here, first
come first served, and says so while it waits ("queued behind 2 runs, about 40 s"), instead of a silent status
box: its handler polls its place in the queue every POLL_SECONDS and streams it to the page or the API client.
The time is an estimate from the runs in the slots: each reports how far it is, and a run that has done a
fraction f of its steps in t seconds is taken to need t (1 - f) / f more.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

DEFAULT_RUN_SLOTS = 4  # app.py's --run-slots / $PLAYGROUND_RUN_SLOTS
POLL_SECONDS = 0.5  # how often a waiting run tells its place (and looks whether a client still waits for it)


@dataclass(eq=False)
class Ticket:
    """One run's place: waiting, then holding a slot."""

    started: float = 0.0  # when it got its slot (monotonic seconds)
    progress: float = 0.0  # fraction of its steps done, as the run last reported
    holding: bool = field(default=False)


@dataclass(frozen=True)
class QueuePlace:
    """Where a waiting run stands: runs holding slots, runs waiting before it, and about how long until it starts
    (None while no running run has reported enough progress to tell)."""

    running: int
    ahead: int
    seconds: float | None

    def message(self, slots: int) -> str:
        behind = self.running + self.ahead
        text = (f"Queued behind {behind} run{'s' if behind != 1 else ''} (the server runs {slots} at once; "
                f"{self.ahead} waiting before this one)")
        return text + (f", about {self.seconds:.0f} s before it starts" if self.seconds is not None else "")


class RunSlots:
    """At most `limit` runs hold a slot; the others wait in arrival order."""

    def __init__(self, limit: int):
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"run slots: must be a whole number >= 1, got {limit!r}")
        self.limit = limit
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._running: list[Ticket] = []

    def enter(self) -> Ticket:
        """Join the queue (call leave() when the run ends, however it ends)."""
        ticket = Ticket()
        with self._cond:
            self._waiting.append(ticket)
        return ticket

    def wait(self, ticket: Ticket, timeout: float = POLL_SECONDS) -> bool:
        """Take a slot when it is this ticket's turn and one is free, waiting at most `timeout` seconds; True
        once it holds one."""
        with self._cond:
            if ticket.holding:
                return True
            free = self._cond.wait_for(lambda: bool(self._waiting) and self._waiting[0] is ticket and len(self._running) < self.limit,
                                       timeout)
            if free:
                self._waiting.popleft()
                self._running.append(ticket)
                ticket.holding, ticket.started = True, time.monotonic()
                self._cond.notify_all()  # the next in line may find a slot too
            return free

    def place(self, ticket: Ticket) -> QueuePlace:
        """Where a waiting ticket stands now."""
        with self._cond:
            ahead = self._waiting.index(ticket) if ticket in self._waiting else 0
            now = time.monotonic()
            left = [_seconds_left(t, now) for t in self._running]
            # the (ahead + 1)-th slot to free up is this run's: known once every running run tells its pace
            # (further back, the runs that start first would have to end first: not guessed)
            known = None not in left and ahead < len(left)
            seconds = sorted(s for s in left if s is not None)[ahead] if known else None
            return QueuePlace(len(self._running), ahead, seconds)

    def report(self, ticket: Ticket, progress: float) -> None:
        """A running run's fraction of steps done (for the waiting runs' estimates)."""
        ticket.progress = progress

    def leave(self, ticket: Ticket) -> None:
        """The run ended (finished, failed, stopped or abandoned while waiting): free its place."""
        with self._cond:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            if ticket in self._running:
                self._running.remove(ticket)
            ticket.holding = False
            self._cond.notify_all()


def _seconds_left(ticket: Ticket, now: float) -> float | None:
    done = ticket.progress
    if done <= 0.0:
        return None
    return max((now - ticket.started) * (1.0 - done) / done, 0.0)


WAITING_ROOM = 8  # runs that may wait in a RunSlots queue (telling their place) besides those in the slots


def concurrency(slots: RunSlots) -> dict[str, object]:
    """Gradio's concurrency for every run event (page and API share one group): the slots plus a waiting room.
    A waiting run holds one of Gradio's worker threads while it polls, so the room is bounded; beyond it,
    Gradio's own queue holds the event."""
    return {"concurrency_limit": slots.limit + WAITING_ROOM, "concurrency_id": "runs"}
