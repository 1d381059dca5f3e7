"""The pieces of one decode step that the sampling loops share (engine/generate.py, and prompt lookup's
engine/assisted.py): the rows still running, a branch's forced tokens, when each row ends, what a step streams.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Generator, Sequence, TypeVar

import torch

from .events import StepUpdate
from .models import LoadedModel
from .params import SamplingParams
from .results import FINISH_REASONS
from .rowstate import DecodeState, RowParams
from .stops import now, past_time, stop_hits
from .trace import TraceRecorder, chosen_log_probs

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
