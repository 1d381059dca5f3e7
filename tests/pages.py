"""Driving the app in a real browser: Playwright with Debian's Chromium (never a downloaded browser).

The `browser` and `page` fixtures (tests/conftest.py) use CHROMIUM and CHROMIUM_ARGS; the helpers here do what a
person does on the page. Screenshots go to artifacts/screenshots/ for a person to look at.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from playwright.sync_api import Browser, Locator, Page, expect

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
RUN_SECONDS = 120_000  # ms: a run on a busy 2-core machine


def open_app(page: Page, app_url: str, query: str = "") -> None:
    """Open the page; with a query, wait until the link's settings are applied (they load after the page,
    and before that Run would use the defaults)."""
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


def set_text(page: Page, elem_id: str, value: str) -> None:
    """Type into a text field and leave it, once the page keeps what was typed: a field that just appeared by
    opening its group is mounted again right after (typing into it then is lost, as a person never could)."""
    box = text_box(page, elem_id)
    for _ in range(5):
        box.fill(value)
        box.blur()
        # the window in which a remount would drop the value: nothing on the page marks that none is coming, so
        # the value is checked after it and typed again if it was lost
        page.wait_for_timeout(200)
        if box.input_value() == value:
            break
    expect(box).to_have_value(value)


def run_generate(page: Page, app_url: str, query: str) -> None:
    """Open the page with a link's settings, press Run and wait until the run is done."""
    open_app(page, app_url, query)
    page.locator("#run").click()
    wait_done(page, "generate-status")


def token_popup(page: Page, sample: int, step: int) -> Locator:
    """Click a token of the Generate view (from any tab) and wait for its popup; the popup."""
    page.get_by_role("tab", name="Generate").click()
    page.locator(f'#tokens .dp-tok[data-sample="{sample}"][data-step="{step}"]').click()
    return shown_popup(page, sample, step)


def shown_popup(page: Page, sample: int, step: int) -> Locator:
    """The token popup, once it shows (sample, step)."""
    popup = page.locator(f'#token-popup .dp-popup[data-sample="{sample}"][data-step="{step}"]')
    expect(popup).to_be_visible(timeout=30_000)
    return popup


def open_token(page: Page, sample: int, step: int) -> Locator:
    """Open a Generate token's distribution (its popup's "Open in Distributions") and wait for Distributions to
    show it; the caption."""
    token_popup(page, sample, step).get_by_role("button", name="Open in Distributions").click()
    caption = page.locator("#dist-caption")
    expect(caption).to_contain_text(f"step {step}", timeout=30_000)
    return caption


def wait_done(page: Page, status_id: str) -> None:
    expect(page.locator(f"#{status_id}")).to_contain_text("tokens/s", timeout=RUN_SECONDS)


def text_box(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


@contextmanager
def sized_page(browser: Browser, width: int, height: int, permissions: list[str] | None = None) -> Iterator[Page]:
    """A fresh page with its own viewport (a laptop 1440x900, a phone 390x844) and browser permissions."""
    context = browser.new_context(viewport={"width": width, "height": height}, permissions=permissions or [])
    try:
        yield context.new_page()
    finally:
        context.close()


def bottom(page: Page, selector: str) -> float:
    """Where an element ends, in page pixels from the top (the first screen ends at the viewport height)."""
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    return box["y"] + box["height"]


def wait_until(page: Page, condition: Callable[[], bool], what: str, timeout_ms: int = 10_000) -> None:
    """Poll a condition Playwright cannot wait for by itself (the clipboard, a computed value)."""
    for _ in range(max(timeout_ms // 100, 1)):
        if condition():
            return
        page.wait_for_timeout(100)  # the polling interval
    assert condition(), f"timed out waiting for {what}"


def open_tab(page: Page, name: str) -> None:
    """Open a view's tab; on a narrow screen the tabs that do not fit are under "More tabs"."""
    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.is_visible():
        tab.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).click()


def set_axis(page: Page, index: int, name: str, values: str) -> None:
    """Pick sweep axis `index` (1-3) by name in its dropdown and type its values."""
    dropdown = page.locator(f"#axis-name-{index} input")
    dropdown.click()
    dropdown.fill(name)
    page.locator(f"#axis-name-{index}").get_by_role("option", name=name, exact=True).click()
    set_text(page, f"axis-values-{index}", values)
