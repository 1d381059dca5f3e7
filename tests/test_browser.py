"""The page in a real browser: Playwright driving Debian's Chromium against the app launched in this process.

Chromium comes from the system (`apt-get install -y chromium`, done by .ci/run); Playwright never downloads a
browser. Screenshots of each view go to artifacts/screenshots/ for a person to look at.
"""
from __future__ import annotations

import re
from urllib.parse import quote

from playwright.sync_api import expect

from pages import open_app, open_token, run_generate, set_axis, set_number, set_text, shot, wait_done, wait_until


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
    assert first.get_attribute("title") is None  # no browser tooltip: a click opens the token's popup
    assert "final p" in (first.get_attribute("aria-label") or "")  # what a screen reader says for it
    assert "background" in (first.get_attribute("style") or "")  # coloured by probability
    shot(page, "generate")


def test_token_click_opens_distribution_and_step_slider_updates(page, app_url):
    run_generate(page, app_url, "?max_new_tokens=8&samples=2&temperature=0.9&top_p=0.8&seed=4")
    caption = open_token(page, 1, 2)
    expect(caption).to_contain_text("sample 1 · step 2")
    expect(page.locator("#dist-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
    shot(page, "distributions")
    set_number(page, "dist-step", "5")
    expect(caption).to_contain_text("step 5", timeout=30_000)


STEPS_FIGURE = """() => { const f = document.querySelector('#dist-steps-plot .js-plotly-plot');
  if (!f) return null;
  f.dataset.seen = f.dataset.seen || String(Math.random());  // marks this element: a re-sent figure is a new one
  return {mark: f.dataset.seen, x: (f.layout.shapes || []).map(s => [s.x0, s.x1]),
          points: f.data[f.data.length - 1].x.length}; }"""


def test_a_step_move_moves_the_steps_marker_and_another_output_redraws_the_steps_figure(page, app_url):
    """A step move relayouts the marker of the "Over the steps" figure on the page (the server does not send that
    figure again); another output sends its own figure, its marker at the step shown."""
    run_generate(page, app_url, "?max_new_tokens=9&min_new_tokens=9&samples=2&temperature=0.9&seed=4")
    caption = open_token(page, 0, 2)
    expect(caption).to_contain_text("sample 0 · step 2")
    wait_until(page, lambda: (page.evaluate(STEPS_FIGURE) or {}).get("x") == [[2, 2], [2, 2]], "the marker at step 2")
    first = page.evaluate(STEPS_FIGURE)
    track = page.locator("#dist-step input[type=range]")
    for step in (3, 4):
        track.focus()
        track.press("ArrowRight")
        expect(caption).to_contain_text(f"sample 0 · step {step} ", timeout=30_000)
        moved = page.evaluate(STEPS_FIGURE)
        assert moved["x"] == [[step, step], [step, step]] and moved["mark"] == first["mark"], moved
    page.locator("#dist-sample input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    expect(caption).to_contain_text("sample 1 · step 4 ", timeout=30_000)
    wait_until(page, lambda: page.evaluate(STEPS_FIGURE)["mark"] != first["mark"], "output 1's own steps figure")
    other = page.evaluate(STEPS_FIGURE)
    assert other["x"] == [[4, 4], [4, 4]] and other["points"] == 9, other


def test_two_by_two_sweep_shows_four_cells(page, app_url):
    open_app(page, app_url, "?max_new_tokens=6&samples=1&view=sweep")
    set_axis(page, 1, "temperature", "0.3, 1.0")
    set_axis(page, 2, "top_p", "0.5, 1.0")
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
    # every value the link box shows is a whole link, never the bare query (a test opening it would fail)
    page.evaluate("""() => { window.dpSeenLinks = [];
        window.dpLinkWatch = setInterval(() => {
            const box = document.querySelector('#share-link textarea, #share-link input');
            if (box && box.value) window.dpSeenLinks.push(box.value); }, 5); }""")
    page.get_by_role("tab", name="Share & export").click()
    page.locator("#share-button").click()
    link = page.locator("#share-link textarea, #share-link input").first
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/\?.*top_k=7"), timeout=30_000)
    seen = page.evaluate("() => { clearInterval(window.dpLinkWatch); return window.dpSeenLinks; }")
    assert seen and all(value.startswith("http://127.0.0.1:") for value in seen), sorted(set(seen))
    # the export boxes show this configuration before the picture
    expect(page.locator("#export-notes textarea")).to_have_value(re.compile(r"Cell 1: temperature = 0\.9"))
    expect(page.locator("#export-python")).to_contain_text("prompt = 'Hello there'")
    expect(page.locator("#export-generation-config")).to_contain_text('"top_k": 7')
    expect(page.locator("#export-openai")).to_contain_text('"content": "Hello there"')
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
    # no element anywhere on the page carries the payload's handler, so no alert can still come from it
    assert page.locator("img[src='x'], [onerror*='alert(1)']").count() == 0
    assert page.dialogs == []


def test_presets_of_text_generation_webui_and_sillytavern_export_and_load(page, app_url):
    open_app(page, app_url, "?temperature=0.6&min_p=0.07&top_h=0.9")
    page.get_by_role("tab", name="Share & export").click()
    expect(page.locator("#export-webui")).to_contain_text("min_p: 0.07", timeout=30_000)
    expect(page.locator("#export-webui")).to_contain_text("# top_h: 0.9 is not carried")
    expect(page.locator("#export-sillytavern")).to_contain_text('"temp": 0.6')
    preset = '{"temp": 1.3, "min_p": 0.12, "rep_pen": 1.1, "rep_pen_range": 512, "sampler_priority": ["min_p", "temperature"]}'
    set_text(page, "import-webui", preset)
    page.locator("#import-webui-button").click()
    expect(page.locator("#share-note")).to_contain_text("repetition_penalty_range: 512", timeout=30_000)
    expect(page.locator("#param-temperature input[type=number]")).to_have_value("1.3")
    expect(page.locator("#param-min_p input[type=number]")).to_have_value("0.12")
    shot(page, "share-webui-preset")
    set_text(page, "import-webui", "temp: [1,")
    page.locator("#import-webui-button").click()
    expect(page.locator("body")).to_contain_text("preset: must be a YAML or JSON object", timeout=30_000)
    expect(page.locator("#param-temperature input[type=number]")).to_have_value("1.3")  # nothing changed
