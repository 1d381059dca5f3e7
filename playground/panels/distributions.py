"""Distributions: the next-token distribution of one output at one step, after every processor; and the same
context under another output's settings."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.errors import ParamError

from .. import branching, comparing
from ..config import whole_number
from ..errors import user_errors
from ..shown_cache import ShownDistributions
from .common import PRIVATE, PageContext


@dataclass
class DistributionsPanel:
    tab: gr.Tab
    caption: gr.HTML
    sample: gr.Slider
    step: gr.Slider
    top: gr.Slider
    plot: gr.Plot
    table: gr.Dataframe
    guidance_plot: gr.Plot  # classifier-free guidance: the unconditional distribution (shown for guided outputs)
    guidance_table: gr.Dataframe
    steps_plot: gr.Plot
    steps_shown: gr.State  # "run id:output" of the figure in steps_plot (a step move re-sends it only for another)
    branch_token: gr.Dropdown
    branch: gr.Button
    compare_with: gr.Number
    compare: gr.Button
    compare_caption: gr.HTML
    compare_table: gr.Dataframe
    compare_plot: gr.Plot
    divergence_caption: gr.HTML
    divergence_table: gr.Dataframe
    divergence_plot: gr.Plot


def build_distributions() -> DistributionsPanel:
    """The Distributions tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Distributions", id="distributions") as tab:
        # captions quote model text: HTML components given escaped text (never Markdown)
        caption = gr.HTML("Run Generate or a sweep, then pick an output and a step (or click a token in Generate).",
                          elem_id="dist-caption")
        with gr.Row():
            sample = gr.Slider(0, 1, value=0, step=1, label="output", elem_id="dist-sample")
            step = gr.Slider(0, 1, value=0, step=1, label="step", elem_id="dist-step")
            top = gr.Slider(5, 60, value=20, step=1, label="tokens shown")
        plot = gr.Plot(label="Next-token distribution after each processor", elem_id="dist-plot")
        table = gr.Dataframe(label="Per stage", interactive=False)
        guidance_plot = gr.Plot(label="Classifier-free guidance: the unconditional (negative prompt) distribution, "
                                      "the conditional one and the guided result", visible=False,
                                elem_id="dist-guidance-plot")
        guidance_table = gr.Dataframe(label="Classifier-free guidance", interactive=False, visible=False,
                                      elem_id="dist-guidance-table")
        steps_plot = gr.Plot(label="Over the steps", elem_id="dist-steps-plot")
        steps_shown = gr.State("")
        with gr.Row(equal_height=True):
            branch_token = gr.Dropdown([], label="Branch: continue this output from this step with",
                                       info="Its tokens before this step are kept; the same settings, seed and sample "
                                            "go on, so the branch differs only by this choice.",
                                       elem_id="branch-token", scale=3)
            branch = gr.Button("Continue with this token", elem_id="branch-run", scale=1)
        with gr.Accordion("Compare with another output's settings (e.g. another processor order)", open=False):
            with gr.Row():
                compare_with = gr.Number(1, label="other output", precision=0, minimum=0, elem_id="compare-with",
                                         info="Its settings run on this output's context at this step.")
                compare = gr.Button("Compare", elem_id="compare")
            compare_caption = gr.HTML("", elem_id="compare-caption")
            compare_table = gr.Dataframe(label="Stage by stage", interactive=False, elem_id="compare-table")
            compare_plot = gr.Plot(label="The other settings on this context")
            divergence_caption = gr.HTML("", elem_id="divergence-caption")
            divergence_plot = gr.Plot(label="Where the two outputs part: their final distributions, step by step",
                                      elem_id="divergence-plot")
            divergence_table = gr.Dataframe(label="Per shared step (up to the first fork)", interactive=False,
                                            elem_id="divergence-table")
    return DistributionsPanel(tab, caption, sample, step, top, plot, table, guidance_plot, guidance_table,
                              steps_plot, steps_shown, branch_token, branch,
                              compare_with, compare,
                              compare_caption, compare_table, compare_plot,
                              divergence_caption, divergence_table, divergence_plot)


# A move of a slider moves the "Over the steps" marker in the page (a relayout of the figure shown), just after
# the request has left (the relayout takes tens of ms: it runs while the server answers, not before it is asked);
# the server re-sends that figure only when it shows another output or run (a new figure costs the browser a
# full redraw, the largest part of a move's time).
MOVE_STEP_MARKER_JS = """
(...values) => {
  const figure = document.querySelector('#dist-steps-plot .js-plotly-plot');
  const shapes = figure && figure.layout && figure.layout.shapes;
  if (window.Plotly && shapes && shapes.length) {
    const step = Number(values[2]), update = {};
    shapes.forEach((_, i) => { update[`shapes[${i}].x0`] = step; update[`shapes[${i}].x1`] = step; });
    setTimeout(() => window.Plotly.relayout(figure, update), 0);
  }
  return values;
}
"""


