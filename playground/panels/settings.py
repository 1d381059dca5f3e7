"""The settings column: prompt, the two knobs a newcomer moves first, Run and Stop, presets and every knob.

Also what fills the settings from elsewhere (a preset, a share link) and the estimate of how long a run will be.
"""
from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs

import gradio as gr

from engine.errors import ParamError
from engine.models import LoadedModel
from engine.order import DEFAULT_ORDER, ORDER_PRESETS
from engine.params import NUMERIC_FIELDS

from .. import views
from ..config import PlaygroundConfig, check_prefix_tokens
from ..controls import CONTROLS, EARLY_STOPPING_CHOICES, GROUPS, ORDER_INFO, widget_value
from ..errors import log_bad_input, user_errors
from ..my_presets import MINE
from ..presets import Preset
from ..render import CSS, estimate_html
from ..runs import RunStore
from .common import PRIVATE, PageContext
from .form import PREFIX_INFO, PREFIX_LABEL, config_from_form
from .model import ModelPicker, build_model_picker
from .my_presets import MyPresetsPanel, build_my_presets

ESSENTIALS = ("temperature", "max_new_tokens")
DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
VIEWS = ("generate", "sweep", "distributions", "share")  # the tabs' ids
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


@dataclass
class SettingsPanel:
    prompt: gr.Textbox
    knobs: dict[str, gr.components.Component]  # one widget per CONTROLS field
    run: gr.Button
    stop: gr.Button
    run_estimate: gr.HTML
    mode: gr.Radio
    samples: gr.Slider
    system: gr.Textbox
    preset: gr.Dropdown
    preset_info: gr.Markdown
    order: gr.Dropdown
    reset_order: gr.Button
    order_preset: gr.Radio
    prefix_group: gr.Column  # shown while the settings hold a forced start (a branch's link, a preset)
    prefix: gr.Textbox  # the forced start as text (a branch's token ids: their text, read-only)
    prefix_ids: gr.State  # a branch's exact token ids ([] = none)
    first_sample: gr.State  # the first sample's index (a branch of sample 3 is sample 3 alone)
    prefix_remove: gr.Button
    mine: MyPresetsPanel
    model_picker: ModelPicker | None = None  # "Model": load another model (hidden on a hosted Space)

    def knobs_in_order(self) -> dict[str, gr.components.Component]:
        """The knobs in CONTROLS order, whatever the layout (the order the form names them in)."""
        return {c.field: self.knobs[c.field] for c in CONTROLS}


