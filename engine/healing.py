"""Token healing (transformers' `token_healing=True`, GenerationMixin.heal_tokens), for one prompt.

A prompt that ends mid-word ("The link is http") ends on a token the model rarely sees there: in training the
text was tokenized whole, so "https" is one token and "http" followed by "s" almost never occurs. Healing
backs up one token and lets the model choose again among the tokens whose text starts with the removed one
(" http" -> " https", " http", ...), so the output continues from a natural tokenization.

transformers' steps, kept here one for one:
1. decode the prompt without special tokens, strip surrounding whitespace and tokenize it again;
2. the last token's text, with spaces written as the vocabulary writes them, is a prefix: every vocabulary
   entry that starts with it is an "extension" (the token itself is one);
3. if there are other extensions, the greedy next token after the prompt minus its last token, with +10 on
   every extension's logit and +11 on the original (a slight preference against over-eager healing, as in
   transformers), replaces the last token.

One difference, on purpose: transformers finds the space marker with `convert_tokens_to_ids(" ")`, which in a
byte-level BPE vocabulary (this model's) is the unknown token `<|endoftext|>`, so its prefix search looks for
"<http" and healing never happens. Here the marker is what the tokenizer makes of " " ("Ġ"). With that marker
given to transformers too, both heal alike (tests/test_healing.py checks it against `heal_tokens`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from .models import LoadedModel

EXTENSION_BIAS = 10.0  # transformers' sequence_bias for every extension of the tail
ORIGINAL_BONUS = 1.0  # and a little more for the tail token itself


@torch.inference_mode()
def heal_prompt(loaded: LoadedModel, prompt_ids: tuple[int, ...]) -> list[int]:
    """The healed prompt: the same text re-tokenized, its last token replaced by the greedy extension."""
    tokenizer = loaded.tokenizer
    text = tokenizer.decode(list(prompt_ids), skip_special_tokens=True).strip()
    ids = tokenizer(text).input_ids if text else []
    if tokenizer.bos_token_id is not None and tokenizer.pad_token_id is not None:  # do not condition on bos
        ids = [tokenizer.pad_token_id if t == tokenizer.bos_token_id else t for t in ids]
    if len(ids) < 2:  # nothing before the tail to choose again from
        return ids or list(prompt_ids)
    tail = ids[-1]
    extensions = _extensions(loaded, tail)
    if len(extensions) < 2:  # only the tail itself: nothing to heal with
        return ids
    logits = loaded.model(input_ids=torch.tensor([ids[:-1]], device=loaded.device),
                          logits_to_keep=1).logits[0, -1].float()  # [V]
    bias = torch.zeros_like(logits)
    bias[torch.tensor(extensions, device=logits.device)] = EXTENSION_BIAS
    bias[tail] += ORIGINAL_BONUS
    return ids[:-1] + [int((logits + bias).argmax())]


def _extensions(loaded: LoadedModel, token: int) -> list[int]:
    """The vocabulary entries whose text starts with `token`'s text (spaces as the vocabulary writes them)."""
    prefix = loaded.tokenizer.decode([token]).replace(" ", _space_marker(loaded.tokenizer))
    return [i for piece, i in _vocabulary(loaded.tokenizer) if piece.startswith(prefix)]


@lru_cache(maxsize=4)
def _vocabulary(tokenizer: Any) -> tuple[tuple[str, int], ...]:
    """(piece, id) of every entry of the tokenizer's vocabulary, built once per tokenizer."""
    return tuple(tokenizer.get_vocab().items())


@lru_cache(maxsize=4)
def _space_marker(tokenizer: Any) -> str:
    """How the vocabulary writes a space: "Ġ" in byte-level BPE, "▁" in SentencePiece."""
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(" ", add_special_tokens=False))
    return pieces[0] if len(pieces) == 1 and pieces[0] else " "
