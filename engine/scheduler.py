"""Requests that arrive together decode together: a worker thread gathers them into engine batches.

    scheduler = BatchScheduler(engine)
    job = scheduler.submit(prompt_ids, [params] * n)          # validated now: ParamError before any work
    for event in job.events():                                # TokenEvent ... ChoiceDone ... JobDone
        ...
    job.cancel()                                              # e.g. the client went away: rows leave next step

How batching works: the worker takes the first waiting job, then keeps collecting jobs as long as each arrives
within `window_seconds` of the previous one (at most `max_wait_seconds` after the first).
Everything collected decodes as one engine batch (split only where the engine's row / token budget says so):
each distinct prompt is prefilled once on its own and the caches are merged, left-padded, into the batch. A
row's text depends only on its prompt and (seed, sample index, its own step), so a seeded request returns the
same text alone or beside others (the padded attention changes logits by float rounding only, ~1e-5). A job's
events arrive as its rows decode; a job ends as soon as its own rows are done, and its rows leave the batch.

Continuous batching: a job arriving while a batch decodes JOINS that batch at its next step (engine/joining.py:
its prompt prefilled alone, its rows merged into the running batch), as long as the batch's rows and new tokens
(the rows still running, plus the job's) stay within the engine's max_rows and max_total_tokens; a job that does
not fit starts the next batch beside it, as below. Joining applies to plain sampling and greedy jobs (what /v1
sends), joining batches of such jobs that ask for the same number of top logprobs (0 included): the batch's trace
keeps that many, and a joined job's logprobs are its own as alone. The other modes (beams, contrastive, DoLa,
assisted or prompt-lookup drafts, guidance, encoder_repetition_penalty, adaptive-P, SynthID, max_time), a job whose
top_logprobs differ from the running batch's, and `join=False` keep the earlier way: jobs arriving while a batch runs form the next batch, which starts at once
beside it (at most `max_batches` at a time); each step of a batch takes the engine's turn (engine/turns.py), so
batches, and the page's runs, alternate steps, and a short request is never stuck behind a long one.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

from .generate import Engine
from .errors import ParamError
from .joining import Joining, fits, joinable
from .switching import current_engine
from .params import SamplingParams


@dataclass
class TokenEvent:
    choice: int  # index of the row within its job
    token_id: int
    raw_logprob: float  # under the unmodified model
    final_logprob: float  # under the distribution it was sampled from
    raw_top: list[tuple[int, float]]  # the raw model's top (id, log p), when the job asked for them


@dataclass
class ChoiceDone:
    choice: int
    finish_reason: str  # "stop", "length" or "cancelled"
    token_ids: list[int]
    text: str  # cut before the first stop string


@dataclass
class JobDone:
    prompt_tokens: int
    completion_tokens: int
    batch_rows: int  # rows in the engine batch this job ran in (its own and its neighbours')


@dataclass
class JobError:
    message: str
    error: BaseException | None = None  # the fault that ended the batch, if any: the server logs it (traceback
    # included) and answers its clients without its text, which may hold internals


Event = Union[TokenEvent, ChoiceDone, JobDone, JobError]


@dataclass
class Job:
    prompt_ids: list[int]
    params: list[SamplingParams]
    sample_indices: list[int]
    top_logprobs: int
    batch_rows: int = 0  # rows of the engine batch it runs in, set when that batch starts (or it joins one)
    _events: "queue.Queue[Event]" = field(default_factory=queue.Queue)
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events in order, ending with JobDone or JobError (queue.Empty if none comes within `timeout`)."""
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if isinstance(event, (JobDone, JobError)):
                return

    def next_events(self, timeout: float | None = None) -> list[Event]:
        """The next event and every other one already waiting (queue.Empty if none comes within `timeout`).

        A consumer on another thread pays one hand-over per call, not one per token."""
        events = [self._events.get(timeout=timeout)]
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def joinable(self) -> bool:
        """Whether it may join a running batch, or take joining jobs (engine/joining.py), of the same top_logprobs."""
        return all(joinable(p) for p in self.params)

    @property
    def new_tokens(self) -> int:
        """Its share of the engine's max_total_tokens budget."""
        return sum(p.max_new_tokens for p in self.params)


