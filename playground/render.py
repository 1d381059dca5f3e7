"""HTML strings and display tables for the UI: coloured token outputs, the sweep comparison grid, the
per-stage table (a token's popup and the branch tree: render_branches.py). No Gradio here.

Everything that comes from a user or the model (token text, sample text, titles, axis values) goes through
html.escape: nothing here is ever trusted as HTML. Class names start with "dp-" so that they cannot clash
with the host page's CSS; the styles are in `CSS`, which the UI passes to Gradio (or `include_css=True`
inlines them for a standalone page). Token colours are inline styles, so they show even without `CSS`.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from .plots import axis_column, axis_name, format_number, format_value, is_missing, show_whitespace

SAMPLE_TEXT_CHARS = 300  # per sample in a grid cell; the full text is in the table below the grid
ALTERNATIVES_SHOWN = 5  # in a token's tooltip
COLOR_BY = ("final", "raw", "none")

# Short names for the metrics of engine.metrics.cell_summary, for the compact line in a grid cell.
METRIC_ABBREVIATIONS = {
    "perplexity": "ppl",
    "cell_diversity": "div",
    "distinct_1": "dist-1",
    "distinct_2": "dist-2",
    "repeated_4gram_rate": "rep-4",
    "mean_logprob": "logp",
    "mean_entropy": "H",
    "num_tokens": "tokens",
    "samples": "n",
    "beam_score": "beam",
    "acceptance_rate": "accepted",
    "target_forwards": "forwards",
}

CSS = """
.dp-samples, .dp-sweep, .dp-prompt { font-family: ui-sans-serif, system-ui, -apple-system, "Segoe UI", sans-serif; }
.dp-legend { display: flex; align-items: center; gap: .5em; font-size: .8em; opacity: .85; margin: 0 0 .5em 0; }
.dp-legend-bar { display: inline-block; width: 9em; height: .8em; border-radius: 3px; }
.dp-sample-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 18rem), 1fr)); gap: .75rem; }
.dp-sample { border: 1px solid rgba(128, 128, 128, .35); border-radius: 8px; padding: .6rem .7rem; min-width: 0; }
.dp-sample-title { font-weight: 600; font-size: .85em; margin-bottom: .4rem; overflow-wrap: anywhere; }
.dp-sample-footer { font-size: .78em; opacity: .7; margin-top: .5rem; }
.dp-text { white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.75; }
.dp-tok { cursor: pointer; color: #1b1b1b; border-radius: 3px; padding: 1px 0;
          -webkit-box-decoration-break: clone; box-decoration-break: clone; }
