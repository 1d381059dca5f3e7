"""The page as a newcomer meets it (issue 16): the first screen, errors, the step box, the share link, the
keyboard, seeds in a sweep, exports of a sweep, the sweep grid and the time a run takes.

Same recipe as tests/test_browser.py: Debian's Chromium driven by Playwright against the app launched once in
this process. Screenshots at a laptop's 1440x900 and a phone's 390x844 go to artifacts/screenshots/.
"""
from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from pages import (RUN_SECONDS, bottom, open_app, open_tab, run_generate, set_number, shot, sized_page, wait_done,
                   wait_until)

LAPTOP, PHONE = (1440, 900), (390, 844)


def test_first_screen_holds_the_prompt_the_main_knobs_and_run(browser, app_url):
    for width, height in (LAPTOP, PHONE):
        with sized_page(browser, width, height) as page:
            open_app(page, app_url)
            for selector in ("#prompt", "#param-temperature", "#param-max_new_tokens", "#run"):
                expect(page.locator(selector)).to_be_visible()
                assert bottom(page, selector) <= height, (width, selector)  # no scrolling, no group to open
            stop = page.locator("#stop")
            expect(stop).to_be_disabled()  # nothing runs yet
            assert "stop" not in (stop.get_attribute("class") or "").split()  # not the big red variant
            expect(page.locator("#sample-table")).to_be_hidden()  # no empty "1 2 3" table before a run
            shot(page, f"first-screen-{width}")
            page.get_by_role("tab", name="Sweep").click()
            expect(page.locator("#stop-sweep")).to_be_disabled()
            expect(page.locator("#sweep-table")).to_be_hidden()  # nor an empty sweep table, heatmap or files
            expect(page.locator("#heatmap")).to_be_hidden()


def test_stop_is_armed_only_while_a_run_goes_and_the_table_comes_with_the_result(page, app_url):
    open_app(page, app_url, "?max_new_tokens=200&samples=1")
    page.locator("#run").click()
    stop = page.locator("#stop")
    expect(stop).to_be_enabled(timeout=RUN_SECONDS)
    expect(page.locator("#tokens .dp-tok").first).to_be_visible(timeout=RUN_SECONDS)
    stop.click()
    wait_done(page, "generate-status")
    expect(stop).to_be_disabled(timeout=30_000)
    expect(page.locator("#sample-table")).to_be_visible()
    expect(page.locator("#sample-table")).to_contain_text("finish_reason")


VISIBLE_ERROR_PILLS = """() => [...document.querySelectorAll('.error')].filter(e =>
    !String(e.className).includes('toast') && e.offsetParent !== null && !e.closest('.hide')
    && e.innerText.trim() === 'Error').length"""


def test_an_error_is_one_toast_and_one_line_in_the_status_not_a_pill_per_output(page, app_url):
    open_app(page, app_url, "?max_new_tokens=4&samples=1")
    set_number(page, "param-temperature", "-1")
    page.locator("#run").click()
    toast = page.locator('[data-testid="toast-body"].error')
    expect(toast).to_have_count(1, timeout=30_000)
    status = page.locator("#generate-status")
    expect(status).to_contain_text("temperature: must be 0 or a number in [0.0001, 100], got -1")
    expect(status.get_by_role("alert")).to_be_visible()
    assert page.evaluate(VISIBLE_ERROR_PILLS) == 0
    expect(page.locator("#stop")).to_be_disabled()  # nothing is running
    # the sweep says it the same way
    page.get_by_role("tab", name="Sweep").click()
    page.locator("#run-sweep").click()
    expect(page.locator("#sweep-status")).to_contain_text("temperature: must be 0 or a number in [0.0001, 100], got -1",
                                                          timeout=30_000)
    assert page.evaluate(VISIBLE_ERROR_PILLS) == 0
    shot(page, "error-status")


