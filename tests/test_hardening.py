"""A server as a hosted Space runs it, on a tiny random model: real faults answer an id (their traceback in the log
under that id, never their text), the per-request limits set from the command line are refused on every surface
before any work (naming the limit, the value and how to raise it), and a run that finds every slot busy says
where it stands in the queue."""
from __future__ import annotations

import logging
import re
import threading
import time
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr
import httpx
import pytest
from gradio_client import Client

import app as app_module
from engine.generate import Engine
from playground.config import PlaygroundConfig
from playground.panels.form import NAMES, form_values
from playground.server import launch_app

from conftest import free_port

LIMIT_FLAGS = ["--max-rows", "4", "--max-new-tokens", "64", "--max-total-tokens", "100", "--run-slots", "1",
               "--no-model-picker"]
FAULT = "secret detail: /srv/weights shape [4, 9]"  # what a fault's text may hold, never the client's to read
ID = re.compile(r"internal error \(id ([0-9a-f]{8})\); the server log has the details")
CHAT = {"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}


@pytest.fixture(scope="module")
def server(tiny) -> Iterator[SimpleNamespace]:
    """The app with a Space's limits (parsed as `python app.py` parses them) and one run slot, on the tiny model."""
    args = app_module.parse_args(LIMIT_FLAGS)
    engine = Engine(tiny, app_module.engine_limits(args))
    demo, url, _ = launch_app(engine, "127.0.0.1", free_port(), **app_module.run_slots(args))
    try:
        yield SimpleNamespace(engine=engine, demo=demo, url=url, v1=httpx.Client(base_url=url + "v1", timeout=120),
                              client=Client(url, verbose=False))
    finally:
        demo.close()


@pytest.fixture
def broken(server, monkeypatch) -> list[int]:
    """The engine raising a real fault whenever a run starts; returns the list of calls."""
    calls: list[int] = []

    def stream(*args: Any, **kwargs: Any):
        calls.append(1)
        raise RuntimeError(FAULT)

    monkeypatch.setattr(server.engine, "stream", stream)
    return calls


def logged_fault(caplog, fault_id: str) -> logging.LogRecord:
    records = [r for r in caplog.records if fault_id in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert records[0].exc_info and records[0].exc_info[0] is RuntimeError  # the traceback, under that id
    return records[0]


def page_handler(demo: gr.Blocks, name: str):
    return next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name)


def page_run(demo: gr.Blocks, name: str, config: PlaygroundConfig, status_id: str) -> Iterator[str]:
    """A page's run handler as the page calls it (the settings by name); yields each status shown."""
    extra = {"heatmap_metric": "perplexity", "heatmap_scale": "clipped"} if name == "run_sweep" else {}
    for update in page_handler(demo, name)(SimpleNamespace(session_hash=f"test-{name}"),
                                           **dict(zip(NAMES, form_values(config))), **extra):
        if isinstance(update, dict):
            yield next((str(v) for k, v in update.items() if getattr(k, "elem_id", None) == status_id), "")
        else:  # the sweep's last frame: a tuple, the status first
            yield str(update[0])


# -- faults ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_fault_on_v1_is_a_500_with_an_id_and_the_traceback_is_logged(server, broken, caplog, stream):
    caplog.set_level(logging.ERROR, logger="playground")
    response = server.v1.post("/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and FAULT not in response.text and "RuntimeError" not in response.text
    logged_fault(caplog, ID.fullmatch(error["message"]).group(1))


def test_a_fault_before_the_engine_is_a_500_with_an_id(server, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="playground")
    monkeypatch.setattr(server.engine, "encode", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(FAULT)))
    monkeypatch.setattr(server.engine.loaded, "encode_prompt", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(FAULT)))
    response = server.v1.post("/completions", json={"model": "x", "prompt": "Hi", "max_tokens": 2})
    assert response.status_code == 500 and FAULT not in response.text
    logged_fault(caplog, ID.fullmatch(response.json()["error"]["message"]).group(1))


