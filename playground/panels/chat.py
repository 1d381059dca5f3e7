"""Chat mode in the Generate view: a conversation (the Settings' system prompt, then user / assistant turns) that
Run continues. The turns are added, edited and deleted here; the prompt they make is engine.chat's (the model's
chat template, continuing a partly written last assistant turn), and the first output's text becomes the
assistant's turn when the run ends."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.chat import MAX_TURNS, chat_prompt_text, check_messages, with_reply
from engine.errors import ParamError, check_text
from engine.models import LoadedModel

from ..errors import user_errors
from ..render import CSS
from ..runs import RunStore
from .common import PRIVATE

NEW_TURN = "new"
ROLE_CHOICES = ("user", "assistant")
PREVIEW = 48  # characters of a turn in the turn picker


@dataclass
class ChatPanel:
    enabled: gr.Checkbox
    turns: gr.HTML  # the conversation as it stands
    turn: gr.Dropdown  # which turn the editor holds (NEW_TURN: one to add)
    role: gr.Radio
    text: gr.Textbox
    save: gr.Button
    delete: gr.Button
    clear: gr.Button
    messages: gr.State  # [{"role", "content"}, ...] without the system prompt (Settings holds it)


def build_chat() -> ChatPanel:
    """The "Chat" group (call inside the Generate tab)."""
    with gr.Accordion("Chat: a conversation Run continues", open=False, elem_id="chat-group"):
        enabled = gr.Checkbox(False, label="Chat mode: Run continues this conversation (not the Prompt box)",
                              info="The Settings' system prompt comes first; the model writes the assistant's turn "
                                   "(after a last user turn a new one; a last assistant turn is continued). The "
                                   "first output becomes the assistant's turn.", elem_id="chat-on")
        turns = gr.HTML(turns_html([]), elem_id="chat-turns", css_template=CSS)
        with gr.Row(equal_height=True):
            turn = gr.Dropdown(turn_choices([]), value=NEW_TURN, label="turn", elem_id="chat-turn", scale=2,
                               info="A turn to edit or delete, or a new one.")
            role = gr.Radio(list(ROLE_CHOICES), value="user", label="role", elem_id="chat-role", scale=1)
        text = gr.Textbox("", label="message", lines=2, elem_id="chat-text",
                          info="An assistant turn may be left partly written (or empty): Run continues it.")
        with gr.Row():
            save = gr.Button("Add turn", elem_id="chat-save", variant="secondary")
            delete = gr.Button("Delete turn", elem_id="chat-delete", interactive=False)
            clear = gr.Button("Clear conversation", elem_id="chat-clear")
        messages = gr.State([])
    return ChatPanel(enabled, turns, turn, role, text, save, delete, clear, messages)


def turns_html(messages: list[dict[str, str]]) -> str:
    if not messages:
        return '<div class="dp-status">No turns yet: add a user message below.</div>'
    empty = "<i>(empty: the model writes it)</i>"
    rows = "".join(f'<li data-role="{html.escape(m["role"])}"><b>{html.escape(m["role"])}</b>: '
                   f'<span class="dp-chat-text" style="white-space: pre-wrap">{html.escape(m["content"]) or empty}'
                   f'</span></li>' for m in messages)
    return f'<ol class="dp-chat" aria-label="conversation">{rows}</ol>'


def turn_choices(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(label, value) per turn, numbered from 1, then the new turn."""
    def preview(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW else text[:PREVIEW - 1] + "…"
    return [(f"{i + 1} · {m['role']}: {preview(m['content'])}", str(i + 1)) for i, m in enumerate(messages)] + [
        ("new turn", NEW_TURN)]


def conversation(system_prompt: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The turns a chat run sends: the system prompt (if any), then the page's turns (validated)."""
    check_text("system_prompt", system_prompt or "", allow_empty=True)
    if not messages:
        raise ParamError("chat", "at least one turn (add a user message in Chat, or turn chat mode off)", 0)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return check_messages(system + list(messages))


def chat_prompt(loaded: LoadedModel, system_prompt: Any, messages: list[dict[str, str]]) -> str:
    """The raw prompt text of the conversation (engine.chat: the model's chat template)."""
    return chat_prompt_text(loaded, conversation(system_prompt, messages))


def _index(turn: Any, messages: list[dict[str, str]]) -> int | None:
    """The picked turn's index, None for a new one."""
    if turn in (None, "", NEW_TURN):
        return None
    try:
        index = int(turn) - 1
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(messages):
        raise ParamError("turn", f"a turn in [1, {len(messages)}] or a new one", turn)
    return index


def shown_components(panel: ChatPanel) -> list[gr.components.Component]:
    """What show() fills: the turns, the conversation and the editor."""
    return [panel.messages, panel.turns, panel.turn, panel.role, panel.text, panel.save, panel.delete]


def show(messages: list[dict[str, str]], editing: int | None = None) -> tuple:
    """The conversation, and the editor on turn `editing` (None: a new turn, its role the one that follows)."""
    if editing is None:
        role = "assistant" if messages and messages[-1]["role"] == "user" else "user"
        editor = (NEW_TURN, role, "", gr.Button("Add turn"), gr.Button(interactive=False))
    else:
        message = messages[editing]
        editor = (str(editing + 1), message["role"], message["content"], gr.Button("Save turn"),
                  gr.Button(interactive=True))
    return messages, turns_html(messages), gr.Dropdown(turn_choices(messages), value=editor[0]), *editor[1:]


def wire_chat(panel: ChatPanel, store: RunStore) -> Callable[..., tuple]:
    """The editor's events; returns the handler that adds a finished chat run's reply (inputs: chat on, the run's
    id, the turns, the system prompt; outputs: shown_components)."""
    shown = shown_components(panel)

    @user_errors
    def pick(turn: Any, messages: list[dict[str, str]]) -> tuple:
        return show(messages, _index(turn, messages))

    @user_errors
    def save(turn: Any, role: Any, text: Any, messages: list[dict[str, str]]) -> tuple:
        index = _index(turn, messages)
        if role not in ROLE_CHOICES:
            raise ParamError("role", f"one of {', '.join(ROLE_CHOICES)}", role)
        check_text("message", text if isinstance(text, str) else None, allow_empty=role == "assistant")
        if role == "user" and not text.strip():
            raise ParamError("message", "a non-empty user message", text)
        turns = [dict(m) for m in messages]
        if index is None:
            if len(turns) >= MAX_TURNS:
                raise ParamError("chat", f"at most {MAX_TURNS} turns", len(turns) + 1)
            turns.append({"role": role, "content": text})
        else:
            turns[index] = {"role": role, "content": text}
        return show(turns)

    @user_errors
    def delete(turn: Any, messages: list[dict[str, str]]) -> tuple:
        index = _index(turn, messages)
        return show([m for i, m in enumerate(messages) if i != index])

    panel.turn.input(pick, [panel.turn, panel.messages], shown, **PRIVATE)
    panel.save.click(save, [panel.turn, panel.role, panel.text, panel.messages], shown, **PRIVATE)
    panel.delete.click(delete, [panel.turn, panel.messages], shown, **PRIVATE)
    panel.clear.click(lambda: show([]), None, shown, **PRIVATE)

    def append_reply(enabled: bool, run_id: Any, messages: list[dict[str, str]], system_prompt: Any) -> tuple:
        """After a chat run: the first output's text is the assistant's turn (continued, or a new one). Only for
        the run of this conversation (a run stopped while queued leaves the view on an earlier run)."""
        run = store.find(run_id) if enabled and isinstance(run_id, str) and run_id else None
        try:
            ours = run is not None and run.prompt == chat_prompt((run.engine or store.engine).loaded, system_prompt,
                                                                 messages)
        except ParamError:
            ours = False
        if not ours:
            return tuple(gr.skip() for _ in shown)
        return show(with_reply(messages, run.generation.rows[0].text))

    return append_reply
