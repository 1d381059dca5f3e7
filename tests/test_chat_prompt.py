"""A conversation as the prompt (engine/chat.py) against the tokenizer's own apply_chat_template, and the engine
whose model the page's picker replaces (engine/switching.py)."""
from __future__ import annotations

import pytest

from engine.chat import chat_prompt_ids, chat_prompt_text, check_messages, with_reply
from engine.errors import ParamError
from engine.generate import Engine, EngineLimits
from engine.models import tiny_random_model
from engine.params import SamplingParams
from engine.switching import current_engine, switchable

SYSTEM = {"role": "system", "content": "You answer in one sentence."}
USER = {"role": "user", "content": "Name a colour."}
REPLY = {"role": "assistant", "content": "Blue."}
AGAIN = {"role": "user", "content": "Another one?"}


def reference(bundled, messages, **flags) -> list[int]:
    return [int(i) for i in bundled.tokenizer.apply_chat_template(messages, return_dict=False, **flags)]


@pytest.mark.parametrize("messages", [[USER], [SYSTEM, USER], [SYSTEM, USER, REPLY, AGAIN]])
def test_a_last_user_turn_gets_the_generation_prompt(bundled, messages):
    ids = chat_prompt_ids(bundled, messages)
    assert ids == reference(bundled, messages, add_generation_prompt=True)
    assert bundled.encode_prompt(chat_prompt_text(bundled, messages), raw=True) == ids  # the page's raw path


def test_one_user_message_is_the_prompt_the_engine_builds_today(bundled):
    assert chat_prompt_ids(bundled, [USER]) == bundled.encode_prompt(USER["content"])
    assert chat_prompt_ids(bundled, [SYSTEM, USER]) == bundled.encode_prompt(USER["content"],
                                                                             system_prompt=SYSTEM["content"])


def test_a_partly_written_assistant_turn_is_continued_not_closed(bundled):
    partial = {"role": "assistant", "content": "My favourite colour is"}
    messages = [SYSTEM, USER, partial]
    ids = chat_prompt_ids(bundled, messages)
    assert ids == reference(bundled, messages, continue_final_message=True)
    text = chat_prompt_text(bundled, messages)
    assert text.endswith("My favourite colour is")  # no end-of-turn token after it: the model goes on
    assert bundled.encode_prompt(text, raw=True) == ids
    assert ids[:len(reference(bundled, [SYSTEM, USER], add_generation_prompt=True))] == reference(
        bundled, [SYSTEM, USER], add_generation_prompt=True)


def test_an_empty_assistant_turn_is_the_generation_prompt(bundled):
    empty = {"role": "assistant", "content": ""}
    assert chat_prompt_ids(bundled, [USER, empty]) == reference(bundled, [USER], add_generation_prompt=True)


@pytest.mark.parametrize("messages, field", [
    ([], "messages"),
    ([{"role": "robot", "content": "x"}], "messages[0].role"),
    ([USER, SYSTEM], "messages[1].role"),
    ([{"role": "user", "content": "  "}], "messages[0].content"),
    ([{"role": "user", "content": 3}], "messages[0].content"),
    ([SYSTEM], "messages"),
])
def test_bad_turns_are_refused_naming_the_field(messages, field):
    with pytest.raises(ParamError) as info:
        check_messages(messages)
    assert str(info.value).startswith(f"{field}:")


def test_the_reply_continues_an_assistant_turn_or_starts_one():
    assert with_reply([USER], " Red.") == [USER, {"role": "assistant", "content": " Red."}]
    assert with_reply([USER, {"role": "assistant", "content": "Dark"}], " red.") == [
        USER, {"role": "assistant", "content": "Dark red."}]


def test_a_switch_leaves_runs_in_flight_on_the_old_model(tiny):
    other = tiny_random_model(vocab_from=tiny, seed=1)
    engine = switchable(Engine(tiny, EngineLimits(max_rows=8)))
    assert switchable(engine) is engine
    prompt = tiny.encode_prompt("Hello", raw=True)
    params = [SamplingParams(temperature=0.0, max_new_tokens=6, min_new_tokens=6)]
    pinned = current_engine(engine)
    steps = pinned.stream(prompt, params)
    next(steps)  # a run in flight on the first model
    engine.switch(other)
    assert engine.loaded is other and pinned.loaded is tiny
    assert engine.limits.max_rows == 8 and engine.current.turns is pinned.turns
    for update in steps:
        result = update.result
    assert result.rows[0].token_ids == Engine(tiny).generate(prompt, params).rows[0].token_ids
    later = engine.generate(prompt, params).rows[0].token_ids
    assert later == Engine(other).generate(prompt, params).rows[0].token_ids
    assert later != result.rows[0].token_ids  # the two random models do differ here
