"""Forced first tokens: how a branch keeps its parent's prefix and takes another choice.

A branch of an output is the same row (same prompt, settings, seed and sample index) whose first k tokens are
given: the parent's tokens up to the fork and the chosen alternative. The loop decodes those steps as usual (the
processors see them, the penalties and mirostat's mu are updated by them, their log-probabilities are reported)
but takes the given token instead of the sampled one. Step numbering therefore continues, and with it the noise
stream (the noise is a function of seed, sample index, step and token): after the forced steps the branch draws
exactly the random numbers its parent drew, so it differs from the parent only by the forced choice. A branch
that forces the token its parent chose continues exactly as the parent did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import ParamError
from .params import SamplingParams

FREE = -1  # no forced token for this row at this step


@dataclass(frozen=True)
class ForcedTokens:
    """Per row, the tokens it must take at steps 0, 1, ...; FREE where it samples as usual."""

    tokens: torch.Tensor  # [B, K] long

    @staticmethod
    def build(forced: Sequence[Sequence[int]] | None, params: Sequence[SamplingParams], vocab_size: int,
              device: torch.device | str) -> "ForcedTokens | None":
        """Validate one token list per row (an empty one for a free row); None when no row is forced."""
        if forced is None:
            return None
        if len(forced) != len(params):
            raise ParamError("prefix", f"one token list per row ({len(params)})", len(forced))
        for row, (tokens, p) in enumerate(zip(forced, params)):
            check_prefix(tokens, p.max_new_tokens, vocab_size, f"prefix of row {row}")
        width = max((len(t) for t in forced), default=0)
        if width == 0:
            return None
        table = torch.full((len(forced), width), FREE, dtype=torch.long)
        for row, tokens in enumerate(forced):
            table[row, :len(tokens)] = torch.tensor(list(tokens), dtype=torch.long)
        return ForcedTokens(table.to(device))

    def at(self, row_ids: torch.Tensor, step: int) -> torch.Tensor | None:
        """[b] the forced token of each unfinished row at this step (FREE for none); None past every prefix."""
        if step >= self.tokens.shape[1]:
            return None
        return self.tokens[row_ids, step]


def check_prefix(tokens: object, max_new_tokens: int, vocab_size: int, field: str = "prefix") -> list[int]:
    """A forced prefix: whole token ids in the vocabulary, no longer than max_new_tokens (it counts as new)."""
    if not isinstance(tokens, (list, tuple)):
        raise ParamError(field, "a list of token ids", tokens)
    for token in tokens:
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < vocab_size:
            raise ParamError(field, f"token ids in [0, {vocab_size - 1}]", token)
    if len(tokens) > max_new_tokens:
        raise ParamError(field, f"at most max_new_tokens ({max_new_tokens}) tokens: the prefix counts as "
                                f"new tokens", len(tokens))
    return list(tokens)