def build_settings(defaults: PlaygroundConfig, presets: list[Preset],
                   picker_model: LoadedModel | str | None = None) -> SettingsPanel:
    """The left column (call inside the page's row). `picker_model`: the loaded model, to show the model picker
    (None: no picker)."""
    with gr.Column(scale=1, min_width=340, elem_id="settings"):
        # the first screen: prompt, the two knobs a newcomer moves first, and Run (also on a phone)
        prompt = gr.Textbox(defaults.prompt, label="Prompt", lines=3, elem_id="prompt",
                            info="Ctrl+Enter (Cmd+Enter) runs, from anywhere on the page.")
        # a branch's link (or a preset) forces the outputs' start: shown only then, with a way to remove it
        with gr.Column(visible=bool(defaults.forced), elem_id="prefix-group") as prefix_group:
            prefix = gr.Textbox(defaults.prefix, label=PREFIX_LABEL, lines=2, elem_id="prefix", info=PREFIX_INFO)
            prefix_remove = gr.Button("Remove the forced prefix", size="sm", elem_id="prefix-remove")
        prefix_ids = gr.State(list(defaults.prefix_ids))
        first_sample = gr.State(defaults.first_sample)
        knobs: dict[str, gr.components.Component] = {}
        with gr.Row(elem_id="essentials"):
            for field in ESSENTIALS:
                control = next(c for c in CONTROLS if c.field == field)
                knobs[field] = knob_widget(control, getattr(defaults.params, field))
        with gr.Row(elem_id="run-bar"):
            run = gr.Button("Run", variant="primary", elem_id="run", scale=3, min_width=120)
            stop = gr.Button("Stop", variant="secondary", elem_id="stop", interactive=False, scale=1, min_width=80)
        run_estimate = gr.HTML("", elem_id="run-estimate", css_template=CSS)
        with gr.Row():
            mode = gr.Radio(["chat", "raw"], value="chat", label="Prompt mode",
                            info="chat: the model's chat template; raw: the text as is.")
            samples = gr.Slider(1, 16, value=defaults.samples, step=1, label="samples",
                                info="Outputs to generate (per cell in a sweep).", elem_id="samples",
                                elem_classes=[KEEP_TYPED])
        system = gr.Textbox(defaults.system_prompt, label="System prompt (chat mode)", lines=1)
        preset = gr.Dropdown([p.name for p in presets], value=None, label="Preset", elem_id="preset",
                             info="Load an experiment: prompt, parameters and axes (yours: saved below).")
        preset_info = gr.Markdown("", elem_id="preset-info")
        picker = build_model_picker(picker_model) if picker_model is not None else None
        mine = build_my_presets()  # save, delete, download and load the person's own presets
        for group in GROUPS:
            with gr.Accordion(group, open=group == "Sampling"):
                for control in (c for c in CONTROLS if c.group == group and c.field not in ESSENTIALS):
                    knobs[control.field] = knob_widget(control, getattr(defaults.params, control.field))
        with gr.Accordion("Processor order", open=False):
            order = gr.Dropdown(list(DEFAULT_ORDER), value=list(DEFAULT_ORDER), multiselect=True, label="order",
                                info=ORDER_INFO, elem_id="order")
            order_preset = gr.Radio(list(ORDER_PRESETS), value=None, label="Order preset",
                                    info="Set the order another library runs its samplers in (see README, "
                                         "\"Order presets\"); `order=llama.cpp` in a link or a sweep axis.",
                                    elem_id="order-preset")
            reset_order = gr.Button("Reset to transformers' order", size="sm")
        gr.HTML("", elem_id="keep-typed", js_on_load=KEEP_TYPED_JS)  # nothing to see: installs the listener
        gr.HTML("", elem_id="run-keys", js_on_load=RUN_KEYS_JS)  # the same: Ctrl+Enter runs
    return SettingsPanel(prompt, knobs, run, stop, run_estimate, mode, samples, system, preset, preset_info, order,
                         reset_order, order_preset, prefix_group, prefix, prefix_ids, first_sample, prefix_remove,
                         mine, picker)


def knob_widget(control: Any, value: Any) -> gr.components.Component:
    """The widget of one CONTROLS knob, starting at `value`."""
    label, elem_id = control.field, f"param-{control.field}"
    if control.kind == "slider":
        # the drag range is a convenient span; what is allowed is the engine's range (checked when run)
        return gr.Slider(control.minimum, control.maximum, value=value, step=control.step, label=label,
                         info=control.info, elem_id=elem_id, elem_classes=[KEEP_TYPED])
    if control.kind == "number":
        whole = NUMERIC_FIELDS[control.field][0] is int  # a float knob (max_time) keeps its decimals
        return gr.Number(value, label=label, info=control.info, precision=0 if whole else None, minimum=control.minimum,
                         maximum=control.maximum, elem_id=elem_id)
    if control.kind == "checkbox":
        return gr.Checkbox(value, label=label, info=control.info, elem_id=elem_id)
    if control.kind == "choice":
        return gr.Radio(list(control.choices or EARLY_STOPPING_CHOICES), value=widget_value(control.field, value), label=label,
                        info=control.info, elem_id=elem_id)
    multiline = control.field in ("stop", "sequence_bias", "logit_bias", "dry_sequence_breakers", "negative_prompt")
    return gr.Textbox(widget_value(control.field, value), label=label, info=control.info,
                      placeholder=control.placeholder, lines=2 if multiline else 1, elem_id=elem_id)


def estimator(store: RunStore) -> Callable[..., tuple[str, str]]:
    """The handler of the estimates: before a run, its rows x tokens and time at the last speed, for Generate and
    for the sweep (the settings by name)."""
    def estimates(**settings: Any) -> tuple[str, str]:
        try:
            config = config_from_form(settings)
            single = views.run_estimate(dataclasses.replace(config, axes=()).sweep_spec(), store.tokens_per_second)
            grid = views.run_estimate(config.sweep_spec(), store.tokens_per_second) if config.axes else ("", False)
        except ParamError:  # a value being typed: the run itself will name it
            return "", ""
        return estimate_html(*single), estimate_html(*grid)
    return estimates


