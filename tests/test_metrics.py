"""engine.metrics: hand-computed examples, undefined values as None, and never NaN/inf for any input."""

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from engine.metrics import (
    MAX_LOG_PERPLEXITY, METRIC_COLUMNS, cell_diversity, cell_summary, json_safe, sample_metrics,
)


def test_sample_metrics_hand_computed() -> None:
    # tokens 1 2 3 1 2 3 1 2 3: 3 unique of 9 unigrams; bigrams 12 23 31 12 23 31 12 23 -> 3 unique of 8;
    # 4-grams 1231 2312 3123 1231 2312 3123 -> 3 unique of 6, so 3 of 6 repeat an earlier one
    m = sample_metrics([1, 2, 3, 1, 2, 3, 1, 2, 3], [-1.0, -2.0, -3.0] * 3, [0.5, 1.5, 1.0] * 3)
    assert m["num_tokens"] == 9
    assert m["distinct_1"] == pytest.approx(3 / 9)
    assert m["distinct_2"] == pytest.approx(3 / 8)
    assert m["repeated_4gram_rate"] == pytest.approx(3 / 6)
    assert m["mean_logprob"] == pytest.approx(-2.0)
    assert m["perplexity"] == pytest.approx(math.exp(2.0))
    assert m["mean_entropy"] == pytest.approx(1.0)
    assert set(m) == set(METRIC_COLUMNS)


def test_all_distinct_sample() -> None:
    m = sample_metrics([5, 6, 7, 8], [0.0] * 4, [0.0] * 4)
    assert m["distinct_1"] == m["distinct_2"] == 1.0
    assert m["repeated_4gram_rate"] == 0.0  # one 4-gram, not a repeat
    assert m["mean_logprob"] == 0.0 and m["perplexity"] == 1.0


def test_repeated_single_token() -> None:
    m = sample_metrics([7] * 6, [-0.5] * 6, [2.0] * 6)
    assert m["distinct_1"] == pytest.approx(1 / 6)
    assert m["distinct_2"] == pytest.approx(1 / 5)
    assert m["repeated_4gram_rate"] == pytest.approx(2 / 3)  # 3 four-grams, all the same


def test_empty_sample_is_all_none() -> None:
    m = sample_metrics([], [], [])
    assert m["num_tokens"] == 0
    assert all(m[k] is None for k in METRIC_COLUMNS if k != "num_tokens")


def test_short_samples_give_none_where_undefined() -> None:
    one = sample_metrics([3], [-1.0], [1.0])
    assert one["distinct_1"] == 1.0 and one["distinct_2"] is None and one["repeated_4gram_rate"] is None
    three = sample_metrics([3, 4, 3], [-1.0] * 3, [1.0] * 3)
    assert three["distinct_2"] == 1.0 and three["repeated_4gram_rate"] is None


def test_non_finite_inputs_never_leak() -> None:
    m = sample_metrics([1, 2], [-math.inf, float("nan")], [float("nan"), math.inf])
    assert m["mean_logprob"] == -MAX_LOG_PERPLEXITY  # -inf counts as the floor, NaN is skipped
    assert m["perplexity"] == pytest.approx(math.exp(MAX_LOG_PERPLEXITY)) and math.isfinite(m["perplexity"])
    assert m["mean_entropy"] is None
    huge = sample_metrics([1], [-1e30], [1.0])
    assert math.isfinite(huge["perplexity"]) and huge["perplexity"] == pytest.approx(math.exp(MAX_LOG_PERPLEXITY))


def test_cell_diversity_hand_computed() -> None:
    # bigram sets {12, 23} and {12, 24}: intersection 1, union 3 -> distance 2/3
    assert cell_diversity([[1, 2, 3], [1, 2, 4]]) == pytest.approx(2 / 3)
    assert cell_diversity([[1, 2, 3], [1, 2, 3]]) == 0.0
    assert cell_diversity([[1, 2], [3, 4]]) == 1.0
    # three samples: pairs (A,B)=2/3, (A,C)=1, (B,C)=1 -> mean 8/9
    assert cell_diversity([[1, 2, 3], [1, 2, 4], [9, 9]]) == pytest.approx(8 / 9)


