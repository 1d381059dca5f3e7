"""Launch the page and the OpenAI-compatible API on one server (what `python app.py` and the tests run)."""
from __future__ import annotations

from typing import Callable

import gradio as gr

from engine.generate import Engine
from engine.scheduler import BatchScheduler

from .openai_api import openai_router
from .ui import build_demo


def launch_app(engine: Engine, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
               device_scope: Callable[[Callable], Callable] = lambda fn: fn) -> tuple[gr.Blocks, str, str | None]:
    """Build the page, launch it without blocking, and add /v1/... beside it. Returns (demo, url, share url)."""
    demo = build_demo(engine, device_scope=device_scope)
    _, local_url, share_url = demo.launch(server_name=host, server_port=port, share=share,
                                          prevent_thread_lock=True, quiet=True)
    # the OpenAI routes live on the same FastAPI app; no Gradio route uses /v1, so order does not matter
    demo.app.include_router(openai_router(engine, BatchScheduler(engine)))
    return demo, local_url, share_url
