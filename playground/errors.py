"""Errors as the person or script sees them and as the server log records them: bad input and real faults.

A user's mistake is one log line ("bad input: temperature: must be 0 or a number in [0.0001, 100], got -1"), never a
traceback: Gradio prints the traceback of every gr.Error raised from a handler unless told not to, and those
tracebacks buried the real faults.

A real fault (anything but bad input: a bug, the device out of memory, ...) is logged once here, with its
traceback and a short id, and the person or script gets only "internal error (id 3f9c2a1b); the server log has the
details": its text may hold internals (paths, tensor shapes, memory figures) that are not the client's to read,
and the id lets whoever runs the server find the traceback that goes with a report.
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
import uuid
from typing import Any, Callable

import gradio as gr

from engine.errors import ParamError

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


def report_fault(exc: BaseException, where: str) -> str:
    """Log a real fault with its traceback under a new id; returns the message for the client (the id, no
    internals). `where`: what was being done (the endpoint or handler), for the log line."""
    fault_id = uuid.uuid4().hex[:8]
    log.error("internal error (id %s) in %s: %s: %s", fault_id, where, type(exc).__name__, exc,
              exc_info=(type(exc), exc, exc.__traceback__))
    return fault_message(fault_id)


def fault_message(fault_id: str) -> str:
    return f"internal error (id {fault_id}); the server log has the details"


def internal_error(exc: BaseException, where: str) -> gr.Error:
    """The gr.Error for a real fault: logged here with its traceback (so Gradio need not print it again)."""
    return gr.Error(report_fault(exc, where), title="Internal error", print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """A page handler whose bad input (ParamError) becomes a gr.Error with the engine's message (field, allowed
    range, value), one line in the server log; and whose real faults become a gr.Error with an id (the traceback
    in the server log only). A gr.Error the handler raised itself passes through. Never a traceback in the page."""
    where = getattr(fn, "__name__", "a page handler")
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except ParamError as exc:
                raise user_error(exc) from None
            except gr.Error:
                raise
            except Exception as exc:
                raise internal_error(exc, where) from None
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except ParamError as exc:
            raise user_error(exc) from None
        except gr.Error:
            raise
        except Exception as exc:
            raise internal_error(exc, where) from None
    return call
