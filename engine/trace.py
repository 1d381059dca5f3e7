"""Per-step, per-stage summaries of the next-token distribution, recorded as the loop runs.

Stage 0 is the raw model distribution; stage s >= 1 is the distribution after the s-th processor in that
row's order (so the last stage is the final distribution that was sampled from). The trace keeps only small
summaries ([steps, stages, rows, top_n] at most): no [B, V] tensor survives a step. The full-vocabulary
distributions of one (row, step), for plots, come from an exact replay (engine/replay.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .processors import StagePlan


@dataclass
class StageSummary:
    """Summaries of one distribution per row. probs: [B, V] -> each field [B] or [B, N]."""

    entropy: torch.Tensor  # nats
    support: torch.Tensor  # number of tokens with p > 0
    top_ids: torch.Tensor  # [B, N]
    top_probs: torch.Tensor  # [B, N]
    log_probs: torch.Tensor  # [B, V] kept only until the chosen token is known


def summarize(scores: torch.Tensor, top_n: int) -> StageSummary:
    """Entropy, support size and top-N of softmax(scores). scores: [B, V] (may hold -inf)."""
    log_probs = torch.log_softmax(scores, dim=-1)
    probs = log_probs.exp()
    alive = probs > 0  # [B, V], once for the entropy and the support
    entropy = -torch.where(alive, probs * log_probs, 0.0).sum(-1)
    top_probs, top_ids = torch.topk(probs, top_n, dim=-1)
    return StageSummary(entropy, alive.sum(-1), top_ids, top_probs, log_probs)


def summarize_rows(previous: StageSummary, scores: torch.Tensor, rows: torch.Tensor, top_n: int) -> StageSummary:
    """The summary of scores [B, V] when only the rows `rows` [b] differ from those `previous` summarises: those
    rows are summarised again, the others copied (every summary is computed row by row, so this is the summary of
    the whole batch, bit for bit, at a fraction of the passes over [B, V])."""
    part = summarize(scores[rows], top_n)
    return StageSummary(*(whole.index_copy(0, rows, new) for whole, new in zip(
        (previous.entropy, previous.support, previous.top_ids, previous.top_probs, previous.log_probs),
        (part.entropy, part.support, part.top_ids, part.top_probs, part.log_probs))))


def log_normalizer_and_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logsumexp [B] and entropy [B] of softmax(logits) for finite logits, in three passes over [B, V]
    (what every run records for the raw distribution, trace or not)."""
    lse = logits.logsumexp(dim=-1)
    entropy = lse - (logits.softmax(dim=-1) * logits).sum(-1)
    return lse, entropy


def chosen_stats(summary: StageSummary, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability and rank (1 = most likely) of the chosen tokens [B] under one stage."""
    chosen_logp = summary.log_probs.gather(1, chosen[:, None])  # [B, 1]
    rank = (summary.log_probs > chosen_logp).sum(-1) + 1
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
        step); `stages` may repeat a summary when a stage changed nothing."""
        cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        rows = row_ids.cpu()
        for s, summary in enumerate(stages):
            if id(summary) not in cache:
                cache[id(summary)] = chosen_stats(summary, chosen)
            prob, rank = cache[id(summary)]
            self.entropy[step, s, rows] = summary.entropy.float().cpu()
            self.support[step, s, rows] = summary.support.to(torch.int32).cpu()
            self.top_ids[step, s, rows] = summary.top_ids.to(torch.int32).cpu()
            self.top_probs[step, s, rows] = summary.top_probs.float().cpu()
            self.chosen_prob[step, s, rows] = prob.float().cpu()
            self.chosen_rank[step, s, rows] = rank.to(torch.int32).cpu()

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

    def start_step(self, logits: torch.Tensor) -> None:
        """Stage 0 of a step: the raw logits [b, V]."""
        if self.trace is not None:
            started = time.perf_counter()
            self._stages = [summarize(logits, self.trace.top_n)]
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
