"""Parameter values as text: what a person types (command line, sweep axis box, share link) and back.

One place for the text syntax, so the command line, the UI's axis boxes and share links all read values the
same way: a value is JSON when it parses (0.7, 40, true, ["a","b"], {"the": -5}), else the plain string;
a list of values splits on commas outside brackets and quotes; an axis may also hold ranges start:stop:step.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ParamError
from .order import DEFAULT_ORDER, ORDER_PRESETS
from .params import NUMERIC_FIELDS, SamplingParams

STRING_LIST_FIELDS = frozenset({"stop", "bad_words", "dry_sequence_breakers", "suppress_tokens", "begin_suppress_tokens",
                                "force_words"})
MAX_AXIS_VALUES = 64
RANGE_DECIMALS = 10  # 0.1 + 2 * 0.1 is 0.30000000000000004; rounding shows the 0.3 that was meant
RANGE_TOLERANCE = 1e-9  # a range includes its stop when the steps land on it within this
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*({_NUMBER})\s*")
_INT = re.compile(r"[+-]?\d+")


def parse_value(name: str, text: str) -> Any:
    """A --set / --axis value: JSON when it parses, else the plain string (field-aware for text fields)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep brackets are just text
        return text
    if name in STRING_LIST_FIELDS and not isinstance(value, (str, list)):
        return text  # --set stop=1 means the string "1"
    if name == "order" and not isinstance(value, list):
        return text  # "a>b>c" (normalize_order parses it)
    if name in ("prompt", "system_prompt") and not isinstance(value, str):
        return text  # a prompt is text: 42 or [1] is what the person typed
    return value


def split_values(text: str) -> list[str]:
    """Split on commas that are outside [...], {...} and "..." (so JSON lists can be axis values)."""
    parts: list[str] = []
    current: list[str] = []
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_axis_values(name: str, text: str) -> tuple[Any, ...]:
    """The values of one sweep axis as typed: "0.2, 0.9", "0.1:0.9:0.2", "0, 0.5:1:0.25", '["\\n"], ["."]'.

    Ranges are read only for numeric fields, so a stop string such as "1:2:3" stays text. Values are not
    checked against the field's range here (SweepSpec does that, naming the field); any other problem is a
    ParamError naming `axis <name>`, never another exception.
    """
    field = f"axis {name}"
    if not isinstance(text, str) or not text.strip():
        raise ParamError(field, "a comma-separated list of values (e.g. 0.2, 0.9 or 0.1:0.9:0.2)", text)
    values: list[Any] = []
    for position, part in enumerate(split_values(text), start=1):
        if not part:
            raise ParamError(field, f"comma-separated values without an empty one (value {position} is empty)",
                             text)
        if name in NUMERIC_FIELDS and ":" in part:
            values.extend(parse_range(field, part))
        else:
            values.append(parse_value(name, part))
        if len(values) > MAX_AXIS_VALUES:
            raise ParamError(field, f"at most {MAX_AXIS_VALUES} values", text)
    return tuple(values)


def parse_range(field: str, text: str) -> tuple[int | float, ...]:
    """start:stop:step, stop included when the steps land on it; ints when all three are ints."""
    allowed = f"a range start:stop:step with start <= stop, step > 0 and at most {MAX_AXIS_VALUES} values"
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ParamError(field, f"{allowed} (e.g. 0.1:0.9:0.2)", text)
    start, stop, step = (float(g) for g in match.groups())
    if not all(math.isfinite(x) for x in (start, stop, step)) or step <= 0 or start > stop:
        raise ParamError(field, allowed, text)
    span = (stop - start) / step
    if not math.isfinite(span) or span + RANGE_TOLERANCE >= MAX_AXIS_VALUES:
        raise ParamError(field, allowed, text)
    count = math.floor(span + RANGE_TOLERANCE) + 1
    if all(_INT.fullmatch(g) for g in match.groups()):
        return tuple(int(start) + i * int(step) for i in range(count))
    return tuple(round(start + i * step, RANGE_DECIMALS) for i in range(count))


# -- the other direction: values as short text and JSON ---------------------------------------------------

def order_text(order: tuple[str, ...]) -> str:
    """The shortest "a>b" form of a processor order: only the names that left their default slot.

    normalize_order puts a partial order's names into their own default slots, so these names, read back,
    give exactly this order ("" for the default order). A named preset's order is its name ("llama.cpp").
    """
    named = [name for name, preset in ORDER_PRESETS.items() if preset == order and preset != DEFAULT_ORDER]
    if named:
        return named[0]
    return ">".join(name for slot, name in enumerate(order) if DEFAULT_ORDER[slot] != name)


def changed_params(params: SamplingParams) -> dict[str, Any]:
    """The fields that differ from SamplingParams() as JSON-ready values, in field order.

    This is what a share link or a preset needs to hold: from_dict of it gives `params` back exactly.
    The order is its "a>b" text; sequence_bias is an object unless a text repeats (then [text, bias] pairs).
    """
    defaults = SamplingParams()
    changed: dict[str, Any] = {}
    for name, value in params.to_dict().items():
        if getattr(params, name) == getattr(defaults, name):
            continue
        if name == "order":
            value = order_text(params.order)
        elif name == "sequence_bias" and len(value) != len(params.sequence_bias):
            value = [list(pair) for pair in params.sequence_bias]
        changed[name] = value
    return changed


def format_value(name: str, value: Any) -> str:
    """Text that parse_value(name, ...) reads back as `value`: plain strings as they are, else compact JSON."""
    if isinstance(value, str) and parse_value(name, value) == value:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
