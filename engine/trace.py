"""Per-step, per-stage summaries of the next-token distribution, recorded as the loop runs.

Stage 0 is the raw model distribution; stage s >= 1 is the distribution after the s-th processor in that
row's order (so the last stage is the final distribution that was sampled from). The trace keeps only small
summaries ([steps, stages, rows, top_n] at most): no [B, V] tensor survives a step. The full-vocabulary
distributions of one (row, step), for plots, come from an exact replay (engine/replay.py).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .processors import StagePlan


@dataclass
class StageSummary:
    """Summaries of one distribution per row. probs: [B, V] -> each field [B] or [B, N]."""

    entropy: torch.Tensor  # nats
    support: torch.Tensor  # number of tokens with p > 0
    top_ids: torch.Tensor  # [B, N], the N most likely tokens (by log-probability)
    top_probs: torch.Tensor  # [B, N], their probabilities
    top_log_probs: torch.Tensor  # [B, N], their log-probabilities (a chosen token's rank is counted among them)
    log_probs: torch.Tensor  # [B, V] kept only until the chosen token is known


@dataclass
class Normalized:
    """softmax(scores) of a batch: log-probabilities and probabilities [B, V], and the entropy [B] (nats).

    Both come from PyTorch's fused softmax kernels, one pass each (exp(log_softmax) would be a third, slower pass);
    each is computed row by row, so a row's numbers do not depend on the rows beside it."""

    log_probs: torch.Tensor  # [B, V]
    probs: torch.Tensor  # [B, V]
    entropy: torch.Tensor  # [B]

    @staticmethod
    def of(scores: torch.Tensor) -> "Normalized":
        log_probs, probs = torch.log_softmax(scores, dim=-1), torch.softmax(scores, dim=-1)
        # -sum p log p over the tokens with p > 0: where p is 0 the product is 0 (underflow) or NaN (0 x -inf, a
        # removed token), and NaN -> 0 gives the sum that masking with p > 0 gives, in one pass fewer
        return Normalized(log_probs, probs, (probs * log_probs).nan_to_num_(nan=0.0).sum(-1).neg_())


def summarize(scores: torch.Tensor, top_n: int, normalized: Normalized | None = None) -> StageSummary:
    """Entropy, support size and top-N of softmax(scores). scores: [B, V] (may hold -inf); `normalized`: its
    softmax when the caller has it already (the raw distribution: every run computes it)."""
    normalized = normalized if normalized is not None else Normalized.of(scores)
    log_probs, probs = normalized.log_probs, normalized.probs
    support = torch.count_nonzero(probs > 0, dim=-1)  # [B]
    top_log_probs, top_ids = torch.topk(log_probs, top_n, dim=-1)  # [B, N]
    return StageSummary(normalized.entropy, support, top_ids, probs.gather(1, top_ids), top_log_probs, log_probs)


def summarize_rows(previous: StageSummary, scores: torch.Tensor, rows: torch.Tensor, top_n: int) -> StageSummary:
    """The summary of scores [B, V] when only the rows `rows` [b] differ from those `previous` summarises: those
    rows are summarised again, the others copied (every summary is computed row by row, so this is the summary of
    the whole batch, bit for bit, at a fraction of the passes over [B, V])."""
    part = summarize(scores[rows], top_n)
    return StageSummary(*(getattr(previous, f.name).index_copy(0, rows, getattr(part, f.name))
                          for f in dataclasses.fields(StageSummary)))


