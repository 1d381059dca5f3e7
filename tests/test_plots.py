"""The figures the UI shows: per-stage distributions, per-step curves, sweep heatmaps, and stage_stats.

Synthetic data throughout (no model), plus one check on a real replay from a tiny random model.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from engine.metrics import cell_summary
from engine.trace import stage_stats
from playground.plots import (CHOSEN_COLOR, KEPT_COLOR, REMOVED_COLOR, distribution_figure, escape_label,
                              format_number, format_value, metric_heatmap, show_whitespace, shown_tokens, steps_figure)

EVIL = "<img src=x onerror=alert(1)>"


# ---------------------------------------------------------------------------------------------- stage_stats

def hand_made_probs() -> torch.Tensor:
    """[3, 6]: raw, then a reweighting (no removal), then a top-3 cut of it (ties at 0.25 on purpose)."""
    raw = [0.30, 0.25, 0.25, 0.10, 0.06, 0.04]
    reweighted = [0.40, 0.25, 0.25, 0.05, 0.03, 0.02]
    cut = [0.4 / 0.9, 0.25 / 0.9, 0.25 / 0.9, 0.0, 0.0, 0.0]
    return torch.tensor([raw, reweighted, cut], dtype=torch.float64)


def reference_stats(probs: np.ndarray, chosen: int) -> list[dict]:
    out = []
    for s in range(probs.shape[0]):
        row = probs[s]
        entropy = 0.0
        support = 0
        kept = 0.0
        for v, p in enumerate(row):
            if p > 0:
                entropy -= p * math.log(p)
                support += 1
                kept += probs[0][v]
        rank = 1 + sum(1 for p in row if p > row[chosen])
        out.append(dict(entropy=entropy, support=support, mass_kept=kept, chosen_prob=row[chosen],
                        chosen_rank=rank, top_prob=max(row)))
    return out


@pytest.mark.parametrize("chosen", [0, 2, 5])
def test_stage_stats_matches_a_loop_reference(chosen: int) -> None:
    probs = hand_made_probs()
    got = stage_stats(probs, chosen)
    want = reference_stats(probs.numpy(), chosen)
    assert len(got) == 3
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key in ("entropy", "mass_kept", "chosen_prob", "top_prob"):
            assert g[key] == pytest.approx(w[key], abs=1e-12), key
        assert g["support"] == w["support"] and isinstance(g["support"], int)
        assert g["chosen_rank"] == w["chosen_rank"] and isinstance(g["chosen_rank"], int)


def test_stage_stats_values_by_hand() -> None:
    stats = stage_stats(hand_made_probs().float(), chosen=2)
    assert [s["support"] for s in stats] == [6, 6, 3]
    assert stats[2]["mass_kept"] == pytest.approx(0.80, abs=1e-6)  # raw mass of tokens 0, 1, 2
    assert stats[0]["chosen_rank"] == 2  # tied with token 1 at 0.25: both rank 2
    assert stats[2]["entropy"] < stats[1]["entropy"] < stats[0]["entropy"]  # sharper, then cut
    chosen_removed = stage_stats(hand_made_probs(), chosen=5)[2]
    assert chosen_removed["chosen_prob"] == 0 and chosen_removed["chosen_rank"] == 4


# ---------------------------------------------------------------------------------------------- helpers

def test_escape_label_and_whitespace() -> None:
    assert escape_label(EVIL) == "&lt;img src=x onerror=alert(1)&gt;"
    assert escape_label("a & <b>") == "a &amp; &lt;b&gt;"
    assert show_whitespace(" the\n\tx\x00") == "␣the↵⇥x\\x00"
    assert format_value(0.7) == "0.7" and format_value(1.0) == "1" and format_value(["a", "b"]) == '["a", "b"]'
    assert format_value(None) == "None" and format_value(np.int64(3)) == "3"


# ---------------------------------------------------------------------------------------------- distribution

VOCAB = 50
LABELS = {0: EVIL, 1: "<b>", 2: " the", 3: "\n", 4: "a&b"}


def label(token: int) -> str:
    return LABELS.get(token, f"t{token}")


def staged_probs() -> tuple[list[str], torch.Tensor, int]:
    """raw -> temperature (sharper) -> a no-op stage -> top_k=4 -> top_p keeping 3; chosen = token 2."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(VOCAB, generator=gen) * 2
    logits[[0, 1, 2, 3, 4]] = torch.tensor([6.0, 5.5, 5.0, 4.5, 4.0])
    raw = logits.softmax(-1)
    temp = (logits / 0.5).softmax(-1)
    topk = torch.where(torch.arange(VOCAB) < 4, temp, 0.0)
    topk = topk / topk.sum()
    topp = torch.where(torch.arange(VOCAB) < 3, topk, 0.0)
    topp = topp / topp.sum()
    return ["raw", "temperature", "repetition_penalty", "top_k", "top_p"], torch.stack([raw, temp, temp, topk, topp]), 2