.dp-tok:hover { outline: 2px solid #2563eb; outline-offset: 0; }
.dp-tok.dp-selected { outline: 2px solid #2563eb; box-shadow: 0 0 0 3px rgba(37, 99, 235, .3); }
.dp-tok:focus-visible { outline: 2px solid #2563eb; outline-offset: 1px; }
.dp-tok.dp-anchor { outline: 2px solid #2563eb; }
.dp-popup { position: fixed; z-index: 1000; width: min(24rem, calc(100vw - 16px)); max-height: min(28rem, 70vh);
            overflow-y: auto; background: var(--background-fill-primary, #fff); color: var(--body-text-color, #1b1b1b);
            border: 1px solid rgba(128, 128, 128, .5); border-radius: 8px; box-shadow: 0 6px 24px rgba(0, 0, 0, .2);
            padding: .5rem .7rem; font-size: .88em; line-height: 1.4; }
.dp-popup[hidden] { display: none !important; }
.dp-popup:focus { outline: 2px solid #2563eb; }
.dp-popup-head { display: flex; align-items: center; justify-content: space-between; gap: .5em; }
.dp-popup-token { font-weight: 600; font-size: 1.1em; white-space: pre-wrap; overflow-wrap: anywhere; }
.dp-popup-close { font-size: 1.2em; line-height: 1; padding: .1em .4em; cursor: pointer; background: none;
                  border: 1px solid transparent; border-radius: 4px; }
.dp-popup-close:hover, .dp-popup-close:focus-visible { border-color: rgba(128, 128, 128, .6); }
.dp-popup-meta { font-size: .9em; opacity: .85; margin: .2rem 0 .4rem 0; font-variant-numeric: tabular-nums; }
.dp-popup-section { font-size: .78em; font-weight: 600; text-transform: uppercase; letter-spacing: .04em;
                    opacity: .7; margin: .4rem 0 .1rem 0; }
.dp-popup-alts { list-style: none; margin: 0; padding: 0; }
.dp-popup-alt { display: flex; align-items: center; gap: .5em; padding: .12rem 0; }
.dp-popup-alt-text { flex: 1; white-space: pre-wrap; overflow-wrap: anywhere; }
.dp-popup-p { font-variant-numeric: tabular-nums; opacity: .8; }
.dp-popup-alt.dp-chosen .dp-popup-alt-text { font-weight: 600; }
.dp-popup-chosen { font-size: .8em; opacity: .7; padding: 0 .5em; }
.dp-popup-continue, .dp-popup-open { cursor: pointer; font-size: .82em; padding: .15em .5em; border-radius: 4px;
                                     border: 1px solid rgba(37, 99, 235, .6); background: rgba(37, 99, 235, .08); }
.dp-popup-continue:hover, .dp-popup-open:hover { background: rgba(37, 99, 235, .18); }
.dp-popup-note { font-size: .85em; opacity: .8; margin-top: .3rem; }
.dp-popup-foot { margin-top: .5rem; text-align: right; }
.dp-tree { font-size: .88em; margin: .4rem 0; }
.dp-tree-title { font-weight: 600; font-size: .85em; opacity: .8; margin-bottom: .2rem; }
.dp-tree-list { list-style: none; margin: 0; padding: 0; }
.dp-tree-item { padding: .1rem 0; overflow-wrap: anywhere; }
.dp-tree-node { font: inherit; font-weight: 600; background: none; border: none; padding: 0; color: inherit; }
button.dp-tree-node { cursor: pointer; text-decoration: underline; text-decoration-style: dotted; }
.dp-tree-item.dp-current > .dp-tree-node { color: #2563eb; }
.dp-tree-fork { opacity: .8; white-space: pre-wrap; }
.dp-nl, .dp-empty-tok { opacity: .5; }
.dp-empty { opacity: .6; font-style: italic; }
.dp-prompt { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .88em; opacity: .85; margin: 0 0 .6rem 0;
             border-left: 3px solid rgba(128, 128, 128, .5); padding: .2rem 0 .2rem .6rem; }
.dp-prompt-label { font-size: .75em; font-weight: 600; text-transform: uppercase; letter-spacing: .05em;
                   opacity: .7; margin-right: .6em; }
.dp-status { font-size: .95em; margin: .3rem 0; }
.dp-error { color: #b42318; border-left: 3px solid #d92d20; padding: .3rem .6rem; background: rgba(217, 45, 32, .06);
            border-radius: 4px; overflow-wrap: anywhere; }
.dp-error-title { font-weight: 600; }
.dp-estimate { font-size: .82em; opacity: .8; margin: 0; }
.dp-warn { color: #8a4b00; opacity: 1; border-left: 3px solid #f79009; padding: .2rem .5rem;
           background: rgba(247, 144, 9, .08); border-radius: 4px; }
.dp-sweep { overflow-x: auto; }
.dp-output { font-size: .75em; font-weight: 600; opacity: .7; margin-right: .3em; }
.dp-seed-note { font-size: .85em; opacity: .85; margin: .2rem 0 .5rem 0; }
.dp-facet-title { font-size: 1em; font-weight: 600; margin: .8rem 0 .2rem 0; }
.dp-grid-table { border-collapse: separate; border-spacing: .4rem; width: 100%; table-layout: fixed; }
.dp-grid-table th[scope="row"], .dp-corner { width: 8rem; min-width: 6rem; white-space: normal !important;
                                             overflow-wrap: break-word; }
.dp-grid-table th { font-size: .82em; font-weight: 600; text-align: left; vertical-align: top; white-space: normal;
                    overflow-wrap: break-word; }
.dp-grid-table td { vertical-align: top; padding: 0; }
.dp-grid-table, .dp-grid-table th, .dp-grid-table td { border: none !important; }  /* the page's table lines */
.dp-cell { border: 1px solid rgba(128, 128, 128, .35); border-radius: 8px; padding: .5rem .6rem;
           min-width: 0; margin-bottom: .4rem; }
@media (max-width: 700px) {  /* a phone: cells keep a readable width and the grid scrolls sideways */
  .dp-grid-table { table-layout: auto; width: auto; }
  .dp-cell { min-width: 13rem; }
}
.dp-cell-axes { font-size: .78em; opacity: .75; overflow-wrap: anywhere; }
.dp-cell-metrics { font-size: .82em; font-variant-numeric: tabular-nums; margin: .2rem 0 .3rem 0; }
.dp-cell-samples { list-style: none; margin: 0; padding: 0; }
.dp-cell-sample { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85em; line-height: 1.45;
                  border-top: 1px dashed rgba(128, 128, 128, .35); padding-top: .3rem; margin-top: .3rem; }
"""


@dataclass
class TokenView:
    """One generated token as shown: its text, its probability under the raw and the final distribution, and
    the final distribution's top alternatives [(text, p)] for the tooltip."""

    text: str
    raw_prob: float
    final_prob: float
    alternatives: list[tuple[str, float]] = field(default_factory=list)


def prob_color(p: float | None) -> str:
    """Background colour of a token with probability p: warm red-orange when unlikely, light green when likely.

    Hue goes 0 -> 120 (red -> green) and lightness 68% -> 88%, so surprising tokens stand out and dark text
    stays readable on every colour. None / NaN gives a neutral grey.
    """
    if is_missing(p):
        return "hsl(0, 0%, 85%)"
    q = min(max(float(p), 0.0), 1.0)  # type: ignore[arg-type]
    return f"hsl({120 * q:.0f}, 75%, {68 + 20 * q:.0f}%)"


def _legend_html(color_by: str, popup: bool = False) -> str:
    """A tiny colour scale: what the token colours mean (and what a click on a token does)."""
    if color_by == "none":
        return ""
    click = ("click a token (or Tab to it and press Enter) for its alternatives and to branch" if popup
             else "click a token for its distribution")
    stops = ", ".join(prob_color(q / 4) for q in range(5))
    which = "final (sampled) distribution" if color_by == "final" else "raw model distribution"
    return (f'<div class="dp-legend"><span>p = 0</span><span class="dp-legend-bar" '
            f'style="background: linear-gradient(to right, {stops})"></span><span>1</span>'
            f'<span>· colour = probability of the token under the {which}; {click}</span></div>')


def _tooltip(token: TokenView) -> str:
    """Plain-text tooltip (escaped by the caller): the token, its raw and final p, the top alternatives."""
    lines = [f"“{show_whitespace(token.text)}”",
             f"final p {format_number(token.final_prob)} · raw p {format_number(token.raw_prob)}"]
    if token.alternatives:
        lines.append("top alternatives (final):")
        lines += [f"  “{show_whitespace(text)}”  {format_number(p)}" for text, p in token.alternatives[:ALTERNATIVES_SHOWN]]
    return "\n".join(lines)


def _token_body(text: str) -> str:
    """The escaped text of a token; a newline shows a faint ↵ and breaks the line, an empty token shows ∅."""
    if text == "":
        return '<span class="dp-empty-tok">∅</span>'
    return html.escape(text).replace("\r\n", "\n").replace("\n", '<span class="dp-nl">↵</span><br>')


def _aria_label(step: int, token: TokenView) -> str:
    """What a screen reader says for a token (escaped by the caller): its text, step and probabilities."""
    return (f"“{show_whitespace(token.text)}”, step {step}, final p {format_number(token.final_prob)}, "
            f"raw p {format_number(token.raw_prob)}")


def token_span(sample: int, step: int, token: TokenView, color_by: str = "final", tooltip: bool = True) -> str:
    """One token a person can click or reach with Tab and press (Enter / Space):
    <span class="dp-tok" data-sample data-step tabindex="0" role="button" aria-label [title] style>text</span>.
    tooltip=False leaves out the browser's title tooltip (where a popup shows the token's details instead)."""
    p = token.final_prob if color_by == "final" else token.raw_prob
    style = f' style="background-color: {prob_color(p)}"' if color_by != "none" else ""
    title = f' title="{html.escape(_tooltip(token), quote=True)}"' if tooltip else ""
    label = html.escape(_aria_label(step, token), quote=True)
    return (f'<span class="dp-tok" data-sample="{sample}" data-step="{step}" tabindex="0" role="button" '
            f'aria-label="{label}"{title}{style}>{_token_body(token.text)}</span>')


def _check_lengths(name: str, values: Sequence[str] | None, expected: int) -> None:
    """Titles and footers come one per sample; a mismatch is the caller's bug, said plainly."""
    if values is not None and len(values) != expected:
        raise ValueError(f"{name}: one per sample ({expected}), got {len(values)}")


EMPTY_SAMPLE = '<span class="dp-empty">(no tokens yet)</span>'
EMPTY_TEXT = '<span class="dp-empty">(empty)</span>'


def samples_html(samples: list[list[TokenView]], color_by: str = "final", titles: list[str] | None = None,
                 footers: list[str] | None = None, include_css: bool = False, tooltips: bool = True,
                 run_id: str = "") -> str:
    """N samples side by side (columns that wrap on narrow screens), every token a clickable coloured span.

    Each token is <span class="dp-tok" data-sample="i" data-step="t" ...> (token_span), i the sample's index in
    `samples` and t the token's step; colour_by: "final" (the distribution sampled from), "raw" or "none";
    tooltips=False: no title tooltips (the Generate view opens a popup instead); run_id: the stored run the
    tokens belong to (data-run on the outer div; none while a run still streams).
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by: one of {list(COLOR_BY)}, got {color_by!r}")
    _check_lengths("titles", titles, len(samples))
    _check_lengths("footers", footers, len(samples))
    run = f' data-run="{html.escape(run_id, quote=True)}"' if run_id else ""
    parts = [f"<style>{CSS}</style>" if include_css else "", f'<div class="dp-samples"{run}>',
             _legend_html(color_by, not tooltips),
             '<div class="dp-sample-grid">']
    for i, tokens in enumerate(samples):
        parts.append(f'<div class="dp-sample" data-sample="{i}">')
        if titles is not None:
            parts.append(f'<div class="dp-sample-title">{html.escape(str(titles[i]))}</div>')
        body = "".join(token_span(i, t, tok, color_by, tooltips) for t, tok in enumerate(tokens))
        parts.append(f'<div class="dp-text">{body or EMPTY_SAMPLE}</div>')
        if footers is not None:
            parts.append(f'<div class="dp-sample-footer">{html.escape(str(footers[i]))}</div>')
        parts.append("</div>")
    parts.append("</div></div>")
    return "".join(parts)


def _truncate(text: str, max_chars: int = SAMPLE_TEXT_CHARS) -> str:
    """At most max_chars characters, the last an ellipsis when cut (before escaping: no entity is cut)."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def prompt_html(prompt: str, max_chars: int = 800) -> str:
    """The prompt above the outputs, escaped, so that a person reads the outputs as continuations of it."""
    text = prompt if isinstance(prompt, str) else ""
    return (f'<div class="dp-prompt"><span class="dp-prompt-label">prompt</span>'
            f'{html.escape(_truncate(text, max_chars)) or EMPTY_TEXT}</div>')


def progress_html(fraction: float, status: str) -> str:
    """A progress bar with its status line (a sweep's steps done out of its longest row)."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    return (f'<div class="dp-progress"><progress max="1" value="{fraction:.3f}"></progress> '
            f'<span>{html.escape(status)}</span></div>')


def status_html(status: str) -> str:
    """A run's status line (escaped)."""
    return f'<div class="dp-status">{html.escape(status)}</div>'


def estimate_html(text: str, long: bool) -> str:
    """What a run will ask for, before it starts; a long one as a warning."""
    if not text:
        return ""
    if long:
        return f'<div class="dp-status dp-estimate dp-warn" role="status">⚠ {html.escape(text)}</div>'
    return f'<div class="dp-status dp-estimate">{html.escape(text)}</div>'


def error_html(message: str, title: str = "Invalid setting") -> str:
    """The one place a run's error shows beside the outputs: the title and the message (field, range, value),
    escaped; it stays until the next run (the toast fades)."""
    return (f'<div class="dp-status dp-error" role="alert"><span class="dp-error-title">{html.escape(title)}:</span> '
            f'{html.escape(message)}</div>')


# ----------------------------------------------------------------------------------------------------------
# The sweep comparison grid


def metrics_line(cell: pd.Series, metrics: Sequence[str]) -> str:
    """"ppl 3.2 · div 0.41 · dist-2 0.83" (unescaped); a missing metric shows "–", never "nan"."""
    parts = []
    for metric in metrics:
        value = cell[metric] if metric in cell.index else None
        parts.append(f"{METRIC_ABBREVIATIONS.get(metric, metric)} {format_number(value)}")
    return " · ".join(parts)


GridTokens = dict  # {cell label: {sample: (output number in the run, [TokenView])}}


def _grid_sample_html(sample: int, text: str, tokens: tuple[int, list[TokenView]] | None) -> str:
    """One sample in a grid cell: plain escaped text, or (with its tokens) the output number it has in the
    Distributions view and its tokens coloured by final probability, each clickable, cut at SAMPLE_TEXT_CHARS."""
    if tokens is None:
        return (f'<li class="dp-cell-sample" data-sample="{sample}">'
                f'{html.escape(_truncate(text)) if text else EMPTY_TEXT}</li>')
    row, views = tokens
    spans, length = [], 0
    for step, token in enumerate(views):
        if length >= SAMPLE_TEXT_CHARS:
            spans.append('<span class="dp-empty">…</span>')
            break
        spans.append(token_span(row, step, token))
        length += len(token.text)
    return (f'<li class="dp-cell-sample" data-sample="{sample}" data-output="{row}">'
            f'<span class="dp-output" title="its number in the Distributions view">output {row}</span> '
            f'{"".join(spans) or EMPTY_TEXT}</li>')


CELL_AXIS_CHARS = 40  # a long axis value (a prompt) in a cell's heading; its title and the row header show it whole


def _cell_html(cell: pd.Series, axis_cols: list[str], texts: list[tuple[int, str]], metrics: Sequence[str],
               tokens: dict[int, tuple[int, list[TokenView]]] | None = None) -> str:
    """One grid cell: its axis values, its metrics and its samples' texts (escaped, truncated), coloured and
    clickable when their tokens are given."""
    whole = " · ".join(f"{axis_name(c)} = {format_value(cell[c])}" for c in axis_cols)
    axes = " · ".join(f"{axis_name(c)} = {_truncate(format_value(cell[c]), CELL_AXIS_CHARS)}" for c in axis_cols)
    samples = "".join(_grid_sample_html(sample, text, (tokens or {}).get(sample)) for sample, text in texts)
    cell_id = html.escape(format_value(cell["cell"]), quote=True)
    return (f'<div class="dp-cell" data-cell="{cell_id}">'
            + (f'<div class="dp-cell-axes" title="{html.escape(whole, quote=True)}">{html.escape(axes)}</div>'
               if axes else "")
            + f'<div class="dp-cell-metrics">{html.escape(metrics_line(cell, metrics))}</div>'
            + f'<ol class="dp-cell-samples">{samples}</ol></div>')


def _texts_by_cell(records: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """{cell label: [(sample index, text)]} in sample order, from the one-row-per-sample records."""
    out: dict[str, list[tuple[int, str]]] = {}
    if records is None or records.empty or "cell" not in records.columns:
        return out
    ordered = records.sort_values(["cell", "sample"]) if "sample" in records.columns else records
    for i, (_, rec) in enumerate(ordered.iterrows()):
        text = rec["text"] if "text" in rec.index and isinstance(rec["text"], str) else ""
        sample = int(rec["sample"]) if "sample" in rec.index and not is_missing(rec["sample"]) else i
        out.setdefault(format_value(rec["cell"]), []).append((sample, text))
    return out


def _grid_table(cells: pd.DataFrame, row_col: str | None, col_col: str | None, all_axis_cols: list[str],
                row_labels: list[str], col_labels: list[str], texts: dict[str, list[tuple[int, str]]],
                metrics: Sequence[str], tokens: GridTokens | None = None) -> str:
    """One <table>: a header row of column-axis values, a header column of row-axis values, cells in slots."""
    slots: dict[tuple[int, int], list[str]] = {}
    for _, cell in cells.iterrows():
        r = row_labels.index(format_value(cell[row_col])) if row_col else 0
        c = col_labels.index(format_value(cell[col_col])) if col_col else 0
        slots.setdefault((r, c), []).append(
            _cell_html(cell, all_axis_cols, texts.get(format_value(cell["cell"]), []), metrics,
                       (tokens or {}).get(format_value(cell["cell"]))))
    head = ""
    if col_col:
        corner = f'<th class="dp-corner">{html.escape(axis_name(row_col))} ↓</th>' if row_col else ""
        head = "<thead><tr>" + corner + "".join(
            f'<th scope="col">{html.escape(f"{axis_name(col_col)} = {v}")}</th>' for v in col_labels) + "</tr></thead>"
    body = []
    for r, row_value in enumerate(row_labels):
        header = f'<th scope="row">{html.escape(f"{axis_name(row_col)} = {row_value}")}</th>' if row_col else ""
        tds = "".join(f'<td>{"".join(slots.get((r, c), []))}</td>' for c in range(len(col_labels)))
        body.append(f"<tr>{header}{tds}</tr>")
    return f'<table class="dp-grid-table">{head}<tbody>{"".join(body)}</tbody></table>'


def seed_note_html(independent: bool, seed: int, cells: int) -> str:
    """What a sweep's seeds mean, above its grid: why cells start alike (shared seed), or that they do not."""
    if cells < 2:
        return ""
    if independent:
        text = (f"Independent seeds: each cell has its own seed, derived from seed {seed} and the cell's axis "
                f"values (the table below lists them), so cells differ by chance as well as by their parameters.")
    else:
        text = (f"Shared seed {seed}: sample i of every cell draws the same random numbers, so cells often begin "
                f"with the same words. That is by design: the differences between cells come from their "
                f"parameters, not from luck. Tick “independent seeds per cell” to give each cell its own seed.")
    return f'<div class="dp-seed-note">{html.escape(text)}</div>'


def sweep_grid_html(cells: pd.DataFrame, records: pd.DataFrame, axes: list[str], metrics: list[str],
                    include_css: bool = False, tokens: GridTokens | None = None) -> str:
    """The comparison grid of a sweep: rows = values of the first axis, columns = values of the second, one
    grid per value of a third (headed "name = value"); a single axis gives one row, no axes one cell.

    cells: engine.metrics.cell_summary(records); records: one row per sample (cell, sample, text, axis_*...).
    Each cell is <div class="dp-cell" data-cell="N"> with its axis values, `metrics` compactly (missing ones
    as "–") and its samples' texts, escaped and cut at SAMPLE_TEXT_CHARS. tokens ({cell label: {sample: (output
    number, [TokenView])}}): those samples show their output number and clickable coloured tokens instead.
    """
    axis_cols = [axis_column(a) for a in axes]
    missing = [axis_name(c) for c in axis_cols if c not in cells.columns]
    if missing:
        present = [axis_name(c) for c in cells.columns if c.startswith("axis_")]
        raise ValueError(f"axes: names from {present}, got {missing[0]!r}")
    all_axis_cols = [*axis_cols, *[c for c in cells.columns if c.startswith("axis_") and c not in axis_cols]]
    texts = _texts_by_cell(records)
    if len(axis_cols) >= 2:
        row_col, col_col, facet_cols = axis_cols[0], axis_cols[1], axis_cols[2:]
    else:
        row_col, col_col, facet_cols = None, (axis_cols[0] if axis_cols else None), []
    row_labels = list(dict.fromkeys(format_value(v) for v in cells[row_col])) if row_col else [""]
    col_labels = list(dict.fromkeys(format_value(v) for v in cells[col_col])) if col_col else [""]

    def facet_key(cell: pd.Series) -> str:
        return " · ".join(f"{axis_name(c)} = {format_value(cell[c])}" for c in facet_cols)

    keys = list(dict.fromkeys(facet_key(cell) for _, cell in cells.iterrows())) if facet_cols else [""]
    parts = [f"<style>{CSS}</style>" if include_css else "", '<div class="dp-sweep">']
    if cells.empty:
        parts.append('<div class="dp-empty">no cells yet</div>')
    for key in keys:
        part = cells if not facet_cols else cells[[facet_key(cell) == key for _, cell in cells.iterrows()]]
        if facet_cols:
            parts.append(f'<h4 class="dp-facet-title">{html.escape(key)}</h4>')
        if not cells.empty:
            parts.append(_grid_table(part, row_col, col_col, all_axis_cols, row_labels, col_labels, texts, metrics,
                                     tokens))
    parts.append("</div>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------------
# The per-stage table of one replayed (row, step)


def stage_table(stats: list[dict], stage_names: list[str]) -> pd.DataFrame:
    """engine.trace.stage_stats as a display table: stage, entropy, support, mass kept %, chosen p, chosen rank."""
    if len(stats) != len(stage_names):
        raise ValueError(f"stage_names: one per stage ({len(stats)}), got {len(stage_names)}")

    def rounded(value: float | None, digits: int) -> float | None:
        return None if is_missing(value) else round(float(value), digits)  # type: ignore[arg-type]

    rows = [{
        "stage": name,
        "entropy": rounded(s["entropy"], 3),
        "support": int(s["support"]),
        "mass kept %": rounded(None if is_missing(s["mass_kept"]) else 100 * min(s["mass_kept"], 1.0), 2),
        "chosen p": rounded(s["chosen_prob"], 4),
        "chosen rank": int(s["chosen_rank"]),
    } for name, s in zip(stage_names, stats)]
    return pd.DataFrame(rows, columns=["stage", "entropy", "support", "mass kept %", "chosen p", "chosen rank"])
