"""The Score view: a pasted text's tokens coloured by probability under the raw model and under the current
settings, the ones the settings removed struck through, and a summary line. No Gradio here: the panel
(playground/panels/score.py) only shows what these functions return.

Context and settings are the page's: the form's prompt through the chat template (or raw), exactly as Generate
encodes it, and the form's configuration (its base parameters; sweep axes do not apply), sample index 0.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

from engine.generate import Engine
from engine.scoring import TextScore, score_text

from .config import PlaygroundConfig
from .plots import format_number
from .render import CSS, TokenView, prob_color, token_span

SCORE_CSS = CSS + """
.dp-score-row { margin: 0 0 .8rem 0; }
.dp-score-title { font-weight: 600; font-size: .85em; margin-bottom: .3rem; }
s.dp-removed { text-decoration: line-through 2px #b42318; }
s.dp-removed .dp-tok { opacity: .75; }
.dp-score .dp-legend > span:first-child { white-space: nowrap; }
.dp-score-summary { font-size: .9em; font-variant-numeric: tabular-nums; margin: .3rem 0 .6rem 0; }
"""


@dataclass
class ScoreView:
    html: str  # the two coloured rows, the legend and the summary
    status: str  # one line for the status beside it
    score: TextScore


def score_view(engine: Engine, config: PlaygroundConfig, text: str) -> ScoreView:
    """Score `text` as the reply to the form's prompt under the form's settings (ParamError names the field)."""
    prompt_ids = engine.encode(config.prompt, raw=config.raw, system_prompt=config.system_prompt or None)
    scored = score_text(engine, prompt_ids, text, config.params)
    removed = sum(scored.removed)
    return ScoreView(score_html(scored), f"Scored {len(scored.token_ids)} tokens after the prompt: {removed} "
                                         f"removed by the settings.", scored)


def score_html(scored: TextScore) -> str:
    """Legend, the tokens coloured by raw p, the same tokens coloured by final p (removed ones struck through),
    and the summary. Every token's text is escaped (render.token_span)."""
    views = [TokenView(piece, math.exp(raw), math.exp(final))
             for piece, raw, final in zip(scored.pieces, scored.raw_logprobs, scored.final_logprobs)]
    raw_row = "".join(token_span(0, t, v, "raw") for t, v in enumerate(views))
    final_row = "".join(_struck(token_span(1, t, v, "final"), removed)
                        for t, (v, removed) in enumerate(zip(views, scored.removed)))
    return (f'<div class="dp-samples dp-score">{legend_html()}'
            f'<div class="dp-score-summary">{html.escape(summary_text(scored.summary()))}</div>'
            f'{_row("Raw model", raw_row)}{_row("Under the current settings", final_row)}</div>')


def _row(title: str, body: str) -> str:
    return (f'<div class="dp-sample dp-score-row"><div class="dp-score-title">{html.escape(title)}</div>'
            f'<div class="dp-text">{body}</div></div>')


def _struck(span: str, removed: bool) -> str:
    return f'<s class="dp-removed" title="removed by the settings: they could never produce it">{span}</s>' \
        if removed else span


def legend_html() -> str:
    """What the colours and the strike-through mean."""
    stops = ", ".join(prob_color(q / 4) for q in range(5))
    return (f'<div class="dp-legend"><span>p = 0</span><span class="dp-legend-bar" '
            f'style="background: linear-gradient(to right, {stops})"></span><span>1</span>'
            f'<span>· colour = probability of each token given the prompt and the tokens before it; '
            f'<s class="dp-removed">struck through</s> = removed by the settings (they would never produce '
            f'it); hover a token for both probabilities</span></div>')


def summary_text(summary: dict) -> str:
    """"12 tokens · log-likelihood raw -20.1, settings -inf nats · perplexity raw 5.34, settings ∞ · 2 removed"."""
    final = summary["final_logprob"]
    final_ppl = summary["final_perplexity"]
    return (f"{summary['tokens']} tokens · log-likelihood raw {format_number(summary['raw_logprob'])}, "
            f"settings {'-inf' if final is None else format_number(final)} nats · perplexity raw "
            f"{format_number(summary['raw_perplexity'])}, settings {'∞' if final_ppl is None else format_number(final_ppl)}"
            f" · {summary['removed']} token{'s' if summary['removed'] != 1 else ''} removed by the settings")
