"""Finished runs kept on the server, so views and API calls can refer to a run by its id.

The Distributions view and the `/distribution` endpoint replay one (row, step) of a stored run; the colour
toggle re-renders a stored run. Nothing here generates text: it stores results, caches replays and holds the
per-session Stop flags.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from engine.generate import Engine, GenerationResult, Replay
from engine.errors import ParamError
from engine.sweep import SweepResult
from engine.sweepspec import SweepSpec


BYTES_PER_TOKEN = 200


@dataclass(frozen=True)
class BranchLink:
    """Where a run came from when it was branched from another run's output (or continued from an edit of it).

    token_id / parent_prob: the forced token and its probability under the parent's final distribution at the
    fork step (from an exact replay); for an edit (`edited` set) they are None and fork_step is where the
    edited text first differs from the parent's tokens."""

    parent_id: str
    parent_row: int
    fork_step: int
    token_id: int | None = None
    token_text: str = ""
    parent_prob: float | None = None
    edited: str | None = None  # "edit and continue": the edited text the run was forced to start with


@dataclass
class Run:
    """One finished generate or sweep run. labels / pieces: one entry per row (output)."""

    run_id: str
    kind: str  # "generate" or "sweep"
    prompt: str
    generation: GenerationResult
    labels: list[str]  # e.g. "sample 2" or "temperature=0.2 · sample 1"
    pieces: list[list[str]]  # the text each token added, per row
    sweep: SweepResult | None = None
    spec: SweepSpec | None = None  # what was run (a branch is built from it)
    parent: BranchLink | None = None  # set for a branch (or an edit) of another run's output
    number: int = 0  # 1, 2, ... in the order runs were kept (a short name in the branch tree)
    engine: Engine | None = None  # the engine it ran on, when not the store's current one (replays need its model)

    @property
    def row_count(self) -> int:
        return len(self.generation.rows)

    @property
    def nbytes(self) -> int:
        """About how much memory the run holds: its trace, and per generated token its id, three floats
        (raw / final log-prob, entropy) and its text piece as Python objects."""
        trace = self.generation.trace
        return (trace.nbytes if trace is not None else 0) + self.generation.generated_tokens * BYTES_PER_TOKEN

    def check_row_step(self, row: int, step: int | None = None) -> None:
        if not isinstance(row, int) or not 0 <= row < self.row_count:
            raise ParamError("sample", f"an output index in [0, {self.row_count - 1}]", row)
        if step is not None:
            length = len(self.generation.rows[row].token_ids)
            if not isinstance(step, int) or not 0 <= step < length:
                raise ParamError("step", f"a step in [0, {length - 1}] for output {row}", step)


class RunStore:
    """The last `capacity` runs, at most `max_bytes` of them together (oldest dropped first; the newest run is
    always kept), their cached replays, and each session's Stop flag.

    A run holds its rows' tokens, log-probs and texts and, for the views, a trace of 56 bytes per step, stage
    (23) and row: about 1.5 KB per generated token. At the engine's budget (131,072 tokens in one run) that is
    ~200 MB, so the store keeps ~256 MB of runs, plus at most REPLAYS replays (~290 MB for this vocabulary).
    """

    # replays cached over all runs and sessions: each holds [stages, vocabulary] floats (~4.5 MB for a 49k
    # vocabulary and 23 stages), so the bound is on the total, not per run
    REPLAYS = 64
    MAX_BYTES = 256 * 2**20

    def __init__(self, engine: Engine, capacity: int = 32, max_bytes: int = MAX_BYTES):
        self.engine = engine
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._runs: "OrderedDict[str, Run]" = OrderedDict()
        self._replays: "OrderedDict[tuple[str, int, int], Replay]" = OrderedDict()  # least recently used first
        self._stop_flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._count = 0  # runs kept so far (numbers them)
        self.tokens_per_second: float | None = None  # the last run's speed (None before any run)

    def add(self, kind: str, prompt: str, generation: GenerationResult, labels: list[str],
            sweep: SweepResult | None = None, pieces: list[list[str]] | None = None,
            spec: SweepSpec | None = None, parent: BranchLink | None = None, engine: Engine | None = None) -> Run:
        """Keep a finished run. `pieces` (the text of each token, per row) when the caller already split them
        while streaming; rows without them (a sweep, beam rows) are split here. `parent`: the run and output it
        was branched from. `engine`: the one it ran on (the page's model may have been switched meanwhile)."""
        pieces = [streamed if streamed is not None and len(streamed) == len(row.token_ids)
                  else (engine or self.engine).loaded.pieces(row.token_ids)
                  for row, streamed in zip(generation.rows, pieces or [None] * len(generation.rows))]
        run = Run(uuid.uuid4().hex[:12], kind, prompt, generation, labels, pieces, sweep, spec, parent, engine=engine)
        if generation.seconds > 0 and generation.generated_tokens:
            self.tokens_per_second = generation.generated_tokens / generation.seconds  # for the next estimate
        with self._lock:
            self._count += 1
            run.number = self._count
            self._runs[run.run_id] = run
            while len(self._runs) > self.capacity or len(self._runs) > 1 and self.nbytes > self.max_bytes:
                dropped, _ = self._runs.popitem(last=False)
                for key in [key for key in self._replays if key[0] == dropped]:
                    del self._replays[key]
        return run

    def clear(self) -> None:
        """Forget every kept run and replay (the page's model was replaced: they belong to the old one)."""
        with self._lock:
            self._runs.clear()
            self._replays.clear()

    @property
    def nbytes(self) -> int:
        """About how much memory the kept runs hold (replays not counted: REPLAYS bounds them)."""
        return sum(run.nbytes for run in self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> Run:
        with self._lock:
            run = self._runs.get(run_id) if isinstance(run_id, str) else None
        if run is None:
            raise ParamError("run_id", "the id of a recent run (run Generate or Sweep first)", run_id)
        return run

    def find(self, run_id: str) -> Run | None:
        """The run with this id if it is still kept, else None (a branch's parent may have been dropped)."""
        with self._lock:
            return self._runs.get(run_id)

    def children(self, run_id: str) -> list[Run]:
        """The kept runs branched from this run, oldest first."""
        with self._lock:
            return [run for run in self._runs.values() if run.parent is not None and run.parent.parent_id == run_id]

    def replay(self, run: Run, row: int, step: int) -> Replay:
        """Full-vocabulary distributions of one (row, step), cached per run (a slider moved back is instant)."""
        run.check_row_step(row, step)
        key = (run.run_id, row, step)
        with self._lock:
            cached = self._replays.get(key)
            if cached is not None:
                self._replays.move_to_end(key)
        if cached is None:
            cached = (run.engine or self.engine).replay(run.generation, row, step)
            with self._lock:
                self._replays[key] = cached
                while len(self._replays) > self.REPLAYS:
                    self._replays.popitem(last=False)
        return cached

    # -- Stop ----------------------------------------------------------------------------------------------

    def stop_flag(self, session: str) -> threading.Event:
        """A fresh flag for a run that is starting in this browser session."""
        flag = threading.Event()
        with self._lock:
            self._stop_flags[session] = flag
        return flag

    def stop(self, session: str) -> bool:
        with self._lock:
            flag = self._stop_flags.get(session)
        if flag is not None:
            flag.set()
        return flag is not None
