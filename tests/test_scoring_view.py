"""The Score view's HTML (playground/scoring.py) without a model: escaping, the strike-through, the summary."""
from __future__ import annotations

import math

from engine.params import SamplingParams
from engine.scoring import TextScore
from playground.scoring import score_html, summary_text


def scored(pieces: list[str], raw: list[float], final: list[float]) -> TextScore:
    n = len(pieces)
    return TextScore([1], list(range(10, 10 + n)), pieces, SamplingParams(), raw, final, [1] * n, [1] * n)


def test_tokens_are_escaped_and_removed_ones_struck_through():
    html = score_html(scored(["<b>", " x", "&"], [-1.0, -2.0, -0.5], [-0.5, -math.inf, 0.0]))
    assert "<b>" not in html.replace('<b class', '') and "&lt;b&gt;" in html and "&amp;" in html
    assert html.count('class="dp-removed"') == 2  # the one token in the settings' row, and the legend's sample
    assert html.count('class="dp-tok"') == 6  # each token twice: raw row and settings row
    assert "1 token removed by the settings" in html


def test_summary_line_says_infinite_when_a_token_was_removed():
    line = summary_text(scored(["a", "b"], [-1.0, -2.0], [-0.5, -math.inf]).summary())
    assert "settings -inf nats" in line and "settings ∞" in line and "1 token removed" in line
    clean = summary_text(scored(["a", "b"], [-1.0, -1.0], [-0.5, -0.5]).summary())
    assert "perplexity raw 2.72, settings 1.65" in clean and "0 tokens removed" in clean
