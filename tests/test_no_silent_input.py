"""No silent change of input through the APIs: a bad value is refused naming the field (never clamped, dropped
or read as something else), and the server log gets one line for it, not a traceback.

The page: tests/test_browser_input.py; share links and presets: tests/test_config.py, tests/test_presets.py;
the command line: tests/test_cli.py.
"""
from __future__ import annotations

import logging

import gradio as gr
import pytest
from gradio_client import Client

from engine.params import ParamError

from openai_helpers import QUESTION, assert_error

BAD_LINE = "bad input: temperature: must be a number in [0, 100], got -1"


@pytest.fixture(scope="module")
def gradio_client(app_url):
    return Client(app_url, verbose=False)


def bad_input_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "playground" and r.getMessage().startswith("bad input")]


# -- the server log: one line per user error, tracebacks only for faults ---------------------------------------

def test_a_bad_api_request_is_one_log_line_not_a_traceback(gradio_client, capfd, caplog):
    caplog.set_level(logging.WARNING, logger="playground")
    with pytest.raises(Exception, match="temperature"):
        gradio_client.predict("Hello", {"temperature": -1}, 1, api_name="/generate")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "gradio.exceptions.Error" not in err, err
    assert bad_input_lines(caplog) == [BAD_LINE]


def test_a_bad_openai_request_is_one_log_line(http, capfd, caplog):
    caplog.set_level(logging.WARNING, logger="playground")
    assert_error(http.post("/chat/completions", json={"model": "x", "messages": QUESTION, "top_p": 2}), 400,
                 ("top_p",))
    assert "Traceback" not in capfd.readouterr().err
    assert bad_input_lines(caplog) == ["bad input: top_p: must be a number in (0, 1], got 2"]


def test_page_handlers_raise_a_quiet_error_and_log_one_line(caplog):
    from playground.ui import user_errors

    @user_errors
    def handler(value):
        raise ParamError("stop", "one string per line", value)

    caplog.set_level(logging.WARNING, logger="playground")
    with pytest.raises(gr.Error) as info:
        handler("a\nb <b>")
    assert info.value.print_exception is False  # Gradio prints no traceback for it
    assert "&lt;b&gt;" in info.value.message  # toasts render HTML: the value shows as text
    assert bad_input_lines(caplog) == ["bad input: stop: must be one string per line, got 'a\\nb <b>'"]