def test_cell_diversity_edge_cases() -> None:
    assert cell_diversity([]) is None
    assert cell_diversity([[1, 2, 3]]) is None
    assert cell_diversity([[1], [2]]) == 0.0  # two empty bigram sets are identical
    assert cell_diversity([[], [1, 2]]) == 1.0


def _records() -> pd.DataFrame:
    rows = []
    samples = {0: [[1, 2, 3], [1, 2, 4]], 1: [[5], [6]]}
    for cell, temp in ((0, 0.5), (1, 1.0)):
        for s, ids in enumerate(samples[cell]):
            rows.append({"cell": cell, "sample": s, "axis_temperature": temp, "axis_stop": ["\n"],
                         "token_ids": ids, **sample_metrics(ids, [-1.0] * len(ids), [2.0] * len(ids)),
                         "cell_diversity": cell_diversity(samples[cell])})
    return pd.DataFrame(rows)


def test_cell_summary() -> None:
    summary = cell_summary(_records())
    assert list(summary["cell"]) == [0, 1]
    assert list(summary["axis_temperature"]) == [0.5, 1.0]
    assert list(summary["axis_stop"]) == ['["\\n"]', '["\\n"]']  # list axis values as JSON strings
    assert list(summary["samples"]) == [2, 2]
    assert list(summary["num_tokens"]) == [3.0, 1.0]
    assert summary["distinct_2"][0] == 1.0 and math.isnan(summary["distinct_2"][1])  # undefined in cell 1
    assert summary["cell_diversity"][0] == pytest.approx(2 / 3) and summary["cell_diversity"][1] == 0.0
    # without the cell_diversity column it is computed from token_ids
    again = cell_summary(_records().drop(columns=["cell_diversity"]))
    assert list(again["cell_diversity"]) == pytest.approx(list(summary["cell_diversity"]))
    # JSON export of a summary has no NaN
    text = json.dumps(json_safe(summary.to_dict(orient="records")), allow_nan=False)
    assert "NaN" not in text


def test_cell_summary_empty() -> None:
    assert cell_summary(pd.DataFrame(columns=["cell", "num_tokens"])).empty


def test_json_safe() -> None:
    data = {"a": [float("nan"), 1.5, (math.inf, -math.inf)], "b": {"c": np.float32("nan"), "d": np.int64(3)},
            "e": np.array([1.0, np.nan]), "f": True, "g": "NaN", "h": None, "i": 7}
    out = json_safe(data)
    assert out == {"a": [None, 1.5, [None, None]], "b": {"c": None, "d": 3}, "e": [1.0, None],
                   "f": True, "g": "NaN", "h": None, "i": 7}
    json.dumps(out, allow_nan=False)


def _is_bad(v: object) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


def test_property_no_nan_for_random_inputs() -> None:
    rng = random.Random(1234)
    specials = [math.nan, math.inf, -math.inf, -1e308, 0.0, -0.0, 1e-300]
    for _ in range(500):
        n = rng.randrange(0, 12)
        ids = [rng.randrange(0, 4) for _ in range(n)]
        lps = [rng.choice(specials) if rng.random() < 0.2 else -rng.expovariate(0.1) for _ in range(n)]
        ents = [rng.choice(specials) if rng.random() < 0.2 else rng.uniform(0, 11) for _ in range(n)]
        m = sample_metrics(ids, lps, ents)
        assert not any(_is_bad(v) for v in m.values()), (ids, lps, ents, m)
        for key in ("distinct_1", "distinct_2", "repeated_4gram_rate"):
            assert m[key] is None or 0.0 <= m[key] <= 1.0
        assert m["perplexity"] is None or m["perplexity"] >= 1.0 or m["mean_logprob"] > 0
        lists = [[rng.randrange(0, 3) for _ in range(rng.randrange(0, 6))] for _ in range(rng.randrange(0, 5))]
        d = cell_diversity(lists)
        assert d is None or (0.0 <= d <= 1.0 and not _is_bad(d))
