"""The composition root: one engine, and on it the page and the OpenAI-compatible API (/v1), always together.

`build_page` makes the page with the /v1 routes in it (one engine, one BatchScheduler for /v1, one RunStore for
the page). It is served one of two ways, with the same routes either way:

- `launch_app` (what `python app.py` and the tests run): the page's own `launch()`, the /v1 routes in the FastAPI
  app Gradio creates for it. Gradio's launch is kept, rather than uvicorn on `create_app`'s app, because a hosted
  Space with on-demand GPUs runs the `spaces` package's start-up (moving the weights, registering the
  `spaces.GPU` handlers) from `gr.Blocks.launch`, and because launch is what makes `--share` links, starts the
  queue and finds the Space's address and port; a page launched by a host (`app.demo.launch()`) gets /v1 the
  same way.
- `create_app` (for hosts that import `app.app` and run their own ASGI server, e.g. `uvicorn app:app`): one
  FastAPI app with /v1 and the page mounted at "/"; the mount starts Gradio's queue when the server starts.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr
from fastapi import FastAPI

from engine.generate import Engine
from engine.scheduler import BatchScheduler
from engine.switching import switchable

from .openai_api import openai_router
from .slots import DEFAULT_RUN_SLOTS
from .ui import Page, build_demo


def build_page(engine: Engine, device_scope: Callable[[Callable], Callable] = lambda fn: fn,
               run_slots: int = DEFAULT_RUN_SLOTS, model_picker: bool = True, join: bool = True) -> Page:
    """The page, with the /v1 routes of the same engine to serve beside it. run_slots: page and API runs going at
    once (playground/slots.py); /v1's batches take turns on the engine beside them (engine/turns.py).
    model_picker: the page may load another model (engine.switching: /v1 follows it too). join: a /v1 request
    arriving while a batch decodes joins it at its next step (engine/scheduler.py), and so does a page or API run
    (Generate, sweeps of sampling rows) arriving while another decodes (engine/shared_batches.py); False: each
    forms a batch of its own, beside the running ones."""
    engine = switchable(engine)
    engine.set_join(join)  # a model still loading takes it when it arrives
    router = openai_router(engine, BatchScheduler(engine, join=join))
    return build_demo(engine, device_scope=device_scope, routes=router.routes, run_slots=run_slots,
                      model_picker=model_picker)


def create_app(demo: Page) -> FastAPI:
    """One FastAPI app: /v1/... first, then the page mounted at "/" (no Gradio route is under /v1).

    Serve it with any ASGI server that runs the app's lifespan (uvicorn does): that is what starts Gradio's queue.
    Gradio's own docs and schema routes stay the page's, as under launch(). show_error=False: as launch()'s
    default, an exception that is not a gr.Error shows as "Error" in the page, not its message (the handlers turn
    a bad input into one naming its field, and a real fault into one with the id of its logged traceback).
    """
    app = FastAPI(title="Decoding Playground", routes=list(demo.extra_routes), docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.demo = demo
    return gr.mount_gradio_app(app, demo, path="/", show_error=False)


def launch_app(engine: Engine, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
               device_scope: Callable[[Callable], Callable] = lambda fn: fn,
               run_slots: int = DEFAULT_RUN_SLOTS, model_picker: bool = True,
               join: bool = True) -> tuple[gr.Blocks, str, str | None]:
    """Build the page and launch it without blocking, /v1/... beside it. Returns (demo, url, share url)."""
    demo = build_page(engine, device_scope, run_slots, model_picker, join)
    _, local_url, share_url = demo.launch(server_name=host, server_port=port, share=share,
                                          prevent_thread_lock=True, quiet=True)
    return demo, local_url, share_url
