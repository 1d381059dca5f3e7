"""Generate: Run streams the samples of one configuration, coloured by probability; Stop ends the run. A token
opens a popup (its probabilities and alternatives); an alternative branches the output from there, and "Edit and
continue" goes on from an edited text; the branch tree under the outputs shows any earlier run again."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.errors import ParamError
from engine.sweepspec import SweepSpec
from engine.switching import current_engine

from .. import branching, views
from ..config import whole_number
from ..errors import internal_error, user_errors
from ..render import CSS, error_html, status_html
from ..render_branches import popup_html
from ..runs import BranchLink, Run
from ..slots import concurrency
from .common import (PRIVATE, TOKEN_POPUP_BOX_JS, TOKEN_POPUP_JS, TREE_CLICK_JS, PageContext, disarm_after,
                     index_sliders, session)
from .chat import ChatPanel, build_chat, chat_prompt, shown_components, wire_chat
from .form import config_from_form

NO_RUN = ParamError("output", "an output of a finished run (run Generate or a sweep first)", None)


@dataclass
class GeneratePanel:
    tab: gr.Tab
    status: gr.HTML
    tokens: gr.HTML
    popup: gr.HTML  # a token's popup (filled on a click, placed beside the token by the page)
    tree: gr.HTML  # the branch tree of the shown run
    color_by: gr.Radio
    sample_table: gr.Dataframe
    edit_output: gr.Dropdown
    edit_load: gr.Button
    edit_text: gr.Textbox
    edit_run: gr.Button
    pick: gr.State  # the alternative picked in the popup ({run, sample, step, token}), for the branch it starts
    chat: ChatPanel  # chat mode: the conversation Run continues


def build_generate() -> GeneratePanel:
    """The Generate tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Generate", id="generate") as tab:
        chat = build_chat()
        status = gr.HTML(status_html("Press Run. Click any token for its alternatives; continue with one to branch."),
                         elem_id="generate-status", css_template=CSS)
        tokens = gr.HTML("", elem_id="tokens", js_on_load=TOKEN_POPUP_JS, css_template=CSS)
        popup = gr.HTML("", elem_id="token-popup", js_on_load=TOKEN_POPUP_BOX_JS, css_template=CSS)
        tree = gr.HTML("", elem_id="branch-tree", js_on_load=TREE_CLICK_JS, css_template=CSS)
        color_by = gr.Radio(["final", "raw"], value="final", label="Colour tokens by",
                            info="final: the distribution sampled from; raw: the model's own.")
        # shown with the first finished run (an empty table with bare headers said nothing)
        sample_table = gr.Dataframe(label="Per output", interactive=False, wrap=True, visible=False,
                                    elem_id="sample-table")
        with gr.Accordion("Edit and continue", open=False, elem_id="edit-accordion"):
            with gr.Row(equal_height=True):
                edit_output = gr.Dropdown([], label="output", elem_id="edit-output", scale=3,
                                          info="The same settings, seed and sample go on from your edited text.")
                edit_load = gr.Button("Edit this output", elem_id="edit-load", scale=1)
            edit_text = gr.Textbox("", label="edited text", lines=3, elem_id="edit-text",
                                   info="The output's start as you want it (at most max_new_tokens tokens).")
            edit_run = gr.Button("Continue from my edit", elem_id="edit-run")
        pick = gr.State(None)
    return GeneratePanel(tab, status, tokens, popup, tree, color_by, sample_table, edit_output, edit_load, edit_text,
                         edit_run, pick, chat)


