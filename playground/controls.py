"""Every SamplingParams knob as a widget description: group, kind, range and a one-line `info`.

The widgets are declared with the knobs (engine/knobs.py); CONTROLS lists them in the page's order: the UI
builds widgets from CONTROLS, passes their values back in the same order, and `params_from_values` turns them
into validated SamplingParams. Text fields (stop, bad_words, suppress_tokens, begin_suppress_tokens,
sequence_bias, logit_bias, dry_sequence_breakers, order) have one textual form, parsed and printed here;
synthid_keys' text ("654, 400, 836") is read by SamplingParams itself.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from engine.knobs import GROUPS, Widget, page_knobs  # noqa: F401  (GROUPS: the page's order of groups)
from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import NUMERIC_FIELDS, SamplingParams, TOKEN_LIST_FIELDS, from_dict

EARLY_STOPPING_CHOICES = ("false", "true", "never")  # transformers' early_stopping: False, True or "never"


@dataclass(frozen=True)
class Control(Widget):
    """One knob's widget on the page: the Widget engine/knobs.py declares for it (group, kind - "slider",
    "number", "checkbox", "text" or "choice" -, info, drag range, placeholder) and the field it sets."""

    field: str = ""


# The parameter panel, group by group (engine/knobs.py declares each knob's widget with its processor).
CONTROLS: tuple[Control, ...] = tuple(Control(**dataclasses.asdict(k.widget), field=k.name)
                                      for k in page_knobs() if k.widget is not None)
CONTROL_FIELDS: tuple[str, ...] = tuple(c.field for c in CONTROLS)
ORDER_INFO = ("The order the processors run in. Remove a name and add it back to move it to the end; "
              "a partial list swaps just the named processors among their default places.")


# -- text forms of the list-valued knobs ----------------------------------------------------------------------

def parse_word_list(field: str, text: str) -> tuple[str, ...]:
    """"very, really" -> ("very", "really")."""
    if not isinstance(text, str):
        raise ParamError(field, "comma-separated words", text)
    return tuple(w.strip() for w in text.split(",") if w.strip())


def parse_token_list(field: str, text: str) -> tuple[str | int, ...]:
    """"very, [42]" -> ("very", 42): comma-separated words, a token id in brackets (suppress_tokens)."""
    items: list[str | int] = []
    for word in parse_word_list(field, text):
        inner = word[1:-1].strip()
        items.append(int(inner) if word.startswith("[") and word.endswith("]") and inner.isascii() and inner.isdigit()
                     else word)
    return tuple(items)


def format_token_list(items: Sequence[str | int]) -> str:
    """The inverse of parse_token_list."""
    return ", ".join(f"[{item}]" if isinstance(item, int) else item for item in items)


def parse_stop(text: str) -> tuple[str, ...]:
    r"""One stop string per line; the two characters \n inside a line mean a newline."""
    return parse_lines("stop", text)


def parse_lines(field: str, text: str) -> tuple[str, ...]:
    r"""One string per line (stop, dry_sequence_breakers); the two characters \n inside a line mean a newline.

    Lines keep their spaces (a breaker may be " "); empty lines are dropped.
    """
    if not isinstance(text, str):
        raise ParamError(field, "one string per line", text)
    return tuple(line.replace("\\n", "\n") for line in text.splitlines() if line)


def parse_sequence_bias(text: str) -> dict[str, float]:
    """`word: bias` per line (or a JSON object) -> {word: bias}."""
    return _parse_bias_lines("sequence_bias", text, "word", "the: -5")


def parse_logit_bias(text: str) -> dict[str, float]:
    """`token id: bias` per line (or a JSON object) -> {"id": bias}; SamplingParams checks the ids and range."""
    return _parse_bias_lines("logit_bias", text, "token id", "2: -100")


def _parse_bias_lines(field: str, text: str, key: str, example: str) -> dict[str, float]:
    """`key: number` per line, split at the last colon (or a JSON object)."""
    if not isinstance(text, str):
        raise ParamError(field, f"`{key}: bias` lines", text)
    if text.strip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            raise ParamError(field, f'a JSON object such as {{"{example.split(":")[0]}": {example.split(": ")[1]}}}', text) from None
    bias: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        word, sep, number = line.rpartition(":")
        try:
            value = float(number) if sep else math.nan
        except ValueError:
            value = math.nan
        if not sep or not word.strip() or math.isnan(value):
            raise ParamError(field, f"one `{key}: number` per line (e.g. `{example}`)", line)
        bias[word.strip()] = value
    return bias


def parse_force_words(text: str) -> tuple[tuple[str, ...], ...]:
    """force_words: one constraint per line, its alternatives separated by | ("Paris | London": either)."""
    if not isinstance(text, str):
        raise ParamError("force_words", "one word (or `a | b` alternatives) per line", text)
    lines = [tuple(w.strip() for w in line.split("|") if w.strip()) for line in text.splitlines()]
    return tuple(line for line in lines if line)


def format_force_words(force_words: Sequence[Sequence[str]]) -> str:
    """The inverse of parse_force_words."""
    return "\n".join(" | ".join(texts) for texts in force_words)


def format_stop(stop: Sequence[str]) -> str:
    """The inverse of parse_lines: one string per line, a newline inside one shown as the two characters \\n."""
    return "\n".join(s.replace("\n", "\\n") for s in stop)


def format_sequence_bias(bias: Sequence[tuple[str, float]]) -> str:
    return "\n".join(f"{word}: {_bias_text(value)}" for word, value in bias)


def _bias_text(value: float) -> str:
    """Short (`-5`, `-inf`) where that reads back exactly, else every digit (`0.123456789`)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


