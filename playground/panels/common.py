"""What every panel's handlers share: the engine, the runs, the settings form, the tabs and the page's state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.generate import Engine

from ..runs import Run, RunStore
from ..slots import RunSlots
from .form import Form

# A click on a token ([data-sample][data-step]) in a sweep grid's cell, or Enter / Space on one reached with Tab:
# the element's own event (it opens the Distributions view there).
TOKEN_CLICK_JS = """
const open = (token) => trigger('click', {sample: Number(token.dataset.sample), step: Number(token.dataset.step)});
element.addEventListener('click', (event) => {
  const token = event.target.closest('[data-step]');
  if (token) open(token);
});
element.addEventListener('keydown', (event) => {
  const token = (event.key === 'Enter' || event.key === ' ') && event.target.closest('.dp-tok[data-step]');
  if (token) { event.preventDefault(); open(token); }
});
"""
# Generate's tokens: a click, a tap, or Enter / Space on a token reached with Tab asks the server for its popup
# (`select`, with a nonce so that the same token twice opens twice); the popup's "Open in Distributions" sends a
# `dp-open` DOM event to the token, which becomes this element's `click` (what TOKEN_CLICK_JS sends).
TOKEN_POPUP_JS = """
const pick = (token) => {
  document.querySelectorAll('.dp-tok.dp-anchor').forEach((t) => t.classList.remove('dp-anchor'));
  document.querySelectorAll('.dp-popup').forEach((box) => { box.hidden = true; });
  token.classList.add('dp-anchor');
  window.dpPopupNonce = (window.dpPopupNonce || 0) + 1;
  const holder = token.closest('[data-run]');  // the stored run ("" while a run still streams)
  trigger('select', {run: holder ? holder.dataset.run : '', sample: Number(token.dataset.sample),
                     step: Number(token.dataset.step), nonce: window.dpPopupNonce});
};
element.addEventListener('click', (event) => {
  const token = event.target.closest('.dp-tok[data-step]');
  if (token) pick(token);
});
element.addEventListener('keydown', (event) => {
  const token = (event.key === 'Enter' || event.key === ' ') && event.target.closest('.dp-tok[data-step]');
  if (token) { event.preventDefault(); pick(token); }
});
element.addEventListener('dp-open', (event) => trigger('click', event.detail));
"""
# The token popup (filled by the server): placed beside its token inside the window and shown when it arrives;
# Escape, the close button or a click outside close it (Escape gives the focus back to the token). A
# "continue with this" button sends `click` {run, sample, step, token}: the branch.
TOKEN_POPUP_BOX_JS = """
const box = () => element.querySelector('.dp-popup');
const anchorOf = (b) => document.querySelector(
  `#tokens .dp-tok[data-sample="${b.dataset.sample}"][data-step="${b.dataset.step}"]`);
const isOpen = () => { const b = box(); return b && !b.hidden; };
const close = (refocus) => {
  const b = box();
  if (!b || b.hidden) return;
  b.hidden = true;
  const anchor = anchorOf(b);
  if (anchor) { anchor.classList.remove('dp-anchor'); if (refocus) anchor.focus(); }
};
const place = () => {
  const b = box();
  if (!b) return;
  b.hidden = false;
  const anchor = anchorOf(b);
  const r = anchor ? anchor.getBoundingClientRect() : {left: 8, top: 8, bottom: 8};
  const width = document.documentElement.clientWidth, height = window.innerHeight;
  const w = b.offsetWidth, h = b.offsetHeight;
  let top = r.bottom + 6;
  if (top + h > height - 8) top = Math.max(8, Math.min(r.top - h - 6, height - h - 8));
  b.style.left = Math.max(8, Math.min(r.left, width - w - 8)) + 'px';
  b.style.top = Math.max(8, top) + 'px';
};
watch('value', () => { place(); const b = box(); if (b) b.focus({preventScroll: true}); });
window.addEventListener('resize', () => { if (isOpen()) place(); });
window.addEventListener('scroll', () => { if (isOpen()) place(); }, true);
document.addEventListener('keydown', (event) => { if (event.key === 'Escape' && isOpen()) close(true); });
document.addEventListener('click', (event) => {
  const b = box();
  if (b && !b.hidden && !b.contains(event.target) && !event.target.closest('#tokens .dp-tok')) close(false);
});
element.addEventListener('click', (event) => {
  const b = box();
  if (!b) return;
  const button = event.target.closest('button');
  if (!button) return;
  const at = {sample: Number(b.dataset.sample), step: Number(b.dataset.step)};
  if (button.hasAttribute('data-close')) close(true);
  else if (button.hasAttribute('data-open')) {
    const anchor = anchorOf(b);
    close(false);
    if (anchor) anchor.dispatchEvent(new CustomEvent('dp-open', {bubbles: true, detail: at}));
  } else if (button.dataset.token !== undefined) {
    close(false);
    trigger('click', {run: b.dataset.run, ...at, token: Number(button.dataset.token)});
  }
});
"""
# The branch tree: a click on a run's button shows that run again (`click` {run}).
TREE_CLICK_JS = """
element.addEventListener('click', (event) => {
  const node = event.target.closest('button[data-run]');
  if (node) trigger('click', {run: node.dataset.run});
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

