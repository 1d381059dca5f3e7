"""Plotly figures for the UI: the next-token distribution at every processor stage, per-step curves and the
sweep heatmaps. No Gradio here: every function returns a plotly Figure.

Plotly renders a subset of HTML (<b>, <br>, <a>, <span style>, entities) in tick labels, hover text, legends
and annotations, so every string that comes from the model or a user goes through `escape_label` first.
Token labels also get their whitespace made visible, since " the" and "the" are different tokens.
"""
from __future__ import annotations

import json
import math
from numbers import Integral, Real
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from engine.trace import stage_stats

KEPT_COLOR = "#4c78a8"  # a token still allowed at this stage
CHOSEN_COLOR = "#e45756"  # the token that was actually sampled
REMOVED_COLOR = "#b0b0b0"  # p == 0 at this stage
RAW_LINE_COLOR = "#555555"
STAGE_LINE_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#eeca3b")  # not red/grey

WHITESPACE_MARKS = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
TICK_LABEL_CHARS = 14  # token tick labels longer than this are shortened (the hover shows the whole token)
MISSING = "–"  # what a missing number looks like anywhere in the UI


# ----------------------------------------------------------------------------------------------------------
# Small text helpers (also used by render.py)


def escape_label(text: str) -> str:
    """Escape &, < and > so that plotly shows the text literally instead of reading it as its mini-HTML."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def show_whitespace(text: str) -> str:
    """Make whitespace and control characters visible: " " -> "␣", "\\n" -> "↵", "\\t" -> "⇥", others \\xNN.

    A token is often just a space or a newline; drawn as is it would be an empty, unreadable label.
    """
    out = []
    for ch in str(text):
        if ch in WHITESPACE_MARKS:
            out.append(WHITESPACE_MARKS[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


AXIS_TICK_CHARS = 28  # a heatmap tick of a text axis value (a prompt); the hover shows it whole


def shorten(text: str, max_chars: int) -> str:
    """At most max_chars characters, the last one an ellipsis when something was cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def token_tick(text: str, max_chars: int | None = None) -> str:
    """A token for a plotly label: whitespace visible, optionally shortened, then escaped (in that order, so
    that shortening can never cut an entity in half)."""
    visible = show_whitespace(text) or "∅"
    return escape_label(shorten(visible, max_chars) if max_chars else visible)


def is_missing(value: Any) -> bool:
    """None, NaN or ±inf: a number that must not be shown (it shows as MISSING, or a blank cell)."""
    if value is None:
        return True
    if isinstance(value, Real) and not isinstance(value, bool):
        return not math.isfinite(float(value))
    return False