def wire_distributions(page: PageContext, panel: DistributionsPanel, clickables: tuple[gr.HTML, ...]) -> None:
    """The sliders and the tab show a distribution; a click on a token in any of `clickables` opens its own."""
    store = page.store
    shown_views = ShownDistributions(store)
    inputs = [page.run_id, panel.sample, panel.step, panel.top, panel.steps_shown]
    outputs = [panel.caption, panel.plot, panel.table, panel.steps_plot, panel.step, panel.branch_token,
               panel.guidance_plot, panel.guidance_table, panel.steps_shown]

    @user_errors
    @page.device_scope
    def show_distribution(current: str, sample: Any, step: Any, top: Any, steps_shown: str | None = None):
        if not current:
            return (gr.skip(),) * len(outputs)
        run = store.get(current)
        # sliders never go below 1 as a maximum (Gradio needs min < max): clamp to this run's range
        sample = min(whole_number("output", sample, text=True), run.row_count - 1)
        last = len(run.generation.rows[sample].token_ids) - 1
        step = min(whole_number("step", step, text=True), last)
        top = whole_number("tokens shown", top, text=True)
        shown = shown_views.get(run, sample, step, top)
        choices = branching.branch_choices(store, run, sample, step)
        shown_views.prefetch(run, sample, step + 1, top)  # the step an arrow key shows next
        steps_key = f"{run.run_id}:{sample}"  # the same output's figure is on the page: its marker moved there
        return (html.escape(shown.caption), shown.figure, shown.table,
                gr.skip() if steps_shown == steps_key else shown.steps,
                gr.Slider(maximum=max(last, 1), value=step),
                gr.Dropdown(choices=choices, value=run.generation.rows[sample].token_ids[step]),
                gr.Plot(value=shown.guidance, visible=shown.guidance is not None),
                gr.Dataframe(value=shown.guidance_table, visible=shown.guidance_table is not None), steps_key)

    for slider in (panel.sample, panel.step, panel.top):
        # input: what a person does (Enter or arrow keys in the box, arrow keys on the track, a drag), never
        # the value the handler itself sets; always_last: a drag replays where it stops, not every step passed;
        # no progress overlay on the outputs: a move answers within a fraction of a second, and the overlay's
        # own redraws were a large part of it
        slider.input(show_distribution, inputs, outputs, preprocess=False, trigger_mode="always_last",
                     show_progress="hidden", js=MOVE_STEP_MARKER_JS, **PRIVATE)
    panel.tab.select(show_distribution, inputs, outputs, preprocess=False, **PRIVATE)

    @user_errors
    def open_token(current: str, top: Any, event: gr.EventData):
        picked = getattr(event, "_data", None) or {}
        sample, step = picked.get("sample"), picked.get("step")
        if not current or sample is None or step is None:
            return (gr.skip(),) * (3 + len(outputs))
        shown = show_distribution(current, sample, step, top)  # the steps figure sent: its marker is at this step
        return (gr.Tabs(selected="distributions"), "distributions", gr.Slider(value=int(sample)), *shown)

    for clickable in clickables:  # a token in Generate, or in a sweep grid's cell
        clickable.click(open_token, [page.run_id, panel.top],
                        [page.tabs, page.view, panel.sample, *outputs], **PRIVATE)
    wire_compare(page, panel)


def wire_compare(page: PageContext, panel: DistributionsPanel) -> None:
    """Compare: another output's settings on this output's context at this step, stage by stage; and both
    outputs' own final distributions at every step of their shared prefix, up to where they first part."""
    store = page.store

    @user_errors
    @page.device_scope
    def compare_outputs(current: str, sample: Any, step: Any, other: Any, top: Any):
        if not current:
            raise ParamError("run", "a finished run (run Generate or a sweep first)", None)
        run = store.get(current)
        row, other = whole_number("output", sample, text=True), whole_number("other output", other, text=True)
        shown = comparing.compare(store, run, row, whole_number("step", step, text=True), other,
                                  whole_number("tokens shown", top, text=True))
        parted = comparing.divergence(store, run, row, other)
        return (html.escape(shown.caption), shown.table, shown.figure,
                html.escape(parted.caption), parted.table, parted.figure)

    panel.compare.click(compare_outputs, [page.run_id, panel.sample, panel.step, panel.compare_with, panel.top],
                        [panel.compare_caption, panel.compare_table, panel.compare_plot,
                         panel.divergence_caption, panel.divergence_table, panel.divergence_plot],
                        preprocess=False, **PRIVATE)