class _Running:
    """A batch decoding now, and the jobs waiting to join it at its next step (guarded by the scheduler's lock)."""

    def __init__(self, jobs: list[Job], engine: Engine):
        self.jobs = jobs
        self.engine = engine  # the model it decodes with: jobs join only batches of the model now served
        self.joinable = all(job.joinable for job in jobs)
        self.top_n = max(job.top_logprobs for job in jobs)  # its trace's top-N: joining jobs ask for the same
        self.rows = sum(len(job.params) for job in jobs)  # rows still decoding, and those about to join
        self.tokens = sum(job.new_tokens for job in jobs)  # their max_new_tokens, summed
        self.inbox: deque[Job] = deque()
        self.open = True  # False once it has ended: nothing joins any more


class BatchScheduler:
    """One worker thread gathers jobs into batches as described above; each batch decodes in a thread of its own."""

    def __init__(self, engine: Engine, window_seconds: float = 0.05, max_wait_seconds: float = 0.25,
                 max_batches: int = 4, join: bool = True):
        self.engine = engine
        self.join = join  # continuous batching: jobs join a running batch (False: they form the next batch)
        self._lock = threading.Lock()
        self._running: list[_Running] = []
        self.window_seconds = window_seconds
        self.max_wait_seconds = max_wait_seconds
        # batches decoding at once (each within the engine's limits): more would only share the same cores
        self._batch_slots = threading.BoundedSemaphore(max_batches)
        self._waiting: "queue.Queue[Job | None]" = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._worker.start()

    def submit(self, prompt_ids: Sequence[int], params: Sequence[SamplingParams],
               sample_indices: Sequence[int] | None = None, top_logprobs: int = 0) -> Job:
        """Queue one request (n rows). Raises ParamError now for input the engine would refuse."""
        params = list(params)
        indices = list(sample_indices) if sample_indices is not None else list(range(len(params)))
        if len(indices) != len(params):
            raise ParamError("sample_indices", f"one per row ({len(params)})", len(indices))
        self.engine.check(list(prompt_ids), params)
        job = Job(list(prompt_ids), params, indices, top_logprobs)
        self._waiting.put(job)
        return job

    def close(self) -> None:
        self._waiting.put(None)

    # -- the worker -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            if self._joined(first):
                continue
            jobs = [first]
            last_call = time.monotonic() + self.max_wait_seconds
            deadline = min(time.monotonic() + self.window_seconds, last_call)
            while (left := deadline - time.monotonic()) > 0:
                try:
                    job = self._waiting.get(timeout=left)
                except queue.Empty:
                    break
                if job is None:
                    self._waiting.put(None)  # close after this round
                    break
                if self._joined(job):
                    continue
                jobs.append(job)
                deadline = min(time.monotonic() + self.window_seconds, last_call)  # more may be on the way
            for batch in self._batches(jobs):
                self._batch_slots.acquire()  # a free slot: the batch starts now, beside the ones running
                threading.Thread(target=self._run_in_slot, args=(batch,), name="batch", daemon=True).start()

    def _joined(self, job: Job) -> bool:
        """Hand `job` to a running batch it fits in (it joins at that batch's next step); False: none takes it."""
        if not (self.join and job.joinable):
            return False
        limits, engine = self.engine.limits, current_engine(self.engine)
        with self._lock:
            for running in self._running:
                if (running.open and running.joinable and running.engine is engine and running.top_n == job.top_logprobs
                        and fits(limits, running.rows, running.tokens, len(job.params), job.new_tokens)):
                    running.inbox.append(job)
                    running.rows, running.tokens = running.rows + len(job.params), running.tokens + job.new_tokens
                    return True
        return False

    def _run_in_slot(self, jobs: list[Job]) -> None:
        running = _Running(jobs, current_engine(self.engine))
        with self._lock:
            self._running.append(running)
        try:
            self._run(running)
        finally:
            with self._lock:  # nothing joins a batch that has ended: jobs handed to it too late go back in line
                running.open = False
                self._running.remove(running)
                late = list(running.inbox)
            for job in late:
                self._waiting.put(job)
            self._batch_slots.release()

    def _batches(self, jobs: list[Job]) -> list[list[Job]]:
        """The jobs in arrival order, cut into batches that each fit the engine's limits."""
        limits = self.engine.limits
        batches: list[list[Job]] = [[]]
        for job in jobs:
            if job.cancelled:
                job._events.put(JobError("cancelled before it started"))
                continue
            current = batches[-1]
            rows = sum(len(j.params) for j in current) + len(job.params)
            tokens = sum(p.max_new_tokens for j in [*current, job] for p in j.params)
            if current and (rows > limits.max_rows or tokens > limits.max_total_tokens):
                batches.append([job])
            else:
                current.append(job)
        return [batch for batch in batches if batch]

    def _run(self, running: _Running) -> None:
        jobs = list(running.jobs)  # grows as jobs join
        owners: list[tuple[Job, int]] = [(job, choice) for job in jobs for choice in range(len(job.params))]
        params = [p for job in jobs for p in job.params]
        indices = [i for job in jobs for i in job.sample_indices]
        remaining = {id(job): len(job.params) for job in jobs}
        tokens: list[list[int]] = [[] for _ in owners]
        completion = {id(job): 0 for job in jobs}

        for job in jobs:
            job.batch_rows = len(params)

        def cancelled_rows() -> set[int]:
            if not any(job.cancelled for job in jobs):  # the common case, asked every step: no per-row work
                return set()
            return {row for row, (job, _) in enumerate(owners) if job.cancelled}

        def admit() -> list[Joining]:
            """The jobs handed to this batch since the last step: their rows take the next row indices."""
            if not running.inbox:  # the common case, asked every step
                return []
            with self._lock:
                arrived = list(running.inbox)
                running.inbox.clear()
            joining = []
            for job in arrived:
                if job.cancelled:  # it never starts: its share of the budget is freed
                    self._leave(running, job.params)
                    job._events.put(JobError("cancelled before it started"))
                    continue
                jobs.append(job)
                owners.extend((job, choice) for choice in range(len(job.params)))
                params.extend(job.params)
                tokens.extend([] for _ in job.params)
                remaining[id(job)], completion[id(job)] = len(job.params), 0
                job.batch_rows = running.rows
                joining.append(Joining(job.prompt_ids, job.params, job.sample_indices, running.top_n))
            return joining

        try:
            prompts = [job.prompt_ids for job, _ in owners]
            stream = running.engine.stream(prompts, params, indices, running.top_n,
                                        cancel_rows=cancelled_rows,
                                        admit=admit if self.join and running.joinable else None)
            for update in stream:
                for row, token, raw_lp, final_lp, top in zip(update.rows, update.tokens, update.raw_logprobs,
                                                             update.final_logprobs, update.raw_top):
                    job, choice = owners[row]
                    tokens[row].append(token)
                    completion[id(job)] += 1
                    job._events.put(TokenEvent(choice, token, raw_lp, final_lp, top[:job.top_logprobs]))
                for row, reason in zip(update.finished, update.finish_reasons):
                    job, choice = owners[row]
                    job._events.put(ChoiceDone(choice, reason, tokens[row], running.engine.text_of(tokens[row], params[row].stop)))
                    self._leave(running, [params[row]])
                    remaining[id(job)] -= 1
                    if remaining[id(job)] == 0:
                        job._events.put(JobDone(len(job.prompt_ids), completion[id(job)], job.batch_rows))
        except Exception as exc:  # the worker must survive anything one batch does
            for job in jobs:
                if remaining[id(job)] > 0:
                    job._events.put(JobError(f"generation failed: {type(exc).__name__}", exc))

    def _leave(self, running: _Running, params: list[SamplingParams]) -> None:
        """Rows that ended (or never started) free their share of the batch's budget for jobs that wait to join."""
        with self._lock:
            running.rows -= len(params)
            running.tokens -= sum(p.max_new_tokens for p in params)
