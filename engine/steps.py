"""The pieces of one decode step that the sampling loops share (engine/generate.py, and prompt lookup's
engine/assisted.py): the rows still running, a branch's forced tokens, when each row ends, what a step streams.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Generator, Sequence, TypeVar

import torch

from . import sampling  # sampling.choose_next looked up at every step: the sampling audit wraps it
from .events import StepUpdate
from .models import LoadedModel
from .params import SamplingParams
from .processors import StagePlan, apply_pipeline
from .results import FINISH_REASONS
from .rowstate import DecodeState, RowParams
from .stops import now, past_time, stop_hits
from .trace import Normalized, TraceRecorder, chosen_log_probs

STOP, CANCELLED, NO_CANDIDATES, TIME = (FINISH_REASONS.index(r) for r in ("stop", "cancelled", "no_candidates", "time"))


def take_forced(forced_now: torch.Tensor, chosen: torch.Tensor, final_logp: torch.Tensor, scores: torch.Tensor,
                 empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows with a forced token take it: (chosen [b], its final log-prob [b], rows left with nothing [b]).

    A forced token the processors removed has final log-prob -inf (the settings could not have produced it); a
    row whose processors removed everything still takes its forced token (scores there are the raw stand-in, so
    its final log-prob is -inf too) and goes on."""
    take = forced_now >= 0  # [b]
    chosen = torch.where(take, forced_now, chosen)
    logp = chosen_log_probs(scores, chosen)  # [b]
    logp = torch.where(empty, torch.full_like(logp, float("-inf")), logp)
    return chosen, torch.where(take, logp, final_logp), empty & ~take


@dataclass
class Choice:
    """What one step chose for its rows [b]: the tokens and their final log-probs, the rows left with nothing to
    sample (None when there are none), and the step's emitted columns for the history (rows with nothing left
    dropped): (row ids, token, raw logp, final logp, raw entropy, p at adaptive-P's input)."""

    chosen: torch.Tensor  # [b] long
    final_logp: torch.Tensor  # [b]
    adaptive_p: torch.Tensor | None  # [b] float64, or None: no adaptive-P row
    empty: torch.Tensor | None  # [b] bool, or None
    emitted: tuple[torch.Tensor, ...]


def choose(logits: torch.Tensor, ids: torch.Tensor, state: DecodeState, params: RowParams,
           plans: list[StagePlan] | None, keys: torch.Tensor, forced_now: torch.Tensor | None,
           recorder: TraceRecorder) -> Choice:
    """One step of the sampling loops (engine/generate.py, engine/assisted.py) for the rows `ids` [b]: every row's
    processors in its own order on its raw logits [b, V] (the trace summarising each stage), then the next token:
    argmax for greedy rows, seeded Gumbel-max (`keys` [b]) for the others, a branch's forced token where given."""
    # 1. the raw distribution (the run's raw log-probs and entropy, the trace's stage 0), then the processors
    raw = Normalized.of(logits)  # log p, p [b, V] and the entropy [b]
    recorder.start_step(logits, raw)
    scores = apply_pipeline(logits, state, params, plans, recorder.on_stage)  # [b, V]
    # a row whose processors removed every token has nothing to sample from: it ends at this step with no token
    # ("no_candidates"); its raw logits stand in only so that the batch's arithmetic stays finite
    empty = scores.amax(-1) == float("-inf")  # [b]
    any_empty = bool(empty.any())
    if any_empty:
        scores = torch.where(empty[:, None], logits, scores)
    # 2. the next token of every row, and its log-prob under the final and the raw distribution
    chosen = sampling.choose_next(scores, params.greedy, keys)  # [b]
    final_logp = chosen_log_probs(scores, chosen)  # [b]
    if forced_now is not None:  # a branch's given tokens replace the choice; the row goes on even if empty
        chosen, final_logp, empty = take_forced(forced_now, chosen, final_logp, scores, empty)
        any_empty = bool(empty.any())
    raw_logp = raw.log_probs.gather(1, chosen[:, None])[:, 0]  # [b]
    adaptive_p = state.chosen_adaptive_probs(chosen)  # [b] float64, or None
    emitted = (ids, chosen, raw_logp, final_logp, raw.entropy,
               adaptive_p if adaptive_p is not None else torch.zeros_like(raw_logp, dtype=torch.float64))
    if any_empty:  # the rows with no candidates emit nothing
        emitted = tuple(t[~empty] for t in emitted)
    return Choice(chosen, final_logp, adaptive_p, empty if any_empty else None, emitted)


