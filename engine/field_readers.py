"""The list-valued fields of SamplingParams read into their canonical tuples (texts, token lists, biases, keys,
forced words), each refusing bad input with a ParamError naming the field, the allowed form and the value.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

from .errors import ParamError, check_text, check_whole
from .knobs import DOLA_PRESETS, MAX_KEY, MAX_LAYER, MAX_SEQUENCE_BIAS, MAX_SYNTHID_KEYS, MAX_TOKEN_ID
from .knobs import fmt_number as _fmt
from .tokens import word_variants


def str_tuple(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ParamError(name, "a list of non-empty strings", value)
    for text in value:
        check_text(name, text)
    return tuple(value)


def token_tuple(name: str, value: Any) -> tuple[str | int, ...]:
    """Texts (non-empty, valid Unicode) and token ids (whole numbers in [0, MAX_TOKEN_ID]; the engine checks them
    against the model's vocabulary), one of them alone or a list."""
    items = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value
    if not isinstance(items, (list, tuple)):
        raise ParamError(name, f"a list of texts and token ids (whole numbers in [0, {MAX_TOKEN_ID}])", value)
    for item in items:
        if isinstance(item, str):
            check_text(name, item)
        else:
            check_whole(name, item, 0, MAX_TOKEN_ID)
    return tuple(items)


def keys_tuple(value: Any) -> tuple[int, ...]:
    """SynthID's keys: whole numbers in [0, 2^63 - 1], one per tournament layer (at most MAX_SYNTHID_KEYS); a list,
    one number, or their text "654, 400, 836" (what --set and the page's box give)."""
    allowed = (f"a list of at most {MAX_SYNTHID_KEYS} whole numbers in [0, {MAX_KEY}] (e.g. [654, 400, 836]; "
               f"empty = off)")
    if isinstance(value, str):
        parts = [part.strip() for part in value.strip().strip("[]").split(",")]
        if parts == [""]:
            return ()
        if not all(re.fullmatch(r"[0-9]{1,19}", part) for part in parts):
            raise ParamError("synthid_keys", allowed, value)
        value = [int(part) for part in parts]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) > MAX_SYNTHID_KEYS:
        raise ParamError("synthid_keys", allowed, value)
    for key in value:
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        check_whole("synthid_keys", key, 0, MAX_KEY)
    return tuple(int(key) for key in value)
def force_words_tuple(value: Any) -> tuple[tuple[str, ...], ...]:
    """force_words: a text (one constraint), or a list whose items are a text (a phrase the output must contain)
    or a list of texts (alternatives: one of them must appear) -> a tuple of constraints, each a tuple of texts."""
    allowed = 'a list of texts and lists of alternative texts, e.g. ["Paris", ["London", "Rome"]]'
    if isinstance(value, str) and not value.strip():
        return ()  # a blank text: off (a sweep axis value, an empty box)
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ParamError("force_words", allowed, value)
    out = []
    for item in items:
        texts = (item,) if isinstance(item, str) else item
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ParamError("force_words", allowed + " (no empty text or list)", item)
        for text in texts:
            check_text("force_words", text)
        out.append(tuple(dict.fromkeys(texts)))
    return tuple(out)


