"""Own presets and the run history in a real browser (issue 16): save the settings as a preset that survives a
reload and shows in the menu as yours, delete it, download it as a file and load a file (a bad one changes
nothing); every run joins the History tab, an earlier one reopens (Distributions follow it) and compares with
the current one.

Same recipe as tests/test_browser_newcomer.py: Debian's Chromium driven by Playwright against the app launched
once in this process. Screenshots at a laptop's 1440x900 and a phone's 390x844 go to artifacts/screenshots/.
"""
from __future__ import annotations

import json

from playwright.sync_api import Page, expect

from pages import RUN_SECONDS, open_app, open_tab, set_number, set_text, shot, sized_page, text_box, wait_done
from playground.presets import EXAMPLES_DIR, Preset

LAPTOP, PHONE = (1440, 900), (390, 844)
SETTINGS = "?prompt=Name%20three%20rivers.&temperature=0.35&max_new_tokens=7&samples=2&axis=top_p:0.5,0.9"


def pick_preset(page: Page, label: str) -> None:
    """Open the preset menu and pick `label`."""
    menu = page.locator("#preset input")
    menu.click()
    menu.fill(label)  # as tests/pages.set_axis picks: the typed text narrows the list to the option
    page.locator("#preset").get_by_role("option", name=label, exact=True).click()


def menu_labels(page: Page) -> list[str]:
    page.locator("#preset input").click()
    labels = page.locator("#preset").get_by_role("option").all_inner_texts()
    page.locator("#preset input").blur()
    return [label.strip().splitlines()[-1] for label in labels]  # the picked one starts with a "✓" line


def number_of(page: Page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def expect_saved_settings(page: Page) -> None:
    expect(text_box(page, "prompt")).to_have_value("Name three rivers.")
    assert number_of(page, "param-temperature") == 0.35
    assert number_of(page, "param-max_new_tokens") == 7
    open_tab(page, "Sweep")  # the sweep axes are saved too
    expect(text_box(page, "axis-values-1")).to_have_value("0.5,0.9")
    open_tab(page, "Generate")


def test_a_saved_preset_survives_a_reload_loads_back_and_can_be_deleted(page, app_url):
    open_app(page, app_url, SETTINGS)
    set_text(page, "my-preset-name", "Rivers, cool")
    page.locator("#my-preset-save").click()
    expect(page.locator("#my-preset-note")).to_contain_text('Saved "Rivers, cool"', timeout=30_000)

    page.goto(app_url)  # a reload, without the link: the defaults again, and the preset still in the menu
    expect(text_box(page, "prompt")).not_to_have_value("Name three rivers.", timeout=60_000)
    expect(page.locator("#preset")).to_be_visible()
    for _ in range(50):  # the menu is filled from the browser's store after the page loads
        if "Rivers, cool (yours)" in menu_labels(page):
            break
        page.wait_for_timeout(200)
    labels = menu_labels(page)
    assert "Rivers, cool (yours)" in labels and labels.index("Rivers, cool (yours)") == len(labels) - 1
    pick_preset(page, "Rivers, cool (yours)")
    expect(page.locator("#preset-info")).to_contain_text('Your preset "Rivers, cool"', timeout=30_000)
    expect_saved_settings(page)

    page.locator("#my-preset-delete").click()
    expect(page.locator("#my-preset-note")).to_contain_text('Deleted "Rivers, cool"', timeout=30_000)
    assert "Rivers, cool (yours)" not in menu_labels(page)
    page.reload()
    expect(page.locator("#prompt textarea")).to_be_visible(timeout=60_000)
    page.wait_for_timeout(2000)  # the store's load event: it must not bring the deleted preset back
    assert "Rivers, cool (yours)" not in menu_labels(page)


def test_a_built_in_preset_is_not_deleted(page, app_url):
    open_app(page, app_url)
    built_in = json.loads(sorted(EXAMPLES_DIR.glob("*.json"))[0].read_text())["name"]
    pick_preset(page, built_in)
    page.locator("#my-preset-delete").click()
    expect(page.locator('[data-testid="toast-body"].error')).to_contain_text("preset: must be one of your saved",
                                                                              timeout=30_000)
    assert built_in in menu_labels(page)


def test_download_gives_a_preset_file_and_a_file_loads_back(page, app_url, tmp_path):
    open_app(page, app_url, SETTINGS)
    set_text(page, "my-preset-name", "Rivers file")
    page.locator("#my-preset-download").click()
    link = page.locator("#my-preset-file a").first
    expect(link).to_be_visible(timeout=30_000)
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name == "rivers_file.json"
    data = json.loads(saved.read_text(encoding="utf-8"))
    preset = Preset.from_dict(data)  # the format of examples/*.json
    assert preset.name == "Rivers file" and preset.config.prompt == "Name three rivers."
    assert data["params"]["temperature"] == 0.35 and data["axes"] == [{"name": "top_p", "values": "0.5,0.9"}]

    open_app(page, app_url)  # the defaults, then the file
    with page.expect_file_chooser() as chooser:
        page.locator("#my-preset-upload").click()
    chooser.value.set_files(str(saved))
    expect(page.locator("#preset-info")).to_contain_text('Loaded from a file: "Rivers file"', timeout=30_000)
    expect_saved_settings(page)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "prompt": "Changed?", "params": {"temperature": -3}}))
    with page.expect_file_chooser() as chooser:
        page.locator("#my-preset-upload").click()
    chooser.value.set_files(str(bad))
    note = page.locator("#my-preset-note")
    expect(note).to_contain_text("temperature: must be", timeout=30_000)
    expect(note).to_contain_text("got -3")
    expect(page.locator('[data-testid="toast-body"].error')).to_contain_text("temperature", timeout=30_000)
    expect_saved_settings(page)  # nothing changed
    shot(page, "my-presets-bad-file")


