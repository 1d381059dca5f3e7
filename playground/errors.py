"""Bad input as the person or script sees it (a gr.Error naming the field) and as the server log records it.

A user's mistake is one log line ("bad input: temperature: must be 0 or a number in [0.0001, 100], got -1"), never a
traceback: Gradio prints the traceback of every gr.Error raised from a handler unless told not to, and those
tracebacks buried the real faults (which still get theirs).
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from engine.params import ParamError

log = logging.getLogger("playground")


def log_bad_input(message: str) -> None:
    """One line in the server log, whatever the message holds."""
    log.warning("bad input: %s", " ".join(str(message).split("\n")))


def user_error(exc: Exception, title: str = "Invalid setting", as_html: bool = True) -> gr.Error:
    """The gr.Error for bad input, logged as one line. as_html: the page's toasts render HTML, so the message
    (which quotes the value given) is escaped there; API clients get it as it is."""
    message = str(exc)
    log_bad_input(message)
    return gr.Error(html.escape(message) if as_html else message, title=title, print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """A page handler whose bad input (ParamError) becomes a gr.Error with the engine's message (field, allowed
    range, value); never a traceback, in the page or in the server log (one line there)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except ParamError as exc:
                raise user_error(exc) from None
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except ParamError as exc:
            raise user_error(exc) from None
    return call
