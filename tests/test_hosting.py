"""How a host serves the app: `app.app` (FastAPI: the page at /, /v1 beside it) under an ASGI server of its own,
or `app.demo` (the page) launched by the host; either way over real HTTP, with /v1. The session's model stands
in for the one app.py would load (the same weights, loaded once). A page is served by one server at a time (Gradio
refuses to launch a page that a running app already serves), so each test builds its own."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"model": "x", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 3,
        "temperature": 0}


@pytest.fixture(scope="module")
def app_module(bundled):
    """The `app` module as a host imports it, its engine the session's model; built afresh for this module."""
    import app
    from engine.generate import Engine

    saved = (app.load_engine, dict(app._built))
    app.load_engine = lambda model=None, dtype="auto": Engine(bundled)
    app._built.clear()
    yield app
    app.load_engine = saved[0]
    app._built.clear()
    app._built.update(saved[1])


@pytest.fixture
def fresh(app_module):
    """The app module with nothing built yet (as a host first imports it)."""
    app_module._built.clear()
    return app_module


@pytest.fixture
def hosted(fresh):
    """`app.app` under uvicorn, as a host runs it (`uvicorn app:app`): a real server on a free port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fresh.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=30)


def check_v1(url: str) -> None:
    with httpx.Client(base_url=url + "v1", timeout=120) as http:
        models = http.get("/models")
        assert models.status_code == 200 and models.json()["data"][0]["object"] == "model", models.text
        answer = http.post("/chat/completions", json=CHAT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] >= 1
        bad = http.post("/chat/completions", json={**CHAT, "top_p": 2})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_p"


def check_page(url: str) -> None:
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and "Decoding Playground" in page.text
    # the page's API through Gradio's queue: streams progress, then the result
    out = Client(url, verbose=False).predict("Name a colour.", {"temperature": 0, "max_new_tokens": 3}, 1,
                                             api_name="/generate")
    assert len(out["samples"]) == 1 and out["samples"][0]["token_ids"]


def test_importing_app_builds_nothing():
    code = "import app, sys; assert not app._built; print(sorted(m for m in ('torch', 'gradio') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_app_app_serves_v1_beside_the_page(fresh, hosted):
    from fastapi import FastAPI

    assert isinstance(fresh.app, FastAPI)
    assert fresh.app.state.demo is fresh.demo  # app.demo is the page app.app serves: one page, one engine
    check_v1(hosted)
    check_page(hosted)


def test_app_demo_launched_by_a_host_serves_v1(fresh):
    import gradio as gr

    demo = fresh.demo
    assert isinstance(demo, gr.Blocks) and "app" not in fresh._built  # the page alone: no FastAPI app built
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        check_v1(url)
        check_page(url)
    finally:
        demo.close(verbose=False)


def test_the_mounted_page_runs_in_a_browser(browser, hosted):
    """The page under `app.app` works as under launch(): a link's settings, Run streaming tokens, a token's
    distribution (the page's own events, through the queue of the mounted app)."""
    from playwright.sync_api import expect

    from pages import open_app, open_token, wait_done

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        open_app(page, hosted, "?max_new_tokens=6&samples=2&temperature=0")
        page.locator("#run").click()
        wait_done(page, "generate-status")
        expect(page.locator("#tokens .dp-sample")).to_have_count(2)
        expect(open_token(page, 1, 2)).to_contain_text("sample 1 · step 2")
    finally:
        context.close()


def test_the_page_keeps_a_bounded_number_of_sessions(monkeypatch):
    """Every gradio API call is a session whose state Gradio keeps: launched or mounted, the page keeps at
    most SESSION_CAPACITY of them (Gradio's default, 10,000, grew the server by ~0.6 MB per API call)."""
    import gradio as gr

    from playground.ui import SESSION_CAPACITY, Page

    seen = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, *a, **k: seen.update(k))
    page = Page()
    assert page.state_session_capacity == SESSION_CAPACITY <= 1024
    page.launch(prevent_thread_lock=True)
    assert seen["state_session_capacity"] == SESSION_CAPACITY
