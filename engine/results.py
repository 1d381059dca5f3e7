"""What a finished run returns: one RowResult per row, in a GenerationResult with the run's prompt(s) and timings."""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from .params import SamplingParams
from .trace import Trace
from .watermark import Detector

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
    # assisted decoding (engine/assisted.py): tokens drafted, drafts accepted, forwards of the model the row took
    # part in (the prefill included); None when the row decoded one token per forward
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    target_forwards: int | None = None

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / drafted tokens; None without drafts."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else None
    # contrastive search (engine/contrastive.py): each token's degeneration penalty, its hidden state's highest
    # cosine similarity to an earlier position's
    degeneration_penalties: list[float] | None = None
    # constrained beam search: per force_words entry, whether the output holds it
    constraints_met: list[bool] | None = None
    # DoLa (engine/dola.py): per token, the premature layer its step contrasted the final layer with
    premature_layers: list[int] | None = None


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
    detector: Detector | None = None  # what watermark detection needs of the model (engine/watermark.py)

    def prompt_of(self, row: int) -> list[int]:
        return self.row_prompt_ids[row] if self.row_prompt_ids is not None else self.prompt_ids

    def watermark_scores(self, row: int, always: bool = False) -> dict[str, Any]:
        """The row's output scored under its own watermark settings: the green list's green fraction, z-score and
        p-value (transformers' WatermarkDetector) when watermark_bias is set or `always` (a sweep that watermarks
        some rows scores the others too, as the baseline), SynthID's mean g-value when synthid_keys are set;
        {} without a watermark or a detector."""
        if self.detector is None:
            return {}
        return self.detector.scores(self.rows[row].token_ids, self.params[row], always)

    @property
    def generated_tokens(self) -> int:
        return sum(len(r.token_ids) for r in self.rows)
