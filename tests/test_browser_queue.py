"""The page when every run slot is busy: the status says where the run stands in the queue (not a silent box),
and Stop ends the queued run before it starts. A tiny random model with one run slot, a long API run holding it."""
from __future__ import annotations

import time

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from engine.generate import Engine
from playground.server import launch_app

from conftest import free_port
from pages import shot


@pytest.fixture(scope="module")
def one_slot_url(tiny):
    demo, url, _ = launch_app(Engine(tiny), "127.0.0.1", free_port(), run_slots=1)
    try:
        yield url
    finally:
        demo.close()


def test_a_queued_page_run_says_where_it_stands_and_stop_ends_it(browser, one_slot_url):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(one_slot_url)
    expect(page.locator("#prompt textarea")).to_be_visible(timeout=60_000)
    long_run = Client(one_slot_url, verbose=False).submit(
        "Hi", {"max_new_tokens": 1900, "min_new_tokens": 1900}, 1, api_name="/generate")
    try:
        deadline = time.monotonic() + 60
        while not long_run.outputs():  # it holds the only slot once it streams
            assert time.monotonic() < deadline and not long_run.done(), long_run.status()
            time.sleep(0.05)
        page.locator("#run").click()
        status = page.locator("#generate-status")
        expect(status).to_contain_text("Queued behind 1 run (the server runs 1 at once; 0 waiting before this one)",
                                       timeout=30_000)
        shot(page, "queued-run")
        page.locator("#stop").click()
        expect(status).to_contain_text("Stopped before it started", timeout=30_000)
    finally:
        long_run.cancel()
        context.close()
