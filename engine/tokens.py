"""Text-valued knobs as token ids: a word's spellings (bad_words, sequence_bias), suppress lists, DRY's breakers.

Pure functions of a tokenizer (anything callable as `tokenizer(text, add_special_tokens=False)["input_ids"]`);
they know nothing of SamplingParams, so every module that turns knobs into tensors or exports can use them.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
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


# llama.cpp's limits on its breakers (llama_sampler_init_dry): a breaker's text is cut to 40 bytes, the tokens
# after a breaker's first token ("tail") to 20.
LLAMA_CPP_MAX_BREAKER_BYTES = 40
LLAMA_CPP_MAX_TAIL_TOKENS = 20


@dataclass(frozen=True)
class RestartSequences:
    """DRY's breakers the way llama.cpp makes them (get_overlapping_token_sequences in src/llama-sampling.cpp).

    single: every token whose text contains a breaker: a breaker on its own (and never penalized itself).
    tails: {tail: heads}: a token whose text ends with the beginning of a breaker (a head), followed by the
    tokens of the breaker's rest (the tail), is a breaker sequence too (a breaker of several characters split
    over tokens). With one-character breakers (the default ones) there are no tails.
    """

    single: tuple[int, ...]
    tails: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()  # (tail token ids, head token ids)


def restart_sequences(tokenizer: Any, breakers: tuple[str, ...], vocab_size: int | None = None) -> RestartSequences:
    """llama.cpp's breaker processing for this tokenizer: each token's text (its bytes, special tokens as
    written) is searched for each breaker (cut to 40 bytes); a tail is the breaker's rest tokenized without
    special tokens (cut to 20 tokens). Token ids at or above `vocab_size` are left out."""
    texts = token_bytes(tokenizer)
    if vocab_size is not None:
        texts = texts[:vocab_size]
    single: set[int] = set()
    tails: dict[tuple[int, ...], set[int]] = {}
    for breaker in breakers:
        needle = breaker.encode("utf-8")[:LLAMA_CPP_MAX_BREAKER_BYTES]
        if not needle:
            continue
        for token, word in enumerate(texts):
            if needle in word:
                single.add(token)
                continue
            pos = word.find(needle[:1])
            while pos != -1:  # the word's end from pos on equals the breaker's beginning
                overlap = len(word) - pos
                if word[pos:] == needle[:overlap]:
                    rest = needle[overlap:].decode("utf-8", errors="replace")
                    tail = tuple(tokenizer(rest, add_special_tokens=False)["input_ids"][:LLAMA_CPP_MAX_TAIL_TOKENS])
                    tails.setdefault(tail, set()).add(token)
                pos = word.find(needle[:1], pos + 1)
    return RestartSequences(tuple(sorted(single)), tuple((tail, tuple(sorted(heads))) for tail, heads in sorted(tails.items())))


_TOKEN_BYTES: "weakref.WeakKeyDictionary[Any, list[bytes]]" = weakref.WeakKeyDictionary()


def token_bytes(tokenizer: Any) -> list[bytes]:
    """Each token id's text as bytes, as llama.cpp's detokenizer gives it for one token (special tokens as
    written). Byte-level BPE tokenizers (GPT-2 style, as the bundled model's) are read byte for byte, so a token
    holding part of a UTF-8 character keeps its bytes; others decode each id alone. Cached per tokenizer."""
    try:
        return _TOKEN_BYTES[tokenizer]
    except (KeyError, TypeError):
        pass
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    decoder = {char: byte for byte, char in _bytes_to_unicode().items()}
    texts: list[bytes] = []
    for token, piece in enumerate(pieces):
        if isinstance(piece, str) and piece and all(char in decoder for char in piece):
            texts.append(bytes(decoder[char] for char in piece))
        else:
            texts.append(tokenizer.decode([token]).encode("utf-8"))
    # not a byte-level vocabulary after all (e.g. sentencepiece's "▁"): decode every id alone
    sample = [t for t in range(min(size, 2000)) if texts[t].isascii()][:200]
    if any(tokenizer.decode([t], clean_up_tokenization_spaces=False).encode("utf-8") != texts[t] for t in sample):
        texts = [tokenizer.decode([t], clean_up_tokenization_spaces=False).encode("utf-8") for t in range(size)]
    try:
        _TOKEN_BYTES[tokenizer] = texts
    except TypeError:
        pass
    return texts


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters (the byte-level BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))
