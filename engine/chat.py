"""A conversation (system / user / assistant turns) as the prompt the model continues.

The page's chat mode and any caller with a message list: the turns go through the model's chat template the way
LoadedModel.encode_prompt sends one message. The model writes the assistant's turn: after a last user turn a new
one (add_generation_prompt), after a partly written last assistant turn the rest of it (continue_final_message:
the template stops right after that text, with no end-of-turn token). An empty last assistant turn is the same as
none (transformers' continue_final_message cannot find an empty text in the rendered chat).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .errors import ParamError, check_text
from .models import LoadedModel

ROLES = ("system", "user", "assistant")
MAX_TURNS = 200  # a bound for page and link input; the context length bounds the text itself


def check_messages(messages: Any) -> list[dict[str, str]]:
    """Validated turns as plain {"role", "content"} dicts. A system turn only first; at least one user or
    assistant turn; every content valid text (an assistant turn may be empty: the model writes it)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ParamError("messages", "a non-empty list of {role, content} turns", messages)
    if len(messages) > MAX_TURNS:
        raise ParamError("messages", f"at most {MAX_TURNS} turns", len(messages))
    checked = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in ROLES:
            raise ParamError(f"messages[{i}].role", f"one of {', '.join(ROLES)}", role)
        if role == "system" and i > 0:
            raise ParamError(f"messages[{i}].role", "user or assistant (a system turn comes first only)", role)
        content = message.get("content")
        check_text(f"messages[{i}].content", content, allow_empty=True)
        if role == "user" and not content.strip():
            raise ParamError(f"messages[{i}].content", "a non-empty user message", content)
        checked.append({"role": role, "content": content})
    if all(m["role"] == "system" for m in checked):
        raise ParamError("messages", "at least one user or assistant turn after the system prompt", len(checked))
    return checked


def template_call(messages: Sequence[Mapping[str, str]]) -> tuple[list[dict[str, str]], dict[str, bool]]:
    """The turns and apply_chat_template's flags for "the model writes the assistant's turn next"."""
    turns = check_messages(messages)
    last = turns[-1]
    if last["role"] == "assistant" and not last["content"].strip():
        turns = turns[:-1]  # an empty assistant turn: the model starts it (the same prompt as after the user turn)
    if turns[-1]["role"] == "assistant":
        return turns, {"add_generation_prompt": False, "continue_final_message": True}
    return turns, {"add_generation_prompt": True}


def chat_prompt_ids(loaded: LoadedModel, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The conversation's token ids, ready for the assistant's (next or unfinished) turn.

    Without a chat template the turns' texts are joined by blank lines (as LoadedModel.encode_messages does)."""
    turns, flags = template_call(messages)
    if not loaded.has_chat_template():
        return list(loaded.tokenizer(plain_text(turns))["input_ids"])
    # transformers 5 returns a BatchEncoding by default; return_dict=False gives the plain ids
    ids = loaded.tokenizer.apply_chat_template(turns, return_dict=False, **flags)
    return [int(i) for i in ids]


def chat_prompt_text(loaded: LoadedModel, messages: Sequence[Mapping[str, str]]) -> str:
    """The conversation as the text a raw prompt holds (the page runs it with raw=True): tokenized as a raw
    prompt is (LoadedModel.encode_prompt(text, raw=True)), it gives chat_prompt_ids. The template's leading
    BOS is left out when the tokenizer adds one itself, so that it is not there twice."""
    turns, flags = template_call(messages)
    if not loaded.has_chat_template():
        return plain_text(turns)
    text = loaded.tokenizer.apply_chat_template(turns, tokenize=False, **flags)
    bos = loaded.tokenizer.bos_token
    adds_bos = loaded.tokenizer.bos_token_id in loaded.tokenizer("")["input_ids"]
    return text[len(bos):] if bos and adds_bos and text.startswith(bos) else text


def plain_text(turns: Sequence[Mapping[str, str]]) -> str:
    return "\n\n".join(m["content"] for m in turns if m["content"])


def with_reply(messages: Sequence[Mapping[str, str]], reply: str) -> list[dict[str, str]]:
    """The conversation after the model's reply: the last assistant turn continued, else a new assistant turn."""
    turns = [dict(m) for m in messages]
    if turns and turns[-1]["role"] == "assistant":
        turns[-1]["content"] += reply
    else:
        turns.append({"role": "assistant", "content": reply})
    return turns