HISTORY_COLUMNS = ["run", "time (UTC)", "kind", "prompt", "settings", "outputs", "tokens/s", "now"]


def history_cell(page: Page, row: int, column: str):
    """A cell of the History table (row 0: the newest run)."""
    cells = page.locator("#history-table [role=gridcell]")
    return cells.nth(row * len(HISTORY_COLUMNS) + HISTORY_COLUMNS.index(column))


def run_and_wait(page: Page, sweep: bool) -> None:
    if sweep:
        open_tab(page, "Sweep")
        page.locator("#run-sweep").click()
        wait_done(page, "sweep-status")
    else:
        page.locator("#run").click()
        wait_done(page, "generate-status")


def test_runs_join_the_history_reopen_and_compare(browser, app_url):
    with sized_page(browser, *LAPTOP) as page:
        open_app(page, app_url, "?prompt=Say%20hi.&max_new_tokens=6&samples=1&seed=4&axis=temperature:0.3,1.4")
        run_and_wait(page, sweep=True)  # run 1: two cells
        set_number(page, "param-temperature", "1.7")
        run_and_wait(page, sweep=False)  # run 2: Generate, one output
        open_tab(page, "History")
        expect(page.locator("#history-table [role=grid]")).to_have_attribute("aria-rowcount", "3", timeout=30_000)
        expect(history_cell(page, 0, "kind")).to_have_text("generate")  # newest first
        expect(history_cell(page, 0, "now")).to_have_text("shown")
        expect(history_cell(page, 0, "settings")).to_contain_text("temperature=1.7")
        expect(history_cell(page, 1, "kind")).to_have_text("sweep")
        expect(history_cell(page, 1, "settings")).to_contain_text("temperature × 2")
        assert float(history_cell(page, 0, "tokens/s").inner_text()) > 0
        offered = page.locator("#history-run input").input_value()  # the run before the current one
        assert offered.startswith("run ") and "sweep" in offered, offered

        set_number(page, "history-earlier-output", "5")  # the sweep has outputs 0 and 1
        page.locator("#history-compare").click()
        expect(page.locator("#history-divergence-caption")).to_contain_text(
            "compare with: must be an output index in [0, 1], got 5", timeout=RUN_SECONDS)
        expect(page.locator("#history-divergence-table")).to_be_hidden()
        # the current run's output 0 (temperature 1.7) vs the earlier sweep's output 1 (temperature 1.4)
        set_number(page, "history-earlier-output", "1")
        page.locator("#history-compare").click()
        caption = page.locator("#history-divergence-caption")
        expect(caption).to_contain_text("vs run", timeout=RUN_SECONDS)
        expect(caption).to_contain_text("temperature=1.4")
        expect(page.locator("#history-compare-caption")).to_contain_text("through the settings of run",
                                                                          timeout=30_000)
        expect(page.locator("#history-divergence-table [role=gridcell]").first).to_be_visible()
        shot(page, f"history-compare-{LAPTOP[0]}")

        page.locator("#history-reopen").click()
        expect(page.locator("#history-status")).to_contain_text("Showing run", timeout=30_000)
        expect(page.locator("#history-outputs .dp-tok").first).to_be_visible()
        expect(page.locator("#history-outputs")).to_contain_text("temperature=0.3")
        expect(history_cell(page, 1, "now")).to_have_text("shown", timeout=30_000)  # the reopened run, now shown
        expect(history_cell(page, 0, "now")).to_have_text("")
        expect(page.locator("#history-table [role=grid]")).to_have_attribute("aria-rowcount", "3")  # not twice
        shot(page, f"history-{LAPTOP[0]}")
        open_tab(page, "Distributions")  # follows the reopened sweep
        expect(page.locator("#dist-caption")).to_contain_text("temperature=0.3", timeout=30_000)


def test_phone_layout_of_the_presets_and_the_history(browser, app_url):
    with sized_page(browser, *PHONE) as page:
        open_app(page, app_url, "?prompt=Say%20hi.&max_new_tokens=4&samples=1")
        set_text(page, "my-preset-name", "Phone preset")
        page.locator("#my-preset-save").click()
        expect(page.locator("#my-preset-note")).to_contain_text("Saved", timeout=30_000)
        page.locator("#my-presets").scroll_into_view_if_needed()
        for selector in ("#my-preset-save", "#my-preset-delete", "#my-preset-download", "#my-preset-upload"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0], selector
        shot(page, f"my-presets-{PHONE[0]}")
        page.locator("#run").click()
        wait_done(page, "generate-status")
        open_tab(page, "History")
        expect(page.locator("#history-table [role=grid]")).to_have_attribute("aria-rowcount", "2", timeout=30_000)
        shot(page, f"history-{PHONE[0]}")
