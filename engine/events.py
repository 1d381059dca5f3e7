"""What a run streams while it decodes: a StepUpdate per step of the sampling rows, a BeamProgress per step of a
beam batch (a sweep's beam cells have no tokens to stream, only running beams that reorder every step)."""
from __future__ import annotations

from dataclasses import dataclass

from .results import GenerationResult


@dataclass
class StepUpdate:
    """Tokens chosen at one step. rows: indices of the rows that got a token; finished: rows that ended."""

    step: int
    rows: list[int]
    tokens: list[int]
    finished: list[int]
    raw_logprobs: list[float]  # per entry of `rows`: log p of its token under the raw model
    final_logprobs: list[float]  # ... and under the final (processed) distribution it was sampled from
    raw_top: list[list[tuple[int, float]]]  # per entry: the raw model's top-N (id, log p); empty without a trace
    finish_reasons: list[str]  # per entry of `finished`: "stop", "length", "cancelled" or "no_candidates"
    result: GenerationResult | None = None  # set on the last update only
    # with Engine.stream(group_results=True): (group, its own result) for each request whose last rows ended at
    # this step (group 0: the first rows, then each admitted Joining's; engine/row_groups.py)
    group_results: tuple[tuple[int, GenerationResult], ...] = ()


@dataclass
class RunningBeam:
    """A beam still being searched, shown in the place of an output row until the search ends."""

    token_ids: list[int]
    raw_logprobs: list[float]
    final_logprobs: list[float]


@dataclass
class BeamProgress:
    """One step of a beam batch: per output row of its cells, the running beam of that rank (best first)."""

    step: int  # 0-based, like StepUpdate.step
    beams: dict[int, RunningBeam]  # output row -> its running beam


Update = StepUpdate | BeamProgress  # what a sweep streams