def test_the_step_box_answers_enter_and_the_arrow_keys(page, app_url):
    run_generate(page, app_url, "?max_new_tokens=12&samples=2&seed=3")
    page.get_by_role("tab", name="Distributions").click()
    caption = page.locator("#dist-caption")
    expect(caption).to_contain_text("step 0", timeout=30_000)
    box = page.locator("#dist-step input[type=number]")
    box.fill("5")
    box.press("Enter")  # no blur, no drag: Enter alone shows step 5
    expect(caption).to_contain_text("sample 0 · step 5", timeout=30_000)
    track = page.locator("#dist-step input[type=range]")
    track.focus()
    track.press("ArrowRight")
    expect(caption).to_contain_text("sample 0 · step 6", timeout=30_000)
    page.locator("#dist-sample input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    expect(caption).to_contain_text("sample 1 · step 6", timeout=30_000)


def test_copy_link_puts_the_link_on_the_clipboard(browser, app_url):
    with sized_page(browser, *LAPTOP, permissions=["clipboard-read", "clipboard-write"]) as page:
        open_app(page, app_url, "?temperature=0.3&top_k=7")
        page.get_by_role("tab", name="Share & export").click()
        page.locator("#share-button").click()
        link = page.locator("#share-link textarea, #share-link input").first
        note = page.locator("#share-note")
        expect(note).to_contain_text("copied to the clipboard", timeout=30_000)  # the button's run is over
        expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/\?.*top_k=7"))
        url = link.input_value()
        wait_until(page, lambda: page.evaluate("navigator.clipboard.readText()") == url, "the link on the clipboard")


FOCUSED = """() => { const a = document.activeElement; const c = a.closest('[id]');
  return {id: c ? c.id : '', tab: a.getAttribute('role') === 'tab' ? a.textContent.trim() : '',
          views: !!a.closest('#views'), settings: !!a.closest('#settings')}; }"""


def test_ctrl_enter_runs_and_focus_follows_the_panels(page, app_url):
    open_app(page, app_url, "?max_new_tokens=4&samples=1")
    page.locator("#prompt textarea").focus()
    page.keyboard.press("Control+Enter")
    wait_done(page, "generate-status")
    expect(page.locator("#tokens .dp-sample")).to_have_count(1)
    # Tab from the prompt: the first screen's knobs and Run, the rest of the settings, then the views' tabs
    page.locator("#prompt textarea").focus()
    stops = []
    for _ in range(80):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(FOCUSED))
        if stops[-1]["tab"] == "Share & export":
            break
    ids = [s["id"] for s in stops]
    first = {name: ids.index(name) for name in ("param-temperature", "param-max_new_tokens", "run", "samples")}
    assert first["param-temperature"] < first["param-max_new_tokens"] < first["run"] < first["samples"], ids
    tabs = [s["tab"] for s in stops if s["tab"]]
    assert tabs == ["Generate", "Sweep", "Distributions", "Score", "Share & export"], tabs
    first_view = next(i for i, s in enumerate(stops) if s["views"])
    assert all(s["settings"] for s in stops[:first_view]) and not any(s["settings"] for s in stops[first_view:]), stops


def test_shared_seeds_are_explained_and_independent_seeds_are_an_option(page, app_url):
    open_app(page, app_url, "?max_new_tokens=4&samples=1&view=sweep&axis=temperature:0.5,1.0")
    page.locator("#run-sweep").click()
    wait_done(page, "sweep-status")
    grid = page.locator("#sweep-grid")
    expect(grid).to_contain_text("Shared seed 0: sample i of every cell draws the same random numbers")
    expect(page.locator("#independent-seeds")).to_contain_text("same seed")  # said beside the option too
    page.locator("#independent-seeds input[type=checkbox]").check()
    page.locator("#run-sweep").click()
    expect(grid).to_contain_text("Independent seeds: each cell has its own seed", timeout=RUN_SECONDS)
    page.get_by_role("tab", name="Share & export").click()
    page.locator("#share-button").click()
    link = page.locator("#share-link textarea, #share-link input").first
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/\?.*[?&]independent_seeds=true(&|$)"),
                               timeout=30_000)
    # the link brings it back
    page.goto(link.input_value())
    expect(page.locator("#independent-seeds input[type=checkbox]")).to_be_checked(timeout=60_000)