def wire_generate(page: PageContext, panel: GeneratePanel, run: gr.Button, stop: gr.Button,
                  dist_sliders: tuple[gr.Slider, gr.Slider], branch: gr.Button, branch_token: gr.Dropdown) -> None:
    """Run (in the settings column) -> the Generate view; `dist_sliders`: the Distributions view's output and step,
    reset for each new run. `branch` (in Distributions) continues the output and step those sliders show with
    `branch_token` instead, into the Generate view; so do a popup's alternatives and "Continue from my edit"."""
    engine, store = page.engine, page.store
    outputs = [panel.tokens, panel.status, panel.sample_table, page.run_id, *dist_sliders, panel.tree,
               panel.edit_output, panel.popup]

    def shown(run: Run, color_by: str) -> dict:
        """A finished run in the view: its table, its tree and outputs, and the Distributions view on it."""
        return {panel.sample_table: gr.Dataframe(views.sample_table(run), visible=True), page.run_id: run.run_id,
                **dict(zip(dist_sliders, index_sliders(run))), panel.tree: branching.branch_tree_html(store, run),
                panel.edit_output: gr.Dropdown(choices=branching.output_choices(run), value=0)}

    def stream_into_view(make_spec: Callable[[], tuple[SweepSpec, str, BranchLink | None]], request: gr.Request):
        """Run a spec into the Generate view: its frames, then the finished run's table and ids. make_spec gives
        the spec, the colouring and the parent (a branch); a ParamError it raises is shown in the status like
        one from the run."""
        try:
            spec, color_by, parent = make_spec()
            yield {panel.popup: ""}  # the tokens it was about are redrawn
            for frame in views.stream_run(engine, store, spec, "generate", color_by,
                                          store.stop_flag(session(request)), page.slots, parent):
                update = {panel.status: status_html(frame.status)}
                if frame.html:  # none while queued: the last run's outputs stay until this one starts
                    update[panel.tokens] = frame.html
                if frame.run is not None:
                    update.update(shown(frame.run, color_by))
                yield update
        except ParamError as exc:  # said once beside the outputs (it stays), then once as a toast
            yield {panel.status: error_html(str(exc))}
            raise
        except Exception as exc:  # a real fault: its id beside the outputs and in a toast, its traceback in the log
            error = internal_error(exc, "the page's generate")
            yield {panel.status: error_html(error.message, "Internal error")}
            raise error from None

    @user_errors
    @page.device_scope
    def run_generate(request: gr.Request, **settings: Any):
        chat_on, turns = settings.pop("chat_on", False), settings.pop("chat_messages", None)  # not sent: off

        def spec() -> tuple[SweepSpec, str, None]:
            config = config_from_form(settings)
            if chat_on:  # the conversation through the chat template, as the raw prompt (engine.chat)
                prompt = chat_prompt(current_engine(engine).loaded, config.system_prompt, turns or [])
                config = config.replace(prompt=prompt, raw=True, system_prompt="")
            return dataclasses.replace(config, axes=()).sweep_spec(), config.color_by, None
        yield from stream_into_view(spec, request)

    def branch_of(run_id: Any, sample: Any, step: Any, token: Any) -> tuple[SweepSpec, str, BranchLink]:
        if not run_id:
            raise ParamError("branch", "an output of a finished run (run Generate or a sweep first)", None)
        if token is None or token == "":
            raise ParamError("branch token", "one of the alternatives listed for this step", token)
        spec, link = branching.branch_run(store, store.get(run_id), whole_number("output", sample, text=True),
                                          whole_number("step", step, text=True),
                                          whole_number("branch token", token, text=True))
        return spec, "final", link

    @user_errors
    @page.device_scope
    def run_branch(current: str, sample: Any, step: Any, token: Any, request: gr.Request):
        yield from stream_into_view(lambda: branch_of(current, sample, step, token), request)

    @user_errors
    @page.device_scope
    def run_pick(picked: Any, request: gr.Request):
        picked = picked if isinstance(picked, dict) else {}
        yield from stream_into_view(lambda: branch_of(picked.get("run"), picked.get("sample"), picked.get("step"),
                                                      picked.get("token")), request)

    @user_errors
    @page.device_scope
    def run_edit(current: str, output: Any, text: Any, request: gr.Request):
        def spec() -> tuple[SweepSpec, str, BranchLink]:
            if not current:
                raise NO_RUN
            made, link = branching.edit_run(store, store.get(current), whole_number("output", output, text=True), text)
            return made, "final", link
        yield from stream_into_view(spec, request)

    def stop_run(request: gr.Request) -> None:
        store.stop(session(request))

    def starting(message: str) -> Callable[..., tuple]:
        """The first, unqueued part of a run: the Generate view, Stop armed, a status line."""
        return lambda: (gr.Tabs(selected="generate"), "generate", gr.Button(interactive=True), status_html(message))

    started = [page.tabs, page.view, stop, panel.status]
    # Run shows the Generate view and arms Stop for the length of the run (Stop is idle otherwise)
    chat = panel.chat
    append_reply = wire_chat(chat, store)
    generating = run.click(starting("Starting: reading the prompt ..."), None, started, queue=False, **PRIVATE).then(
        run_generate, inputs_kwargs={**page.form.widgets, "chat_on": chat.enabled, "chat_messages": chat.messages},
        outputs=outputs, preprocess=False, show_progress="hidden", **concurrency(page.slots), **PRIVATE)
    page.refresh_estimates(disarm_after(generating, stop))
    generating.success(append_reply, [chat.enabled, page.run_id, chat.messages, page.form.widgets["system_prompt"]],
                       shown_components(chat), **PRIVATE)
    stop.click(stop_run, None, None, queue=False, **PRIVATE)
    branch_event = branch.click(
        starting("Branching: the kept tokens, then the new choice ..."), None, started, queue=False, **PRIVATE).then(
        run_branch, [page.run_id, *dist_sliders, branch_token], outputs, preprocess=False, show_progress="hidden",
        **concurrency(page.slots), **PRIVATE)
    disarm_after(branch_event, stop)

    def picked(event: gr.EventData) -> tuple:
        return (*starting("Branching: the kept tokens, then the new choice ...")(), getattr(event, "_data", None))

    # a popup's "continue with this": the pick is kept, then the branch runs like Distributions' button
    popup_branching = panel.popup.click(picked, None, [*started, panel.pick], queue=False, **PRIVATE).then(
        run_pick, [panel.pick], outputs, preprocess=False, show_progress="hidden", **concurrency(page.slots),
        **PRIVATE)
    disarm_after(popup_branching, stop)
    editing = panel.edit_run.click(
        starting("Continuing from the edited text ..."), None, started, queue=False, **PRIVATE).then(
        run_edit, [page.run_id, panel.edit_output, panel.edit_text], outputs, preprocess=False,
        show_progress="hidden", **concurrency(page.slots), **PRIVATE)
    disarm_after(editing, stop)

    @user_errors
    @page.device_scope
    def show_popup(event: gr.EventData):
        data = getattr(event, "_data", None) or {}
        if not data.get("run"):  # a run still streaming: its tokens open once it is kept
            gr.Info("This run is still going: its tokens open once it has finished.")
            return gr.skip()
        run_shown = store.get(data["run"])
        sample = whole_number("output", data.get("sample"), text=True)
        step = whole_number("step", data.get("step"), text=True)
        return popup_html(branching.token_popup(store, run_shown, sample, step),
                          whole_number("nonce", data.get("nonce", 0)))

    panel.tokens.select(show_popup, None, panel.popup, show_progress="hidden", **PRIVATE)

    @user_errors
    def show_run(colour: str, event: gr.EventData):
        """A node of the branch tree: that run in the view again (Distributions, metrics and exports follow)."""
        data = getattr(event, "_data", None) or {}
        shown_run = store.get(data.get("run"))
        return {panel.tokens: views.render_run(store, shown_run, colour), panel.popup: "",
                panel.status: status_html(f"Showing run {shown_run.number}: " + views.run_status(shown_run)),
                **shown(shown_run, colour)}

    panel.tree.click(show_run, [panel.color_by], outputs, **PRIVATE)

    @user_errors
    def load_edit(current: str, output: Any) -> str:
        if not current:
            raise NO_RUN
        return branching.output_text(store.get(current), whole_number("output", output, text=True))

    panel.edit_load.click(load_edit, [page.run_id, panel.edit_output], panel.edit_text, **PRIVATE)

    @user_errors
    def recolor(current: str, colour: str) -> str:
        if not current:
            return gr.skip()
        shown_run = store.get(current)
        return views.render_run(store, shown_run, colour) if shown_run.kind == "generate" else gr.skip()

    panel.color_by.change(recolor, [page.run_id, panel.color_by], panel.tokens, **PRIVATE)
