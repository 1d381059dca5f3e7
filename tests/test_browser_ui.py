"""More of the page in a real browser: readable errors, presets, the colour toggle and the Stop button.

Same recipe as tests/test_browser.py: Debian's Chromium (never a downloaded browser) driven by Playwright
against the app launched once in this process (the `app_url` fixture). The error state is saved to
artifacts/screenshots/error.png for a person to look at.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from pages import RUN_SECONDS, open_app, open_token, run_generate, set_text, shot, text_box, wait_done

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 30_000  # ms: from pressing Stop to the run's final status


def token_attributes(page: Page) -> list[tuple[str, str]]:
    """(aria-label, style) of every token shown in the Generate view, in page order."""
    return page.locator("#tokens .dp-tok").evaluate_all(
        "spans => spans.map(s => [s.getAttribute('aria-label') || '', s.getAttribute('style') || ''])")


def hue_matches(style: str, prob: float) -> bool:
    """The token's background hue is 120 x p (render.prob_color); p comes from its aria-label (3 digits)."""
    match = re.search(r"hsl\((\d+),", style)
    return match is not None and abs(int(match.group(1)) - 120 * prob) <= 1


def tooltip_probs(title: str) -> tuple[float, float]:
    match = re.search(r"final p ([0-9.e+-]+), raw p ([0-9.e+-]+)", title)
    assert match, title
    return float(match.group(1)), float(match.group(2))


def test_bad_sequence_bias_shows_a_readable_error_naming_the_field(page, app_url):
    open_app(page, app_url, "?max_new_tokens=4&samples=1")
    page.get_by_text("Penalties", exact=True).click()
    expect(page.locator("#param-sequence_bias textarea")).to_be_visible(timeout=10_000)
    set_text(page, "param-sequence_bias", "the -5")
    page.locator("#run").click()
    toast = page.locator('[data-testid="toast-body"].error')
    expect(toast).to_be_visible(timeout=30_000)
    expect(toast).to_contain_text("sequence_bias")
    expect(toast).to_contain_text("the -5")  # the value given, so a person sees which line is wrong
    expect(toast).to_have_css("opacity", "1", timeout=10_000)  # faded in: the screenshot shows it
    shot(page, "error")
    body = page.locator("body")
    expect(body).not_to_contain_text("Traceback")
    expect(body).not_to_contain_text('File "')
    # nothing ran: no tokens, and the status line still invites a run
    assert page.locator("#tokens .dp-tok").count() == 0
    expect(page.locator("#generate-status")).not_to_contain_text("tokens/s")
    assert page.dialogs == []


def test_loading_a_preset_fills_prompt_view_and_axis(page, app_url):
    preset = json.loads((ROOT / "examples" / "03_top_p_ladder.json").read_text(encoding="utf-8"))
    assert preset["name"] == "Top-p ladder"
    open_app(page, app_url)
    dropdown = page.get_by_label("Preset", exact=True)
    dropdown.click()
    page.get_by_role("option", name=preset["name"], exact=True).click()
    expect(page.locator("#prompt textarea")).to_have_value(preset["prompt"], timeout=30_000)
    expect(page.get_by_role("tab", name="Sweep")).to_have_attribute("aria-selected", "true")
    axis = preset["axes"][0]
    expect(page.locator("#axis-name-1 input")).to_have_value(axis["name"])
    expect(text_box(page, "axis-values-1")).to_have_value(axis["values"])
    expect(page.locator("#samples input[type=number]")).to_have_value(str(preset["samples"]))
    expect(page.get_by_text(preset["description"][:40]).first).to_be_visible()


def test_colour_toggle_recolours_by_raw_probability(page, app_url):
    # temperature 0.5: the final distribution is sharper than the raw one, so the two colourings differ
    run_generate(page, app_url, "?max_new_tokens=5&samples=1&seed=3&temperature=0.5")
    tokens = page.locator("#tokens")
    expect(tokens).to_contain_text("final (sampled) distribution")
    before = token_attributes(page)
    assert len(before) == 5  # max_new_tokens from the link
    for title, style in before:
        assert hue_matches(style, tooltip_probs(title)[0]), (title, style)  # coloured by final p
    page.locator("fieldset", has_text="Colour tokens by").locator("input[value=raw]").check()
    expect(tokens).to_contain_text("raw model distribution", timeout=30_000)
    expect(tokens).not_to_contain_text("final (sampled) distribution")
    after = token_attributes(page)
    assert [title for title, _ in after] == [title for title, _ in before]  # same tokens, same tooltips
    for title, style in after:
        assert hue_matches(style, tooltip_probs(title)[1]), (title, style)  # now coloured by raw p
    assert [style for _, style in after] != [style for _, style in before]


def test_stop_button_ends_a_long_run_early(page, app_url):
    open_app(page, app_url, "?max_new_tokens=400&samples=2")
    expect(page.locator("#samples input[type=number]")).to_have_value("2")
    page.locator("#run").click()
    expect(page.locator("#tokens .dp-tok").first).to_be_visible(timeout=RUN_SECONDS)
    page.locator("#stop").click()
    status = page.locator("#generate-status")
    expect(status).to_contain_text(re.compile(r"stopped early \(\d+ outputs? cut\)"), timeout=STOP_SECONDS)
    expect(status).to_contain_text("2 outputs")
    expect(page.locator("#tokens .dp-sample")).to_have_count(2)
    for sample in range(2):
        count = page.locator(f'#tokens .dp-tok[data-sample="{sample}"]').count()
        assert 0 < count < 400, (sample, count)
    expect(page.locator("#tokens")).to_contain_text("cancelled")


