"""Score: paste a text and see how likely each of its tokens is after the form's prompt, under the raw model and
under the current settings (playground/scoring.py computes and renders; this module only lays out and wires)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.errors import ParamError

from ..errors import internal_error, user_errors
from ..render import error_html, status_html
from ..scoring import SCORE_CSS, score_view
from ..slots import concurrency
from .common import PRIVATE, PageContext
from .form import config_from_form

TEXT_NAME = "text_to_score"  # the text box's keyword beside the form's widgets


@dataclass
class ScorePanel:
    tab: gr.Tab
    text: gr.Textbox
    button: gr.Button
    status: gr.HTML
    tokens: gr.HTML


def build_score() -> ScorePanel:
    """The Score tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Score", id="score") as tab:
        text = gr.Textbox(label="Text to score", lines=4, elem_id="score-text",
                          placeholder="Paste any text: it is read as the reply to the prompt on the left.",
                          info="Each token's probability given the prompt and the tokens before it, under the raw "
                               "model and under the current settings.")
        button = gr.Button("Score", variant="primary", elem_id="score-button")
        status = gr.HTML(status_html("Paste a text and press Score."), elem_id="score-status",
                         css_template=SCORE_CSS)
        tokens = gr.HTML("", elem_id="score-tokens", css_template=SCORE_CSS)
    return ScorePanel(tab, text, button, status, tokens)


def wire_score(page: PageContext, panel: ScorePanel) -> None:
    """Score -> the text's tokens coloured, or the error (field, range, value) in the status and a toast."""
    engine = page.engine

    @user_errors
    @page.device_scope
    def run_score(**values: Any):
        yield {panel.status: status_html("Scoring ...")}
        try:
            text = values.pop(TEXT_NAME)
            view = score_view(engine, config_from_form(values), text)
        except ParamError as exc:  # said once beside the tokens (it stays), then once as a toast
            yield {panel.status: error_html(str(exc))}
            raise
        except Exception as exc:  # a real fault: its id beside the tokens and in a toast, its traceback in the log
            error = internal_error(exc, "the page's score")
            yield {panel.status: error_html(error.message, "Internal error")}
            raise error from None
        yield {panel.status: status_html(view.status), panel.tokens: view.html}

    panel.button.click(run_score, inputs_kwargs={**page.form.widgets, TEXT_NAME: panel.text},
                       outputs=[panel.status, panel.tokens], preprocess=False, show_progress="hidden",
                       **concurrency(page.slots), **PRIVATE)