@pytest.mark.parametrize("api_name, args", [("/generate", ("Hi", {"max_new_tokens": 2}, 1)),
                                            ("/sweep", ("Hi", {"max_new_tokens": 2}, [{"name": "seed", "values": [1, 2]}]))])
def test_a_fault_through_the_gradio_api_is_an_error_with_an_id(server, broken, caplog, capfd, api_name, args):
    caplog.set_level(logging.ERROR, logger="playground")
    with pytest.raises(Exception) as info:
        server.client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert FAULT not in message
    logged_fault(caplog, ID.search(message).group(1))
    assert "Traceback" not in capfd.readouterr().err  # logged once, by us (Gradio prints none)


def test_a_fault_in_the_page_shows_its_id_beside_the_outputs_and_in_a_toast(server, broken, caplog):
    caplog.set_level(logging.ERROR, logger="playground")
    statuses = []
    with pytest.raises(gr.Error) as info:
        for status in page_run(server.demo, "run_generate", PlaygroundConfig(prompt="Hi", samples=1), "generate-status"):
            statuses.append(status)
    assert info.value.print_exception is False
    fault_id = ID.fullmatch(info.value.message).group(1)
    assert f"id {fault_id}" in statuses[-1] and "Internal error" in statuses[-1] and FAULT not in statuses[-1]
    logged_fault(caplog, fault_id)


# -- limits ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, param, message", [
    ({"n": 5}, "n", "n: must be at most 4 rows (cells x samples) per run (this server's max_rows; raise it with "
                    "--max-rows or $PLAYGROUND_MAX_ROWS), got 5"),
    ({"max_tokens": 65}, "max_tokens", "max_tokens: must be at most 64 new tokens per row (this server's "
                                       "max_new_tokens; raise it with --max-new-tokens or $PLAYGROUND_MAX_NEW_TOKENS), "
                                       "got 65"),
    ({"n": 2, "max_tokens": 60}, "max_tokens", "max_tokens: must be at most 100 new tokens in all, rows x "
                                               "max_new_tokens (this server's max_total_tokens; raise it with "
                                               "--max-total-tokens or $PLAYGROUND_MAX_TOTAL_TOKENS), got 120"),
])
def test_v1_refuses_a_request_over_the_limits_with_413(server, broken, body, param, message):
    response = server.v1.post("/chat/completions", json={**CHAT, **body})
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert (error["param"], error["message"], error["type"]) == (param, message, "invalid_request_error")
    assert broken == []  # refused before any work


def test_v1_without_max_tokens_stays_within_the_limit(server):
    response = server.v1.post("/completions", json={"model": "x", "prompt": "Hi", "temperature": 0})
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] <= 64


@pytest.mark.parametrize("api_name, args, expected", [
    ("/generate", ("Hi", {"max_new_tokens": 2}, 5), "rows: must be at most 4 rows"),
    ("/generate", ("Hi", {"max_new_tokens": 65}, 1), "max_new_tokens: must be at most 64 new tokens per row"),
    ("/sweep", ("Hi", {"max_new_tokens": 40}, [{"name": "seed", "values": [1, 2, 3]}]), "at most 100 new tokens in all"),
])
def test_the_gradio_api_refuses_a_run_over_the_limits(server, broken, api_name, args, expected):
    with pytest.raises(Exception, match=re.escape(expected)) as info:
        server.client.predict(*args, api_name=api_name)
    assert "PLAYGROUND_" in str(info.value) and broken == []


@pytest.mark.parametrize("handler, status_id, config", [
    ("run_generate", "generate-status", PlaygroundConfig(prompt="Hi", samples=5)),
    ("run_sweep", "sweep-status", PlaygroundConfig(prompt="Hi", samples=2, axes=(("seed", "1, 2, 3"),))),
])
def test_the_page_refuses_a_run_over_the_limits(server, broken, handler, status_id, config):
    statuses = []
    with pytest.raises(gr.Error, match="--max-rows or \\$PLAYGROUND_MAX_ROWS"):
        for status in page_run(server.demo, handler, config, status_id):
            statuses.append(status)
    assert "rows: must be at most 4 rows" in statuses[-1] and broken == []


