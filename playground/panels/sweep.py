"""Sweep: up to three axes over any parameter, every cell x sample as one batch; grid, heatmap, table, files."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.decoding_modes import MODE_AXIS, MODE_HELP, MODE_NAMES
from engine.errors import ParamError
from engine.sweepspec import AXIS_NAMES, MAX_AXES

from .. import views
from ..errors import internal_error, user_errors
from ..plots import COLOR_SCALES
from ..render import CSS, error_html, progress_html, status_html
from ..slots import concurrency
from .common import PRIVATE, TOKEN_CLICK_JS, PageContext, disarm_after, index_sliders, session
from .form import NO_AXIS, config_from_form

AXIS_CHOICES = [NO_AXIS, *AXIS_NAMES]
SEEDS_INFO = ("Off: every cell uses the same seed, so sample i of every cell draws the same random numbers and "
              "cells often start with the same words (by design: differences come from the parameters). On: each "
              "cell gets its own seed, derived from the seed and its axis values (reproducible).")


@dataclass
class SweepPanel:
    tab: gr.Tab
    axis_names: list[gr.Dropdown]
    axis_values: list[gr.Textbox]
    independent_seeds: gr.Checkbox
    estimate: gr.HTML
    run: gr.Button
    stop: gr.Button
    status: gr.HTML
    metric: gr.Dropdown
    scale: gr.Radio
    heatmap: gr.Plot
    grid: gr.HTML
    table: gr.Dataframe
    csv_file: gr.File
    json_file: gr.File


def build_sweep() -> SweepPanel:
    """The Sweep tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Sweep", id="sweep") as tab:
        gr.Markdown("Up to three axes over any parameter. Values: `0.2, 0.9`, ranges `0.1:0.9:0.2`, "
                    "orders `temperature>min_p, min_p>temperature`. Every cell x sample runs as one batch. "
                    "The axis `decoding_mode` puts whole strategies side by side (its values: "
                    f"{', '.join(MODE_NAMES)}): {MODE_HELP}.")
        axis_names, axis_values = [], []
        for i in range(MAX_AXES):
            with gr.Row():
                axis_names.append(gr.Dropdown(AXIS_CHOICES, value=NO_AXIS, label=f"axis {i + 1}",
                                              elem_id=f"axis-name-{i + 1}", scale=1))
                axis_values.append(gr.Textbox("", label=f"axis {i + 1} values", scale=2,
                                              elem_id=f"axis-values-{i + 1}"))
        seeds = gr.Checkbox(False, label="independent seeds per cell", elem_id="independent-seeds", info=SEEDS_INFO)
        estimate = gr.HTML("", elem_id="sweep-estimate", css_template=CSS)
        with gr.Row():
            run = gr.Button("Run sweep", variant="primary", elem_id="run-sweep")
            stop = gr.Button("Stop", variant="secondary", elem_id="stop-sweep", interactive=False)
        status = gr.HTML("", elem_id="sweep-status", css_template=CSS)
        with gr.Row():
            metric = gr.Dropdown(list(views.GRID_METRICS), value="perplexity", label="Heatmap metric")
            scale = gr.Radio(list(COLOR_SCALES), value="clipped", label="Colour scale", elem_id="heatmap-scale",
                             info="clipped: an outlier takes the end colour instead of flattening the rest; every "
                                  "cell shows its value.")
        # the heatmap, the table and the files appear with the first sweep (empty, they said nothing)
        heatmap = gr.Plot(label="Metric over the axes", elem_id="heatmap", visible=False)
        grid = gr.HTML("", elem_id="sweep-grid", css_template=CSS, js_on_load=TOKEN_CLICK_JS)
        table = gr.Dataframe(label="One row per sample", interactive=False, wrap=True, visible=False,
                             elem_id="sweep-table")
        with gr.Row():
            csv_file = gr.File(label="CSV", interactive=False, visible=False)
            json_file = gr.File(label="JSON", interactive=False, visible=False)
    return SweepPanel(tab, axis_names, axis_values, seeds, estimate, run, stop, status, metric, scale, heatmap, grid,
                      table, csv_file, json_file)


def wire_sweep(page: PageContext, panel: SweepPanel, dist_sliders: tuple[gr.Slider, gr.Slider]) -> None:
    """Run sweep -> grid, heatmap, table and files; the heatmap redrawn when its metric or scale changes."""
    engine, store = page.engine, page.store
    outputs = [panel.status, panel.grid, panel.heatmap, panel.table, panel.csv_file, panel.json_file, page.run_id,
               *dist_sliders]

    @user_errors
    @page.device_scope
    def run_sweep(request: gr.Request, *, heatmap_metric: str, heatmap_scale: str, **settings: Any):
        try:
            config = config_from_form(settings)
            stop = store.stop_flag(session(request))
            for frame in views.stream_run(engine, store, config.sweep_spec(), "sweep", stop=stop, slots=page.slots):
                if frame.run is None:
                    yield {panel.status: progress_html(frame.progress, frame.status)}
                    continue
                run = frame.run
                grid_html, figure, table = views.sweep_outputs(run, heatmap_metric, heatmap_scale, store)
                csv_path, json_path = views.export_files(run)
                yield (progress_html(1.0, frame.status), grid_html, gr.Plot(figure, visible=True),
                       gr.Dataframe(table, visible=True), gr.File(csv_path, visible=True),
                       gr.File(json_path, visible=True), run.run_id, *index_sliders(run))
        except ParamError as exc:  # said once beside the outputs (it stays), then once as a toast
            yield {panel.status: error_html(str(exc))}
            raise
        except Exception as exc:  # a real fault: its id beside the outputs and in a toast, its traceback in the log
            error = internal_error(exc, "the page's sweep")
            yield {panel.status: error_html(error.message, "Internal error")}
            raise error from None

    def stop_run(request: gr.Request) -> None:
        store.stop(session(request))

    sweeping = panel.run.click(
        lambda: (gr.Button(interactive=True), status_html("Starting: reading the prompt ...")),
        None, [panel.stop, panel.status], queue=False, **PRIVATE).then(
        run_sweep, inputs_kwargs={**page.form.widgets, "heatmap_metric": panel.metric, "heatmap_scale": panel.scale},
        outputs=outputs, preprocess=False, show_progress="hidden", **concurrency(page.slots), **PRIVATE)
    page.refresh_estimates(disarm_after(sweeping, panel.stop))

    def mode_values(name: str, text: str) -> Any:
        """Choosing decoding_mode for an empty axis fills in every mode's name (edit the list as you like)."""
        return ", ".join(MODE_NAMES) if name == MODE_AXIS and not (text or "").strip() else gr.skip()

    for name_box, values_box in zip(panel.axis_names, panel.axis_values):
        name_box.input(mode_values, [name_box, values_box], values_box, queue=False, **PRIVATE)
    panel.stop.click(stop_run, None, None, queue=False, **PRIVATE)

    @user_errors
    def rechart(current: str, metric: str, scale: str):
        run = store.get(current) if current else None
        if run is None or run.sweep is None:
            return gr.skip()
        return views.sweep_outputs(run, metric, scale)[1]

    for control in (panel.metric, panel.scale):
        control.change(rechart, [page.run_id, panel.metric, panel.scale], panel.heatmap, **PRIVATE)
