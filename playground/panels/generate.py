"""Generate: Run streams the samples of one configuration, coloured by probability; Stop ends the run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.params import ParamError
from engine.sweepspec import SweepSpec

from .. import views
from ..config import whole_number
from ..errors import internal_error, user_errors
from ..render import CSS, error_html, status_html
from ..slots import concurrency
from .common import PRIVATE, TOKEN_CLICK_JS, PageContext, disarm_after, index_sliders, session
from .form import config_from_form


@dataclass
class GeneratePanel:
    tab: gr.Tab
    status: gr.HTML
    tokens: gr.HTML
    color_by: gr.Radio
    sample_table: gr.Dataframe


def build_generate() -> GeneratePanel:
    """The Generate tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Generate", id="generate") as tab:
        status = gr.HTML(status_html("Press Run. Click any token to see its distribution."),
                         elem_id="generate-status", css_template=CSS)
        tokens = gr.HTML("", elem_id="tokens", js_on_load=TOKEN_CLICK_JS, css_template=CSS)
        color_by = gr.Radio(["final", "raw"], value="final", label="Colour tokens by",
                            info="final: the distribution sampled from; raw: the model's own.")
        # shown with the first finished run (an empty table with bare headers said nothing)
        sample_table = gr.Dataframe(label="Per output", interactive=False, wrap=True, visible=False,
                                    elem_id="sample-table")
    return GeneratePanel(tab, status, tokens, color_by, sample_table)


def wire_generate(page: PageContext, panel: GeneratePanel, run: gr.Button, stop: gr.Button,
                  dist_sliders: tuple[gr.Slider, gr.Slider], branch: gr.Button, branch_token: gr.Dropdown) -> None:
    """Run (in the settings column) -> the Generate view; `dist_sliders`: the Distributions view's output and step,
    reset for each new run. `branch` (in Distributions) continues the output and step those sliders show with
    `branch_token` instead, into the Generate view."""
    engine, store = page.engine, page.store
    outputs = [panel.tokens, panel.status, panel.sample_table, page.run_id, *dist_sliders]

    def stream_into_view(make_spec: Callable[[], tuple[SweepSpec, str]], request: gr.Request):
        """Run a spec into the Generate view: its frames, then the finished run's table and ids. make_spec gives
        the spec and the colouring; a ParamError it raises is shown in the status like one from the run."""
        try:
            spec, color_by = make_spec()
            for frame in views.stream_run(engine, store, spec, "generate", color_by,
                                          store.stop_flag(session(request)), page.slots):
                update = {panel.status: status_html(frame.status)}
                if frame.html:  # none while queued: the last run's outputs stay until this one starts
                    update[panel.tokens] = frame.html
                if frame.run is not None:
                    update.update({panel.sample_table: gr.Dataframe(views.sample_table(frame.run), visible=True),
                                   page.run_id: frame.run.run_id, **dict(zip(dist_sliders, index_sliders(frame.run)))})
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
        def spec() -> tuple[SweepSpec, str]:
            config = config_from_form(settings)
            return dataclasses.replace(config, axes=()).sweep_spec(), config.color_by
        yield from stream_into_view(spec, request)

    @user_errors
    @page.device_scope
    def run_branch(current: str, sample: Any, step: Any, token: Any, request: gr.Request):
        def spec() -> tuple[SweepSpec, str]:
            if not current:
                raise ParamError("branch", "an output of a finished run (run Generate or a sweep first)", None)
            if token is None or token == "":
                raise ParamError("branch token", "one of the alternatives listed for this step", token)
            return views.branch_spec(store.get(current), whole_number("output", sample, text=True),
                                     whole_number("step", step, text=True),
                                     whole_number("branch token", token, text=True)), "final"
        yield from stream_into_view(spec, request)

    def stop_run(request: gr.Request) -> None:
        store.stop(session(request))

    # Run shows the Generate view and arms Stop for the length of the run (Stop is idle otherwise)
    generating = run.click(
        lambda: (gr.Tabs(selected="generate"), "generate", gr.Button(interactive=True),
                 status_html("Starting: reading the prompt ...")), None,
        [page.tabs, page.view, stop, panel.status], queue=False, **PRIVATE).then(
        run_generate, inputs_kwargs=page.form.widgets, outputs=outputs, preprocess=False, show_progress="hidden",
        **concurrency(page.slots), **PRIVATE)
    page.refresh_estimates(disarm_after(generating, stop))
    stop.click(stop_run, None, None, queue=False, **PRIVATE)
    branching = branch.click(
        lambda: (gr.Tabs(selected="generate"), "generate", gr.Button(interactive=True),
                 status_html("Branching: the kept tokens, then the new choice ...")), None,
        [page.tabs, page.view, stop, panel.status], queue=False, **PRIVATE).then(
        run_branch, [page.run_id, *dist_sliders, branch_token], outputs, preprocess=False, show_progress="hidden",
        **concurrency(page.slots), **PRIVATE)
    disarm_after(branching, stop)

    @user_errors
    def recolor(current: str, colour: str) -> str:
        if not current:
            return gr.skip()
        shown = store.get(current)
        return views.render_run(store, shown, colour) if shown.kind == "generate" else gr.skip()

    panel.color_by.change(recolor, [page.run_id, panel.color_by], panel.tokens, **PRIVATE)
