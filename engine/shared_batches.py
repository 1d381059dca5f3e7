"""Continuous batching for runs that stream their own updates and keep their own result (the page's Generate and
sweeps of plain sampling rows): a run arriving while a joinable run decodes joins its batch at the next step.

    for update in engine.shared.stream(prompt_ids, params, sample_indices, trace_top_n, cancel):
        ...  # StepUpdates exactly as engine.stream's for this run alone: its own row indices and steps; the
             # last one carries its own GenerationResult (tokens, log-probs, trace)

Each batch is one Engine.stream(admit=..., group_results=True) driven by a thread of its own; every run in it
(the one that started it, then each that joined: engine/joining.py) reads its updates from a queue, renumbered to
its own rows and steps, and its result when its last row ends (engine/row_groups.py), while the batch goes on for
the others. A run's tokens, log-probs and trace are its own alone (a seeded run gives the same tokens; the padded
attention changes the other figures by float rounding only). Cancelling a run (its `cancel` set, or its consumer
closing the stream) ends only its rows, at the batch's next step.

A run joins a batch when joining is on (`join`; app.py --no-join turns it off for the page and /v1), every row of
both is joinable (engine/joining.py: plain sampling and greedy, no forced tokens), they keep the same trace top-N,
run on the same Engine, and the batch's running rows and new tokens plus the run's stay within the engine's
max_rows and max_total_tokens. Otherwise the run starts a batch of its own, which takes turns with the others
(engine/turns.py).
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

from .events import StepUpdate
from .joining import Joining, fits, joinable
from .params import SamplingParams


class SharingEngine(Protocol):
    """What shared batches need of the engine (engine/generate.py's Engine, which imports this module)."""

    limits: Any  # EngineLimits: max_rows, max_total_tokens

    def check(self, prompt_ids: Sequence[int], params: Sequence[SamplingParams]) -> None: ...

    def stream(self, prompt_ids: Any, params: Sequence[SamplingParams], sample_indices: Sequence[int] | None = None,
               trace_top_n: int = 0, *args: Any, **kwargs: Any) -> Iterator[StepUpdate]: ...

_END = object()  # put on a run's queue after its last update


@dataclass
class _Run:
    """One run in a shared batch: where its rows and steps start there, and its queue of updates."""

    prompt_ids: list[int]
    params: list[SamplingParams]
    sample_indices: list[int]
    trace_top_n: int
    stop: threading.Event | None = None  # the caller's: set, its rows leave at the batch's next step
    cancel: threading.Event = field(default_factory=threading.Event)  # set when its consumer goes away
    updates: "queue.Queue[object]" = field(default_factory=queue.Queue)
    first_row: int = 0
    first_step: int = 0

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set() or (self.stop is not None and self.stop.is_set())

    @property
    def new_tokens(self) -> int:
        return sum(p.max_new_tokens for p in self.params)

    def local(self, update: StepUpdate) -> StepUpdate | None:
        """`update` (the batch's rows and step) as this run alone would have it; None when none of it is ours."""
        n, first = len(self.params), self.first_row
        mine = [i for i, row in enumerate(update.rows) if first <= row < first + n]
        ended = [i for i, row in enumerate(update.finished) if first <= row < first + n]
        return StepUpdate(update.step - self.first_step, [update.rows[i] - first for i in mine],
                          [update.tokens[i] for i in mine], [update.finished[i] - first for i in ended],
                          [update.raw_logprobs[i] for i in mine], [update.final_logprobs[i] for i in mine],
                          [update.raw_top[i] for i in mine], [update.finish_reasons[i] for i in ended])


class _Batch:
    """A batch decoding now: its runs in row order, and those waiting to join at its next step."""

    def __init__(self, engine: SharingEngine, first: _Run):
        self.engine = engine
        self.trace_top_n = first.trace_top_n
        self.runs: list[_Run] = [first]  # admitted, in row order (the loop's groups)
        self.inbox: list[_Run] = []
        self.rows, self.tokens = len(first.params), first.new_tokens  # running, and about to join
        self.open = True
        self.last_step = -1  # the step of the last update the loop yielded


class SharedBatches:
    """The engine's shared batches (one per Engine: runs join only batches of their own model)."""

    def __init__(self, engine: SharingEngine, join: bool = True):
        self.engine = engine
        self.join = join  # False: every run decodes in a batch of its own (app.py --no-join)
        self._lock = threading.Lock()
        self._batches: list[_Batch] = []
        self.started = 0  # batches started so far (a run that joined started none)

    @staticmethod
    def joinable(params: Sequence[SamplingParams], forced: object = None, varies_prompt: bool = False) -> bool:
        """Whether a run with these rows may share a batch (one prompt for all its rows, no forced tokens)."""
        return forced is None and not varies_prompt and all(joinable(p) for p in params)

    def stream(self, prompt_ids: Sequence[int], params: Sequence[SamplingParams], sample_indices: Sequence[int],
               trace_top_n: int = 0, cancel: threading.Event | None = None) -> Iterator[StepUpdate]:
        """The run's updates, as Engine.stream's alone (see the module's docstring). The inputs are checked as
        Engine.stream checks them, before the run joins or starts anything."""
        params, indices = list(params), list(sample_indices)
        self.engine.check(list(prompt_ids), params)  # refused here, not inside a batch other runs share
        if not self.joinable(params):
            raise ValueError("only plain sampling / greedy rows share a batch (engine/joining.py: joinable)")
        run = _Run(list(prompt_ids), params, indices, trace_top_n, cancel)
        if not self._joined(run):
            self._start(run)
        try:
            while True:
                item = run.updates.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, StepUpdate)
                yield item
        finally:
            run.cancel.set()  # closed early (the consumer went away): its rows leave; after its end, nothing happens

    def _joined(self, run: _Run) -> bool:
        """Hand `run` to a batch it fits in (it joins at that batch's next step); False: none takes it."""
        if not self.join:
            return False
        limits = self.engine.limits
        with self._lock:
            for batch in self._batches:
                if (batch.open and batch.trace_top_n == run.trace_top_n
                        and fits(limits, batch.rows, batch.tokens, len(run.params), run.new_tokens)):
                    batch.inbox.append(run)
                    batch.rows, batch.tokens = batch.rows + len(run.params), batch.tokens + run.new_tokens
                    return True
        return False

    def _start(self, run: _Run) -> None:
        batch = _Batch(self.engine, run)
        with self._lock:
            self._batches.append(batch)
            self.started += 1
        threading.Thread(target=self._drive, args=(batch,), name="shared-batch", daemon=True).start()

    def _drive(self, batch: _Batch) -> None:
        """Decode the batch to its end, handing each run its updates (and its result when its rows end)."""
        first = batch.runs[0]
        leaving: set[int] = set()

        def cancelled_rows() -> set[int]:
            for run in batch.runs:
                if run.cancelled:
                    leaving.update(range(run.first_row, run.first_row + len(run.params)))
            return leaving

        def admit() -> list[Joining]:
            if not batch.inbox:  # the common case, asked every step
                return []
            with self._lock:
                arrived, batch.inbox = batch.inbox, []
            joining = []
            for run in arrived:
                if run.cancel.is_set():  # its consumer left before it started: its share of the budget is freed
                    self._leave(batch, run.params)
                    run.updates.put(_END)
                    continue
                last = batch.runs[-1]
                run.first_row, run.first_step = last.first_row + len(last.params), batch.last_step + 1
                batch.runs.append(run)  # one stopped meanwhile still starts: its rows end at once, as alone
                joining.append(Joining(run.prompt_ids, run.params, run.sample_indices, run.trace_top_n))
            return joining

        ended: set[int] = set()  # runs (by group index) whose result was handed over
        try:
            stream = self.engine.stream(first.prompt_ids, first.params, first.sample_indices, first.trace_top_n,
                                        cancel_rows=cancelled_rows, admit=admit if self.join else None,
                                        group_results=True)
            for update in stream:
                batch.last_step = update.step
                results = dict(update.group_results)
                for index, run in enumerate(batch.runs):
                    if index in ended:
                        continue
                    local = run.local(update)
                    if index in results:
                        local.result = results[index]
                        ended.add(index)
                        self._leave(batch, run.params)
                    run.updates.put(local)
                    if local.result is not None:
                        run.updates.put(_END)
        except Exception as exc:  # every run still waiting hears of it; the thread ends
            for index, run in enumerate(batch.runs):
                if index not in ended:
                    run.updates.put(exc)
        finally:
            with self._lock:  # nothing joins a batch that has ended: runs handed to it too late start their own
                batch.open = False
                self._batches.remove(batch)
                late, batch.inbox = batch.inbox, []
            for run in late:
                if not self._joined(run):
                    self._start(run)

    def _leave(self, batch: _Batch, params: list[SamplingParams]) -> None:
        """A run that ended (or never started) frees its share of the batch's budget for runs that wait to join."""
        with self._lock:
            batch.rows -= len(params)
            batch.tokens -= sum(p.max_new_tokens for p in params)