def test_a_hosted_server_loads_no_draft_model_a_request_names(server, broken, tmp_path):
    """--no-model-picker: assistant_model may not make the server load a model (a hub id, a local directory)."""
    for name in ("someone/big-model", str(tmp_path)):
        response = server.v1.post("/chat/completions", json={**CHAT, "assistant_model": name})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "assistant_model" and "--no-model-picker" in error["message"], error
        assert name in error["message"]
    with pytest.raises(Exception, match="assistant_model: must be empty or"):
        server.client.predict("Hi", {"max_new_tokens": 2, "assistant_model": "someone/big-model"}, 1,
                              api_name="/generate")
    assert broken == []  # refused before any work
    assert app_module.engine_limits(app_module.parse_args([])).other_models  # the default: any model


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MAX_NEW_TOKENS", "256")
    monkeypatch.setenv("PLAYGROUND_RUN_SLOTS", "2")
    args = app_module.parse_args([])
    limits = app_module.engine_limits(args)
    assert (limits.max_new_tokens, limits.max_rows, app_module.run_slots(args)) == (256, 512, {"run_slots": 2})
    monkeypatch.setenv("PLAYGROUND_MAX_ROWS", "0")
    with pytest.raises(SystemExit):  # refused naming the flag and the variable, never clamped
        app_module.parse_args([])


# -- the queue ------------------------------------------------------------------------------------------------

def test_a_run_that_finds_every_slot_busy_says_where_it_stands(server):
    """One slot: a long API run holds it; a page run and an API run wait, telling their place; both then run."""
    long_run = server.client.submit("Hi", {"max_new_tokens": 64, "min_new_tokens": 64}, 1, api_name="/generate")
    deadline = time.monotonic() + 60
    while not long_run.outputs():  # it holds the slot once it streams
        assert time.monotonic() < deadline
        time.sleep(0.05)
    waiting_api = server.client.submit("Hi", {"max_new_tokens": 2}, 1, api_name="/generate")
    statuses = []
    for status in page_run(server.demo, "run_generate",
                           PlaygroundConfig(prompt="Hi", samples=1).replace(params=PlaygroundConfig(prompt="").params.replace(max_new_tokens=2)),
                           "generate-status"):
        statuses.append(status)
    queued = [s for s in statuses if "Queued behind" in s]
    assert queued and "the server runs 1 at once" in queued[0], statuses
    assert "output" in statuses[-1]  # then it ran
    assert "samples" in waiting_api.result(timeout=120)
    assert any("Queued behind" in str(o.get("status", "")) for o in waiting_api.outputs() if isinstance(o, dict))
    assert "samples" in long_run.result(timeout=120)


def test_a_run_sharing_the_engine_says_so(server):
    """While another run takes turns on the engine (here a long one in a thread), a page run's status says so."""
    from engine.params import SamplingParams
    from engine.sweepspec import SweepSpec
    from playground.runs import RunStore
    from playground.views import stream_run

    started, done = threading.Event(), threading.Event()

    def long_run():
        for _ in server.engine.stream([1, 2, 3], [SamplingParams(max_new_tokens=60, min_new_tokens=60)]):
            started.set()
            if done.is_set():
                return  # closes the stream: it leaves the engine at once

    thread = threading.Thread(target=long_run)
    thread.start()
    try:
        assert started.wait(60)
        spec = SweepSpec("Hi", SamplingParams(max_new_tokens=10, min_new_tokens=10))
        statuses = [frame.status for frame in stream_run(server.engine, RunStore(server.engine), spec, "generate")]
    finally:
        done.set()
        thread.join(60)
    assert any(s.endswith("sharing the engine with 1 other run (steps alternate)") for s in statuses), statuses
