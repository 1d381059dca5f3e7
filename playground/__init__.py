"""The web UI (Gradio). Generation logic lives in `engine`; this package only builds pages and wires events."""

from .simple import build_demo

__all__ = ["build_demo"]
