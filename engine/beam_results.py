"""What the beam searches (engine/beams.py, engine/group_beams.py) yield while they run and return at the end."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

import torch

from .params import SamplingParams

NEG = -1.0e9  # transformers' "impossible" score: a beam or hypothesis with it never wins


@dataclass
class BeamSequence:
    token_ids: list[int]  # generated tokens (no padding; the EOS that ended it included)
    # transformers' sequences_scores: sum of log-probs / length ** length_penalty; None when the processors
    # removed every continuation before any hypothesis finished (no sequence: finish_reason "no_candidates")
    score: float | None
    text: str
    raw_logprobs: list[float]  # log p of each token under the unmodified model
    final_logprobs: list[float]  # the processed log-prob beam search added to the score for each token
    raw_entropies: list[float]  # entropy (nats) of the raw distribution at each step of this hypothesis
    # diverse beam search: per step, the tokens the beams of earlier groups chose (diversity_penalty's input),
    # and the group this hypothesis grew in
    peer_tokens: list[list[int]] | None = None
    group: int | None = None
    # constrained beam search: per force_words entry, whether the output holds it (one of its spellings)
    constraints_met: list[bool] | None = None

    @classmethod
    def none_possible(cls) -> "BeamSequence":
        return cls([], None, "", [], [], [])

    @classmethod
    def of(cls, token_ids: list[int], score: float, text: str, stats: torch.Tensor,
           peer_tokens: list[list[int]] | None = None, group: int | None = None,
           constraints_met: list[bool] | None = None) -> "BeamSequence":
        """stats: [n, 3] per token: raw log p, processed log p, raw entropy."""
        return cls(token_ids, score, text, stats[:, 0].tolist(), stats[:, 1].tolist(), stats[:, 2].tolist(),
                   peer_tokens, group, constraints_met)


@dataclass
class BeamResult:
    params: SamplingParams
    sequences: list[BeamSequence]  # num_return_sequences of them, best first


@dataclass
class BeamStep:
    """A beam batch after one step: per configuration its running beams, best first (for a live view; the
    results, with the finished hypotheses, come when the search ends)."""

    step: int  # steps done
    tokens: torch.Tensor  # [b, W, step] long, on the model's device (never changed in place afterwards)
    logprobs: torch.Tensor  # [b, W, step, 2]: raw and processed log-prob of each token


# A beam search as a generator: yields a BeamStep after each step, returns the results.
BeamSteps = Generator[BeamStep, None, list[BeamResult]]
