"""Classifier-free guidance's unconditional companions: one extra row of the batch per guided row.

transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor runs a second model call per step on the
unconditional context: `negative_prompt_ids`, or by default the last token of the input ids at the first step,
then each newly chosen token. Here every row with guidance_scale != 1 gets a companion row in the same batch
forward: its KV cache holds that context (companions with the same context share its prefill, as rows with the
same prompt do), and it is fed the row's chosen token at every step. Its logits reach the `guidance` processor as
DecodeState.unconditional_logits. The companions sit after the rows in the cache, in the order of their rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import ParamError
from .params import SamplingParams, negative_prompt_ids


def unconditional_context(tokenizer, params: SamplingParams, prompt: Sequence[int],
                          negatives: dict[str, list[int]] | None = None) -> list[int] | None:
    """The unconditional context of a row (None without guidance): the negative prompt tokenized as raw text, or
    the prompt's last token (transformers' default, `input_ids[:, -1:]` at the first step). `negatives` caches
    the tokenized negative prompts by text."""
    if params.guidance_scale == 1.0:
        return None
    if not params.negative_prompt:
        return list(prompt[-1:])
    if negatives is None:
        return negative_prompt_ids(tokenizer, params.negative_prompt)
    if params.negative_prompt not in negatives:
        negatives[params.negative_prompt] = negative_prompt_ids(tokenizer, params.negative_prompt)
    return negatives[params.negative_prompt]


def unconditional_contexts(tokenizer, params: Sequence[SamplingParams], prompts: Sequence[Sequence[int]],
                           context_length: int) -> list[list[int] | None]:
    """Every row's unconditional context (None: no guidance), refused when it and the row's new tokens do not fit
    the model's context."""
    negatives: dict[str, list[int]] = {}
    contexts = [unconditional_context(tokenizer, p, prompt, negatives) for p, prompt in zip(params, prompts)]
    for p, context in zip(params, contexts):
        if context is not None and len(context) + p.max_new_tokens > context_length:
            raise ParamError("negative_prompt", f"at most {context_length} tokens together with max_new_tokens "
                             f"({len(context)} negative prompt + {p.max_new_tokens} new)", len(context) + p.max_new_tokens)
    return contexts


@dataclass
class Companions:
    """Which rows of the batch have a companion: `rows` [g] long, each companion's row (current row index), in
    the order the companions sit in the cache after the b rows; `logits` [g, V] their newest logits."""

    rows: torch.Tensor
    logits: torch.Tensor

    @staticmethod
    def start(contexts: Sequence[list[int] | None], logits: torch.Tensor | None,
              device: torch.device) -> "Companions | None":
        guided = [i for i, c in enumerate(contexts) if c is not None]
        if not guided or logits is None:
            return None
        return Companions(torch.tensor(guided, dtype=torch.long, device=device), logits)

    def unconditional_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """[b, V]: each guided row's companion logits; the other rows keep their own (never read)."""
        return logits.index_copy(0, self.rows, self.logits)

    def fed(self, chosen: torch.Tensor) -> torch.Tensor:
        """The tokens of the whole batch's forward: the rows' [b], then each companion's row's token [g]."""
        return torch.cat([chosen, chosen[self.rows]])

    def keep(self, keep: torch.Tensor, batch: int) -> tuple[torch.Tensor, "Companions | None"]:
        """Rows `keep` [b'] (indices among `batch` rows) stay: the cache rows to keep (the rows, then the
        companions of the rows that stay) and the companions left (None when no guided row is left)."""
        new_index = torch.full((batch,), -1, dtype=torch.long, device=keep.device)
        new_index[keep] = torch.arange(keep.numel(), device=keep.device)
        stays = new_index[self.rows] >= 0  # [g]
        cache_rows = torch.cat([keep, batch + stays.nonzero()[:, 0]])
        if not bool(stays.any()):
            return cache_rows, None
        return cache_rows, Companions(new_index[self.rows[stays]], self.logits[stays])

    def split(self, logits: torch.Tensor, batch: int) -> torch.Tensor:
        """A forward's logits [b + g, V] -> the rows' [b, V]; the companions' are kept here."""
        self.logits = logits[batch:]
        return logits[:batch]
