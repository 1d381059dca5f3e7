"""Branching in the page: a token's popup (click, keyboard, Escape), continuing with an alternative (a branch in
the tree whose output keeps the prefix and takes the forced token) and "Edit and continue"."""
from __future__ import annotations

import re
from urllib.parse import quote

from playwright.sync_api import Page, expect

from pages import RUN_SECONDS, run_generate, shot, shown_popup, text_box, token_popup, wait_done

QUERY = "?max_new_tokens=8&samples=2&temperature=1&seed=6&prompt=" + quote("Tell me a joke.")


def token(page: Page, sample: int, step: int):
    return page.locator(f'#tokens .dp-tok[data-sample="{sample}"][data-step="{step}"]')


def label_text(aria_label: str) -> str:
    """The quoted token at the start of a token's or a button's accessible name: “…”."""
    return aria_label[aria_label.index("“"):aria_label.index("”") + 1]


def test_a_token_popup_opens_by_click_and_keyboard_and_closes(page, app_url):
    run_generate(page, app_url, QUERY)
    first = token(page, 1, 3)
    assert first.get_attribute("title") is None and first.get_attribute("role") == "button"
    popup = token_popup(page, 1, 3)
    expect(popup).to_contain_text("step 3")
    expect(popup).to_contain_text("final p")
    expect(popup).to_contain_text("rank")
    assert popup.get_by_role("button", name="continue with").count() >= 1
    box, view = popup.bounding_box(), page.viewport_size
    assert box and 0 <= box["x"] and box["x"] + box["width"] <= view["width"]  # inside the window
    assert 0 <= box["y"] and box["y"] + box["height"] <= view["height"]
    shot(page, "token-popup")
    page.keyboard.press("Escape")
    expect(popup).to_be_hidden()
    expect(first).to_be_focused()  # Escape gives the focus back to the token
    # keyboard: Tab from one token to the next, Enter opens its popup
    token(page, 0, 0).focus()
    page.keyboard.press("Tab")
    expect(token(page, 0, 1)).to_be_focused()
    page.keyboard.press("Enter")
    popup = shown_popup(page, 0, 1)
    expect(popup).to_contain_text("step 1")
    popup.get_by_role("button", name="Close").click()
    expect(popup).to_be_hidden()
    # a click outside closes it; "Open in Distributions" keeps the old path
    popup = token_popup(page, 0, 2)
    page.locator("#generate-status").click()
    expect(popup).to_be_hidden()
    token_popup(page, 0, 2).get_by_role("button", name="Open in Distributions").click()
    expect(page.locator("#dist-caption")).to_contain_text("sample 0 · step 2", timeout=30_000)


def test_continuing_with_an_alternative_makes_a_branch_in_the_tree(page, app_url):
    run_generate(page, app_url, QUERY)
    parent = [token(page, 1, s).inner_text() for s in range(3)]
    popup = token_popup(page, 1, 3)
    button = popup.get_by_role("button", name="continue with").first
    forced = label_text(button.get_attribute("aria-label"))
    button.click()
    wait_done(page, "generate-status")
    expect(page.locator("#tokens .dp-sample")).to_have_count(1)
    expect(page.locator("#tokens .dp-sample-title")).to_contain_text("sample 1 · branch at step 3")
    assert [token(page, 0, s).inner_text() for s in range(3)] == parent  # the kept prefix
    assert label_text(token(page, 0, 3).get_attribute("aria-label")) == forced  # then the forced token
    tree = page.locator("#branch-tree")
    nodes = tree.locator(".dp-tree-item")
    expect(nodes).to_have_count(2)
    expect(nodes.nth(1)).to_contain_text(f"output 1 at step 3: {forced.replace('␣', ' ')}")
    expect(nodes.nth(1)).to_contain_text("under the parent")
    expect(tree.locator('[aria-current="true"]')).to_contain_text("branch at step 3")
    shot(page, "branch-tree")
    # the branch is a run like any other: its tokens open popups, and the tree shows the parent again
    expect(token_popup(page, 0, 5)).to_contain_text("branch at step 3")
    page.keyboard.press("Escape")
    nodes.nth(0).get_by_role("button").click()
    expect(page.locator("#tokens .dp-sample")).to_have_count(2, timeout=30_000)
    expect(tree.locator('[aria-current="true"]')).to_contain_text("2 outputs")


def test_edit_and_continue_goes_on_from_the_edited_text(page, app_url):
    run_generate(page, app_url, QUERY)
    page.get_by_text("Edit and continue", exact=True).click()
    page.locator("#edit-load").click()
    box = text_box(page, "edit-text")
    expect(box).to_have_value(page.locator("#tokens .dp-sample").first.locator(".dp-text").inner_text().replace(
        "↵", ""), timeout=30_000)
    box.fill("")
    page.locator("#edit-run").click()
    expect(page.locator("#generate-status")).to_contain_text("edited text", timeout=30_000)
    expect(page.locator('[data-testid="toast-body"].error')).to_contain_text("edited text", timeout=30_000)
    box.fill("Why did the robot")
    page.locator("#edit-run").click()
    wait_done(page, "generate-status")
    expect(page.locator("#tokens .dp-sample")).to_have_count(1)
    expect(page.locator("#tokens .dp-text").first).to_contain_text("Why did the robot", timeout=RUN_SECONDS)
    assert page.locator("#tokens .dp-text").first.inner_text().startswith("Why did the robot")
    expect(page.locator("#branch-tree .dp-tree-item").nth(1)).to_contain_text("edited")
    shot(page, "edit-and-continue")


def test_a_branch_shared_from_the_page_reruns_token_for_token(page, app_url):
    run_generate(page, app_url, QUERY)
    token_popup(page, 1, 3).get_by_role("button", name="continue with").first.click()
    wait_done(page, "generate-status")
    expect(page.locator("#tokens .dp-sample-title")).to_contain_text("sample 1 · branch at step 3")
    branch = [label_text(t.get_attribute("aria-label")) for t in page.locator("#tokens .dp-tok").all()]
    page.get_by_role("tab", name="Share & export").click()
    page.locator("#share-button").click()
    link = text_box(page, "share-link")
    expect(link).to_have_value(re.compile(r"prefix_ids=[0-9,]+"), timeout=30_000)
    expect(page.locator("#share-source")).to_contain_text("branch shown in Generate")
    expect(page.locator("#export-preset")).to_contain_text('"first_sample": 1')
    url = link.input_value()
    assert "first_sample=1" in url and "samples=1" in url
    opened = page.context.new_page()
    opened.goto(url)
    expect(opened.locator("#preset-info")).to_contain_text("forced start", timeout=60_000)
    box = text_box(opened, "prefix")
    expect(box).to_be_visible()
    expect(box).not_to_be_editable()  # a branch's exact token ids, shown as their text
    assert box.input_value().strip()
    shot(opened, "branch-link-opened")
    opened.locator("#run").click()
    wait_done(opened, "generate-status")
    expect(opened.locator("#tokens .dp-sample")).to_have_count(1)
    expect(opened.locator("#tokens .dp-sample-title")).to_contain_text("sample 1 · branch at step 3")
    again = [label_text(t.get_attribute("aria-label")) for t in opened.locator("#tokens .dp-tok").all()]
    assert again == branch
    # the prefix can be removed: the next run is free again (and the link no longer holds it)
    opened.locator("#prefix-remove").click()
    expect(opened.locator("#prefix")).to_be_hidden()
    opened.get_by_role("tab", name="Share & export").click()
    opened.locator("#share-button").click()
    expect(text_box(opened, "share-link")).not_to_have_value(re.compile("prefix"), timeout=30_000)
    opened.close()
