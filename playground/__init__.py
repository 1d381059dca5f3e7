"""The web UI (Gradio). Generation logic lives in `engine`; this package builds the page and wires events."""

from .ui import build_demo

__all__ = ["build_demo"]