def bars(fig) -> list:
    return [t for t in fig.data if t.type == "bar"]


def markers(fig) -> list:
    return [t for t in fig.data if t.type == "scatter"]


def test_distribution_rows_share_one_token_order_and_collapse_no_op_stages() -> None:
    names, probs, chosen = staged_probs()
    fig = distribution_figure(names, probs, chosen, label, top_n=8, title=EVIL)
    rows = bars(fig)
    assert len(rows) == 4  # temperature and the no-op repetition_penalty share a row
    assert "repetition_penalty" in rows[1].name and "no change" in rows[1].name
    order = list(rows[0].customdata)
    assert all(list(r.customdata) == order for r in rows)
    assert all(list(r.x) == list(rows[0].x) for r in rows)
    assert chosen in order and len(order) <= 9
    raw = probs[0].numpy()
    assert list(raw[order]) == sorted(raw[order], reverse=True)  # ordered by raw probability
    assert set(range(5)) <= set(order)
    # the figure title is shown literally
    assert EVIL not in fig.layout.title.text and "&lt;img" in fig.layout.title.text
    assert fig.layout.height >= 4 * 150


def test_distribution_chosen_highlighted_and_removed_grey_at_zero() -> None:
    names, probs, chosen = staged_probs()
    fig = distribution_figure(names, probs, chosen, label, top_n=8, collapse_unchanged=False)
    rows = bars(fig)
    assert len(rows) == len(names)
    for s, row in enumerate(rows):
        order = list(row.customdata)
        colors = list(row.marker.color)
        assert colors[order.index(chosen)] == CHOSEN_COLOR
        for x, token in enumerate(order):
            p = float(probs[s, token])
            if p == 0:
                assert row.y[x] == 0 and colors[x] == REMOVED_COLOR
                assert "removed by" in row.hovertext[x]
            elif token != chosen:
                assert row.y[x] == pytest.approx(p) and colors[x] == KEPT_COLOR
    # removed tokens get a visible grey marker at 0 on the stages that removed them
    removed_rows = markers(fig)
    assert len(removed_rows) == 2  # top_k and top_p
    top_p_marks = removed_rows[-1]
    assert set(top_p_marks.customdata) == {t for t in rows[-1].customdata if probs[-1, t] == 0}
    assert all(y == 0 for y in top_p_marks.y)
    assert all(c == REMOVED_COLOR for c in top_p_marks.marker.color)
    hover_by_token = dict(zip(top_p_marks.customdata, top_p_marks.hovertext))
    assert "removed by top_p" in hover_by_token[3]  # token 3 survives top_k, not top_p
    assert all("removed by top_k" in h for t, h in hover_by_token.items() if t != 3)


def test_distribution_includes_a_low_ranked_chosen_token() -> None:
    names, probs, _ = staged_probs()
    low = int(probs[0].argmin())
    fig = distribution_figure(names[:2], probs[:2], low, label, top_n=5)
    for row in bars(fig):
        assert low in row.customdata
        assert list(row.marker.color)[list(row.customdata).index(low)] == CHOSEN_COLOR
    assert len(shown_tokens(probs.numpy(), low, 5)) == 6


def test_distribution_labels_are_escaped_with_visible_whitespace() -> None:
    names, probs, chosen = staged_probs()
    fig = distribution_figure(names, probs, chosen, label, top_n=8)
    ticks = list(fig.layout.xaxis.ticktext)
    hover = " ".join(h for t in fig.data for h in t.hovertext)
    everything = fig.to_json()
    for text in (" ".join(ticks), hover):
        assert "<img" not in text and "<b>" not in text
        assert "&lt;b&gt;" in text and "a&amp;b" in text
        assert "␣the" in text and "↵" in text
    assert any(t.startswith("&lt;img") for t in ticks)
    assert "&lt;img␣src=x␣onerror=alert(1)&gt;" in hover  # full label in the hover
    assert EVIL not in everything and '"<b>"' not in everything


def test_distribution_annotations_name_stage_entropy_and_support() -> None:
    names, probs, chosen = staged_probs()
    fig = distribution_figure(["raw", "<script>x</script>", "b", "c", "d"], probs, chosen, label)
    texts = [a.text for a in fig.layout.annotations]
    assert len(texts) == 4
    assert "raw" in texts[0] and "H = " in texts[0] and f"support {VOCAB}" in texts[0]
    assert "&lt;script&gt;" in texts[1] and "<script>" not in " ".join(texts)
    assert "support 3" in texts[-1]


