"""The Score view in a real browser: paste a text, see its tokens coloured under the raw model and under the
settings, the removed ones struck through; bad input is one line in the status naming the field."""
from __future__ import annotations

from urllib.parse import quote

from playwright.sync_api import expect

from pages import open_app, open_tab, set_text, shot

TEXT = "Once upon a time, a <b>dragon</b> & a knight"


def test_score_a_text(page, app_url):
    open_app(page, app_url, "?prompt=" + quote("Tell me a story.") + "&temperature=0.7&top_k=1")
    open_tab(page, "Score")
    set_text(page, "score-text", TEXT)
    page.locator("#score-button").click()
    status = page.locator("#score-status")
    expect(status).to_contain_text("Scored", timeout=120_000)
    expect(status).to_contain_text("removed by the settings")
    tokens = page.locator("#score-tokens")
    rows = tokens.locator(".dp-score-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Raw model")
    expect(rows.nth(1)).to_contain_text("Under the current settings")
    raw_tokens = rows.nth(0).locator(".dp-tok")
    assert raw_tokens.count() == rows.nth(1).locator(".dp-tok").count() > 5
    assert "background" in (raw_tokens.first.get_attribute("style") or "")  # coloured by probability
    # top_k=1 keeps one token per step: this text's unlikely words were never producible, the greedy ones were
    struck = rows.nth(1).locator("s.dp-removed .dp-tok")
    assert 0 < struck.count() < raw_tokens.count()
    assert rows.nth(0).locator("s.dp-removed").count() == 0
    assert "final p 0" in (struck.first.get_attribute("title") or "")
    # the text is shown as text: the markup is visible, never an element
    expect(rows.nth(0)).to_contain_text("<b>dragon</b> & a knight")
    assert tokens.locator("b").count() == 0
    expect(tokens.locator(".dp-legend")).to_contain_text("struck through")
    shot(page, "score")

    set_text(page, "score-text", "")
    page.locator("#score-button").click()
    expect(status.locator(".dp-error")).to_contain_text("text: must be a non-empty", timeout=60_000)
