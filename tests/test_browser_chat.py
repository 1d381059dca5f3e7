"""The page's model picker and its chat mode (issue 16, item 10), in Chromium as a person uses them.

The app runs here on its own (module-scoped): the picker replaces its model, which the session's shared app must
keep. Screenshots at a laptop's 1440x900 and a phone's 390x844 go to artifacts/screenshots/.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from conftest import launched_app
from engine.chat import chat_prompt_ids
from engine.generate import Engine
from engine.models import load_model, tiny_random_model
from engine.params import SamplingParams
from pages import RUN_SECONDS, SCREENSHOTS, open_app, set_text, shot, sized_page, wait_done

LAPTOP, PHONE = (1440, 900), (390, 844)
SYSTEM = "You answer briefly."
GREEDY = "?temperature=0&max_new_tokens=10&min_new_tokens=10&samples=1&system=You+answer+briefly."


@pytest.fixture(scope="module")
def chat_app(bundled):
    """The whole app on the bundled model, for this module alone (its model picker replaces the model)."""
    with launched_app(bundled) as url:
        yield url


# The loading state may last a fraction of a second (the hub is not reachable here, which is known at once): a
# watcher notes whether the status ever showed its progress bar with the Load button disabled meanwhile.
WATCH_LOADING = """() => {
  window.dpSawLoading = {bar: false, disabled: false};
  const look = () => {
    if (document.querySelector('#model-status progress')) window.dpSawLoading.bar = true;
    if (document.querySelector('#model-load').disabled) window.dpSawLoading.disabled = true;
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def open_group(page: Page, elem_id: str) -> None:
    """Open an accordion (a click on its label) and wait for its contents."""
    page.locator(f"#{elem_id} > button").first.click()
    expect(page.locator(f"#{elem_id} .label-wrap.open, #{elem_id} button.open").first).to_be_visible(timeout=10_000)


def add_turn(page: Page, role: str, text: str) -> None:
    page.locator("#chat-role").get_by_label(role, exact=True).check()
    set_text(page, "chat-text", text)
    page.locator("#chat-save").click()
    expect(page.locator("#chat-text textarea")).to_have_value("", timeout=10_000)  # the editor is on a new turn


def pick_turn(page: Page, label_start: str) -> None:
    page.locator("#chat-turn input").click()
    page.locator("#chat-turn").get_by_role("option").filter(has_text=label_start).first.click()


def shot_at(page: Page, elem_id: str, name: str) -> None:
    """The screen a person sees with `elem_id` at its top (a phone's full page is too long to read)."""
    page.locator(f"#{elem_id}").evaluate("(element) => element.scrollIntoView({block: 'start'})")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_a_conversation_is_edited_then_run_continues_the_assistant_turn(browser, chat_app, bundled, size):
    with sized_page(browser, *size) as page:
        open_app(page, chat_app, GREEDY)
        open_group(page, "chat-group")
        page.locator("#chat-on input").check()
        add_turn(page, "user", "Name a colour.")
        expect(page.locator("#chat-role").get_by_label("assistant", exact=True)).to_be_checked()  # what comes next
        add_turn(page, "assistant", "My favourite fruit is")
        add_turn(page, "user", "a turn to delete")
        pick_turn(page, "3 · user")
        page.locator("#chat-delete").click()
        expect(page.locator("#chat-turns li")).to_have_count(2)
        pick_turn(page, "1 · user")  # edit: the first question changes
        expect(page.locator("#chat-text textarea")).to_have_value("Name a colour.")
        set_text(page, "chat-text", "Name a fruit.")
        page.locator("#chat-save").click()
        expect(page.locator("#chat-turns li").first).to_contain_text("Name a fruit.")
        shot_at(page, "chat-group", f"chat-before-run-{size[0]}")

        page.locator("#run").click()
        wait_done(page, "generate-status")
        # the model continued the partly written assistant turn, as engine.chat builds it: the same greedy tokens
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a fruit."},
                    {"role": "assistant", "content": "My favourite fruit is"}]
        params = [SamplingParams(temperature=0.0, max_new_tokens=10, min_new_tokens=10)]
        reply = Engine(bundled).generate(chat_prompt_ids(bundled, messages), params).rows[0].text
        assert reply.strip()
        expect(page.locator("#chat-turns li")).to_have_count(2, timeout=30_000)  # continued, not a new turn
        expect(page.locator("#chat-turns li").last).to_contain_text("My favourite fruit is" + reply.rstrip(),
                                                                    timeout=30_000)
        # a user turn after it, and Run answers with a new assistant turn
        add_turn(page, "user", "Why?")
        page.locator("#run").click()
        expect(page.locator("#chat-turns li")).to_have_count(4, timeout=RUN_SECONDS)
        expect(page.locator("#chat-turns li").last).to_contain_text("assistant")
        shot(page, f"chat-after-run-{size[0]}-full")
        shot_at(page, "chat-group", f"chat-after-run-{size[0]}")


def test_an_empty_conversation_in_chat_mode_is_a_readable_error(browser, chat_app):
    with sized_page(browser, *LAPTOP) as page:
        open_app(page, chat_app, GREEDY)
        open_group(page, "chat-group")
        page.locator("#chat-on input").check()
        page.locator("#run").click()
        expect(page.locator("#generate-status")).to_contain_text("chat: must be at least one turn", timeout=30_000)


def test_the_model_picker_loads_a_directory_says_why_not_and_runs_on_the_new_model(browser, chat_app, bundled,
                                                                                  tmp_path):
    # a tiny random model in save_pretrained's layout, with the bundled tokenizer
    tiny = tiny_random_model(vocab_from=bundled, seed=3, init_std=1.0)
    saved = tmp_path / "tiny-model"
    tiny.model.save_pretrained(saved)
    tiny.tokenizer.save_pretrained(saved)
    with sized_page(browser, *LAPTOP) as page:
        open_app(page, chat_app, GREEDY)
        open_group(page, "model-group")
        status = page.locator("#model-status")
        expect(status).to_contain_text("SmolLM2-135M-Instruct")
        # a directory that is not there
        set_text(page, "model-name", str(tmp_path / "missing"))
        page.locator("#model-load").click()
        expect(status.get_by_role("alert")).to_contain_text("no such directory", timeout=60_000)
        expect(status).to_contain_text("Still running on SmolLM2-135M-Instruct")
        # a hub id that is not cached, with no hub: a sentence, not a traceback; a progress bar while it tries
        set_text(page, "model-name", "HuggingFaceTB/no-such-model-here")
        page.evaluate(WATCH_LOADING)
        page.locator("#model-load").click()
        expect(status.get_by_role("alert")).to_contain_text("not in the local Hugging Face cache", timeout=120_000)
        assert "Traceback" not in status.inner_text()
        assert page.evaluate("window.dpSawLoading") == {"bar": True, "disabled": True}  # while it tried
        expect(page.locator("#model-load")).to_be_enabled()
        shot(page, "model-picker-error-1440")
        # the saved directory: loaded, named, and the next run is its
        set_text(page, "model-name", str(saved))
        page.locator("#model-load").click()
        expect(status).to_contain_text(f"Loaded: {saved}", timeout=120_000)
        expect(page.locator("#intro")).to_contain_text(str(saved))
        page.locator("#run").click()
        wait_done(page, "generate-status")
        loaded = load_model(str(saved))
        params = [SamplingParams(temperature=0.0, max_new_tokens=10, min_new_tokens=10)]
        ids = loaded.encode_prompt(page.locator("#prompt textarea").input_value(), system_prompt=SYSTEM)
        expected = "".join(loaded.pieces(Engine(loaded).generate(ids, params).rows[0].token_ids))
        page.locator("#edit-accordion > button").first.click()
        page.locator("#edit-load").click()
        expect(page.locator("#edit-text textarea")).to_have_value(expected, timeout=30_000)
        shot(page, "model-picker-loaded-1440")
    with sized_page(browser, *PHONE) as page:
        open_app(page, chat_app)
        open_group(page, "model-group")
        expect(page.locator("#model-status")).to_contain_text(f"Loaded: {saved}")
        shot_at(page, "model-group", "model-picker-390")


def test_a_hosted_space_has_no_model_picker(tiny, monkeypatch):
    import app as app_module
    from playground.server import build_page

    assert app_module.parse_args(["--no-model-picker"]).no_model_picker
    monkeypatch.setenv("PLAYGROUND_NO_MODEL_PICKER", "1")
    assert app_module.parse_args([]).no_model_picker
    ids = lambda demo: {getattr(b, "elem_id", None) for b in demo.blocks.values()}  # noqa: E731
    assert "model-name" not in ids(build_page(Engine(tiny), model_picker=False))
    assert "model-name" in ids(build_page(Engine(tiny)))
