"""The page: settings on the left, five views on the right (Generate, Sweep, Distributions, Score, Share & export).

Only the page's composition lives here: each panel is built and wired by its own module (playground.panels),
views come from playground.views, and every ParamError becomes a readable gr.Error naming the field.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import gradio as gr
from starlette.routing import BaseRoute

from engine.generate import Engine
from engine.models import BUNDLED_NAME
from engine.switching import switchable

from .api import register_api
from .config import PlaygroundConfig
from .errors import user_errors
from .panels.common import PRIVATE, PageContext
from .panels.distributions import build_distributions, wire_distributions
from .panels.form import AXIS_NAMES, AXIS_TEXTS, Form
from .panels.generate import build_generate, wire_generate
from .panels.history import build_history, wire_history
from .panels.model import intro_text, loading_intro, wire_model_picker
from .panels.my_presets import wire_my_presets
from .panels.settings import (DEFAULT_PROMPT, build_settings, config_updates, estimator, loading_outputs,
                              wire_estimates, wire_loading)
from .panels.score import build_score, wire_score
from .panels.share import build_share, wire_share
from .panels.sweep import build_sweep, wire_sweep
from .presets import Preset, load_presets
from .runs import RunStore
from .slots import DEFAULT_RUN_SLOTS, RunSlots

__all__ = ["Page", "build_demo", "user_errors"]
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Gradio keeps every session's page state (~290 KB for this page), and every gradio API call is a new session:
# at Gradio's default of 10,000 that is ~2.8 GB of growth on a busy server. 512 sessions hold ~150 MB; a browser
# tab idle while 512 newer sessions came loses its page state (its next run starts afresh).
SESSION_CAPACITY = 512


class Page(gr.Blocks):
    """The page's Blocks. `routes` (the OpenAI-compatible /v1 API) are served beside the page however it is
    served: launched (`demo.launch()`, as `python app.py` and hosts that launch `app.demo` do), they join the
    FastAPI app Gradio creates; mounted (playground.server.create_app), the parent app holds them."""

    def __init__(self, *args: Any, routes: Sequence[BaseRoute] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.extra_routes = list(routes)
        self.api_parameters: dict[str, list[inspect.Parameter]] = {}  # the named endpoints' (register_api)
        self.state_session_capacity = SESSION_CAPACITY  # read when the page is mounted (create_app)

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        """Gradio's HTTP API wants every argument of an endpoint (gradio_client fills in the defaults itself): a
        raw call that leaves out trailing arguments gets their documented defaults here, and one that leaves out a
        required argument an error naming it (Gradio's own answer has no message)."""
        parameters = self.api_parameters.get(getattr(block_fn, "api_name", None) or "")
        if parameters and len(inputs) < len(parameters):
            missing = [p for p in parameters[len(inputs):] if p.default is inspect.Parameter.empty]
            if missing:
                names = ", ".join(p.name for p in parameters)
                raise gr.Error(f"{missing[0].name}: must be given (/{block_fn.api_name} takes {names}; the later "
                               f"ones may be left out), got nothing", print_exception=False)
            inputs.extend(p.default for p in parameters[len(inputs):])  # the list Gradio goes on to read
        super().validate_inputs(block_fn, inputs)

    def launch(self, *args: Any, app_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        app_kwargs = dict(app_kwargs or {})
        # FastAPI(routes=...): ours come before Gradio's own (none of which is under /v1)
        app_kwargs["routes"] = [*self.extra_routes, *app_kwargs.get("routes", ())]
        kwargs.setdefault("state_session_capacity", SESSION_CAPACITY)  # launch() would set Gradio's 10,000 again
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)


def build_demo(engine: Engine, presets: list[Preset] | None = None,
               device_scope: Callable[[Callable], Callable] = lambda fn: fn,
               routes: Sequence[BaseRoute] = (), run_slots: int = DEFAULT_RUN_SLOTS, model_picker: bool = True) -> Page:
    """The whole page for one loaded engine. Nothing is built at import time.

    presets: defaults to examples/*.json. device_scope wraps every handler that runs the model (a hosted
    Space passes `spaces.GPU`, which lends a GPU for the duration of the call). routes: served beside the page
    (see Page). run_slots: page and API runs going at once (they share the engine step by step); the others
    wait in line, telling their place. model_picker: Settings' "Model" group, which loads another model into the
    engine (off on a hosted Space).
    """
    engine = switchable(engine)  # the page's model picker replaces its model; runs pin the one they start on
    store = RunStore(engine)
    slots = RunSlots(run_slots)
    presets = load_presets() if presets is None else presets
    model = engine.loaded_now  # None: still loading (app.py loads it while the page is built)

    def hub_id() -> str:
        # exports name a model transformers can fetch: the bundled GGUF is a quantized SmolLM2-135M-Instruct
        return BUNDLED_HUB_ID if engine.loaded.name == BUNDLED_NAME else engine.loaded.name

    with Page(title="Decoding Playground", routes=routes) as demo:
        intro = gr.Markdown(intro_text(model) if model else loading_intro(engine.model_name), elem_id="intro")
        with gr.Row(equal_height=False):
            settings = build_settings(PlaygroundConfig(prompt=DEFAULT_PROMPT), presets,
                                      (model or engine.model_name) if model_picker else None)
            with gr.Column(scale=2, elem_id="views"):
                with gr.Tabs(selected="generate") as tabs:
                    generate, sweep, dists = build_generate(), build_sweep(), build_distributions()
                    score, share, runs = build_score(), build_share(), build_history()
        run_id = gr.State("")  # the run the Distributions view shows
        view = gr.State("generate")
        form = Form({"prompt": settings.prompt, "mode": settings.mode, "system_prompt": settings.system,
                     "samples": settings.samples, **dict(zip(AXIS_NAMES, sweep.axis_names)),
                     **dict(zip(AXIS_TEXTS, sweep.axis_values)), "view": view, "sample": dists.sample,
                     "step": dists.step, "color_by": generate.color_by, "independent_seeds": sweep.independent_seeds,
                     "prefix": settings.prefix, "prefix_ids": settings.prefix_ids,
                     "first_sample": settings.first_sample,
                     **settings.knobs_in_order(), "order": settings.order})
        page = PageContext(engine, store, device_scope, form, tabs, view, run_id,
                           (settings.run_estimate, sweep.estimate), estimator(store), slots)

        dist_sliders = (dists.sample, dists.step)
        wire_estimates(page, demo, [settings.samples, settings.knobs["max_new_tokens"], *sweep.axis_names,
                                    *sweep.axis_values])
        wire_generate(page, generate, settings.run, settings.stop, dist_sliders, dists.branch, dists.branch_token)
        wire_sweep(page, sweep, dist_sliders)
        wire_distributions(page, dists, (generate.tokens, sweep.grid))
        for tab, name in ((generate.tab, "generate"), (sweep.tab, "sweep"), (dists.tab, "distributions")):
            tab.select(lambda n=name: n, None, view, **PRIVATE)
        wire_score(page, score)
        wire_share(page, share, hub_id)
        wire_loading(page, demo, settings, presets)
        if settings.model_picker is not None:
            wire_model_picker(page, demo, settings.model_picker, intro)  # its demo.load also updates the intro
        elif model is None:  # a page opened while the model loads says which once it has (the wait is demo.load's)
            demo.load(lambda: intro_text(engine.loaded), None, intro, show_progress="hidden", **PRIVATE)
        wire_my_presets(page, demo, settings.mine, settings.preset, presets,
                        lambda note, config: config_updates(page, settings, note, config),
                        loading_outputs(page, settings))
        wire_history(page, demo, runs, dist_sliders)
        demo.api_parameters = register_api(engine, store, slots)
    return demo
