"""HTML and tables for the UI: clickable coloured tokens, the sweep grid, the stage table. Everything from the
model or a user must come out escaped."""
from __future__ import annotations

import html
import itertools
import math
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from engine.metrics import cell_summary
from playground.render import (CSS, TokenView, prob_color, prompt_html, samples_html, stage_table,
                               sweep_grid_html)

EVIL = "<img src=x onerror=alert(1)>"


class Collector(HTMLParser):
    """Every start tag with its attributes, plus the text, to check structure without regexes on HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> Collector:
    collector = Collector()
    collector.feed(markup)
    return collector


def with_class(doc: Collector, cls: str) -> list[dict[str, str | None]]:
    return [attrs for _, attrs in doc.tags if cls in (attrs.get("class") or "").split()]


def samples() -> list[list[TokenView]]:
    return [
        [TokenView("Hello", 0.9, 0.95, [("Hi", 0.03)]), TokenView(" world", 0.5, 0.6),
         TokenView("\n", 0.2, 0.3), TokenView(EVIL, 0.01, 0.02, [("<b>", 0.5), (" ", 0.1)])],
        [TokenView("<b>", 0.4, 0.7), TokenView("&amp;", 0.3, float("nan"))],
        [],
    ]


# ---------------------------------------------------------------------------------------------- samples

def test_every_token_is_a_clickable_span_with_sample_and_step() -> None:
    doc = parse(samples_html(samples(), titles=["a", "b", "c"], footers=["1", "2", "3"]))
    spans = with_class(doc, "dp-tok")
    assert [(s["data-sample"], s["data-step"]) for s in spans] == [
        ("0", "0"), ("0", "1"), ("0", "2"), ("0", "3"), ("1", "0"), ("1", "1")]
    assert all(s.get("title") for s in spans)
    assert len(with_class(doc, "dp-sample")) == 3
    assert "cursor: pointer" in CSS and ".dp-tok" in CSS


def test_tokens_are_escaped_in_text_and_tooltips() -> None:
    markup = samples_html(samples(), titles=[EVIL, "<b>", "x"], footers=[EVIL, "", ""])
    assert EVIL not in markup and "<b>" not in markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in markup and "&lt;b&gt;" in markup
    assert "&amp;amp;" in markup  # a token that is literally "&amp;" shows as such
    doc = parse(markup)
    assert not [t for t, _ in doc.tags if t in ("img", "b", "script")]
    spans = with_class(doc, "dp-tok")
    assert EVIL in "".join(doc.text)  # the browser shows the literal text
    evil_tip = spans[3]["title"]  # the parser has unescaped the attribute: the literal token is in it
    assert "final p 0.02" in evil_tip and "raw p 0.01" in evil_tip
    assert "“<b>”  0.5" in evil_tip and "“␣”  0.1" in evil_tip
    assert "“Hi”  0.03" in spans[0]["title"]


def test_newlines_break_lines_and_nan_is_not_shown() -> None:
    markup = samples_html(samples())
    assert '<span class="dp-nl">↵</span><br>' in markup
    newline_span = with_class(parse(markup), "dp-tok")[2]
    assert "“↵”" in newline_span["title"]
    assert "nan" not in markup.lower()
    assert "final p –" in with_class(parse(markup), "dp-tok")[5]["title"]


def test_colours_follow_the_chosen_probability() -> None:
    final = with_class(parse(samples_html(samples(), color_by="final")), "dp-tok")
    raw = with_class(parse(samples_html(samples(), color_by="raw")), "dp-tok")
    plain = with_class(parse(samples_html(samples(), color_by="none")), "dp-tok")
    assert prob_color(0.95) in final[0]["style"] and prob_color(0.9) in raw[0]["style"]
    assert all("style" not in s for s in plain)
    assert prob_color(0.0) != prob_color(1.0) and prob_color(None) == prob_color(float("nan"))
    assert "dp-legend" in samples_html(samples()) and "dp-legend" not in samples_html(samples(), color_by="none")
    with pytest.raises(ValueError, match="color_by"):
        samples_html(samples(), color_by="blue")
    with pytest.raises(ValueError, match="titles"):
        samples_html(samples(), titles=["only one"])


def test_prompt_is_escaped() -> None:
    assert prompt_html(EVIL) == ('<div class="dp-prompt"><span class="dp-prompt-label">prompt</span>'
                                 "&lt;img src=x onerror=alert(1)&gt;</div>")
    assert "<style>" in samples_html([], include_css=True) and "<style>" not in samples_html([])


# ---------------------------------------------------------------------------------------------- sweep grid

def sweep_records(axes: dict[str, list], samples: int = 2, text: str = "") -> pd.DataFrame:
    records = []
    for cell, combo in enumerate(itertools.product(*axes.values())):
        for sample in range(samples):
            ids = [1, 2, 3, cell, sample]
            records.append({"cell": cell, "sample": sample, **{f"axis_{n}": v for n, v in zip(axes, combo)},
                            "text": text or f"c{cell}s{sample}", "token_ids": ids, "num_tokens": len(ids),
                            "distinct_2": 1.0, "perplexity": 2.0 + cell, "mean_entropy": None})
    return pd.DataFrame(records)


def grid_rows(markup: str) -> list[list[str]]:
    """Per <tr>: the data-cell of each cell in it (in column order)."""
    return [re.findall(r'data-cell="(\d+)"', row) for row in re.findall(r"<tr>(.*?)</tr>", markup, flags=re.S)
            if "dp-cell" in row]


def test_grid_rows_are_the_first_axis_columns_the_second() -> None:
    records = sweep_records({"temperature": [0.3, 1.0], "top_p": [0.9, 0.5, 1.0]})
    markup = sweep_grid_html(cell_summary(records), records, ["temperature", "top_p"],
                             ["perplexity", "cell_diversity", "distinct_2"])
    assert grid_rows(markup) == [["0", "1", "2"], ["3", "4", "5"]]
    doc = parse(markup)
    text = "".join(doc.text)
    assert "top_p = 0.9" in text and "temperature = 0.3" in text
    assert text.index("top_p = 0.9") < text.index("top_p = 0.5") < text.index("top_p = 1")  # given order
    assert "ppl 2 · div " in text and "dist-2 1" in text
    cell = with_class(doc, "dp-cell")[4]
    assert cell["data-cell"] == "4"
    assert [a["data-sample"] for a in with_class(doc, "dp-cell-sample")][:2] == ["0", "1"]
    assert "c4s0" in text and "c4s1" in text


def test_grid_missing_metrics_show_a_dash_not_nan() -> None:
    records = sweep_records({"temperature": [0.3, 1.0]}, samples=1)
    markup = sweep_grid_html(cell_summary(records), records, ["temperature"],
                             ["perplexity", "cell_diversity", "mean_entropy", "no_such_metric"])
    assert "nan" not in markup.lower() and "None" not in markup
    assert "div –" in markup and "H –" in markup and "no_such_metric –" in markup
    assert grid_rows(markup) == [["0", "1"]]  # one axis: one row


def test_grid_third_axis_gives_one_grid_per_value() -> None:
    records = sweep_records({"temperature": [0.5, 1.0], "top_k": [0, 40], "order": [["min_p", "temperature"], ["temperature"]]})
    markup = sweep_grid_html(cell_summary(records), records, ["temperature", "top_k", "order"], ["perplexity"])
    titles = re.findall(r'<h4 class="dp-facet-title">(.*?)</h4>', markup)
    assert titles == [html.escape('order = ["min_p", "temperature"]'), html.escape('order = ["temperature"]')]
    assert markup.count("<table") == 2
    assert grid_rows(markup) == [["0", "2"], ["4", "6"], ["1", "3"], ["5", "7"]]


def test_grid_without_axes_is_one_cell_and_texts_are_escaped_and_truncated() -> None:
    long_text = EVIL + " " + "x" * 400 + "\nend"
    records = sweep_records({}, samples=3, text=long_text)
    markup = sweep_grid_html(cell_summary(records), records, [], ["perplexity"])
    assert grid_rows(markup) == [["0"]]
    assert EVIL not in markup and "&lt;img src=x" in markup
    items = [t for t in parse(markup).text if t.startswith("<img")]
    assert len(items) == 3 and all(len(t) == 300 and t.endswith("…") for t in items)
    with pytest.raises(ValueError, match="axes"):
        sweep_grid_html(cell_summary(records), records, ["temperature"], ["perplexity"])


def test_grid_axis_values_with_html_are_escaped() -> None:
    records = sweep_records({"stop": [[EVIL], ["\n"]]})
    markup = sweep_grid_html(cell_summary(records), records, ["axis_stop"], ["perplexity"])
    assert EVIL not in markup and "&lt;img" in markup
    assert not [t for t, _ in parse(markup).tags if t == "img"]


# ---------------------------------------------------------------------------------------------- stage table

def test_stage_table_columns_and_rounding() -> None:
    stats = [{"entropy": 2.345678, "support": 49152, "mass_kept": 1.0000001, "chosen_prob": 0.123456,
              "chosen_rank": 3, "top_prob": 0.3},
             {"entropy": 0.5, "support": 3, "mass_kept": 0.873219, "chosen_prob": 0.5, "chosen_rank": 1,
              "top_prob": 0.5}]
    table = stage_table(stats, ["raw", "top_k"])
    assert list(table.columns) == ["stage", "entropy", "support", "mass kept %", "chosen p", "chosen rank"]
    assert table.iloc[0].tolist() == ["raw", 2.346, 49152, 100.0, 0.1235, 3]
    assert table.iloc[1]["mass kept %"] == 87.32
    with pytest.raises(ValueError):
        stage_table(stats, ["raw"])
    assert not math.isnan(table["entropy"].sum())