def chosen_log_probs(scores: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """log softmax(scores) [B, V] at the chosen tokens [B] -> [B] (what a run reports of its final distribution)."""
    return torch.log_softmax(scores, dim=-1).gather(1, chosen[:, None])[:, 0]


def chosen_stats(summary: StageSummary, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability and rank (1 = most likely) of the chosen tokens [B] under one stage."""
    chosen_logp = summary.log_probs.gather(1, chosen[:, None])  # [B, 1]
    # rank = 1 + the number of tokens more likely. A chosen token at least as likely as the N-th of the top N has
    # every more likely token among the top N (they hold the N largest log-probabilities), so counting there is
    # exact; only the other rows count over the whole vocabulary
    rank = (summary.top_log_probs > chosen_logp).sum(-1) + 1  # [B]
    beyond = (chosen_logp[:, 0] >= summary.top_log_probs[:, -1]).logical_not_().nonzero()[:, 0]  # [k] (NaN too)
    if len(beyond):
        rank[beyond] = (summary.log_probs[beyond] > chosen_logp[beyond]).sum(-1) + 1
    return chosen_logp[:, 0].exp(), rank


class Trace:
    """Preallocated summaries for all rows, steps and stages (CPU tensors).

    entropy, support, chosen_prob, chosen_rank: [T, S, R];  top_ids, top_probs: [T, S, R, N]
    where T = max steps, S = 1 + number of processors, R = rows. Entries past a row's length stay at 0.
    The step index is the row's own step: a row that joined a running batch (engine/joining.py) has its first
    token at step 0, as alone, and `grow` makes room for its rows (and for steps past the batch's).
    """

    def __init__(self, rows: int, steps: int, stages: int, top_n: int):
        self.top_n = top_n
        self.entropy = torch.zeros(steps, stages, rows)
        self.support = torch.zeros(steps, stages, rows, dtype=torch.int32)
        self.chosen_prob = torch.zeros(steps, stages, rows)
        self.chosen_rank = torch.zeros(steps, stages, rows, dtype=torch.int32)
        self.top_ids = torch.zeros(steps, stages, rows, top_n, dtype=torch.int32)
        self.top_probs = torch.zeros(steps, stages, rows, top_n)

    def record(self, step: int | torch.Tensor, row_ids: torch.Tensor, stages: list[StageSummary],
               chosen: torch.Tensor) -> None:
        """Store one step for the rows `row_ids` [b]: at `step`, or per row (a [b] CPU tensor of each row's own
        step); `stages` may repeat a summary when a stage changed nothing (its numbers are then computed once)."""
        rows = row_ids.cpu()
        steps = torch.as_tensor(step, dtype=torch.long).expand(len(rows))  # [b]
        stats = {}
        for summary in stages:
            if id(summary) not in stats:
                stats[id(summary)] = chosen_stats(summary, chosen)

        def stacked(field: Callable[[StageSummary], torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
            """[b, S] (or [b, S, N]): one field of every stage, in the layout trace[steps, :, rows] takes."""
            return torch.stack([field(summary) for summary in stages], dim=1).to(dtype).cpu()

        # one write per field for all stages (index [steps, :, rows]: the two index tensors' dimension comes first)
        self.entropy[steps, :, rows] = stacked(lambda s: s.entropy, torch.float32)
        self.support[steps, :, rows] = stacked(lambda s: s.support, torch.int32)
        self.top_ids[steps, :, rows] = stacked(lambda s: s.top_ids, torch.int32)
        self.top_probs[steps, :, rows] = stacked(lambda s: s.top_probs, torch.float32)
        self.chosen_prob[steps, :, rows] = stacked(lambda s: stats[id(s)][0], torch.float32)
        self.chosen_rank[steps, :, rows] = stacked(lambda s: stats[id(s)][1], torch.int32)

    FIELDS = ("entropy", "support", "chosen_prob", "chosen_rank", "top_ids", "top_probs")

    @property
    def rows(self) -> int:
        return self.entropy.shape[2]

    @property
    def steps(self) -> int:
        return self.entropy.shape[0]

    def grow(self, rows: int, steps: int) -> None:
        """Room for `rows` rows (the joined rows after the others) and `steps` steps; the new entries are 0 and
        what is recorded stays where it was (a join is rare: once per joining prompt, so a copy is fine)."""
        extra_steps, extra_rows = max(steps - self.steps, 0), max(rows - self.rows, 0)
        if not (extra_steps or extra_rows):
            return
        for name in self.FIELDS:
            old = getattr(self, name)  # [T, S, R] or [T, S, R, N]
            new = old.new_zeros((old.shape[0] + extra_steps, old.shape[1], old.shape[2] + extra_rows, *old.shape[3:]))
            new[:old.shape[0], :, :old.shape[2]] = old
            setattr(self, name, new)

    def trim(self, steps: int) -> None:
        """Keep the first `steps` steps: a run that ended before max_new_tokens frees the room it did not use."""
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[:steps].clone())

    def rows_of(self, first: int, rows: int, steps: int) -> "Trace":
        """A copy of rows first .. first + rows - 1 and their first `steps` steps (one request's rows of a batch
        that rows joined: engine/row_groups.py)."""
        part = Trace.__new__(Trace)
        part.top_n = self.top_n
        for name in self.FIELDS:
            setattr(part, name, getattr(self, name)[:steps, :, first:first + rows].clone())
        return part

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.FIELDS)

    def row(self, row: int, length: int) -> dict[str, list]:
        """Plain lists for one row's first `length` steps: [step][stage] (and [step][stage][N] for top-N)."""
        return {
            "entropy": self.entropy[:length, :, row].tolist(),
            "support": self.support[:length, :, row].tolist(),
            "chosen_prob": self.chosen_prob[:length, :, row].tolist(),
            "chosen_rank": self.chosen_rank[:length, :, row].tolist(),
            "top_ids": self.top_ids[:length, :, row].tolist(),
            "top_probs": self.top_probs[:length, :, row].tolist(),
        }


class TraceRecorder:
    """Fills a Trace as the loop runs, and times it: the summaries of one step's stages, then the chosen tokens.

    Without a trace (None) every call does nothing, so the loop calls it the same way either way.
    Steps are the loop's; each row's entries go to its own step (the loop's step minus the step it joined at)."""

    def __init__(self, trace: Trace | None):
        self.trace = trace
        self.seconds = 0.0  # spent summarising (0 without a trace)
        self._stages: list[StageSummary] = []
        # the loop step each row's step 0 was taken at: None while every row started at 0 (no join: no per-row work)
        self._first_step: torch.Tensor | None = None  # [R] int64, CPU
        self.steps_recorded = 0  # the longest row's trace so far (what the trace is trimmed to at the end)

    def add_rows(self, rows: int, at_step: int, max_steps: int) -> None:
        """`rows` rows join the run; their step 0 is the loop's step `at_step`, and they run at most `max_steps`."""
        if self.trace is None:
            return
        before = self.trace.rows
        first = self._first_step if self._first_step is not None else torch.zeros(before, dtype=torch.long)
        self._first_step = torch.cat([first, torch.full((rows,), at_step, dtype=torch.long)])
        self.trace.grow(before + rows, max_steps)

    def _row_steps(self, step: int, rows: torch.Tensor | list[int]) -> int | torch.Tensor:
        """The trace step of `rows` at the loop's `step`: the step itself, or [b] per row once rows have joined."""
        if self._first_step is None:
            return step
        return step - self._first_step[torch.as_tensor(rows, dtype=torch.long).cpu()]

    def start_step(self, logits: torch.Tensor, raw: Normalized) -> None:
        """Stage 0 of a step: the raw logits [b, V], with their softmax (every run computes it)."""
        if self.trace is not None:
            started = time.perf_counter()
            self._stages = [summarize(logits, self.trace.top_n, raw)]
            self.seconds += time.perf_counter() - started

    def on_stage(self, _: int, scores: torch.Tensor, plan: StagePlan) -> None:
        """apply_pipeline's callback after each stage: a stage that changed nothing repeats the one before, one that
        changed some rows only summarises those again."""
        if self.trace is not None:
            started = time.perf_counter()
            previous = self._stages[-1]
            if not plan:
                summary = previous
            elif plan.changed is None:
                summary = summarize(scores, self.trace.top_n)
            else:
                summary = summarize_rows(previous, scores, plan.changed, self.trace.top_n)
            self._stages.append(summary)
            self.seconds += time.perf_counter() - started

    def record(self, step: int, row_ids: torch.Tensor, chosen: torch.Tensor) -> None:
        """The step's summaries for the rows `row_ids` [b], with their chosen tokens [b]."""
        if self.trace is not None:
            started = time.perf_counter()
            steps = self._row_steps(step, row_ids)
            self.trace.record(steps, row_ids, self._stages, chosen)
            self.steps_recorded = max(self.steps_recorded, 1 + (steps if isinstance(steps, int) else int(steps.max())))
            self.seconds += time.perf_counter() - started

    def raw_top(self, step: int, rows: list[int]) -> list[list[tuple[int, float]]]:
        """The raw model's top-N (id, log p) at the loop's `step` for the rows `rows` (empty lists without a
        trace)."""
        if self.trace is None or not rows:
            return [[] for _ in rows]
        steps = self._row_steps(step, rows)
        top_ids = self.trace.top_ids[steps, 0, rows].tolist()
        top_logp = self.trace.top_probs[steps, 0, rows].log().tolist()
        return [list(zip(i, p)) for i, p in zip(top_ids, top_logp)]


def stage_stats(probs: torch.Tensor, chosen: int) -> list[dict]:
    """Per-stage numbers of one replayed (row, step), for the stage table and the plot annotations.

    probs: [S, V], stage 0 raw, each row summing to 1 with removed tokens exactly 0; chosen: a token id.
    Returns one dict per stage: entropy (nats), support (tokens with p > 0), mass_kept (the RAW probability
    of the tokens still alive at that stage: how much of the model's own belief survives the processors),
    chosen_prob, chosen_rank (1 = most likely; ties share the better rank) and top_prob.
    Computed in float64 so that tiny probabilities do not vanish from the entropy and the kept mass.
    """
    p = probs.detach().to(device="cpu", dtype=torch.float64)  # [S, V]
    alive = p > 0  # [S, V]
    plogp = torch.where(alive, p * torch.log(torch.where(alive, p, 1.0)), 0.0)  # [S, V]; 0 log 0 = 0
    entropy = -plogp.sum(-1)  # [S]
    support = alive.sum(-1)  # [S]
    mass_kept = torch.where(alive, p[0:1], 0.0).sum(-1)  # [S]
    chosen_prob = p[:, chosen]  # [S]
    chosen_rank = (p > chosen_prob[:, None]).sum(-1) + 1  # [S]
    top_prob = p.max(-1).values  # [S]
    return [
        {
            "entropy": float(entropy[s]),
            "support": int(support[s]),
            "mass_kept": float(mass_kept[s]),
            "chosen_prob": float(chosen_prob[s]),
            "chosen_rank": int(chosen_rank[s]),
            "top_prob": float(top_prob[s]),
        }
        for s in range(p.shape[0])
    ]
