"""Text-valued knobs as token ids: a word's spellings (bad_words, sequence_bias), suppress lists, DRY's breakers.

Pure functions of a tokenizer (anything callable as `tokenizer(text, add_special_tokens=False)["input_ids"]`);
they know nothing of SamplingParams, so every module that turns knobs into tensors or exports can use them.
"""
from __future__ import annotations

from typing import Any


def word_variants(tokenizer: Any, text: str) -> list[list[int]]:
    """Token-id sequences for a word as written and with a leading space (how it appears mid-sentence)."""
    variants: list[list[int]] = []
    for variant in (text, " " + text.lstrip(" ")):
        ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if ids and ids not in variants:
            variants.append(ids)
    return variants


def token_ids(tokenizer: Any, items: tuple[str | int, ...]) -> list[int]:
    """suppress_tokens / begin_suppress_tokens as token ids: an id as given, a text as every token of each of
    its spellings (word_variants: as written and with a leading space); each id once, in order of appearance."""
    ids: dict[int, None] = {}
    for item in items:
        spelled = [[item]] if isinstance(item, int) else word_variants(tokenizer, item)
        ids.update((token, None) for variant in spelled for token in variant)
    return list(ids)


def sequence_breaker_ids(tokenizer: Any, breakers: tuple[str, ...]) -> list[int]:
    """DRY's sequence breakers as token ids, the way text-generation-webui makes them (sampler_hijack.py):
    the last token of "a" + breaker, so that the breaker is tokenized as it appears after other text."""
    ids = []
    for breaker in breakers:
        tokens = tokenizer("a" + breaker, add_special_tokens=False)["input_ids"]
        if tokens and tokens[-1] not in ids:
            ids.append(tokens[-1])
    return ids
