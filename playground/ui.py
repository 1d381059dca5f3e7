"""The page: settings on the left, four views on the right (Generate, Sweep, Distributions, Share & export).

Only layout and event wiring live here. Widget values become a PlaygroundConfig (config_from_values), views
come from playground.views, and every ParamError becomes a readable gr.Error naming the field.
"""
from __future__ import annotations

import dataclasses
import functools
import html
import inspect
from typing import Any, Callable
from urllib.parse import parse_qs

import gradio as gr

from engine.generate import Engine
from engine.models import BUNDLED_NAME
from engine.params import DEFAULT_ORDER, FIELD_NAMES, NUMERIC_FIELDS, ParamError
from engine.sweepspec import MAX_AXES

from . import views
from .api import register_api
from .config import PlaygroundConfig
from .controls import (CONTROLS, EARLY_STOPPING_CHOICES, GROUPS, ORDER_INFO, params_from_values, values_from_params,
                       widget_value)
from .errors import log_bad_input, user_error
from .exports import export_notes_text, generate_snippet, generation_config_json, openai_request_json
from .presets import Preset, load_presets
from .plots import COLOR_SCALES
from .render import CSS, error_html, estimate_html, progress_html, status_html
from .runs import RunStore

VIEWS = ("generate", "sweep", "distributions", "share")
ESSENTIALS = ("temperature", "max_new_tokens")
SEEDS_INFO = ("Off: every cell uses the same seed, so sample i of every cell draws the same random numbers and "
              "cells often start with the same words (by design: differences come from the parameters). On: each "
              "cell gets its own seed, derived from the seed and its axis values (reproducible).")  # beside the prompt and Run, out of their groups
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
AXIS_CHOICES = ["(none)", *FIELD_NAMES]
TOKEN_CLICK_JS = """
element.addEventListener('click', (event) => {
  const token = event.target.closest('[data-step]');
  if (token) trigger('click', {sample: Number(token.dataset.sample), step: Number(token.dataset.step)});
});
"""
MAX_PAGE_INT = 2**53 - 1  # the largest whole number a browser's numbers hold exactly
SHARE_URL_JS = "(query) => window.location.origin + window.location.pathname + query"
# Copy link: the whole link into the box and onto the clipboard (the async Clipboard API where the page may use
# it, else a selected text area and execCommand), and a line saying which happened.
COPY_LINK_JS = """
async (query) => {
  const url = window.location.origin + window.location.pathname + query;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch (error) {
    const area = document.createElement('textarea');
    area.value = url;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    try { copied = document.execCommand('copy'); } catch (ignored) { copied = false; }
    area.remove();
  }
  const note = copied
    ? '<div class="dp-status dp-copied" role="status">Link copied to the clipboard.</div>'
    : '<div class="dp-status" role="status">This browser did not allow copying: select the link below and copy it.</div>';
  return [url, note];
}
"""
# Gradio's Slider clamps a typed number into its drag range when its number box loses focus (temperature -1
# would become 0, greedy; top_p 2 would become 1), silently. The settings' sliders carry KEEP_TYPED: their box
# keeps what was typed, so the run's own validation (the engine's ranges) names the field and the value, or uses
# a value beyond the drag range (temperature 3) as typed. A capture listener on the document runs before the
# slider's own blur handler and stops the event there (blur does not bubble: nothing else listens for it).
KEEP_TYPED = "keep-typed"
KEEP_TYPED_JS = """
if (!window.__keepTyped) {
  window.__keepTyped = true;
  document.addEventListener('blur', (event) => {
    const box = event.target;
    if (box instanceof HTMLInputElement && box.type === 'number' && box.closest('.%s')) {
      event.stopImmediatePropagation();
    }
  }, true);
}
""" % KEEP_TYPED


# Ctrl+Enter (Cmd+Enter on a Mac) anywhere on the page runs what the open view runs: the sweep in Sweep, else
# Generate. One listener on the document, installed once.
RUN_KEYS_JS = """
if (!window.__runKeys) {
  window.__runKeys = true;
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey) || event.repeat) return;
    const open = document.querySelector('[role=tab][aria-selected=true]');
    const sweep = open && open.textContent.trim() === 'Sweep';
    const button = document.querySelector(sweep ? '#run-sweep' : '#run');
    if (button && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });
}
"""