# -- widgets <-> SamplingParams ---------------------------------------------------------------------------

def params_from_values(values: Sequence[Any], order: Sequence[str] | None) -> SamplingParams:
    """Widget values (in CONTROLS order) and the order list -> validated SamplingParams (ParamError names the field)."""
    if len(values) != len(CONTROLS):
        raise ParamError("controls", f"{len(CONTROLS)} values", len(values))
    raw = dict(zip(CONTROL_FIELDS, values))
    fields: dict[str, Any] = {}
    for control in CONTROLS:
        value = raw[control.field]
        if control.field in ("stop", "dry_sequence_breakers"):
            value = parse_lines(control.field, value or "")
        elif control.field == "bad_words":
            value = parse_word_list("bad_words", value or "")
        elif control.field == "force_words":
            value = parse_force_words(value or "")
        elif control.field in TOKEN_LIST_FIELDS:
            value = parse_token_list(control.field, value or "")
        elif control.field == "sequence_bias":
            value = parse_sequence_bias(value or "")
        elif control.field == "logit_bias":
            value = parse_logit_bias(value or "")
        elif control.field == "early_stopping":
            if value not in EARLY_STOPPING_CHOICES:
                raise ParamError("early_stopping", f"one of {list(EARLY_STOPPING_CHOICES)}", value)
            value = {"false": False, "true": True, "never": "never"}[value]
        elif control.kind in ("slider", "number"):
            if value is None or value == "":
                raise ParamError(control.field, "a number", value)
            value = _number(control.field, value)
        fields[control.field] = value
    fields["order"] = list(order) if order else list(DEFAULT_ORDER)
    return from_dict(fields)


def values_from_params(params: SamplingParams) -> list[Any]:
    """SamplingParams -> widget values in CONTROLS order (the inverse of params_from_values)."""
    return [widget_value(control.field, getattr(params, control.field)) for control in CONTROLS]


def widget_value(field: str, value: Any) -> Any:
    """One field's value as its widget shows it: the text form of the list-valued knobs, others as they are."""
    if field in ("stop", "dry_sequence_breakers"):
        return format_stop(value)
    if field == "bad_words":
        return ", ".join(value)
    if field == "force_words":
        return format_force_words(value)
    if field in TOKEN_LIST_FIELDS:
        return format_token_list(value)
    if field == "sequence_bias":
        return format_sequence_bias(value)
    if field == "logit_bias":
        return format_sequence_bias([(str(token), bias) for token, bias in value])
    if field == "early_stopping":
        return {False: "false", True: "true", "never": "never"}[value]
    if field == "synthid_keys":  # "654, 400, 836" (SamplingParams reads the text back)
        return ", ".join(str(key) for key in value)
    if field == "dola_layers":  # "high" or "16, 18" (SamplingParams reads the text back)
        return value if isinstance(value, str) else ", ".join(str(layer) for layer in value)
    return value


def _number(field: str, value: Any) -> float | int:
    """Widgets send floats or numeric strings (the API, or preprocess=False); keep ints as ints."""
    if isinstance(value, bool):
        raise ParamError(field, "a number", value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ParamError(field, "a number", value) from None
    if isinstance(value, float) and value.is_integer() and NUMERIC_FIELDS[field][0] is int:
        return int(value)
    return value
