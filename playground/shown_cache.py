"""The Distributions view's figures, kept for the steps a slider shows next.

A step-slider move builds the view of one (run, output, step, tokens shown): a full-vocabulary replay and two
plotly figures, most of the move's server time. While one step is shown, the next is built in the background (an
arrow key's move, or a drag's next stop, finds it ready) and a few recent ones are kept (a slider moved back).
Everything here is a pure function of the kept run, so a kept view is the one the move would have built.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from . import views
from .runs import Run, RunStore

Key = tuple[str, int, int, int]  # (run id, output, step, tokens shown)


class ShownDistributions:
    """views.distribution(store, run, row, step, top), kept for the last SIZE (run, row, step, top) built."""

    SIZE = 16  # a few figures each (~100 KB): small beside the replays the store keeps

    def __init__(self, store: RunStore):
        self.store = store
        self._kept: "OrderedDict[Key, views.Distribution]" = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._building = threading.Lock()  # held while a background build runs (one at a time)
        self._pending: tuple[Key, threading.Event] | None = None  # that build's key, set when it is done

    def get(self, run: Run, row: int, step: int, top: int) -> views.Distribution:
        key = (run.run_id, row, step, top)
        pending = self._pending
        if pending is not None and pending[0] == key:  # being built ahead: wait for it rather than build it twice
            pending[1].wait(timeout=60)
        return self._kept_or_built(run, row, step, top)

    def _kept_or_built(self, run: Run, row: int, step: int, top: int) -> views.Distribution:
        key = (run.run_id, row, step, top)
        with self._lock:
            shown = self._kept.get(key)
            if shown is not None:
                self._kept.move_to_end(key)
                return shown
        shown = views.distribution(self.store, run, row, step, top)
        with self._lock:
            self._kept[key] = shown
            while len(self._kept) > self.SIZE:
                self._kept.popitem(last=False)
        return shown

    def is_kept(self, run: Run, row: int, step: int, top: int) -> bool:
        with self._lock:
            return (run.run_id, row, step, top) in self._kept

    def prefetch(self, run: Run, row: int, step: int, top: int) -> None:
        """Build (row, step, top) in the background unless it is kept or another build is under way. Steps outside
        the output are ignored; a failure only means nothing was built ahead (the move builds it and reports)."""
        length = len(run.generation.rows[row].token_ids) if 0 <= row < run.row_count else 0
        if not 0 <= step < length or self.is_kept(run, row, step, top) or not self._building.acquire(blocking=False):
            return

        done = threading.Event()

        def build() -> None:
            try:
                self._kept_or_built(run, row, step, top)  # not get(): that would wait for this very build
            except Exception:  # noqa: BLE001 - work done ahead: the move itself builds it and reports any error
                pass
            finally:
                self._pending = None
                done.set()
                self._building.release()

        self._pending = ((run.run_id, row, step, top), done)
        threading.Thread(target=build, name="distribution-prefetch", daemon=True).start()