def test_the_sweep_endpoint_takes_independent_seeds(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    axes = [{"name": "temperature", "values": [0.5, 1.0]}]
    shared = client.predict("Hi.", {"max_new_tokens": 2, "seed": 5}, axes, 1, api_name="/sweep")
    assert {r["seed"] for r in shared["samples"]} == {5}
    own = client.predict("Hi.", {"max_new_tokens": 2, "seed": 5}, axes, 1, False, "", True, api_name="/sweep")
    assert len({r["seed"] for r in own["samples"]}) == 2


def code_text(page, elem_id: str) -> str:
    """The text of a code box, line by line (the page is tall enough for the editor to draw every line)."""
    return "\n".join(page.locator(f"#{elem_id} .cm-line").all_inner_texts())


def test_exports_carry_the_sweep_and_the_generation_config_loads_as_it_is(browser, app_url):
    with sized_page(browser, 1440, 9000) as page:
        check_sweep_exports(page, app_url)


def check_sweep_exports(page, app_url):
    from transformers import GenerationConfig

    open_app(page, app_url, "?max_new_tokens=8&presence_penalty=0.5&view=sweep&axis=temperature:0.3,0.9"
                            "&axis=top_p:0.5,1.0")
    page.get_by_role("tab", name="Share & export").click()
    expect(page.locator("#export-python")).to_contain_text("cells = [", timeout=30_000)
    assert "for number, cell in enumerate(cells):" in code_text(page, "export-python")
    expect(page.locator("#export-notes textarea")).to_have_value(re.compile(r"Left out: presence_penalty = 0\.5"))
    configs = json.loads(code_text(page, "export-generation-config"))
    assert [(c["temperature"], c["top_p"]) for c in configs] == [(0.3, 0.5), (0.3, 1.0), (0.9, 0.5), (0.9, 1.0)]
    for data in configs:
        assert not [key for key in data if key.startswith("_")], data
        GenerationConfig(**data).validate(strict=True)
    requests = json.loads(code_text(page, "export-openai"))
    assert [(r["temperature"], r["top_p"]) for r in requests] == [(0.3, 0.5), (0.3, 1.0), (0.9, 0.5), (0.9, 1.0)]
    shot(page, "share-sweep-exports")


def test_sweep_grid_fits_its_cells_are_clickable_tokens_and_the_heatmap_scale_is_a_choice(browser, app_url):
    with sized_page(browser, *LAPTOP) as page:
        open_app(page, app_url, "?max_new_tokens=5&samples=1&seed=2&view=sweep&axis=temperature:0.5,1.5"
                                "&axis=top_p:0.3,0.7,1.0")
        page.locator("#run-sweep").click()
        wait_done(page, "sweep-status")
        grid = page.locator("#sweep-grid")
        expect(grid.locator(".dp-cell")).to_have_count(6)
        sweep = grid.locator(".dp-sweep")
        assert sweep.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the grid scrolls sideways at 1440 px"
        for output in range(6):  # every sample says which output it is in Distributions
            expect(grid.locator(f'.dp-cell-sample[data-output="{output}"]')).to_contain_text(f"output {output}")
        token = grid.locator('.dp-tok[data-sample="4"][data-step="2"]')
        assert "background" in (token.get_attribute("style") or "")  # coloured by probability
        scale = page.locator("#heatmap-scale")
        expect(scale.locator("input[value=clipped]")).to_be_checked()
        expect(page.locator("#heatmap")).to_contain_text("(clipped)", timeout=30_000)
        scale.locator("input[value=log]").check()
        expect(page.locator("#heatmap")).to_contain_text("log10 perplexity", timeout=30_000)
        shot(page, "sweep-1440")
        token.click()
        expect(page.locator("#dist-caption")).to_contain_text("· sample 0 · step 2", timeout=30_000)
        expect(page.locator("#dist-sample input[type=number]")).to_have_value("4")


def test_a_long_run_is_announced_and_a_run_shows_its_speed_and_where_time_went(page, app_url):
    open_app(page, app_url, "?max_new_tokens=400&samples=16")
    estimate = page.locator("#run-estimate")
    expect(estimate).to_contain_text("A long run: 16 outputs x up to 400 tokens = up to 6400 tokens", timeout=30_000)
    set_number(page, "samples", "1")
    expect(estimate).to_contain_text("1 output x up to 400 tokens = up to 400 tokens", timeout=30_000)
    # (400 tokens may still count as long by time: the warning also weighs the last run's speed on this machine)
    expect(estimate).not_to_contain_text("6400 tokens")
    page.locator("#run").click()
    status = page.locator("#generate-status")
    expect(status).to_contain_text(re.compile(r"\d+ tok/s so far"), timeout=RUN_SECONDS)  # live speed
    page.locator("#stop").click()
    wait_done(page, "generate-status")
    for part in ("tokens/s", "prefill", "model decode", "trace", "processors, sampling and page"):
        expect(status).to_contain_text(part)
    expect(estimate).to_contain_text("at the last run's", timeout=30_000)  # the next estimate has a speed


def test_every_view_at_laptop_and_phone_sizes(browser, app_url):
    """Screenshots of Generate, Sweep, Distributions and Share & export as a person sees them, at both sizes."""
    for width, height in (LAPTOP, PHONE):
        with sized_page(browser, width, height) as page:
            open_app(page, app_url, "?max_new_tokens=12&samples=2&seed=1&axis=temperature:0.5,1.2"
                                    "&axis=top_p:0.5,0.8,1.0")
            page.locator("#run").click()
            wait_done(page, "generate-status")
            expect(page.locator("#sample-table")).to_be_visible()
            shot(page, f"view-generate-{width}")
            open_tab(page, "Sweep")
            page.locator("#run-sweep").click()
            wait_done(page, "sweep-status")
            expect(page.locator("#heatmap .js-plotly-plot")).to_be_visible(timeout=30_000)
            shot(page, f"view-sweep-{width}")
            page.locator('#sweep-grid .dp-tok[data-sample="3"][data-step="1"]').click()
            expect(page.locator("#dist-caption")).to_contain_text("step 1", timeout=30_000)
            expect(page.locator("#dist-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
            shot(page, f"view-distributions-{width}")
            open_tab(page, "Share & export")
            page.locator("#share-button").click()
            expect(page.locator("#share-note")).to_contain_text("Link", timeout=30_000)
            expect(page.locator("#export-python")).to_contain_text("cells = [")
            shot(page, f"view-share-{width}")