def test_distribution_rejects_mismatched_shapes() -> None:
    names, probs, chosen = staged_probs()
    with pytest.raises(ValueError, match="probs"):
        distribution_figure(names[:2], probs, chosen, label)
    with pytest.raises(ValueError, match="chosen"):
        distribution_figure(names, probs, VOCAB, label)


# ---------------------------------------------------------------------------------------------- steps

def test_steps_figure_panels_and_current_step() -> None:
    names = ["raw", "<i>rep</i>", "temperature", "top_p"]
    steps = 7
    entropy = np.stack([np.linspace(3, 2, steps), np.linspace(3, 2, steps),  # rep changes nothing
                        np.linspace(2, 1, steps), np.linspace(1, 0.5, steps)], axis=1)
    raw_p, final_p = np.linspace(0.1, 0.5, steps), np.linspace(0.3, 0.9, steps)
    fig = steps_figure(entropy, raw_p, final_p, names, current_step=4)
    entropy_lines = [t for t in fig.data if t.legendgroup == "entropy"]
    assert len(entropy_lines) == 3  # raw and the no-op stage drawn once
    assert "&lt;i&gt;rep&lt;/i&gt;" in entropy_lines[0].name and "<i>" not in entropy_lines[0].name
    assert entropy_lines[-1].name.endswith("(final)")
    prob_lines = [t for t in fig.data if t.legendgroup != "entropy"]
    assert [list(t.y) for t in prob_lines] == [list(raw_p), list(final_p)]
    vlines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(vlines) == 2 and all(s.x0 == 4 == s.x1 for s in vlines)
    assert not steps_figure(entropy, raw_p, final_p, names, current_step=99).layout.shapes
    with pytest.raises(ValueError):
        steps_figure(entropy, raw_p[:3], final_p, names)


def test_steps_figure_single_stage_and_no_steps() -> None:
    fig = steps_figure(np.ones((3, 1)), [0.5] * 3, [0.5] * 3, ["raw"], None)
    assert fig.data[0].name == "raw = final"
    empty = steps_figure(np.zeros((0, 1)), [], [], ["raw"], 0)
    assert any("no steps" in a.text for a in empty.layout.annotations)


# ---------------------------------------------------------------------------------------------- heatmaps

def fake_records(axes: dict[str, list], samples: int = 2) -> pd.DataFrame:
    """One record per sample of every cell, as SweepResult.dataframe() lays them out (first axis slowest)."""
    records = []
    names = list(axes)
    for cell, combo in enumerate(itertools.product(*axes.values())):
        for sample in range(samples):
            ids = [cell % 5, sample, 7, cell % 3, 1]
            records.append({"cell": cell, "sample": sample, **{f"axis_{n}": v for n, v in zip(names, combo)},
                            "text": f"cell {cell} sample {sample}", "token_ids": ids,
                            "num_tokens": len(ids), "distinct_1": 0.5 + 0.01 * cell, "distinct_2": None,
                            "repeated_4gram_rate": 0.0, "mean_logprob": -1.0 - 0.1 * cell,
                            "perplexity": math.exp(1.0 + 0.1 * cell), "mean_entropy": 2.0})
    return pd.DataFrame(records)


def heat(fig) -> list:
    return [t for t in fig.data if t.type == "heatmap"]


def test_heatmap_two_axes_values_and_order() -> None:
    records = fake_records({"temperature": [1.0, 0.3, 0.7], "order": [["top_k", "temperature"], ["temperature"]]})
    cells = cell_summary(records)
    fig = metric_heatmap(cells, "perplexity", "order", "temperature")
    (trace,) = heat(fig)
    assert list(fig.layout.yaxis.ticktext) == ["1", "0.3", "0.7"]  # given order, not sorted
    assert list(fig.layout.xaxis.ticktext) == ['["top_k", "temperature"]', '["temperature"]']
    z = np.array(trace.z, dtype=float)
    assert z.shape == (3, 2)
    # cell = 2 * temperature index + order index
    for ti in range(3):
        for oi in range(2):
            assert z[ti, oi] == pytest.approx(math.exp(1.0 + 0.1 * (2 * ti + oi)))
    assert trace.text[0][0] == "2.72" and trace.text[2][1] == "4.48"
    assert fig.layout.yaxis.autorange == "reversed"  # first value on top


