"""One engine whose model can be replaced while it serves (the page's model picker).

The page, its API and /v1 hold this object; every attribute is the current Engine's. switch() puts a new Engine
on a newly loaded model in its place: a run pins the Engine it starts on (current_engine), so runs in flight
finish on the old model and later runs use the new one. The engines share their turns (one machine: runs on the
old and the new model alternate steps) and their limits.
"""
from __future__ import annotations

import threading
from typing import Any

from .generate import Engine
from .models import LoadedModel


class SwitchableEngine:
    """The current Engine, replaceable. Reads and writes of any attribute go to the current Engine."""

    def __init__(self, engine: Engine):
        object.__setattr__(self, "_current", engine)
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def current(self) -> Engine:
        return self._current

    def switch(self, loaded: LoadedModel) -> Engine:
        """Later runs use `loaded`; returns the Engine they will run on (the old one stays with its runs)."""
        with self._lock:
            old = self._current
            new = Engine(loaded, old.limits)
            new.turns = old.turns  # one queue of steps for both models: the machine is one
            new.shared.join = old.shared.join  # runs join batches of their own model only, as the server says
            object.__setattr__(self, "_current", new)
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._current, name, value)


def switchable(engine: "Engine | SwitchableEngine") -> SwitchableEngine:
    """The engine as a SwitchableEngine (itself if it already is one)."""
    return engine if isinstance(engine, SwitchableEngine) else SwitchableEngine(engine)


def current_engine(engine: Any) -> Engine:
    """The Engine a run starts on: a SwitchableEngine's current one, else the engine itself."""
    return engine.current if isinstance(engine, SwitchableEngine) else engine
