"""Two people generating at once (two browser contexts on one app): the second Generate joins the first's batch
(engine/shared_batches.py), and each page shows its own run: the tokens it shows alone, and Distributions on them."""
from __future__ import annotations

from urllib.parse import quote

from playwright.sync_api import Page, expect

from pages import open_app, open_token, wait_done

LONG = "?max_new_tokens=120&min_new_tokens=120&samples=1&temperature=0.9&seed=3&prompt=" + quote("Tell me a story.")
SHORT = "?max_new_tokens=10&samples=2&temperature=1&seed=6&prompt=" + quote("Why is the sky blue?")


def shown_tokens(page: Page) -> list[list[str]]:
    """The Generate view's tokens, per sample."""
    return [page.locator(f'#tokens .dp-tok[data-sample="{s}"]').all_inner_texts() for s in range(2)]


def test_two_pages_generating_at_once_each_show_their_own_run(browser, app_url):
    first, second = (browser.new_context(viewport={"width": 1440, "height": 900}) for _ in range(2))
    try:
        long_page, short_page = first.new_page(), second.new_page()
        open_app(long_page, app_url, LONG)
        open_app(short_page, app_url, SHORT)
        long_page.locator("#run").click()
        expect(long_page.locator("#generate-status")).to_contain_text("step", timeout=60_000)  # it streams
        short_page.locator("#run").click()
        wait_done(short_page, "generate-status")
        together = shown_tokens(short_page)
        assert all(len(sample) == 10 for sample in together), together
        caption = open_token(short_page, 1, 4)  # Distributions on the run that joined
        expect(caption).to_contain_text("sample 1 · step 4")
        wait_done(long_page, "generate-status")
        long_together = shown_tokens(long_page)[0]
        assert len(long_together) == 120
        # each again, alone now: the same tokens
        short_page.get_by_role("tab", name="Generate").click()
        short_page.locator("#run").click()
        expect(short_page.locator("#generate-status")).not_to_contain_text("tokens/s", timeout=30_000)
        wait_done(short_page, "generate-status")
        assert shown_tokens(short_page) == together
        long_page.locator("#run").click()
        expect(long_page.locator("#generate-status")).not_to_contain_text("tokens/s", timeout=30_000)
        wait_done(long_page, "generate-status")
        assert shown_tokens(long_page)[0] == long_together
    finally:
        first.close()
        second.close()
