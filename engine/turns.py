"""Turns on the engine: runs in flight at the same time take the model one step each, in arrival order.

Without turns, concurrent runs on one engine either wait for each other whole (one long page run of 3 x 8000
tokens held every other run for minutes) or race for the cores step by step with no order at all. With turns,
each step of a run (a step: the model's forward and the processors and sampling of one token; the first one
includes the prompt's prefill) is taken while holding the engine's turn, and a run that wants its next step
queues behind every run already waiting. So k runs in flight alternate steps, and a short run of s steps ends
after about s x k steps of work, whatever the others ask for.

Runs share no mutable state through the engine (each has its own cache, row tensors and noise keys; the noise is
a pure function of (seed, sample index, step, token)), so a seeded run gives the same tokens alone or taking
turns with others.

    turns = Turns()
    for update in turns.taking_turns(steps):   # each next() of `steps` runs in a turn
        ...
"""
from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import Generator, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Turns:
    """A first-in, first-out lock over the engine's steps, and a count of the runs taking turns."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()  # waiting for a turn, oldest first
        self._owner: int | None = None  # the thread holding the turn
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Runs started and not yet finished (each takes a turn per step)."""
        with self._cond:
            return self._in_flight

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the engine for one step. Not reentrant: a thread asking again while holding it would wait for
        itself, so that is refused."""
        me = object()
        with self._cond:
            if self._owner == threading.get_ident():
                raise RuntimeError("this thread already holds the engine's turn (a step inside a step)")
            self._queue.append(me)
            try:
                while self._owner is not None or self._queue[0] is not me:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue so those behind are not stuck
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._owner = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._owner = None
                self._cond.notify_all()

    def taking_turns(self, steps: Generator[T, None, R]) -> Generator[T, None, R]:
        """`steps` with each of its steps (one next()) taken in a turn; counted in flight until it ends or is
        closed. The turn is not held while the consumer handles a step, so a slow reader delays no other run."""
        with self._cond:
            self._in_flight += 1
        try:
            while True:
                with self.turn():
                    try:
                        item = next(steps)
                    except StopIteration as end:
                        return end.value
                yield item
        finally:
            steps.close()  # closed early (a consumer that went away): the inner loop's own clean-up runs now
            with self._cond:
                self._in_flight -= 1
