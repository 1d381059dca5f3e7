"""No silent change of input in the page: a typed value is refused with the field's error, or used as typed.

Gradio's Slider clamps its number box into the drag range when the box loses focus: temperature -1 became 0
(greedy, another meaning entirely) and top_p 2 became 1, with no message. Same recipe as tests/test_browser.py.
"""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from pages import open_app, set_number, shot


def error_toast(page: Page, field: str):
    return page.locator('[data-testid="toast-body"].error').filter(has_text=field)


def test_typed_values_outside_the_range_are_refused_naming_the_field(page, app_url, capfd):
    open_app(page, app_url, "?max_new_tokens=4&samples=1")
    for field, typed, allowed in (("temperature", "-1", "0 or a number in [0.0001, 100]"), ("top_p", "2", "a number in (0, 1]")):
        set_number(page, f"param-{field}", typed)
        page.locator("#run").click()
        toast = error_toast(page, field)
        expect(toast).to_be_visible(timeout=30_000)
        expect(toast).to_contain_text(f"{field}: must be {allowed}, got {typed}")
        expect(page.locator(f"#param-{field} input[type=number]")).to_have_value(typed)  # not clamped
        if field == "temperature":
            expect(toast).to_have_css("opacity", "1", timeout=10_000)
            shot(page, "typed-temperature-error")
        set_number(page, f"param-{field}", "0.5" if field == "temperature" else "0.9")
    set_number(page, "samples", "20")  # the samples slider goes to 16: 20 is refused, not made 16
    page.locator("#run").click()
    expect(error_toast(page, "samples")).to_contain_text("samples: must be a whole number in [1, 16], got 20",
                                                         timeout=30_000)
    expect(page.locator("#samples input[type=number]")).to_have_value("20")
    # nothing ran
    assert page.locator("#tokens .dp-tok").count() == 0
    expect(page.locator("#generate-status")).not_to_contain_text("tokens/s")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    assert "Traceback" not in capfd.readouterr().err  # the server log: one line per bad input, no traceback


def test_typed_values_beyond_the_drag_range_are_used_as_typed(page, app_url):
    open_app(page, app_url, "?max_new_tokens=4&samples=1&top_k=900")  # from a link too (top_k drags to 200)
    set_number(page, "param-temperature", "3")  # the slider drags to 2.5; the engine allows up to 100
    page.get_by_text("Length and stopping", exact=True).click()
    set_number(page, "param-max_new_tokens", "600")  # the slider drags to 512
    expect(page.locator("#param-temperature input[type=number]")).to_have_value("3")
    page.get_by_role("tab", name="Share & export").click()
    page.locator("#share-button").click()
    link = page.locator("#share-link textarea, #share-link input").first
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/\?.*[?&]temperature=3(\.0)?(&|$)"),
                               timeout=30_000)
    expect(link).to_have_value(re.compile(r"[?&]max_new_tokens=600(&|$)"))
    expect(link).to_have_value(re.compile(r"[?&]top_k=900(&|$)"))


def test_a_link_seed_the_browser_cannot_hold_is_refused_naming_it(page, app_url):
    # 2**53 + 1: a browser's numbers are doubles, so the page would send back 2**53, another seed
    page.goto(app_url + "?max_new_tokens=4&seed=9007199254740993")
    toast = page.locator('[data-testid="toast-body"].warning')
    expect(toast).to_be_visible(timeout=60_000)
    expect(toast).to_contain_text("seed: must be at most 9007199254740991 in the page")
    expect(toast).to_contain_text("got 9007199254740993")
