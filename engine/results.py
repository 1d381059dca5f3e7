"""What a finished run returns: one RowResult per row, in a GenerationResult with the run's prompt(s) and timings."""
from __future__ import annotations

from dataclasses import dataclass

from .params import SamplingParams
from .trace import Trace

# no_candidates: the processors removed every token; time: the run passed the row's max_time
FINISH_REASONS = ("length", "stop", "cancelled", "no_candidates", "time")


@dataclass
class RowResult:
    token_ids: list[int]
    text: str
    raw_logprobs: list[float]  # log p of each chosen token under the unmodified model
    final_logprobs: list[float]  # log p of each chosen token under the final (processed) distribution
    raw_entropies: list[float]  # entropy (nats) of the raw distribution at each step
    finish_reason: str  # "stop" (EOS or stop string), "length", "cancelled", "no_candidates" (nothing left), "time"
    beam_score: float | None = None  # a beam row's sequence score (transformers' sequences_scores)
    # diverse beam search: per step, the tokens the earlier groups' beams chose (what diversity_penalty saw),
    # and the beam group the output grew in
    peer_tokens: list[list[int]] | None = None
    beam_group: int | None = None
    # adaptive-P rows: each token's probability under the distribution adaptive-P received (its feedback)
    adaptive_probs: list[float] | None = None
    # contrastive search (engine/contrastive.py): each token's degeneration penalty, its hidden state's highest
    # cosine similarity to an earlier position's
    degeneration_penalties: list[float] | None = None
    # constrained beam search: per force_words entry, whether the output holds it
    constraints_met: list[bool] | None = None


@dataclass
class GenerationResult:
    prompt_ids: list[int]
    params: list[SamplingParams]
    sample_indices: list[int]
    rows: list[RowResult]
    trace: Trace | None
    seconds: float
    forward_seconds: float  # the model's forwards: the prefill and every decode step
    row_prompt_ids: list[list[int]] | None = None  # one prompt per row when the rows' prompts differ
    prefill_seconds: float = 0.0  # of forward_seconds, the prompt's prefill
    trace_seconds: float = 0.0  # summarising the stages for the trace (0 without one)

    def prompt_of(self, row: int) -> list[int]:
        return self.row_prompt_ids[row] if self.row_prompt_ids is not None else self.prompt_ids

    @property
    def generated_tokens(self) -> int:
        return sum(len(r.token_ids) for r in self.rows)