def breakers_tuple(value: Any) -> tuple[str, ...]:
    """DRY's sequence breakers: a list of strings, or text-generation-webui's text form of one
    ('"\\n", ":", "\\"", "*"' or a JSON array), so its settings carry over; any other string is one breaker."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value if value.lstrip().startswith("[") else f"[{value}]")
        except (ValueError, RecursionError):  # RecursionError: brackets nested too deep are one breaker
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(v, str) and v for v in parsed):
            value = parsed
    return str_tuple("dry_sequence_breakers", value)


def bias_tuple(value: Any) -> tuple[tuple[str, float], ...]:
    allowed = f"a mapping of text -> number in [-{_fmt(MAX_SEQUENCE_BIAS)}, {_fmt(MAX_SEQUENCE_BIAS)}] or -inf (a ban)"
    items = value.items() if isinstance(value, dict) else value
    try:
        pairs = tuple((str(t), float(b)) for t, b in items)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a whole number beyond float64
        raise ParamError("sequence_bias", allowed, value) from None
    for text, bias in pairs:
        check_text("sequence_bias", text)
        if not (abs(bias) <= MAX_SEQUENCE_BIAS or bias == -math.inf):
            raise ParamError("sequence_bias", f"biases in [-{_fmt(MAX_SEQUENCE_BIAS)}, {_fmt(MAX_SEQUENCE_BIAS)}] "
                                              f"or -inf (a ban)", {text: bias})
    return pairs


def logit_bias_tuple(value: Any) -> tuple[tuple[int, float], ...]:
    """OpenAI's logit_bias: {"token id": bias} (keys may be strings, as JSON requires), bias in [-100, 100]."""
    allowed = 'a mapping of token id -> number in [-100, 100], e.g. {"50256": -100}'
    items = value.items() if isinstance(value, dict) else value
    try:
        pairs = [(k, b) for k, b in items]
    except (TypeError, ValueError):
        raise ParamError("logit_bias", allowed, value) from None
    out = []
    for key, bias in pairs:
        # a key is a token id: ASCII digits only ("²".isdigit() is true, and int() refuses it), at most int64
        token = int(key) if isinstance(key, str) and re.fullmatch(r"[0-9]{1,19}", key.strip()) else key
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < 2**63:
            raise ParamError("logit_bias", 'keys that are token ids (whole numbers >= 0, e.g. "50256")', key)
        if not isinstance(bias, (int, float)) or isinstance(bias, bool) or not -100 <= bias <= 100:
            raise ParamError("logit_bias", "biases in [-100, 100]", {key: bias})
        out.append((token, float(bias)))
    return tuple(out)


def dola_layers_value(value: Any) -> str | tuple[int, ...]:
    """dola_layers: "" (off; None too), "low", "high", or layer numbers: a list, one number, or their text
    "16, 18" / "[16, 18]" (what --set and the page's box give) -> "", "low", "high" or a tuple of distinct ints."""
    allowed = (f'"low", "high", or a list of layer numbers in [0, {MAX_LAYER}] (e.g. [16, 18]; the model\'s own '
               f'layer count is checked when the run starts); empty = off')
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        if text in ("", *DOLA_PRESETS):
            return text
        parts = [part.strip() for part in text.strip("[]").split(",")]
        if not all(re.fullmatch(r"[0-9]{1,5}", part) for part in parts):
            raise ParamError("dola_layers", allowed, value)
        value = [int(part) for part in parts]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ParamError("dola_layers", allowed, value)
    for layer in value:
        check_whole("dola_layers", layer, 0, MAX_LAYER)
    return tuple(dict.fromkeys(int(layer) for layer in value))  # a layer named twice is one candidate


def force_words_ids(tokenizer: Any, force_words: Sequence[Sequence[str]]) -> list[list[int] | list[list[int]]]:
    """transformers' force_words_ids: per constraint, the token ids of every spelling of its texts (each text as
    written and with a leading space, as bad_words: tokens.word_variants); one spelling -> a phrase [ids], several
    -> a disjunctive list [[ids], ...]. Refused when one spelling is the start of another (transformers'
    DisjunctiveConstraint cannot hold both)."""
    out: list[list[int] | list[list[int]]] = []
    for texts in force_words:
        spellings: list[list[int]] = []
        for text in texts:
            spellings += [ids for ids in word_variants(tokenizer, text) if ids not in spellings]
        if not spellings:
            raise ParamError("force_words", "texts that have tokens", list(texts))
        for a in spellings:
            for b in spellings:
                if a is not b and b[:len(a)] == a:
                    raise ParamError("force_words", "alternatives none of whose spellings (as written and with a "
                                     f"leading space) is the start of another (here {a} starts {b})", list(texts))
        out.append(spellings[0] if len(spellings) == 1 else spellings)
    return out