def wire_estimates(page: PageContext, demo: gr.Blocks, triggers: list[gr.components.Component]) -> None:
    """The estimates again when any of `triggers` changes, and when the page loads."""
    for control in triggers:
        control.change(page.estimate, inputs_kwargs=page.form.widgets, outputs=list(page.estimates),
                       preprocess=False, show_progress="hidden", trigger_mode="always_last", **PRIVATE)
    demo.load(page.estimate, inputs_kwargs=page.form.widgets, outputs=list(page.estimates), preprocess=False,
              show_progress="hidden", **PRIVATE)


def loading_outputs(page: PageContext, panel: SettingsPanel) -> list[gr.components.Component]:
    """What filling the settings from elsewhere changes (config_updates' keys)."""
    return [panel.preset_info, *page.form.components, page.tabs, panel.prefix_group]


def config_updates(page: PageContext, panel: SettingsPanel, note: str, config: PlaygroundConfig) -> dict:
    """The settings filled with `config` (a preset, a link, a file), `note` under the preset menu."""
    model = page.engine.loaded
    # a forced start must fit the loaded model (its vocabulary, max_new_tokens once tokenized)
    check_prefix_tokens(config, model.vocab_size, lambda text: model.tokenizer.encode(text, add_special_tokens=False))
    return {panel.preset_info: note, **page.form.updates(config, lambda ids: model.decode(list(ids))),
            page.tabs: gr.Tabs(selected=config.view if config.view in VIEWS else "generate"),
            panel.prefix_group: gr.Column(visible=bool(config.forced))}


def wire_loading(page: PageContext, demo: gr.Blocks, panel: SettingsPanel, presets: list[Preset]) -> None:
    """Settings from elsewhere: a preset picked, a share link opened (its query); the forced prefix's removal and
    the order's reset."""
    by_name = {p.name: p for p in presets}
    outputs = loading_outputs(page, panel)

    def shown(note: str, config: PlaygroundConfig) -> dict:
        return config_updates(page, panel, note, config)

    @user_errors
    def load_preset(name: str):
        if not name or name.startswith(MINE):  # one of the person's own presets: playground.panels.my_presets
            return gr.skip()
        chosen = by_name.get(name)
        if chosen is None:
            raise ParamError("preset", f"one of {list(by_name)}", name)
        return shown(f"*{chosen.description}*", chosen.config)

    def restore_from_link(request: gr.Request):
        # the raw query string: a dict would keep only the last of the repeated `axis` keys
        query = str(request.query_params) if request is not None else ""
        if not query:
            return gr.skip()
        try:
            config = PlaygroundConfig.from_query(query)
            if not config.prompt and "prompt" not in parse_qs(query, keep_blank_values=True):
                config = config.replace(prompt=DEFAULT_PROMPT)  # a link without a prompt keeps the page's
            note = ("*Settings restored from the link, with a forced start: Run continues from it (remove it under "
                    "the prompt).*" if config.forced else "*Settings restored from the link.*")
            return shown(note, config)
        except ParamError as exc:
            log_bad_input(f"link: {exc}")
            gr.Warning(html.escape(f"This link has a bad setting, so the defaults are shown. {exc}"))
            return gr.skip()

    panel.preset.input(load_preset, panel.preset, outputs, **PRIVATE)
    demo.load(restore_from_link, None, outputs, **PRIVATE)
    panel.reset_order.click(lambda: list(DEFAULT_ORDER), None, panel.order, **PRIVATE)
    panel.order_preset.input(lambda name: list(ORDER_PRESETS.get(name, DEFAULT_ORDER)), panel.order_preset,
                             panel.order, **PRIVATE)
    panel.prefix_remove.click(
        lambda: {panel.prefix: gr.Textbox("", interactive=True, info=PREFIX_INFO), panel.prefix_ids: [],
                 panel.first_sample: 0, panel.prefix_group: gr.Column(visible=False)},
        None, [panel.prefix, panel.prefix_ids, panel.first_sample, panel.prefix_group], **PRIVATE)