def test_heatmap_missing_metric_cells_are_blank_and_axis_labels_escaped() -> None:
    records = fake_records({"stop": [[EVIL], ["\n"]], "top_p": [0.5, 1.0]})
    records.loc[records["cell"] == 3, "perplexity"] = None
    cells = cell_summary(records)
    fig = metric_heatmap(cells, "perplexity", "top_p", "stop")
    (trace,) = heat(fig)
    assert trace.z[1][1] is None and trace.text[1][1] == ""
    assert all("nan" not in t.lower() for row in trace.text for t in row)
    assert "–" in trace.customdata[1][1]
    ticks = " ".join(fig.layout.yaxis.ticktext)
    assert "&lt;img" in ticks and EVIL not in fig.to_json()
    # a metric undefined everywhere (distinct_2 of these records) is a blank heatmap, not "nan"
    blank = heat(metric_heatmap(cells, "distinct_2", "top_p", "stop"))[0]
    assert all(v is None for row in blank.z for v in row) and all(t == "" for row in blank.text for t in row)


def test_heatmap_third_axis_facets_and_single_axis() -> None:
    records = fake_records({"temperature": [0.5, 1.0], "top_p": [0.9, 1.0], "top_k": [0, 40, 5]})
    cells = cell_summary(records)
    fig = metric_heatmap(cells, "cell_diversity", "top_p", "temperature", facet_axis="top_k")
    traces = heat(fig)
    assert len(traces) == 3
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["top_k = 0", "top_k = 40", "top_k = 5"]
    assert {t.coloraxis for t in traces} == {"coloraxis"}  # one shared colour scale
    # top_k is the fastest axis: facet 1 (top_k = 40) holds cells 1, 4, 7, 10
    expected = cells.set_index("cell")["cell_diversity"]
    z = np.array(traces[1].z, dtype=float)
    assert z[0, 0] == pytest.approx(expected[1]) and z[1, 1] == pytest.approx(expected[10])

    single = metric_heatmap(cells[cells["axis_top_k"] == 0], "perplexity", None, "axis_temperature")
    (row,) = heat(single)
    assert np.array(row.z, dtype=object).shape[0] == 1  # one row: temperature went to x
    assert list(single.layout.xaxis.ticktext) == ["0.5", "1"]
    one = metric_heatmap(cell_summary(fake_records({}, samples=3)), "perplexity", None, None)
    assert np.array(heat(one)[0].z, dtype=float).shape == (1, 1)


def test_heatmap_rejects_unknown_metric_and_axis() -> None:
    cells = cell_summary(fake_records({"temperature": [0.5, 1.0]}))
    with pytest.raises(ValueError, match="metric"):
        metric_heatmap(cells, "bleu", "temperature", None)
    with pytest.raises(ValueError, match="axis"):
        metric_heatmap(cells, "perplexity", "top_p", None)


# ---------------------------------------------------------------------------------------------- real replay

def test_distribution_figure_on_a_real_replay(tiny) -> None:
    from engine.generate import Engine
    from engine.params import SamplingParams

    engine = Engine(tiny)
    params = SamplingParams(temperature=0.8, top_k=10, top_p=0.9, max_new_tokens=3, seed=1)
    result = engine.generate(engine.encode("Hello", raw=True), [params], [0], trace_top_n=5)
    replay = engine.replay(result, 0, 1)
    fig = distribution_figure(replay.stage_names, replay.probs, replay.chosen, tiny.token_label, top_n=12)
    rows = bars(fig)
    assert 3 <= len(rows) < len(replay.stage_names)  # raw, temperature, top_k, top_p changed; no-ops collapsed
    assert all(replay.chosen in r.customdata for r in rows)
    assert sum(int(stage["support"]) == 10 for stage in stage_stats(replay.probs, replay.chosen)) >= 1


def test_heatmap_colour_scales_keep_the_values_and_tame_an_outlier() -> None:
    from playground.plots import color_range

    values = [3.1, 2.9, 3.5, 186.0, 4.0, 3.2, 2.8, 3.3, 3.0]
    low, high = color_range(values, "clipped")
    assert low == 2.8 and 3.5 < high < 10  # the outlier is painted at the end, not the top of the scale
    assert color_range(values, "linear") == (None, None)
    cells = cell_summary(fake_records({"temperature": [0.5, 1.0]}, samples=1))
    log = metric_heatmap(cells, "perplexity", None, "temperature", scale="log")
    trace = log.data[0]
    assert trace.text[0] == [format_number(v) for v in cells["perplexity"]]  # the true values are shown
    assert trace.z[0][0] == pytest.approx(math.log10(cells["perplexity"].iloc[0]))
    with pytest.raises(ValueError, match="scale"):
        metric_heatmap(cells, "perplexity", None, "temperature", scale="cubic")


def test_a_rounding_negative_entropy_is_not_shown_as_minus_zero() -> None:
    from playground.plots import _stage_annotation
    stats = {"entropy": -1e-8, "support": 1, "mass_kept": 1.0, "chosen_prob": 1.0, "chosen_rank": 1}
    line = _stage_annotation(["top_k"], stats)
    assert "H = 0.00 nats" in line and "-0.00" not in line
