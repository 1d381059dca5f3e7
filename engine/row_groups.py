"""Each request's own result out of a batch that rows join (continuous batching for runs that keep a result:
engine/shared_batches.py, the page's runs).

A batch that takes joining rows (engine/joining.py) holds several requests: its first rows, then each Joining's
rows, in the order they were admitted. With `group_results`, Engine.stream reports, at the step where the last
row of such a group ends, the GenerationResult that group would have alone: its prompt, params, sample indices,
rows (tokens, log-probs, entropies, finish reasons) and its trace rows (each row's trace is indexed by its own
steps: engine/trace.py), renumbered from 0. Its timings are the batch's over the group's life (the forwards were
shared).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from .params import SamplingParams
from .results import GenerationResult, RowResult
from .trace import TraceRecorder
from .watermark import Detector


class GroupEngine(Protocol):
    """What a group's result needs of the engine (engine/generate.py's Engine)."""

    @property
    def detector(self) -> Detector: ...

    def _row_results(self, history: list[tuple[torch.Tensor, ...]], reasons: list[str],
                     params: list[SamplingParams]) -> list[RowResult]: ...


@dataclass
class RowGroup:
    """One request's rows in the batch: rows first .. first + len(params) - 1."""

    first: int
    prompts: list[list[int]]  # one per row
    params: list[SamplingParams]
    sample_indices: list[int]
    started: float  # perf_counter when it started (or joined)
    forward_before: float  # the batch's forward seconds before it joined
    trace_before: float  # ... and its trace seconds
    prefill_seconds: float = 0.0  # its prompt's prefill (its share of the forwards is from there on)
    left: int = 0  # rows still running

    def __post_init__(self) -> None:
        self.left = len(self.params)

    def holds(self, row: int) -> bool:
        return self.first <= row < self.first + len(self.params)


class RowGroups:
    """The groups of one batch, in row order; `ended` says which end at a step and builds their results."""

    def __init__(self, prompts: list[list[int]], params: Sequence[SamplingParams], sample_indices: Sequence[int],
                 started: float, prefill_seconds: float):
        self.groups = [RowGroup(0, list(prompts), list(params), list(sample_indices), started, 0.0, 0.0,
                                prefill_seconds)]

    def add(self, prompt: list[int], params: Sequence[SamplingParams], sample_indices: Sequence[int],
            started: float, forward_seconds: float, prefill_seconds: float, recorder: TraceRecorder) -> None:
        """A Joining's rows, appended after every row so far (as engine/joining.py's join numbers them), that
        started joining at `started` (perf_counter), when the batch's forwards had taken `forward_seconds`; its
        prefill took `prefill_seconds`."""
        last = self.groups[-1]
        self.groups.append(RowGroup(last.first + len(last.params), [prompt] * len(params), list(params),
                                    list(sample_indices), started, forward_seconds, recorder.seconds, prefill_seconds))

    def ended(self, finished: list[int], engine: GroupEngine, history: list[tuple[torch.Tensor, ...]],
              reasons: list[str], recorder: TraceRecorder, forward_seconds: float
              ) -> tuple[tuple[int, GenerationResult], ...]:
        """(group index, its result) for each group whose last rows are among `finished` (row indices);
        `reasons`: why each row of the batch ended so far (by row index)."""
        ending = []
        for row in finished:
            index = self._group_of(row)
            self.groups[index].left -= 1
            if self.groups[index].left == 0:
                ending.append(index)
        return tuple((index, self._result(self.groups[index], engine, history, reasons, recorder, forward_seconds))
                     for index in sorted(ending))

    def _group_of(self, row: int) -> int:
        return next(i for i, group in enumerate(self.groups) if group.holds(row))

    def _result(self, group: RowGroup, engine: GroupEngine, history: list[tuple[torch.Tensor, ...]],
                reasons: list[str], recorder: TraceRecorder, forward_seconds: float) -> GenerationResult:
        n = len(group.params)
        columns = [torch.cat(column).cpu() for column in zip(*history)]  # [steps x rows emitted] each
        mine = (columns[0] >= group.first) & (columns[0] < group.first + n)
        own = [(columns[0][mine] - group.first, *(c[mine] for c in columns[1:]))]  # its rows numbered from 0
        rows = engine._row_results(own, reasons[group.first:group.first + n], group.params)
        trace = None
        if recorder.trace is not None:  # its rows' own steps, up to its longest row (as a run alone is trimmed)
            trace = recorder.trace.rows_of(group.first, n, max(len(r.token_ids) for r in rows))
        shared = all(p == group.prompts[0] for p in group.prompts)
        return GenerationResult(
            prompt_ids=list(group.prompts[0]), row_prompt_ids=None if shared else group.prompts, params=group.params,
            sample_indices=group.sample_indices, rows=rows, trace=trace, seconds=time.perf_counter() - group.started,
            forward_seconds=forward_seconds - group.forward_before, prefill_seconds=group.prefill_seconds,
            trace_seconds=recorder.seconds - group.trace_before, detector=engine.detector)
