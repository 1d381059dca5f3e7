"""Shared fixtures. Loading the bundled model is the slow part, so it is loaded once per session."""

import contextlib
import os

import pytest
from hypothesis import settings

from engine.models import LoadedModel, load_model, tiny_random_model

# The recorded oracles (token ids written down from transformers) and the batch-invariance promises are fp32's,
# the default on a CPU; the suite pins fp32 for everything it loads, the app and command-line processes it starts
# included (load_model() without a dtype reads $PLAYGROUND_DTYPE), so it tests the same on a machine where `auto`
# means another dtype (a GPU). PLAYGROUND_TEST_DTYPE=bfloat16 runs it at that dtype instead, to measure which
# promises hold there (README, "Model and dtype").
TEST_DTYPE = os.environ.get("PLAYGROUND_TEST_DTYPE", "float32")
os.environ.setdefault("PLAYGROUND_DTYPE", TEST_DTYPE)

# Hypothesis profiles: "ci" (the default) keeps the property and fuzz tests to about a minute each;
# HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties.py tests/test_fuzz_api.py runs many more.
settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Test lanes. Markers are applied by the fixtures a test uses (pytest_collection_modifyitems below), so a new test
# lands in the right lane without anyone remembering; a test that needs the model or a browser without saying so
# through a fixture (a subprocess that loads the model, say) carries an explicit mark.
#   python -m pytest -q                                          everything (what CI runs)
#   python -m pytest -q -m "not model and not browser and not slow"   the fast lane
MARKERS = {
    "model": "needs the bundled model loaded (the `bundled` fixture, the app, or a subprocess that loads it)",
    "browser": "drives Chromium through Playwright (needs /usr/bin/chromium); implies model",
    "slow": "more than a few seconds of CPU without the bundled model (long runs, property tests, the largest "
            "statistical tests, full-vocabulary runs on the tiny model); the fast lane skips it",
}
BROWSER_FIXTURES = frozenset({"browser", "page"})
# Every fixture here that loads the bundled model or starts the app on it. A fixture's own dependencies are in a
# test's fixturenames too, so a module-local fixture built on any of these is covered without being listed.
MODEL_FIXTURES = frozenset({"bundled", "engine", "app_url", "base_url", "client", "http", "model_id"})


def pytest_configure(config) -> None:
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if used & (MODEL_FIXTURES | BROWSER_FIXTURES) and not item.get_closest_marker("model"):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def bundled() -> LoadedModel:
    """The bundled model at fp32 (the recorded oracles and the batch-invariance tests are fp32's), or at
    $PLAYGROUND_TEST_DTYPE when that is set."""
    return load_model(dtype=TEST_DTYPE)


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    """A tiny random model (nothing changes it: one for the whole session)."""
    return tiny_random_model()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched_app(loaded: LoadedModel):
    """The whole app (page + /v1 API) on `loaded`, launched in this process on a free port; yields its URL."""
    from engine.generate import Engine
    from playground.server import launch_app

    port = free_port()
    demo, _, _ = launch_app(Engine(loaded), "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="session")
def app_url(bundled):
    """The whole app on the bundled model, launched once for the session."""
    with launched_app(bundled) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (.ci/run and README's test command install it when missing)."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from pages import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` (.ci/run does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page; `page.dialogs` collects every alert/confirm it opens (none is expected anywhere)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()
    assert page.dialogs == [], page.dialogs  # no page ever opens an alert or confirm


@pytest.fixture(scope="session")
def base_url(app_url) -> str:
    """The OpenAI-compatible API root, once /v1/models answers on the app's own port."""
    import time

    import httpx

    url = app_url + "v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/models", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url}/models did not answer within 30 s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def client(base_url):
    """The official `openai` client on the app (test modules may define their own `client`)."""
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(base_url):
    import httpx

    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def model_id(bundled) -> str:
    return bundled.name


@pytest.fixture(scope="session")
def engine(bundled):
    """The engine on the same weights, for reference outputs computed in-process."""
    from engine.generate import Engine

    return Engine(bundled)
