"""The page in a real browser: Playwright driving Debian's Chromium against the app launched in this process.

Chromium comes from the system (`apt-get install -y chromium`, done by .ci/run); Playwright never downloads a
browser. Screenshots of each view go to artifacts/screenshots/ for a person to look at.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
RUN_SECONDS = 120_000  # ms: a run on a busy 2-core machine


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` (.ci/run does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.dialogs = []  # every alert/confirm the page opens (none expected)
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def open_app(page: Page, app_url: str, query: str = "") -> None:
    """Open the page; with a query, wait until the link's settings are applied (they load after the page)."""
    page.goto(app_url + query)
    expect(page.locator("#prompt textarea")).to_be_visible(timeout=60_000)
    if query:
        expect(page.locator("#preset-info")).to_contain_text("restored from the link", timeout=60_000)


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def set_number(page: Page, elem_id: str, value: str) -> None:
    """Type into the number box of a slider or number field (what a person does to set an exact value)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")
    box.blur()


def wait_done(page: Page, status_id: str) -> None:
    expect(page.locator(f"#{status_id}")).to_contain_text("tokens/s", timeout=RUN_SECONDS)


def test_slider_then_generate_streams_coloured_tokens(page, app_url):
    open_app(page, app_url, "?max_new_tokens=10&samples=3")
    set_number(page, "param-temperature", "0")
    page.locator("#run").click()
    wait_done(page, "generate-status")
    samples = page.locator("#tokens .dp-sample")
    expect(samples).to_have_count(3)
    texts = [samples.nth(i).locator(".dp-text").inner_text() for i in range(3)]
    assert texts[0].strip() and texts[0] == texts[1] == texts[2]  # temperature 0 = greedy: identical samples
    first = page.locator('#tokens .dp-tok[data-sample="0"][data-step="0"]')
    assert "final" in (first.get_attribute("title") or "")  # the tooltip lists probabilities and alternatives
    assert "background" in (first.get_attribute("style") or "")  # coloured by probability
    shot(page, "generate")


def test_token_click_opens_distribution_and_step_slider_updates(page, app_url):
    open_app(page, app_url, "?max_new_tokens=8&samples=2&temperature=0.9&top_p=0.8&seed=4")
    page.locator("#run").click()
    wait_done(page, "generate-status")
    page.locator('#tokens .dp-tok[data-sample="1"][data-step="2"]').click()
    caption = page.locator("#dist-caption")
    expect(caption).to_contain_text("sample 1 · step 2", timeout=30_000)
    expect(page.locator("#dist-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
    shot(page, "distributions")
    set_number(page, "dist-step", "5")
    expect(caption).to_contain_text("step 5", timeout=30_000)


def test_two_by_two_sweep_shows_four_cells(page, app_url):
    open_app(page, app_url, "?max_new_tokens=6&samples=1&view=sweep")
    for i, (name, values) in enumerate((("temperature", "0.3, 1.0"), ("top_p", "0.5, 1.0")), start=1):
        dropdown = page.locator(f"#axis-name-{i} input")
        dropdown.click()
        dropdown.fill(name)
        page.locator(f"#axis-name-{i}").get_by_role("option", name=name, exact=True).click()
        page.locator(f"#axis-values-{i} textarea, #axis-values-{i} input").first.fill(values)
    page.locator("#run-sweep").click()
    wait_done(page, "sweep-status")
    expect(page.locator("#sweep-grid .dp-cell")).to_have_count(4)
    expect(page.locator("#sweep-grid")).to_contain_text("temperature")
    shot(page, "sweep")


def test_share_link_restores_the_controls(page, app_url):
    query = "?prompt=" + quote("Hello there") + "&temperature=0.3&top_k=7&axis=temperature:0.2,0.9&view=sweep"
    open_app(page, app_url, query)
    expect(page.locator("#prompt textarea")).to_have_value("Hello there", timeout=30_000)
    expect(page.locator("#param-top_k input[type=number]")).to_have_value("7")
    expect(page.locator("#param-temperature input[type=number]")).to_have_value("0.3")
    expect(page.locator("#axis-values-1 textarea, #axis-values-1 input").first).to_have_value("0.2,0.9")
    expect(page.get_by_role("tab", name="Sweep")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Share & export").click()
    page.locator("#share-button").click()
    link = page.locator("#share-link textarea, #share-link input").first
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/\?.*top_k=7"), timeout=30_000)
    page.wait_for_timeout(1500)  # let the export boxes finish updating before the picture
    shot(page, "share")
    # the link it made opens the same configuration
    page.goto(link.input_value())
    expect(page.locator("#param-top_k input[type=number]")).to_have_value("7", timeout=60_000)
    expect(page.locator("#prompt textarea")).to_have_value("Hello there")


def test_markup_in_prompt_is_text(page, app_url):
    payload = "<img src=x onerror=alert(1)>"
    open_app(page, app_url, f"?raw=true&max_new_tokens=4&samples=1&prompt={quote(payload)}")
    expect(page.locator("#prompt textarea")).to_have_value(payload, timeout=30_000)
    page.locator("#run").click()
    wait_done(page, "generate-status")
    expect(page.locator("#tokens")).to_contain_text(payload)
    assert page.locator("#tokens img").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == []
