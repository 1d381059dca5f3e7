"""The model picker (Settings, "Model"): load the bundled model, a local directory or a Hugging Face id into the
page's engine while the page runs. Loading is engine.models.load_model; switching is engine.switching (runs in
flight finish on the old model, later runs use the new one). A hosted Space hides it (app.py --no-model-picker).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.models import DEFAULT_MODEL, LoadedModel, load_model
from engine.switching import SwitchableEngine

from ..errors import log_bad_input
from ..render import CSS, error_html
from .common import PRIVATE, PageContext

MODEL_INFO = ("bundled (SmolLM2-135M-Instruct), a local directory (save_pretrained's layout) or a Hugging Face id "
              "(from the local cache; the hub if this machine reaches it).")


@dataclass
class ModelPicker:
    name: gr.Textbox
    load: gr.Button
    status: gr.HTML


def model_summary(model: LoadedModel) -> str:
    """"`SmolLM2-135M-Instruct` on cpu (float32)": the page's intro and the picker's status say it."""
    return f"`{model.name}` on {model.device.type} ({str(model.dtype).removeprefix('torch.')})"


def intro_text(model: LoadedModel | None, loading: str = "") -> str:
    return (f"## Decoding Playground\n"
            f"What each decoding parameter does: **Generate** streams samples coloured by probability, **Sweep** "
            f"runs a grid of settings as one batch, **Distributions** shows the next-token distribution after every "
            f"processor. Model " + (model_summary(model) if model is not None else f"`{loading}`: loading ...") + ".")


def loading_intro(name: str) -> str:
    """The intro of a page served while its first model still loads (app.py): the page's demo.load puts
    intro_text in its place once the model is there."""
    return intro_text(None, name)


def loaded_html(model: LoadedModel, seconds: float | None = None) -> str:
    took = f", loaded in {seconds:.1f} s; later runs use it" if seconds is not None else ""
    dtype = str(model.dtype).removeprefix("torch.")
    return (f'<div class="dp-status" role="status" style="overflow-wrap: anywhere">Loaded: '
            f'<b>{html.escape(model.name)}</b> on {html.escape(model.device.type)} ({html.escape(dtype)}){took}</div>')


def loading_html(name: str) -> str:
    """While a model loads: what, and an indeterminate bar (load_model reports no fraction done)."""
    return (f'<div class="dp-status" role="status" aria-busy="true">Loading <b>{html.escape(name)}</b> ... '
            f'<progress class="dp-model-progress" aria-label="loading the model"></progress></div>')


def build_model_picker(model: LoadedModel | str) -> ModelPicker:
    """The "Model" group (call inside the settings column). `model`: the loaded model, or the name of the one
    still loading (its status then says so until the page's demo.load finds it loaded)."""
    with gr.Accordion("Model", open=False, elem_id="model-group"):
        name = gr.Textbox("", label="Model", placeholder=DEFAULT_MODEL, info=MODEL_INFO, elem_id="model-name")
        load = gr.Button("Load", elem_id="model-load", size="sm")
        status = gr.HTML(loading_html(model) if isinstance(model, str) else loaded_html(model), elem_id="model-status", css_template=CSS)
    return ModelPicker(name, load, status)


def wire_model_picker(page: PageContext, demo: gr.Blocks, picker: ModelPicker, intro: gr.Markdown) -> None:
    """Load swaps the engine's model for later runs; the kept runs go (their replays need the model they ran on).
    A page opened later says which model is loaded now (the page was built with the first one)."""
    engine = page.engine
    if not isinstance(engine, SwitchableEngine):
        raise TypeError("the model picker needs the page's engine as an engine.switching.SwitchableEngine")

    def load(name: Any):
        target = (name or "").strip() or DEFAULT_MODEL
        yield {picker.status: loading_html(target), picker.load: gr.Button(interactive=False)}
        try:
            loaded = load_model(target)
        except (RuntimeError, ValueError, OSError) as exc:
            log_bad_input(f"model picker: {exc}")
            yield {picker.status: error_html(f"{exc}. Still running on {engine.loaded.name}.", "Could not load"),
                   picker.load: gr.Button(interactive=True)}
            return
        engine.switch(loaded)
        page.store.clear()  # their distributions, branches and token texts are the old model's
        yield {picker.status: loaded_html(loaded, loaded.load_seconds), intro: intro_text(loaded),
               picker.load: gr.Button(interactive=True)}

    picker.load.click(load, picker.name, [picker.status, picker.load, intro], show_progress="hidden",
                      concurrency_limit=1, concurrency_id="model-load", **PRIVATE)
    picker.name.submit(load, picker.name, [picker.status, picker.load, intro], show_progress="hidden",
                       concurrency_limit=1, concurrency_id="model-load", **PRIVATE)
    demo.load(lambda: (loaded_html(engine.loaded), intro_text(engine.loaded)), None, [picker.status, intro],
              show_progress="hidden", **PRIVATE)
