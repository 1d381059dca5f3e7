"""What every panel's handlers share: the engine, the runs, the settings form, the tabs and the page's state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.generate import Engine

from ..runs import Run, RunStore
from ..slots import RunSlots
from .form import Form

# A click on a token ([data-sample][data-step]) in Generate or in a sweep grid's cell: the element's own event.
TOKEN_CLICK_JS = """
element.addEventListener('click', (event) => {
  const token = event.target.closest('[data-step]');
  if (token) trigger('click', {sample: Number(token.dataset.sample), step: Number(token.dataset.step)});
});
"""
PRIVATE = {"api_visibility": "private"}  # the page's own events: no API endpoint for scripts (those: api.py)


@dataclass
class PageContext:
    """The page's shared parts, handed to each panel's wiring."""

    engine: Engine
    store: RunStore
    device_scope: Callable[[Callable], Callable]  # wraps every handler that runs the model (spaces.GPU on a Space)
    form: Form
    tabs: gr.Tabs
    view: gr.State  # the open view's name
    run_id: gr.State  # the run the Distributions view shows
    estimates: tuple[gr.HTML, gr.HTML]  # Generate's and the sweep's "how long a run will be"
    estimate: Callable[..., tuple[str, str]]  # the handler filling them (settings by name)
    slots: RunSlots  # runs going at once (page and API); the others wait in line and say where they stand

    def refresh_estimates(self, event: Any) -> Any:
        """After `event` (a run that finished, or a page load), the estimates at the speed now known."""
        return event.then(self.estimate, inputs_kwargs=self.form.widgets, outputs=list(self.estimates),
                          preprocess=False, show_progress="hidden", **PRIVATE)


def disarm_after(event: Any, stop: gr.Button) -> Any:
    """Stop goes idle again when the run ends, whether it finished or failed; returns the finished branch."""
    event.failure(lambda: gr.Button(interactive=False), None, stop, queue=False, **PRIVATE)
    return event.success(lambda: gr.Button(interactive=False), None, stop, queue=False, **PRIVATE)


def index_sliders(run: Run) -> tuple[gr.Slider, gr.Slider]:
    """The Distributions view's output and step sliders for a new run (back to output 0, step 0)."""
    last_step = len(run.generation.rows[0].token_ids) - 1
    return gr.Slider(maximum=max(run.row_count - 1, 1), value=0), gr.Slider(maximum=max(last_step, 1), value=0)


def session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "default"