def format_number(value: Any, digits: int = 3) -> str:
    """A metric for display with about `digits` significant digits; MISSING for None / NaN / inf."""
    if is_missing(value):
        return MISSING
    if isinstance(value, Integral) or isinstance(value, bool):
        return str(int(value))
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.{max(digits - 1, 0)}e}"
    if abs(v) >= 10 ** digits:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def format_value(value: Any) -> str:
    """An axis value (a parameter) as a short string: 0.7 -> "0.7", 1.0 -> "1", lists as JSON, None -> "None".

    Non-numeric values (processor orders, stop lists) are common axes, so everything becomes a category label.
    A NaN can only come from a None that pandas turned into a float, so it reads "None" as well.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)
    if hasattr(value, "tolist"):  # numpy arrays / scalars that are not Real
        return format_value(value.tolist())
    return str(value)


def axis_column(name: str) -> str:
    """The cells/records column of an axis: "temperature" and "axis_temperature" both name axis_temperature."""
    return name if name.startswith("axis_") else f"axis_{name}"


def axis_name(name: str) -> str:
    """The display name of an axis (without the axis_ prefix)."""
    return name[len("axis_"):] if name.startswith("axis_") else name


def ordered_labels(values: Sequence[Any]) -> list[str]:
    """The distinct labels of some axis values in order of first appearance (the sweep's own order)."""
    return list(dict.fromkeys(format_value(v) for v in values))


# ----------------------------------------------------------------------------------------------------------
# The distribution at every stage


def _as_numpy(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """[S, V] float64 numpy array from a tensor or array."""
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().to("cpu", torch.float64).numpy()
    return np.asarray(probs, dtype=np.float64)


def shown_tokens(probs: np.ndarray, chosen: int, top_n: int) -> np.ndarray:
    """The token ids drawn at every stage: [K] with K <= top_n + 1, ordered by raw probability (stage 0).

    The union of each stage's top_n still-allowed tokens, so tokens that a penalty pushes up appear too; when
    the union is larger than top_n, the tokens with the highest probability at any stage win. The chosen
    token is always included, whatever its rank.
    """
    stages, vocab = probs.shape
    k = max(1, min(top_n, vocab))
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]  # [S, k] (unordered)
    alive_top = top[np.take_along_axis(probs, top, axis=1) > 0]  # zero-probability fillers are not "top"
    candidates = np.unique(alive_top)  # [C]
    if candidates.size > k:
        peak = probs[:, candidates].max(axis=0)  # [C]
        candidates = candidates[np.lexsort((candidates, -peak))[:k]]
    if chosen not in candidates:
        candidates = np.append(candidates, chosen)
    raw = probs[0, candidates]  # [K]
    return candidates[np.lexsort((candidates, -raw))]


def stage_groups(probs: np.ndarray) -> list[list[int]]:
    """Consecutive stages with exactly the same distribution, grouped: [[0], [1, 2, 3], [4], ...].

    A disabled processor is an exact no-op, so with the default order (every processor) most stages equal the
    previous one; one row per group keeps the figure short without hiding which processors ran.
    """
    groups: list[list[int]] = [[0]]
    for s in range(1, probs.shape[0]):
        if np.array_equal(probs[s], probs[s - 1]):
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def unchanged_list(names: Sequence[str], max_names: int = 4) -> str:
    """"top_p, min_p, +3 more": the stages of a group that changed nothing (unescaped)."""
    names = list(names)
    return ", ".join(names[:max_names]) + (f", +{len(names) - max_names} more" if len(names) > max_names else "")


def group_label(names: Sequence[str], max_names: int = 4) -> str:
    """"top_k" or "top_k (then no change: top_p, min_p, +3 more)" for a group of identical stages (unescaped)."""
    first, rest = names[0], list(names[1:])
    return f"{first} (then no change: {unchanged_list(rest, max_names)})" if rest else first


def _removed_by(probs: np.ndarray, stage_names: Sequence[str], token: int) -> str:
    """Name of the first stage at which `token` has p == 0 (for the hover of a removed token)."""
    zero = np.flatnonzero(probs[:, token] <= 0)
    return stage_names[zero[0]] if zero.size else "?"


def _stage_traces(p: np.ndarray, s: int, tokens: np.ndarray, chosen: int, labels: list[str],
                  stage_names: Sequence[str], name: str) -> list[go.BaseTraceType]:
    """The bars of stage s over the shown tokens [K] (0 and grey where removed), plus grey crosses at 0 for
    the removed ones so that they stay visible. Every trace carries the token ids as customdata."""
    row_probs = p[s, tokens]  # [K]
    removed = row_probs <= 0  # [K]
    positions = list(range(len(tokens)))
    colors = [REMOVED_COLOR if gone else CHOSEN_COLOR if t == chosen else KEPT_COLOR
              for t, gone in zip(tokens, removed)]
    hover = [
        f"{lab}<br>id {t}<br>removed by {escape_label(_removed_by(p, stage_names, int(t)))}" if gone else
        f"{lab}{'  (chosen)' if t == chosen else ''}<br>id {t}<br>p = {q:.4g}<br>raw p = {p[0, t]:.4g}"
        for lab, t, q, gone in zip(labels, tokens, row_probs, removed)
    ]
    traces: list[go.BaseTraceType] = [go.Bar(
        x=positions, y=np.where(removed, 0.0, row_probs).tolist(), customdata=tokens.tolist(),
        marker_color=colors, hovertext=hover, hoverinfo="text", name=escape_label(name), showlegend=False)]
    if removed.any():
        traces.append(go.Scatter(
            x=[x for x, gone in zip(positions, removed) if gone], y=[0.0] * int(removed.sum()),
            customdata=tokens[removed].tolist(), mode="markers", cliponaxis=False, showlegend=False,
            marker=dict(symbol="x", size=8, color=[CHOSEN_COLOR if t == chosen else REMOVED_COLOR
                                                   for t in tokens[removed]]),
            hovertext=[h for h, gone in zip(hover, removed) if gone], hoverinfo="text", name="removed"))
    return traces


def _stage_annotation(names: Sequence[str], stats: dict) -> str:
    """"<b>top_k</b>  H = … · support … · mass kept … · chosen p … (rank …)" and, for a collapsed group, a
    second grey line naming the stages that changed nothing. Names are escaped."""
    label = escape_label(names[0] if names[0] != "raw" else "raw (model)")
    # an entropy is >= 0: a one-token distribution's float sum can come out as -1e-8, shown "-0.00" otherwise
    line = (f"<b>{label}</b>   H = {max(stats['entropy'], 0.0):.2f} nats · support {stats['support']:,} · "
            f"mass kept {stats['mass_kept']:.1%} · chosen p {stats['chosen_prob']:.3g} (rank {stats['chosen_rank']})")
    if len(names) > 1:
        line += f"<br><span style='color:#777'>{escape_label('then no change: ' + unchanged_list(names[1:]))}</span>"
    return line


def distribution_figure(stage_names: list[str], probs: np.ndarray | torch.Tensor, chosen: int,
                        token_label: Callable[[int], str], top_n: int = 20, title: str = "",
                        collapse_unchanged: bool = True) -> go.Figure:
    """The next-token distribution of one (row, step) at every stage, one subplot row per stage.

    probs: [S, V] (stage 0 raw, then after each processor; removed tokens exactly 0). Every row shows the SAME
    tokens in the SAME order (see shown_tokens), so a person sees what each processor removed or reshaped:
    kept tokens blue, the chosen token red, removed tokens as grey crosses at 0. Consecutive identical stages
    share one row when collapse_unchanged. `title` is shown literally (escaped).
    """
    p = _as_numpy(probs)  # [S, V]
    if p.ndim != 2 or p.shape[0] != len(stage_names):
        raise ValueError(f"probs: expected [{len(stage_names)} stages, vocab], got shape {list(p.shape)}")
    if not 0 <= chosen < p.shape[1]:
        raise ValueError(f"chosen: a token id in [0, {p.shape[1] - 1}], got {chosen}")
    tokens = shown_tokens(p, chosen, top_n)  # [K]
    texts = [token_label(int(t)) for t in tokens]
    stats = stage_stats(torch.from_numpy(p), chosen)
    groups = stage_groups(p) if collapse_unchanged else [[s] for s in range(p.shape[0])]

    # pixels: title (+ colour key) on top, then per row a two-line stage annotation above its plot
    header_px, row_px, gap_px, bottom_px = (104 if title else 76), 150, 58, 90
    height = header_px + len(groups) * row_px + (len(groups) - 1) * gap_px + bottom_px
    fig = make_subplots(rows=len(groups), cols=1, shared_xaxes=True,
                        vertical_spacing=gap_px / height if len(groups) > 1 else 0.0)
    for r, group in enumerate(groups, start=1):
        names = [stage_names[i] for i in group]
        s = group[0]  # identical stages: the first stands for the group
        for trace in _stage_traces(p, s, tokens, chosen, [token_tick(t) for t in texts], stage_names,
                                   group_label(names)):
            fig.add_trace(trace, row=r, col=1)
        fig.add_annotation(text=_stage_annotation(names, stats[s]), xref="x domain", yref="y domain", x=0,
                           y=1.02, xanchor="left", yanchor="bottom", showarrow=False, align="left",
                           font=dict(size=12), row=r, col=1)
        fig.update_yaxes(range=[0, max(float(p[s, tokens].max()), 1e-9) * 1.12], tickformat=".3~g",
                         title_text="p" if r == (len(groups) + 1) // 2 else None, row=r, col=1)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(tokens))), tickangle=-45,
                     ticktext=[token_tick(t, TICK_LABEL_CHARS) for t in texts], range=[-0.6, len(tokens) - 0.4])
    key = (f"<span style='color:{KEPT_COLOR}'>■</span> kept  "
           f"<span style='color:{CHOSEN_COLOR}'>■</span> chosen  "
           f"<span style='color:{REMOVED_COLOR}'>✕</span> removed (p = 0)")
    fig.update_layout(
        title=dict(text=(f"{escape_label(title)}<br>" if title else "") + f"<span style='font-size:12px'>{key}</span>",
                   x=0.01, xanchor="left", yref="container", y=1 - (30 if title else 12) / height, yanchor="top"),
        height=height, bargap=0.25, margin=dict(l=60, r=20, t=header_px, b=bottom_px),
        plot_bgcolor="white", hoverlabel=dict(align="left"),
    )
    fig.update_yaxes(gridcolor="#eeeeee", zeroline=True, zerolinecolor="#cccccc")
    return fig


# ----------------------------------------------------------------------------------------------------------
# Curves over the steps of one sample


def _column_groups(entropy: np.ndarray) -> list[list[int]]:
    """Consecutive stages whose entropy curve is identical at every step: drawn once ([T, S] -> groups)."""
    groups: list[list[int]] = [[0]]
    for s in range(1, entropy.shape[1]):
        if np.array_equal(entropy[:, s], entropy[:, s - 1], equal_nan=True):
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def steps_figure(entropy: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
                 chosen_raw_prob: np.ndarray | torch.Tensor | Sequence[float],
                 chosen_final_prob: np.ndarray | torch.Tensor | Sequence[float],
                 stage_names: list[str], current_step: int | None = None) -> go.Figure:
    """Two panels over the steps of one sample: entropy per stage [T, S], and the chosen token's raw vs final
    probability [T]. A dotted vertical line marks current_step (ignored when outside [0, T-1]).

    Stages whose curve equals the previous one are drawn once, with the unchanged names in the legend entry.
    """
    H = _as_numpy(entropy) if len(entropy) else np.zeros((0, len(stage_names)))  # [T, S]
    raw = _as_numpy(chosen_raw_prob).reshape(-1)  # [T]
    final = _as_numpy(chosen_final_prob).reshape(-1)  # [T]
    steps = H.shape[0]
    if H.ndim != 2 or H.shape[1] != len(stage_names) or raw.shape[0] != steps or final.shape[0] != steps:
        raise ValueError(f"steps_figure: entropy must be [T, {len(stage_names)}] and both probability "
                         f"lists [T]; got {list(H.shape)}, {list(raw.shape)}, {list(final.shape)}")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("entropy of the next-token distribution (nats)",
                                        "probability of the chosen token"))
    x = list(range(steps))
    groups = _column_groups(H) if steps else [[s] for s in range(len(stage_names))]
    for i, group in enumerate(groups):
        names = [stage_names[s] for s in group]
        is_raw, is_final = group[0] == 0, group[-1] == len(stage_names) - 1
        label = group_label(names) + (" = final" if is_raw and is_final else " (final)" if is_final else "")
        style = (dict(color=RAW_LINE_COLOR, width=3) if is_raw else dict(color=CHOSEN_COLOR, width=3) if is_final
                 else dict(color=STAGE_LINE_COLORS[i % len(STAGE_LINE_COLORS)], width=1.5, dash="dash"))
        fig.add_trace(go.Scatter(x=x, y=H[:, group[0]].tolist(), mode="lines+markers", marker=dict(size=4),
                                 line=style, name=escape_label(label), legendgroup="entropy"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=raw.tolist(), mode="lines+markers", name="chosen p, raw",
                             line=dict(color=RAW_LINE_COLOR, width=2), marker=dict(size=4)), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=final.tolist(), mode="lines+markers", name="chosen p, final",
                             line=dict(color=CHOSEN_COLOR, width=2), marker=dict(size=4)), row=2, col=1)
    if current_step is not None and 0 <= current_step < steps:
        fig.add_vline(x=current_step, line=dict(color="#333333", width=1.5, dash="dot"), row="all", col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.03], row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    if not steps:
        fig.add_annotation(text="no steps yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(height=520, hovermode="x unified", plot_bgcolor="white", margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
    fig.update_yaxes(gridcolor="#eeeeee")
    return fig


def divergence_figure(tv: Sequence[float], kl_ab: Sequence[float], kl_ba: Sequence[float], names: tuple[str, str],
                      fork: int | None) -> go.Figure:
    """Per step of a shared prefix: total variation (left axis, in [0, 1]) and both KL divergences (right axis,
    nats) between two outputs' final distributions; a dashed line marks the first fork. An infinite KL (a token
    one output can pick is removed in the other) is drawn as an x at the top of the plot, not as a number."""
    a, b = names
    x = list(range(len(tv)))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=list(tv), mode="lines+markers", name="total variation",
                             line=dict(color=CHOSEN_COLOR, width=3), marker=dict(size=5)), secondary_y=False)
    finite = [v for v in (*kl_ab, *kl_ba) if math.isfinite(v)]
    top = max(finite, default=1.0) * 1.1 or 1.0
    for values, name, colour in ((kl_ab, f"KL({a} ‖ {b})", RAW_LINE_COLOR), (kl_ba, f"KL({b} ‖ {a})", "#7f7f7f")):
        fig.add_trace(go.Scatter(x=x, y=[v if math.isfinite(v) else None for v in values], mode="lines+markers",
                                 name=escape_label(name), line=dict(color=colour, width=1.5, dash="dash"),
                                 marker=dict(size=4)), secondary_y=True)
        infinite = [t for t, v in enumerate(values) if not math.isfinite(v)]
        if infinite:
            fig.add_trace(go.Scatter(x=infinite, y=[top] * len(infinite), mode="markers", showlegend=True,
                                     name=escape_label(name + " = ∞"), marker=dict(symbol="x", size=9, color=colour)),
                          secondary_y=True)
    if fork is not None:
        fig.add_vline(x=fork, line=dict(color="#333333", width=1.5, dash="dash"))
        fig.add_annotation(x=fork, y=1.0, yref="paper", text=f"first fork: step {fork}", showarrow=False,
                           xanchor="left", yanchor="bottom")
    fig.update_yaxes(title_text="total variation", range=[0, 1.03], secondary_y=False, gridcolor="#eeeeee")
    fig.update_yaxes(title_text="KL (nats)", rangemode="tozero", secondary_y=True)
    fig.update_xaxes(title_text="step")
    if not x:
        fig.add_annotation(text="no shared steps", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(height=380, hovermode="x unified", plot_bgcolor="white", margin=dict(l=60, r=60, t=40, b=50),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig


# ----------------------------------------------------------------------------------------------------------
# Sweep heatmaps


def _slot_grid(cells: pd.DataFrame, metric: str, x_col: str | None, y_col: str | None,
               x_labels: list[str], y_labels: list[str]) -> tuple[list[list[float | None]], list[list[str]], list[list[int]]]:
    """z [ny, nx] (mean of the finite values in each slot, None where there is none), its text, and the
    number of cells per slot (more than one when the cells have axes not shown here)."""
    values: dict[tuple[int, int], list[float]] = {}
    counts: dict[tuple[int, int], int] = {}
    for _, row in cells.iterrows():
        xi = x_labels.index(format_value(row[x_col])) if x_col else 0
        yi = y_labels.index(format_value(row[y_col])) if y_col else 0
        counts[(yi, xi)] = counts.get((yi, xi), 0) + 1
        v = pd.to_numeric(row[metric], errors="coerce")
        if not is_missing(v):
            values.setdefault((yi, xi), []).append(float(v))
    z = [[sum(values[(yi, xi)]) / len(values[(yi, xi)]) if (yi, xi) in values else None
          for xi in range(len(x_labels))] for yi in range(len(y_labels))]
    text = [["" if v is None else format_number(v) for v in zrow] for zrow in z]
    n = [[counts.get((yi, xi), 0) for xi in range(len(x_labels))] for yi in range(len(y_labels))]
    return z, text, n


def _heatmap_hover(axis_values: list[tuple[str | None, str | None]], metric: str, value_text: str,
                   cell_count: int) -> str:
    """Hover text of one heatmap slot: its axis values and the metric, every piece escaped on its own."""
    lines = [f"{escape_label(axis_name(col))} = {escape_label(label)}" for col, label in axis_values if col]
    line = f"{escape_label(metric)} = {value_text or MISSING}"
    lines.append(line + (f" (mean of {cell_count} cells)" if cell_count > 1 else ""))
    return "<br>".join(lines)


COLOR_SCALES = ("clipped", "linear", "log")  # how a heatmap maps values to colours (the numbers shown stay true)


def color_range(values: Sequence[float], scale: str) -> tuple[float | None, float | None]:
    """The values at the ends of the colour bar: all of them (linear, log), or for "clipped" Tukey's fences
    (quartiles -/+ 1.5 x the interquartile range, within the data), so that one outlier (a perplexity of 186
    among values near 3) is painted at the end of the bar instead of flattening every other cell's colour."""
    finite = np.asarray([v for v in values if not is_missing(v)], dtype=np.float64)
    if finite.size == 0 or scale != "clipped":
        return None, None
    q1, q3 = np.percentile(finite, [25, 75])
    low, high = max(finite.min(), q1 - 1.5 * (q3 - q1)), min(finite.max(), q3 + 1.5 * (q3 - q1))
    return (float(low), float(high)) if high > low else (None, None)


def _color_values(z: list[list[float | None]], scale: str) -> list[list[float | None]]:
    """What the colour is computed from: the values, or log10 of them ("log"; values <= 0 get no colour)."""
    if scale != "log":
        return z
    return [[math.log10(v) if v is not None and v > 0 else None for v in row] for row in z]


def metric_heatmap(cells: pd.DataFrame, metric: str, x_axis: str | None, y_axis: str | None,
                   facet_axis: str | None = None, scale: str = "linear") -> go.Figure:
    """A heatmap of one per-cell metric (a column of engine.metrics.cell_summary) over one or two axes.

    Axis values are categories in the sweep's own order (first appearance), shown as strings; each cell is
    annotated with its value (3 significant digits) and cells without a value are blank. facet_axis draws
    one heatmap per value of a third axis, side by side, titled "name = value", on one colour scale. One axis
    only gives a single-row heatmap, no axis a single cell. Axis names may be given with or without "axis_".
    scale: "linear", "log" (colour by log10 of the value) or "clipped" (colour range at Tukey's fences, see
    color_range); every cell still shows its own value.
    """
    if metric not in cells.columns:
        metrics = [c for c in cells.columns if c != "cell" and not c.startswith("axis_")]
        raise ValueError(f"metric: one of {metrics}, got {metric!r}")
    if x_axis is None and y_axis is not None:
        x_axis, y_axis = y_axis, None
    cols = {a: axis_column(a) for a in (x_axis, y_axis, facet_axis) if a}
    for name, col in cols.items():
        if col not in cells.columns:
            present = [axis_name(c) for c in cells.columns if c.startswith("axis_")]
            raise ValueError(f"axis: one of {present}, got {name!r}")
    if scale not in COLOR_SCALES:
        raise ValueError(f"scale: one of {list(COLOR_SCALES)}, got {scale!r}")
    x_col, y_col, f_col = (cols.get(a) if a else None for a in (x_axis, y_axis, facet_axis))
    x_labels = ordered_labels(cells[x_col]) if x_col else ["all cells"]
    y_labels = ordered_labels(cells[y_col]) if y_col else [axis_name(metric)]
    facets = ordered_labels(cells[f_col]) if f_col else [None]

    titles = [escape_label(f"{axis_name(f_col)} = {f}") for f in facets] if f_col else None
    fig = make_subplots(rows=1, cols=len(facets), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=min(0.06, 0.3 / max(len(facets), 1)) if len(facets) > 1 else 0.0)
    for c, facet in enumerate(facets, start=1):
        part = cells if facet is None else cells[[format_value(v) == facet for v in cells[f_col]]]
        z, text, n = _slot_grid(part, metric, x_col, y_col, x_labels, y_labels)
        hover = [[_heatmap_hover([(x_col, x_labels[xi]), (y_col, y_labels[yi]), (f_col, facet)],
                                 metric, text[yi][xi], n[yi][xi])
                  for xi in range(len(x_labels))] for yi in range(len(y_labels))]
        fig.add_trace(go.Heatmap(z=_color_values(z, scale), x=list(range(len(x_labels))), y=list(range(len(y_labels))), text=text,
                                 texttemplate="%{text}", customdata=hover, hovertemplate="%{customdata}<extra></extra>",
                                 coloraxis="coloraxis", xgap=2, ygap=2, hoverongaps=True), row=1, col=c)
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(x_labels))),
                         ticktext=[escape_label(shorten(v, AXIS_TICK_CHARS)) for v in x_labels],
                         title_text=escape_label(axis_name(x_col)) if x_col else None, row=1, col=c)
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(y_labels))),
                     ticktext=[escape_label(shorten(v, AXIS_TICK_CHARS)) for v in y_labels], autorange="reversed")
    if y_col:
        fig.update_yaxes(title_text=escape_label(axis_name(y_col)), row=1, col=1)
    if cells.empty:
        fig.add_annotation(text="no cells yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    low, high = color_range(pd.to_numeric(cells[metric], errors="coerce").tolist(), scale)
    bar_title = {"log": f"log10 {metric}", "clipped": f"{metric} (clipped)"}.get(scale, metric)
    fig.update_layout(
        coloraxis=dict(colorscale="Viridis", cmin=low, cmax=high,
                       colorbar=dict(title=dict(text=escape_label(bar_title)))),
        title=dict(text=escape_label(metric), x=0.01, xanchor="left"),
        height=max(280, 150 + 48 * len(y_labels)), plot_bgcolor="white",
        margin=dict(l=80, r=20, t=80 if f_col else 60, b=70),
    )
    return fig