@dataclass
class Rows:
    """The unfinished rows of a run and everything indexed by them (kept in step as rows leave)."""

    ids: torch.Tensor  # [b] original row index
    params: RowParams
    state: DecodeState

    def select(self, keep: torch.Tensor) -> "Rows":
        return Rows(self.ids[keep], self.params.select(keep), self.state.select(keep))


class Endings:
    """When and why each row of a run ends (an index into FINISH_REASONS per row, on the device)."""

    def __init__(self, loaded: LoadedModel, params: list[SamplingParams]):
        device = loaded.device
        self.params, self.decode = params, loaded.decode
        self.with_stops = any(p.stop for p in params)  # else no row's text is ever decoded during the run
        self.max_new = torch.tensor([p.max_new_tokens for p in params], device=device)  # [B]
        self.eos = torch.tensor(loaded.eos_token_ids, device=device)
        self.reasons = torch.zeros(len(params), dtype=torch.long, device=device)  # [B] "length" until told
        self.max_time = torch.tensor([p.max_time for p in params], dtype=torch.float64, device=device)  # [B]
        self.timed, self.started = any(p.max_time for p in params), now()

    def extend(self, params: list[SamplingParams]) -> None:
        """Rows joining the run (engine/joining.py) take the next row indices; max_time never joins (the run's clock)."""
        device = self.max_new.device
        self.params = self.params + params
        self.with_stops = self.with_stops or any(p.stop for p in params)
        self.max_new = torch.cat([self.max_new, torch.tensor([p.max_new_tokens for p in params], device=device)])
        self.reasons = torch.cat([self.reasons, torch.zeros(len(params), dtype=torch.long, device=device)])
        self.max_time = torch.cat([self.max_time, torch.zeros(len(params), dtype=torch.float64, device=device)])

    def after_step(self, rows: Rows, chosen: torch.Tensor, empty: torch.Tensor | None,
                   cancel: threading.Event | None, cancel_rows: Callable[[], Collection[int]] | None) -> torch.Tensor:
        """[b] bool: the rows that end at this step (chosen [b] just appended to rows.state): EOS or a stop string
        ("stop"), max_new_tokens ("length"), no token left to sample (`empty` [b]: "no_candidates"), the run past
        max_time ("time"), or cancelled: every row (`cancel`), or the rows `cancel_rows()` names (their consumer
        went away)."""
        ids = rows.ids
        stopped = torch.isin(chosen, self.eos)  # [b]
        if self.with_stops:
            stopped = stopped | stop_hits(self.decode, rows.state.tokens, rows.state.row_step,
                                          [self.params[i] for i in ids.tolist()])
        done = stopped | (rows.state.row_step >= self.max_new[ids])
        self.reasons[ids[stopped]] = STOP
        if empty is not None:
            self.reasons[ids[empty]] = NO_CANDIDATES
            done = done | empty
        if self.timed:  # max_time: the run has taken longer than the row allows
            late = past_time(self.started, self.max_time[ids]) & ~done
            self.reasons[ids[late]] = TIME
            done = done | late
        if cancel is not None and cancel.is_set():
            self.reasons[ids[~done]] = CANCELLED
            done = torch.ones_like(done)
        if cancel_rows is not None and (leaving := cancel_rows()):
            gone = torch.tensor([i in leaving for i in ids.tolist()], device=ids.device) & ~done
            self.reasons[ids[gone]] = CANCELLED
            done = done | gone
        return done

    def reasons_of(self, rows: Sequence[int]) -> list[str]:
        """Why each of `rows` (original row indices) ended."""
        if not rows:
            return []
        reasons = self.reasons.tolist()
        return [FINISH_REASONS[reasons[i]] for i in rows]


def step_update(step: int, emitted: tuple[torch.Tensor, ...], finished: list[int], reasons: list[str],
                 recorder: TraceRecorder) -> StepUpdate:
    """The tokens one step emitted (row ids, tokens, raw and final log p) as plain lists, for the consumer."""
    ids, tokens = emitted[0].tolist(), emitted[1].tolist()
    raw_logp, final_logp = torch.stack([emitted[2], emitted[3]]).tolist()  # one transfer
    return StepUpdate(step, ids, tokens, finished, raw_logp, final_logp, recorder.raw_top(step, ids), reasons)


def synced_time(device: torch.device) -> float:
    """perf_counter once the device has finished its queued work (so a forward's time is its own)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


Result = TypeVar("Result")


def run_to_end(steps: Generator[object, None, Result]) -> Result:
    """Drive a step-by-step search (beam, contrastive, DoLa) to its end, dropping the progress it yields; its
    return value."""
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value
