"""Synthetic logits and token histories shared by the processor and sampler tests (no model needed)."""
from __future__ import annotations

import torch

from engine.params import SamplingParams
from engine.processors import apply_pipeline
from engine.rowstate import DecodeState, RowParams

V = 500  # vocabulary
B = 8  # rows
PROMPT_LEN = 12
EOS = [3, 7]


def random_logits(seed: int, few_left_row: bool = False) -> torch.Tensor:
    """[B, V] logits with the awkward rows processors must handle: ties at the top, tokens already removed,
    a very peaked and a flat row (and, with few_left_row, a row with only 100 tokens left)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, V, generator=g) * 3
    logits[0, :5] = 8.0  # ties at the top
    logits[1, 10:20] = float("-inf")  # already-removed tokens
    logits[2] = torch.randn(V, generator=g) * 30  # very peaked
    logits[3] = 0.0  # flat
    if few_left_row:
        logits[4, 100:] = float("-inf")  # few candidates left
    return logits


def random_tokens(seed: int, length: int, alphabet: int) -> torch.Tensor:
    """[B, length] token ids from a small alphabet, so that n-grams, prefixes and repeats are common."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, alphabet, (B, length), generator=g)


def pipeline(params: list[SamplingParams], logits: torch.Tensor, state: DecodeState, **lists) -> torch.Tensor:
    """Only the named sampler is on in these tests, so the pipeline runs just it (on the rows that use it)."""
    before = logits.clone()
    out = apply_pipeline(logits, state, RowParams.build(params, EOS, V, **lists))
    assert torch.equal(logits, before), "the pipeline changed its input in place"
    return out


def state_of(tokens: torch.Tensor, logprobs: torch.Tensor | None = None) -> DecodeState:
    return DecodeState.start(tokens[:, :PROMPT_LEN], V, tokens[:, PROMPT_LEN:], logprobs)
