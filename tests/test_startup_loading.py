"""`python app.py` serves its page while the model loads in a thread (engine.switching.SwitchableEngine.loading):
the printed URL answers at once; the page says the model is loading; a /v1 request or a page run made meanwhile
waits for the model and then answers (never a 500); a model that cannot load ends the app with its message."""
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
from engine.bench.app_process import stop_process
from engine.generate import Engine
from engine.switching import ModelLoadError, SwitchableEngine

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"model": "x", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 3,
        "temperature": 0}


def gated(engine: Engine) -> tuple[SwitchableEngine, threading.Event]:
    """A SwitchableEngine whose load finishes (with `engine`) only once the returned event is set."""
    release = threading.Event()

    def load() -> Engine:
        assert release.wait(120), "the test never released the load"
        return engine

    return SwitchableEngine.loading(engine.loaded.name, load), release


def test_every_use_waits_for_the_first_model(bundled):
    engine, release = gated(Engine(bundled))
    assert not engine.ready and engine.model_name == bundled.name  # named before it is there
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.append(engine.loaded.name))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not seen  # waiting for the model, not failing
    release.set()
    reader.join(30)
    assert seen == [bundled.name] and engine.ready and engine.current.loaded is bundled


def test_a_failed_load_names_the_model_and_why():
    reported: list[Exception] = []

    def load() -> Engine:
        raise ValueError("no such GGUF file")

    engine = SwitchableEngine.loading("missing.gguf", load, reported.append)
    assert engine.wait(30)
    with pytest.raises(ModelLoadError, match=r"could not load 'missing.gguf': no such GGUF file"):
        engine.loaded  # noqa: B018
    assert len(reported) == 1 and "no such GGUF file" in str(reported[0])


@pytest.fixture
def launched_loading(bundled):
    """The page and /v1 launched (as app.py does) on an engine still loading; yields (url, release)."""
    from playground.server import launch_app

    engine, release = gated(Engine(bundled))
    demo, url, _ = launch_app(engine, "127.0.0.1", free_port())
    try:
        yield url, release
    finally:
        release.set()
        demo.close(verbose=False)


def test_page_answers_and_requests_wait_while_the_model_loads(launched_loading):
    url, release = launched_loading
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and "loading ..." in page.text  # the intro says so until the model is there
    answers: dict[str, object] = {}
    api = threading.Thread(target=lambda: answers.update(api=httpx.post(url + "v1/chat/completions", json=CHAT,
                                                                        timeout=120)))
    run = threading.Thread(target=lambda: answers.update(run=Client(url, verbose=False).predict(
        "Name a colour.", {"temperature": 0, "max_new_tokens": 3}, 1, api_name="/generate")))
    api.start()
    run.start()
    time.sleep(1.0)
    assert "api" not in answers and "run" not in answers  # both wait for the model ...
    assert httpx.get(url, timeout=30).status_code == 200  # ... while the page goes on being served
    release.set()
    api.join(120)
    run.join(120)
    chat = answers["api"]
    assert isinstance(chat, httpx.Response) and chat.status_code == 200, getattr(chat, "text", chat)
    assert chat.json()["usage"]["completion_tokens"] >= 1
    samples = answers["run"]["samples"]  # type: ignore[index]
    assert len(samples) == 1 and samples[0]["token_ids"]


def test_v1_says_why_when_the_model_could_not_load(bundled):
    from playground.server import launch_app

    def load() -> Engine:
        raise ValueError("no such GGUF file")

    demo, url, _ = launch_app(SwitchableEngine.loading("missing.gguf", load), "127.0.0.1", free_port())
    try:
        for answer in (httpx.get(url + "v1/models", timeout=30), httpx.post(url + "v1/completions",
                                                                              json={"prompt": "Hi"}, timeout=30)):
            assert answer.status_code == 503, answer.text
            assert "could not load 'missing.gguf': no such GGUF file" in answer.json()["error"]["message"]
    finally:
        demo.close(verbose=False)


def test_app_py_serves_its_page_when_it_prints_the_url():
    """The real start-up on the bundled model: the page answers at the printed URL the moment it is printed, and
    /v1 once the model has loaded."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        line = next(line for line in process.stdout if "Decoding Playground running at" in line)
        url = f"http://127.0.0.1:{port}/"
        assert url in line
        assert httpx.get(url, timeout=30).status_code == 200  # no retry: it answers when printed
        models = httpx.get(url + "v1/models", timeout=300)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "SmolLM2-135M-Instruct"
    finally:
        stop_process(process)


def test_app_py_exits_with_the_message_when_the_model_cannot_load(tmp_path):
    missing = tmp_path / "missing.gguf"
    done = subprocess.run([sys.executable, "app.py", "--port", str(free_port()), "--model", str(missing)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"error: model: could not load {str(missing)!r}: no such GGUF file" in done.stderr, done.stderr


def test_gradio_without_its_stub_writer_still_makes_components(tmp_path):
    """app.py skips Gradio's import-time .pyi regeneration: components, their events and a new component class
    (made by the same metaclass) are as before, and no stub is written for the new class."""
    (tmp_path / "mine.py").write_text("import gradio as gr\n\nclass Mine(gr.Textbox):\n    EVENTS = ['change']\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import app; app.without_gradio_stub_writer()\n"
            "import gradio as gr, gradio.component_meta as meta, mine\n"
            "assert meta.create_or_modify_pyi(mine.Mine, 'Mine', ['change']) is None\n"
            "box = mine.Mine('x'); assert box.value == 'x' and callable(box.change) and callable(gr.Slider.release)\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert not (tmp_path / "mine.pyi").exists()  # without the hook Gradio writes one beside mine.py


def test_a_page_opened_while_the_model_loads_says_so_then_runs(browser, launched_loading):
    """In a browser: the intro says the model is loading; once it has loaded it names the model's device and
    dtype, and Run streams tokens."""
    from playwright.sync_api import expect

    from pages import open_app, wait_done

    url, release = launched_loading
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        open_app(page, url)
        expect(page.locator("#intro")).to_contain_text("SmolLM2-135M-Instruct: loading ...")
        release.set()
        expect(page.locator("#intro")).to_contain_text("SmolLM2-135M-Instruct on cpu", timeout=60_000)
        page.locator("#run").click()
        wait_done(page, "generate-status")
        expect(page.locator("#tokens .dp-sample").first).to_be_visible()
    finally:
        context.close()


def test_the_join_setting_waits_for_no_model_and_reaches_it_when_it_arrives(bundled):
    """build_page sets whether runs join each other's batches while the model may still be loading: that must not
    wait for the model (the page would not start before it), and the model must get the setting when it arrives."""
    engine, release = gated(Engine(bundled))
    engine.set_join(False)  # returns at once: nothing is loaded yet
    assert not engine.ready
    release.set()
    assert engine.wait(30) and engine.current.shared.join is False
    engine.set_join(True)
    assert engine.current.shared.join is True
