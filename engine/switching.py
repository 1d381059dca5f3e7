"""One engine whose model can be replaced while it serves (the page's model picker).

The page, its API and /v1 hold this object; every attribute is the current Engine's. switch() puts a new Engine
on a newly loaded model in its place: a run pins the Engine it starts on (current_engine), so runs in flight
finish on the old model and later runs use the new one. The engines share their turns (one machine: runs on the
old and the new model alternate steps) and their limits.

`SwitchableEngine.loading()` starts one before its first model is there (the model loads in a thread while the
page is built and served): every use of the engine then waits for the load, and one that could not load raises
ModelLoadError naming why.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from .generate import Engine
from .models import LoadedModel


class ModelLoadError(RuntimeError):
    """The engine's first model could not be loaded (SwitchableEngine.loading): its message says why."""


class SwitchableEngine:
    """The current Engine, replaceable. Reads and writes of any attribute go to the current Engine (waiting for
    the first one while it loads)."""

    def __init__(self, engine: Engine | None, name: str | None = None):
        object.__setattr__(self, "_current", engine)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_ready", threading.Event())
        object.__setattr__(self, "_failed", None)  # why the first load failed (loading())
        object.__setattr__(self, "_join", None)  # shared.join asked for before the first model was there
        object.__setattr__(self, "model_name", name if engine is None else engine.loaded.name)
        if engine is not None:
            self._ready.set()

    @classmethod
    def loading(cls, name: str, load: Callable[[], Engine],
                failed: Callable[[Exception], None] = lambda exc: None) -> "SwitchableEngine":
        """An engine whose first Engine `load()` builds in a daemon thread started now. `name`: the model's name
        as its LoadedModel will give it (known before loading, so the page and /v1 can name it meanwhile).
        `failed(exc)` runs in that thread if load() raises (app.py reports it and exits)."""
        engine = cls(None, name)

        def run() -> None:
            try:
                loaded = load()
            except BaseException as exc:  # noqa: BLE001  (SystemExit too: the waiting users must hear of it)
                object.__setattr__(engine, "_failed", str(exc) or type(exc).__name__)
                engine._ready.set()
                failed(exc if isinstance(exc, Exception) else ModelLoadError(str(exc)))
                return
            with engine._lock:
                if engine._join is not None:
                    loaded.shared.join = engine._join
                object.__setattr__(engine, "_current", loaded)
                object.__setattr__(engine, "model_name", loaded.loaded.name)
            engine._ready.set()

        threading.Thread(target=run, name="model-load", daemon=True).start()
        return engine

    @property
    def ready(self) -> bool:
        """True once the first model is loaded (or its load failed: then a use raises ModelLoadError)."""
        return self._ready.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the first model (True once loaded or failed, False on timeout)."""
        return self._ready.wait(timeout)

    @property
    def loaded_now(self) -> LoadedModel | None:
        """The current model without waiting: None while the first one loads (or if it could not load)."""
        return self._current.loaded if self._current is not None else None

    @property
    def current(self) -> Engine:
        self._ready.wait()
        if self._current is None:
            raise load_error(self) or ModelLoadError("unreachable: ready without a model or a failure")
        return self._current

    def switch(self, loaded: LoadedModel) -> Engine:
        """Later runs use `loaded`; returns the Engine they will run on (the old one stays with its runs)."""
        with self._lock:
            old = self.current
            new = Engine(loaded, old.limits)
            new.turns = old.turns  # one queue of steps for both models: the machine is one
            new.shared.join = old.shared.join  # runs join batches of their own model only, as the server says
            object.__setattr__(self, "_current", new)
            object.__setattr__(self, "model_name", loaded.name)
        return new

    def set_join(self, join: bool) -> None:
        """Whether runs join each other's batches (engine/shared_batches.py), without waiting for a first model
        still loading: it takes the setting when it arrives."""
        with self._lock:
            object.__setattr__(self, "_join", join)
            if self._current is not None:
                self._current.shared.join = join

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.current, name, value)


def switchable(engine: "Engine | SwitchableEngine") -> SwitchableEngine:
    """The engine as a SwitchableEngine (itself if it already is one)."""
    return engine if isinstance(engine, SwitchableEngine) else SwitchableEngine(engine)


def current_engine(engine: Any) -> Engine:
    """The Engine a run starts on: a SwitchableEngine's current one, else the engine itself."""
    return engine.current if isinstance(engine, SwitchableEngine) else engine


def model_name(engine: Any) -> str:
    """The model's name without waiting for a model still loading (SwitchableEngine.loading)."""
    return engine.model_name if isinstance(engine, SwitchableEngine) else engine.loaded.name


def load_error(engine: Any) -> ModelLoadError | None:
    """Why a loading engine's first model could not be loaded; None once loaded (or for any other engine)."""
    if isinstance(engine, SwitchableEngine) and engine.ready and engine.loaded_now is None:
        return ModelLoadError(f"model: could not load {engine.model_name!r}: {engine._failed}")
    return None


async def until_loaded(engine: Any) -> None:
    """In an async handler: wait for a loading engine's first model without holding up the event loop (the page
    and other requests go on being served meanwhile). Returns at once for a loaded engine."""
    if isinstance(engine, SwitchableEngine) and not engine.ready:
        await asyncio.to_thread(engine.wait)