def user_errors(fn: Callable) -> Callable:
    """Bad input -> gr.Error with the engine's message (field, allowed range, value); never a traceback, in the
    page or in the server log (one line there)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except ParamError as exc:
                raise user_error(exc) from None
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except ParamError as exc:
            raise user_error(exc) from None
    return call


def build_demo(engine: Engine, presets: list[Preset] | None = None,
               device_scope: Callable[[Callable], Callable] = lambda fn: fn) -> gr.Blocks:
    """The whole app for one loaded engine. Nothing is built at import time.

    presets: defaults to examples/*.json. device_scope wraps every handler that runs the model (a hosted
    Space passes `spaces.GPU`, which lends a GPU for the duration of the call).
    """
    store = RunStore(engine)
    presets = load_presets() if presets is None else presets
    preset_by_name = {p.name: p for p in presets}
    model = engine.loaded
    defaults = PlaygroundConfig(prompt=DEFAULT_PROMPT)
    # exports name a model transformers can fetch: the bundled GGUF is a quantized SmolLM2-135M-Instruct
    hub_id = BUNDLED_HUB_ID if model.name == BUNDLED_NAME else model.name

    with gr.Blocks(title="Decoding Playground") as demo:
        gr.Markdown(
            f"## Decoding Playground\n"
            f"What each decoding parameter does: **Generate** streams samples coloured by probability, **Sweep** "
            f"runs a grid of settings as one batch, **Distributions** shows the next-token distribution after every "
            f"processor. Model `{model.name}` on {model.device.type} ({str(model.dtype).removeprefix('torch.')}).",
            elem_id="intro")
        with gr.Row(equal_height=False):
            # ---------------------------------------------------------------- settings
            with gr.Column(scale=1, min_width=340, elem_id="settings"):
                # the first screen: prompt, the two knobs a newcomer moves first, and Run (also on a phone)
                prompt = gr.Textbox(defaults.prompt, label="Prompt", lines=3, elem_id="prompt",
                                    info="Ctrl+Enter (Cmd+Enter) runs, from anywhere on the page.")
                widgets: dict[str, gr.components.Component] = {}
                with gr.Row(elem_id="essentials"):
                    for field in ESSENTIALS:
                        control = next(c for c in CONTROLS if c.field == field)
                        widgets[field] = _widget(control, getattr(defaults.params, field))
                with gr.Row(elem_id="run-bar"):
                    run_button = gr.Button("Run", variant="primary", elem_id="run", scale=3, min_width=120)
                    stop_button = gr.Button("Stop", variant="secondary", elem_id="stop", interactive=False,
                                            scale=1, min_width=80)
                run_estimate = gr.HTML("", elem_id="run-estimate", css_template=CSS)
                with gr.Row():
                    mode = gr.Radio(["chat", "raw"], value="chat", label="Prompt mode",
                                    info="chat: the model's chat template; raw: the text as is.")
                    samples = gr.Slider(1, 16, value=defaults.samples, step=1, label="samples",
                                        info="Outputs to generate (per cell in a sweep).", elem_id="samples",
                                        elem_classes=[KEEP_TYPED])
                system = gr.Textbox(defaults.system_prompt, label="System prompt (chat mode)", lines=1)
                preset = gr.Dropdown([p.name for p in presets], value=None, label="Preset",
                                     info="Load an experiment: prompt, parameters and axes.")
                preset_info = gr.Markdown("", elem_id="preset-info")
                for group in GROUPS:
                    with gr.Accordion(group, open=group == "Sampling"):
                        for control in (c for c in CONTROLS if c.group == group and c.field not in ESSENTIALS):
                            widgets[control.field] = _widget(control, getattr(defaults.params, control.field))
                with gr.Accordion("Processor order", open=False):
                    order = gr.Dropdown(list(DEFAULT_ORDER), value=list(DEFAULT_ORDER), multiselect=True,
                                        label="order", info=ORDER_INFO, elem_id="order")
                    reset_order = gr.Button("Reset to transformers' order", size="sm")
                gr.HTML("", elem_id="keep-typed", js_on_load=KEEP_TYPED_JS)  # nothing to see: installs the listener
                gr.HTML("", elem_id="run-keys", js_on_load=RUN_KEYS_JS)  # the same: Ctrl+Enter runs
            # ---------------------------------------------------------------- views
            with gr.Column(scale=2, elem_id="views"):
                with gr.Tabs(selected="generate") as tabs:
                    with gr.Tab("Generate", id="generate") as generate_tab:
                        generate_status = gr.HTML(status_html("Press Run. Click any token to see its distribution."),
                                                  elem_id="generate-status", css_template=CSS)
                        tokens = gr.HTML("", elem_id="tokens", js_on_load=TOKEN_CLICK_JS, css_template=CSS)
                        color_by = gr.Radio(["final", "raw"], value="final", label="Colour tokens by",
                                            info="final: the distribution sampled from; raw: the model's own.")
                        # shown with the first finished run (an empty table with bare headers said nothing)
                        sample_table = gr.Dataframe(label="Per output", interactive=False, wrap=True,
                                                    visible=False, elem_id="sample-table")
                    with gr.Tab("Sweep", id="sweep") as sweep_tab:
                        gr.Markdown("Up to three axes over any parameter. Values: `0.2, 0.9`, ranges `0.1:0.9:0.2`, "
                                    "orders `temperature>min_p, min_p>temperature`. Every cell x sample runs as one batch.")
                        axis_names, axis_values = [], []
                        for i in range(MAX_AXES):
                            with gr.Row():
                                axis_names.append(gr.Dropdown(AXIS_CHOICES, value="(none)", label=f"axis {i + 1}",
                                                              elem_id=f"axis-name-{i + 1}", scale=1))
                                axis_values.append(gr.Textbox("", label=f"axis {i + 1} values", scale=2,
                                                              elem_id=f"axis-values-{i + 1}"))
                        seeds_box = gr.Checkbox(False, label="independent seeds per cell", elem_id="independent-seeds",
                                                info=SEEDS_INFO)
                        sweep_estimate = gr.HTML("", elem_id="sweep-estimate", css_template=CSS)
                        with gr.Row():
                            sweep_button = gr.Button("Run sweep", variant="primary", elem_id="run-sweep")
                            sweep_stop = gr.Button("Stop", variant="secondary", elem_id="stop-sweep", interactive=False)
                        sweep_status = gr.HTML("", elem_id="sweep-status", css_template=CSS)
                        with gr.Row():
                            metric = gr.Dropdown(list(views.GRID_METRICS), value="perplexity", label="Heatmap metric")
                            scale = gr.Radio(list(COLOR_SCALES), value="clipped", label="Colour scale",
                                             elem_id="heatmap-scale",
                                             info="clipped: an outlier takes the end colour instead of flattening "
                                                  "the rest; every cell shows its value.")
                        # the heatmap, the table and the files appear with the first sweep (empty, they said nothing)
                        heatmap = gr.Plot(label="Metric over the axes", elem_id="heatmap", visible=False)
                        grid = gr.HTML("", elem_id="sweep-grid", css_template=CSS, js_on_load=TOKEN_CLICK_JS)
                        sweep_table = gr.Dataframe(label="One row per sample", interactive=False, wrap=True,
                                                   visible=False, elem_id="sweep-table")
                        with gr.Row():
                            csv_file = gr.File(label="CSV", interactive=False, visible=False)
                            json_file = gr.File(label="JSON", interactive=False, visible=False)
                    with gr.Tab("Distributions", id="distributions") as dist_tab:
                        # captions quote model text: HTML components given escaped text (never Markdown)
                        dist_caption = gr.HTML("Run Generate or a sweep, then pick an output and a step "
                                               "(or click a token in Generate).", elem_id="dist-caption")
                        with gr.Row():
                            dist_sample = gr.Slider(0, 1, value=0, step=1, label="output", elem_id="dist-sample")
                            dist_step = gr.Slider(0, 1, value=0, step=1, label="step", elem_id="dist-step")
                            dist_top = gr.Slider(5, 60, value=20, step=1, label="tokens shown")
                        dist_plot = gr.Plot(label="Next-token distribution after each processor", elem_id="dist-plot")
                        dist_table = gr.Dataframe(label="Per stage", interactive=False)
                        steps_plot = gr.Plot(label="Over the steps")
                        with gr.Accordion("Compare with another output's settings (e.g. another processor order)",
                                          open=False):
                            with gr.Row():
                                compare_with = gr.Number(1, label="other output", precision=0, minimum=0,
                                                         elem_id="compare-with",
                                                         info="Its settings run on this output's context at this step.")
                                compare_button = gr.Button("Compare", elem_id="compare")
                            compare_caption = gr.HTML("", elem_id="compare-caption")
                            compare_table = gr.Dataframe(label="Stage by stage", interactive=False,
                                                         elem_id="compare-table")
                            compare_plot = gr.Plot(label="The other settings on this context")
                    with gr.Tab("Share & export", id="share") as share_tab:
                        gr.Markdown("A link that reproduces this configuration (prompt, parameters, axes, view), and "
                                    "the same settings for transformers and for an OpenAI-style API.")
                        with gr.Row(equal_height=True):
                            share_button = gr.Button("Copy link", elem_id="share-button", variant="primary",
                                                     scale=0, min_width=140)
                            share_note = gr.HTML("", elem_id="share-note", css_template=CSS)
                        share_link = gr.Textbox(label="Link", buttons=["copy"], elem_id="share-link")
                        # the server's query; the page makes it a whole link, so the box never shows half a link
                        share_query = gr.Textbox(visible="hidden", elem_id="share-query")
                        export_notes_box = gr.Textbox(label="What the exports leave out, and notes", lines=3,
                                                      interactive=False, elem_id="export-notes")
                        python_code = gr.Code(label="model.generate(...) (a sweep: a loop over its cells)",
                                              language="python", elem_id="export-python")
                        generation_json = gr.Code(label="GenerationConfig JSON: GenerationConfig(**json) "
                                                        "(a sweep: a list, one per cell)",
                                                  language="json", elem_id="export-generation-config")
                        openai_json = gr.Code(label="OpenAI-style request (a sweep: a list, one per cell)",
                                              language="json", elem_id="export-openai")
        run_id = gr.State("")  # the run the Distributions view shows
        view = gr.State("generate")

        settings = [prompt, mode, system, samples, *axis_names, *axis_values, view, dist_sample, dist_step,
                    color_by, seeds_box, *(widgets[c.field] for c in CONTROLS), order]  # CONTROLS order, whatever the layout

        def config_from_values(values: list[Any]) -> PlaygroundConfig:
            p, m, s, n, *rest = values
            names, texts, rest = rest[:MAX_AXES], rest[MAX_AXES:2 * MAX_AXES], rest[2 * MAX_AXES:]
            current_view, sample, step, colour, independent, *controls = rest
            params = params_from_values(controls[:-1], controls[-1])
            axes = tuple((name, text or "") for name, text in zip(names, texts) if name and name != "(none)")
            return PlaygroundConfig(prompt=p, raw=m == "raw", system_prompt=s or "", params=params,
                                    samples=_whole("samples", n), axes=axes, view=current_view or "generate",
                                    sample=_whole("output", sample), step=_whole("step", step), color_by=colour,
                                    independent_seeds=bool(independent))

        def values_from_config(config: PlaygroundConfig) -> list[Any]:
            names = [a[0] for a in config.axes] + ["(none)"] * (MAX_AXES - len(config.axes))
            texts = [a[1] for a in config.axes] + [""] * (MAX_AXES - len(config.axes))
            return [config.prompt, "raw" if config.raw else "chat", config.system_prompt, config.samples,
                    *names, *texts, config.view, config.sample, config.step, config.color_by,
                    config.independent_seeds, *values_from_params(config.params), list(config.params.order)]

        # ------------------------------------------------------------------------------ how long a run will be
        def estimates(*values: Any) -> tuple[str, str]:
            """Before a run: its rows x tokens and time at the last speed, for Generate and for the sweep."""
            try:
                config = config_from_values(list(values))
                single = views.run_estimate(dataclasses.replace(config, axes=()).sweep_spec(), store.tokens_per_second)
                grid = views.run_estimate(config.sweep_spec(), store.tokens_per_second) if config.axes else ("", False)
            except ParamError:  # a value being typed: the run itself will name it
                return "", ""
            return estimate_html(*single), estimate_html(*grid)

        estimate_inputs = [samples, widgets["max_new_tokens"], *axis_names, *axis_values]
        for control in estimate_inputs:
            control.change(estimates, settings, [run_estimate, sweep_estimate], api_visibility="private",
                           preprocess=False, show_progress="hidden", trigger_mode="always_last")
        demo.load(estimates, settings, [run_estimate, sweep_estimate], api_visibility="private", preprocess=False,
                  show_progress="hidden")

        # ------------------------------------------------------------------------------ Generate
        generate_outputs = [tokens, generate_status, sample_table, run_id, dist_sample, dist_step]

        @user_errors
        @device_scope
        def run_generate(request: gr.Request, *values: Any):
            try:
                config = config_from_values(list(values))
                stop = store.stop_flag(_session(request))
                for frame in views.stream_run(engine, store, dataclasses.replace(config, axes=()).sweep_spec(),
                                              "generate", config.color_by, stop):
                    update = {tokens: frame.html, generate_status: status_html(frame.status)}
                    if frame.run is not None:
                        run = frame.run
                        update.update({sample_table: gr.Dataframe(views.sample_table(run), visible=True),
                                       run_id: run.run_id, **dict(zip((dist_sample, dist_step), _index_sliders(run)))})
                    yield _updates(generate_outputs, update)
            except ParamError as exc:  # said once beside the outputs (it stays), then once as a toast
                yield _updates(generate_outputs, {generate_status: error_html(str(exc))})
                raise

        def stop_run(request: gr.Request) -> None:
            store.stop(_session(request))

        # Run shows the Generate view and arms Stop for the length of the run (Stop is idle otherwise)
        generating = run_button.click(
            lambda: (gr.Tabs(selected="generate"), "generate", gr.Button(interactive=True),
                     status_html("Starting: reading the prompt ...")), None,
            [tabs, view, stop_button, generate_status], queue=False, api_visibility="private").then(
            run_generate, settings, generate_outputs, api_visibility="private", preprocess=False,
            show_progress="hidden")
        _disarm_after(generating, stop_button).then(estimates, settings, [run_estimate, sweep_estimate], api_visibility="private",
                                   preprocess=False, show_progress="hidden")
        stop_button.click(stop_run, None, None, queue=False, api_visibility="private")

        @user_errors
        def recolor(current: str, colour: str) -> str:
            if not current:
                return gr.skip()
            run = store.get(current)
            return views.render_run(store, run, colour) if run.kind == "generate" else gr.skip()

        color_by.change(recolor, [run_id, color_by], tokens, api_visibility="private")

        # ------------------------------------------------------------------------------ Sweep
        sweep_outputs = [sweep_status, grid, heatmap, sweep_table, csv_file, json_file, run_id, dist_sample, dist_step]

        @user_errors
        @device_scope
        def run_sweep(request: gr.Request, *values: Any):
            # the request comes first: Gradio inserts it at its position among the positional inputs
            try:
                config = config_from_values(list(values[:-2]))
                chosen_metric, chosen_scale = values[-2:]
                stop = store.stop_flag(_session(request))
                for frame in views.stream_run(engine, store, config.sweep_spec(), "sweep", stop=stop):
                    if frame.run is None:
                        yield _updates(sweep_outputs, {sweep_status: progress_html(frame.progress, frame.status)})
                        continue
                    run = frame.run
                    grid_html, figure, table = views.sweep_outputs(run, chosen_metric, chosen_scale, store)
                    csv_path, json_path = views.export_files(run)
                    yield (progress_html(1.0, frame.status), grid_html, gr.Plot(figure, visible=True),
                           gr.Dataframe(table, visible=True), gr.File(csv_path, visible=True),
                           gr.File(json_path, visible=True), run.run_id, *_index_sliders(run))
            except ParamError as exc:  # said once beside the outputs (it stays), then once as a toast
                yield _updates(sweep_outputs, {sweep_status: error_html(str(exc))})
                raise

        sweeping = sweep_button.click(
            lambda: (gr.Button(interactive=True), status_html("Starting: reading the prompt ...")),
            None, [sweep_stop, sweep_status], queue=False, api_visibility="private").then(
            run_sweep, [*settings, metric, scale], sweep_outputs, api_visibility="private", preprocess=False,
            show_progress="hidden")
        _disarm_after(sweeping, sweep_stop).then(estimates, settings, [run_estimate, sweep_estimate], api_visibility="private",
                                   preprocess=False, show_progress="hidden")
        sweep_stop.click(stop_run, None, None, queue=False, api_visibility="private")

        @user_errors
        def rechart(current: str, chosen_metric: str, chosen_scale: str):
            run = store.get(current) if current else None
            if run is None or run.sweep is None:
                return gr.skip()
            return views.sweep_outputs(run, chosen_metric, chosen_scale)[1]

        for control in (metric, scale):
            control.change(rechart, [run_id, metric, scale], heatmap, api_visibility="private")

        # ------------------------------------------------------------------------------ Distributions
        @user_errors
        @device_scope
        def show_distribution(current: str, sample: Any, step: Any, top: Any):
            if not current:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            run = store.get(current)
            # sliders never go below 1 as a maximum (Gradio needs min < max): clamp to this run's range
            sample = min(_whole("output", sample), run.row_count - 1)
            last = len(run.generation.rows[sample].token_ids) - 1
            step = min(_whole("step", step), last)
            shown = views.distribution(store, run, sample, step, _whole("tokens shown", top))
            return (html.escape(shown.caption), shown.figure, shown.table, shown.steps,
                    gr.Slider(maximum=max(last, 1), value=step))

        dist_outputs = [dist_caption, dist_plot, dist_table, steps_plot, dist_step]
        for slider in (dist_sample, dist_step, dist_top):
            # input: what a person does (Enter or arrow keys in the box, arrow keys on the track, a drag), never
            # the value the handler itself sets; always_last: a drag replays where it stops, not every step passed
            slider.input(show_distribution, [run_id, dist_sample, dist_step, dist_top], dist_outputs,
                         api_visibility="private", preprocess=False, trigger_mode="always_last")
        dist_tab.select(show_distribution, [run_id, dist_sample, dist_step, dist_top], dist_outputs,
                        api_visibility="private", preprocess=False)

        @user_errors
        @device_scope
        def compare_outputs(current: str, sample: Any, step: Any, other: Any, top: Any):
            if not current:
                raise ParamError("run", "a finished run (run Generate or a sweep first)", None)
            run = store.get(current)
            shown = views.compare(store, run, _whole("output", sample), _whole("step", step),
                                  _whole("other output", other), _whole("tokens shown", top))
            return html.escape(shown.caption), shown.table, shown.figure

        compare_button.click(compare_outputs, [run_id, dist_sample, dist_step, compare_with, dist_top],
                             [compare_caption, compare_table, compare_plot], api_visibility="private",
                             preprocess=False)

        @user_errors
        def open_token(current: str, top: Any, event: gr.EventData):
            picked = getattr(event, "_data", None) or {}
            sample, step = picked.get("sample"), picked.get("step")
            if not current or sample is None or step is None:
                return (gr.skip(),) * 8
            shown = show_distribution(current, sample, step, top)
            return (gr.Tabs(selected="distributions"), "distributions",
                    gr.Slider(value=int(sample)), *shown)

        for clickable in (tokens, grid):  # a token in Generate, or in a sweep grid's cell
            clickable.click(open_token, [run_id, dist_top], [tabs, view, dist_sample, *dist_outputs],
                            api_visibility="private")

        # ------------------------------------------------------------------------------ views, presets, links
        for tab, name in ((generate_tab, "generate"), (sweep_tab, "sweep"), (dist_tab, "distributions")):
            tab.select(lambda n=name: n, None, view, api_visibility="private")

        share_outputs = [share_query, python_code, generation_json, openai_json, share_note, export_notes_box]

        @user_errors
        def share(*values: Any):
            try:
                config = config_from_values(list(values))
            except ParamError as exc:  # said beside the link (it stays), then once as a toast
                yield _updates(share_outputs, {share_note: error_html(str(exc))})
                raise
            query = config.to_query()
            yield ("?" + query if query else "", generate_snippet(config, hub_id),
                   generation_config_json(config, model.tokenizer), openai_request_json(config, model.name), "",
                   export_notes_text(config, model.tokenizer))

        # the query is built on the server, then made whole in the page and, for the button, put on the clipboard
        share_button.click(share, settings, share_outputs, api_visibility="private", preprocess=False,
                           show_progress="hidden").success(
            None, share_query, [share_link, share_note], js=COPY_LINK_JS)
        share_tab.select(share, settings, share_outputs, api_visibility="private", preprocess=False,
                         show_progress="hidden").success(None, share_query, share_link, js=SHARE_URL_JS)

        def apply(config: PlaygroundConfig) -> list[Any]:
            _check_page_numbers(config)
            return [*values_from_config(config), gr.Tabs(selected=config.view if config.view in VIEWS else "generate")]

        @user_errors
        def load_preset(name: str):
            if not name:
                return [gr.skip()] * (len(settings) + 2)
            chosen = preset_by_name.get(name)
            if chosen is None:
                raise ParamError("preset", f"one of {list(preset_by_name)}", name)
            return [f"*{chosen.description}*", *apply(chosen.config)]

        preset.input(load_preset, preset, [preset_info, *settings, tabs], api_visibility="private")

        def restore_from_link(request: gr.Request):
            # the raw query string: a dict would keep only the last of the repeated `axis` keys
            query = str(request.query_params) if request is not None else ""
            if not query:
                return [gr.skip()] * (len(settings) + 2)
            try:
                config = PlaygroundConfig.from_query(query)
                if not config.prompt and "prompt" not in parse_qs(query, keep_blank_values=True):
                    config = config.replace(prompt=DEFAULT_PROMPT)  # a link without a prompt keeps the page's
                shown = apply(config)
            except ParamError as exc:
                log_bad_input(f"link: {exc}")
                gr.Warning(html.escape(f"This link has a bad setting, so the defaults are shown. {exc}"))
                return [gr.skip()] * (len(settings) + 2)
            return ["*Settings restored from the link.*", *shown]

        demo.load(restore_from_link, None, [preset_info, *settings, tabs], api_visibility="private")
        reset_order.click(lambda: list(DEFAULT_ORDER), None, order, api_visibility="private")

        register_api(engine, store)
    return demo


def _widget(control, value: Any) -> gr.components.Component:
    label, elem_id = control.field, f"param-{control.field}"
    if control.kind == "slider":
        # the drag range is a convenient span; what is allowed is the engine's range (checked when run)
        return gr.Slider(control.minimum, control.maximum, value=value, step=control.step, label=label,
                         info=control.info, elem_id=elem_id, elem_classes=[KEEP_TYPED])
    if control.kind == "number":
        return gr.Number(value, label=label, info=control.info, precision=0, minimum=control.minimum,
                         maximum=control.maximum, elem_id=elem_id)
    if control.kind == "checkbox":
        return gr.Checkbox(value, label=label, info=control.info, elem_id=elem_id)
    if control.kind == "choice":
        return gr.Radio(list(EARLY_STOPPING_CHOICES), value=widget_value(control.field, value), label=label,
                        info=control.info, elem_id=elem_id)
    multiline = control.field in ("stop", "sequence_bias", "logit_bias", "dry_sequence_breakers")
    return gr.Textbox(widget_value(control.field, value), label=label, info=control.info,
                      placeholder=control.placeholder, lines=2 if multiline else 1, elem_id=elem_id)


def _disarm_after(event: Any, stop: gr.Button) -> Any:
    """Stop goes idle again when the run ends, whether it finished or failed; returns the finished branch."""
    event.failure(lambda: gr.Button(interactive=False), None, stop, queue=False, api_visibility="private")
    return event.success(lambda: gr.Button(interactive=False), None, stop, queue=False, api_visibility="private")


def _updates(outputs: list[gr.components.Component], changes: dict) -> tuple:
    """One streamed update of an event's outputs: the changed ones, gr.skip() for the others."""
    return tuple(changes.get(output, gr.skip()) for output in outputs)


def _index_sliders(run) -> tuple[gr.Slider, gr.Slider]:
    """The Distributions view's output and step sliders for a new run (back to output 0, step 0)."""
    last_step = len(run.generation.rows[0].token_ids) - 1
    return gr.Slider(maximum=max(run.row_count - 1, 1), value=0), gr.Slider(maximum=max(last_step, 1), value=0)


def _check_page_numbers(config: PlaygroundConfig) -> None:
    """Whole numbers the page can hold: a browser's numbers are doubles, so a seed (or top_k) from a link or a
    preset above 2**53 - 1 would come back from the page as another number. Refused, naming the field."""
    for name, (kind, _) in NUMERIC_FIELDS.items():
        value = getattr(config.params, name)
        if kind is int and abs(value) > MAX_PAGE_INT:
            raise ParamError(name, f"at most {MAX_PAGE_INT} in the page (a browser holds no larger whole number "
                                   f"exactly; the API and the command line take it)", value)


def _whole(field: str, value: Any) -> int:
    """Slider/number values arrive as floats or strings; a step or a count must be a whole number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParamError(field, "a whole number", value) from None
    if not number.is_integer():
        raise ParamError(field, "a whole number", value)
    return int(number)


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "default"

