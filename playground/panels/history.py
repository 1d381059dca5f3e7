"""History: this browser tab's last runs (Generate, Sweep, branches), one line each; reopen one (its outputs here,
the Distributions view follows it) or compare an output of the current run with an output of an earlier one."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.errors import ParamError

from .. import comparing, history, views
from ..config import whole_number
from ..errors import user_errors
from ..render import CSS, error_html, status_html
from .common import PRIVATE, PageContext, index_sliders

INTRO = (f"The last {history.HISTORY_SIZE} runs of this browser tab (Generate, Sweep, branches), newest first; "
         f"a reload starts a new list. The server keeps the runs themselves, the last {{capacity}} of all visitors "
         f"together: an older one is listed but can no longer be reopened.")


@dataclass
class HistoryPanel:
    tab: gr.Tab
    intro: gr.Markdown
    entries: gr.State  # history.entry dicts, oldest first
    table: gr.Dataframe
    earlier: gr.Dropdown  # a run of the list (reopen it, or compare with it)
    reopen: gr.Button
    status: gr.HTML
    outputs: gr.HTML  # the reopened run's outputs
    current_output: gr.Number
    earlier_output: gr.Number
    step: gr.Number
    compare: gr.Button
    compare_caption: gr.HTML
    compare_table: gr.Dataframe
    divergence_caption: gr.HTML
    divergence_plot: gr.Plot
    divergence_table: gr.Dataframe


def build_history() -> HistoryPanel:
    """The History tab (call inside the page's gr.Tabs)."""
    with gr.Tab("History", id="history") as tab:
        intro = gr.Markdown(INTRO.format(capacity="32"), elem_id="history-intro")
        entries = gr.State([])
        # widths per column (run, time, kind, prompt, settings, outputs, tokens/s, now): a number column keeps its
        # header on one line instead of breaking it letter by letter
        table = gr.Dataframe(label="Runs", interactive=False, wrap=True, elem_id="history-table",
                             column_widths=["6%", "12%", "12%", "13%", "25%", "11%", "11%", "10%"])
        with gr.Row(equal_height=True):
            earlier = gr.Dropdown([], value=None, label="Earlier run", elem_id="history-run", scale=3,
                                  info="Reopen it, or compare the current run with it.")
            reopen = gr.Button("Reopen", elem_id="history-reopen", scale=1, min_width=100)
        status = gr.HTML("", elem_id="history-status", css_template=CSS)
        outputs = gr.HTML("", elem_id="history-outputs", css_template=CSS)
        with gr.Accordion("Compare the current run with the earlier run", open=True, elem_id="history-compare-box"):
            with gr.Row():
                current_output = gr.Number(0, label="current run's output", precision=0, minimum=0,
                                           elem_id="history-current-output")
                earlier_output = gr.Number(0, label="earlier run's output", precision=0, minimum=0,
                                           elem_id="history-earlier-output")
                step = gr.Number(0, label="step", precision=0, minimum=0, elem_id="history-step",
                                 info="Where the earlier output's settings run on the current output's context.")
            compare = gr.Button("Compare", elem_id="history-compare")
            divergence_caption = gr.HTML("", elem_id="history-divergence-caption", css_template=CSS)
            # the plot and tables appear with the first comparison (empty, they said nothing)
            divergence_plot = gr.Plot(label="Where the two outputs part: their final distributions, step by step",
                                      elem_id="history-divergence-plot", visible=False)
            divergence_table = gr.Dataframe(label="Per shared step (up to the first fork)", interactive=False,
                                            elem_id="history-divergence-table", visible=False)
            compare_caption = gr.HTML("", elem_id="history-compare-caption")
            compare_table = gr.Dataframe(label="The earlier output's settings on this context, stage by stage",
                                         interactive=False, elem_id="history-compare-table", visible=False)
    return HistoryPanel(tab, intro, entries, table, earlier, reopen, status, outputs, current_output, earlier_output,
                        step, compare, compare_caption, compare_table, divergence_caption, divergence_plot,
                        divergence_table)


def wire_history(page: PageContext, demo: gr.Blocks, panel: HistoryPanel,
                 dist_sliders: tuple[gr.Slider, gr.Slider]) -> None:
    """Every run the page shows (page.run_id changes) joins the list; Reopen and Compare."""
    store = page.store
    listing = [panel.entries, panel.table, panel.earlier]

    def record(entries: Any, current: str, chosen: Any):
        run = store.find(current) if isinstance(current, str) and current else None
        kept = history.remember(entries, run) if run is not None else entries or []
        menu = history.choices(kept)
        # the menu keeps its choice while it is still listed; else it offers the run before the current one
        value = chosen if chosen in [v for _, v in menu] else next((v for _, v in menu if v != current), None)
        return kept, history.table(kept, store, current), gr.Dropdown(choices=menu, value=value)

    page.run_id.change(record, [panel.entries, page.run_id, panel.earlier], listing, show_progress="hidden",
                       **PRIVATE)
    demo.load(lambda: INTRO.format(capacity=store.capacity), None, panel.intro, show_progress="hidden", **PRIVATE)

    @user_errors
    def reopen(entries: Any, chosen: Any):
        run = history.kept_run(store, entries or [], chosen)
        return (run.run_id, *index_sliders(run), views.render_run(store, run, "final"),
                status_html(f"Showing run {run.number} again: " + views.run_status(run)))

    panel.reopen.click(reopen, [panel.entries, panel.earlier],
                       [page.run_id, *dist_sliders, panel.outputs, panel.status], show_progress="hidden", **PRIVATE)

    @user_errors
    @page.device_scope
    def compare_with_earlier(entries: Any, current: str, chosen: Any, row: Any, other: Any, step: Any):
        # (not named `compare`: the page's events would take that name from the public /compare endpoint)
        try:
            if not current:
                raise ParamError("current run", "a finished run (run Generate or a sweep first)", None)
            run = store.get(current)
            earlier = history.kept_run(store, entries or [], chosen)
            row = whole_number("current run's output", row, text=True)
            other = whole_number("earlier run's output", other, text=True)
            parted = comparing.divergence(store, run, row, other, other_run=earlier)
            shown = comparing.compare(store, run, row, whole_number("step", step, text=True), other,
                                      other_run=earlier)
        except ParamError as exc:  # said in the caption (it stays), then once as a toast
            yield {panel.divergence_caption: error_html(str(exc))}
            raise
        yield {panel.divergence_caption: html.escape(f"Run {run.number} (current) vs run {earlier.number}: "
                                                     + parted.caption),
               panel.divergence_plot: gr.Plot(parted.figure, visible=True),
               panel.divergence_table: gr.Dataframe(parted.table, visible=True),
               panel.compare_caption: html.escape(shown.caption),
               panel.compare_table: gr.Dataframe(shown.table, visible=True)}

    # the replays take a moment: a line says so at once (no progress overlay: a failed comparison is one line and
    # one toast, not an error pill on every output)
    compared = [panel.divergence_caption, panel.divergence_plot, panel.divergence_table, panel.compare_caption,
                panel.compare_table]
    panel.compare.click(lambda: status_html("Comparing: replaying both outputs ..."), None, panel.divergence_caption,
                        queue=False, **PRIVATE).then(
        compare_with_earlier,
        [panel.entries, page.run_id, panel.earlier, panel.current_output, panel.earlier_output, panel.step],
        compared, show_progress="hidden", **PRIVATE)
