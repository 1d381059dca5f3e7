"""Bad input: the one error type for a bad field, and the checks every module shares to raise it.

A message names the field, the allowed range and the value given (the value cut when long), so the page, the
HTTP APIs and the command line can show it as it is.
"""
from __future__ import annotations

from typing import Any


class ParamError(ValueError):
    """Bad input: the message names the field, the allowed range and the value given."""

    def __init__(self, field_name: str, allowed: str, value: Any):
        self.field = field_name
        super().__init__(f"{field_name}: must be {allowed}, got {shown(value)}")


SHOWN_CHARS = 200  # a value quoted in a message is cut to this many characters


def shown(value: Any) -> str:
    """repr(value) for a message: cut when long, and never failing (a 5,000-digit int or a list nested 900
    deep cannot be repr'd); lone surrogates come out escaped, so the message is always valid text."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # int too long for str(), or nested too deep
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"... ({len(text)} characters)"


def check_text(name: str, value: Any, allow_empty: bool = False) -> str:
    """A string that is valid Unicode text (no lone surrogates, which no tokenizer or UTF-8 encoder takes),
    non-empty unless `allow_empty`, or a ParamError naming the field."""
    if not isinstance(value, str) or not (allow_empty or value):
        raise ParamError(name, "a string" if allow_empty else "a non-empty string", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParamError(name, f"valid Unicode text (a lone surrogate {value[exc.start]!r} at character "
                               f"{exc.start} is not a character)", value) from None
    return value


def check_whole(name: str, value: Any, low: int, high: int) -> int:
    """A whole number (not a bool, not 2.0) in [low, high], or a ParamError naming the field."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ParamError(name, f"a whole number in [{low}, {high}]", value)
    return value


def check_flag(name: str, value: Any) -> bool:
    """true or false (not 1, not "yes"), or a ParamError naming the field."""
    if not isinstance(value, bool):
        raise ParamError(name, "true or false", value)
    return value
