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

from engine.errors import ParamError

from openai_helpers import QUESTION, assert_error

BAD_LINE = "bad input: temperature: must be 0 or a number in [0.0001, 100], got -1"


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


# -- the gradio API: /generate, /sweep ----------------------------------------------------------------------------

@pytest.mark.parametrize("params, extra, field", [
    ([], {}, "params"),  # not read as "no parameters"
    ({"top_k": 2.7}, {}, "top_k"),  # not 2
    ({"do_sample": "false"}, {}, "do_sample"),  # not true (a non-empty string)
    ({"temperature": 2.5, "max_new_tokens": 2}, {"system_prompt": 5}, "system_prompt"),  # not dropped
])
def test_generate_refuses_what_it_would_otherwise_read_as_something_else(gradio_client, params, extra, field):
    with pytest.raises(Exception) as info:
        gradio_client.predict("Hello", params, 1, api_name="/generate", **extra)
    assert field in str(info.value)


def test_sweep_refuses_an_axis_with_an_unknown_key(gradio_client):
    axes = [{"name": "temperature", "values": [0.5, 1.0], "vaules": [2.0]}]
    with pytest.raises(Exception, match="axes"):
        gradio_client.predict("Hello", {"max_new_tokens": 2}, axes, 1, api_name="/sweep")


def test_values_beyond_the_page_sliders_are_used_as_given(gradio_client):
    out = gradio_client.predict("Hello", {"temperature": 3, "max_new_tokens": 2, "top_k": 900},
                                [{"name": "seed", "values": [2**40]}], 1, api_name="/sweep")
    record = out["samples"][0]
    assert (record["temperature"], record["top_k"], record["seed"]) == (3.0, 900, 2**40)


# -- the OpenAI API -----------------------------------------------------------------------------------------------

CHAT = {"model": "x", "messages": QUESTION, "max_tokens": 2}


@pytest.mark.parametrize("body, field", [
    ({**CHAT, "stream_options": {"include_usage": "false"}}, "stream_options.include_usage"),  # not true
    ({**CHAT, "logprobs": True, "top_logprobs": False}, "top_logprobs"),  # not 0
    ({**CHAT, "max_completion_tokens": 8}, "max_completion_tokens"),  # two lengths: neither silently wins
    ({**CHAT, "min_tokens": 1, "min_new_tokens": 2}, "min_new_tokens"),
    ({**CHAT, "max_new_tokens": 3}, "max_new_tokens"),
])
def test_openai_chat_refuses_rather_than_guess(http, body, field):
    assert_error(http.post("/chat/completions", json=body), 400, (field,))


def test_openai_completions_refuse_a_non_boolean_echo(http):
    body = {"model": "x", "prompt": "Hello", "max_tokens": 2, "echo": 0}
    assert_error(http.post("/completions", json=body), 400, ("echo",))


def test_openai_engine_length_names_are_used_not_ignored(http):
    body = {"model": "x", "messages": QUESTION, "max_new_tokens": 3, "min_new_tokens": 3, "temperature": 0}
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 3
    assert "x-ignored-fields" not in response.headers


def test_openai_unknown_stream_options_are_reported(http):
    response = http.post("/chat/completions", json={**CHAT, "stream_options": {"include_usage": True, "odd": 1}})
    assert response.status_code == 200, response.text
    assert response.headers["x-ignored-fields"] == "stream_options.odd"