def test_beam_config_shows_its_best_beams_with_scores(page, app_url):
    open_app(page, app_url, "?max_new_tokens=8&samples=1&num_beams=3&num_return_sequences=2&do_sample=false")
    page.get_by_text("Beams", exact=True).click()  # the group opens and shows the link's values
    expect(page.locator("#param-num_beams input[type=number]")).to_have_value("3")
    page.locator("#run").click()
    wait_done(page, "generate-status")
    outputs = page.locator("#tokens .dp-sample")
    expect(outputs).to_have_count(2)
    expect(outputs.nth(0)).to_contain_text("beam 0")
    expect(outputs.nth(1)).to_contain_text("beam 1")
    expect(outputs.nth(0)).to_contain_text("beam score")
    shot(page, "beams")


def test_dry_config_runs_and_its_stage_is_in_the_distribution(page, app_url):
    run_generate(page, app_url, "?max_new_tokens=8&samples=1&dry_multiplier=0.8&seed=2")
    open_token(page, 0, 3)
    expect(page.get_by_role("gridcell", name="dry", exact=True).first).to_be_visible(timeout=30_000)


def test_order_study_compares_two_orders_stage_by_stage(page, app_url):
    query = ("?max_new_tokens=6&samples=1&temperature=1.5&min_p=0.1&seed=1&view=sweep"
             "&axis=order:temperature>min_p, min_p>temperature")
    open_app(page, app_url, query.replace(" ", "%20").replace(">", "%3E"))
    page.locator("#run-sweep").click()
    wait_done(page, "sweep-status")
    page.get_by_role("tab", name="Distributions").click()
    expect(page.locator("#dist-caption")).to_contain_text("step 0", timeout=30_000)
    page.get_by_text("Compare with another output's settings").click()
    page.locator("#compare").click()
    caption = page.locator("#compare-caption")
    expect(caption).to_contain_text("order=min_p>temperature", timeout=30_000)
    expect(caption).to_contain_text(re.compile(r"they (part after \d+ processor|agree at every stage)"))
    expect(page.locator("#compare-table")).to_contain_text("distance (TV)")
    # and where the two outputs part: their final distributions at every shared step, the first fork marked
    expect(page.locator("#divergence-caption")).to_contain_text(
        re.compile(r"(then at step \d+ .* vs |choose the same token at all \d+ steps)"))
    expect(page.locator("#divergence-table")).to_contain_text("KL(0‖1)")
    shot(page, "order-study")


def test_diverse_beam_groups_run_and_the_distribution_names_what_earlier_groups_chose(page, app_url):
    open_app(page, app_url, "?max_new_tokens=8&samples=1&num_beams=4&num_beam_groups=2&diversity_penalty=1.5"
                            "&num_return_sequences=4&do_sample=false")
    page.get_by_text("Beams", exact=True).click()
    expect(page.locator("#param-num_beam_groups input[type=number]")).to_have_value("2")
    page.locator("#run").click()
    wait_done(page, "generate-status")
    outputs = page.locator("#tokens .dp-sample")
    expect(outputs).to_have_count(4)
    for beam in range(4):
        expect(outputs.nth(beam)).to_contain_text(f"beam {beam}")
        expect(outputs.nth(beam)).to_contain_text("beam score")
        expect(outputs.nth(beam)).to_contain_text(re.compile(r"group [01]"))
    # some returned beam comes from group 1: its diversity_penalty stage lowered what group 0 chose
    captions = []
    for beam in range(4):
        caption = open_token(page, beam, 1)
        expect(caption).to_contain_text(f"beam {beam} · step 1", timeout=30_000)
        captions.append(caption.inner_text())
    later_group = next((beam for beam, c in enumerate(captions) if "earlier beam groups chose" in c), None)
    assert later_group is not None, captions
    caption = open_token(page, later_group, 1)
    expect(caption).to_contain_text(f"beam {later_group} · step 1", timeout=30_000)
    expect(caption).to_contain_text("diversity_penalty 1.5 per choice")
    expect(page.get_by_role("gridcell", name="diversity_penalty", exact=True).first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)  # let the figure finish drawing for the screenshot
    shot(page, "diverse-beams")


def test_beams_are_shown_while_searching_and_stop_keeps_the_best(page, app_url):
    open_app(page, app_url, "?max_new_tokens=200&samples=1&num_beams=4&num_return_sequences=2&do_sample=false")
    page.locator("#run").click()
    status = page.locator("#generate-status")
    expect(status).to_contain_text("beam search step", timeout=RUN_SECONDS)
    expect(page.locator('#tokens .dp-tok[data-sample="1"]').first).to_be_visible()  # the running beams, live
    shot(page, "beams-live")
    page.locator("#stop").click()
    expect(status).to_contain_text(re.compile(r"stopped early \(\d outputs? cut\)"), timeout=STOP_SECONDS)
    outputs = page.locator("#tokens .dp-sample")
    expect(outputs).to_have_count(2)
    expect(outputs.nth(0)).to_contain_text("beam score")
    expect(outputs.nth(0)).to_contain_text("cancelled")


def test_markup_in_a_share_link_is_shown_as_text_in_the_warning(page, app_url):
    page.goto(app_url + "?top_k=" + "%3Ca%20href%3D%22%2F%2Fexample.org%22%3Efix%20here%3C%2Fa%3E")
    toast = page.locator('[data-testid="toast-body"].warning')
    expect(toast).to_be_visible(timeout=60_000)
    expect(toast).to_contain_text('top_k')
    expect(toast).to_contain_text('<a href="//example.org">fix here</a>')  # the value as typed, not a link
    assert toast.locator("a").count() == 0
    assert page.dialogs == []
