"""Per-sample and per-cell metrics of generated text, as plain floats and pandas frames.

Every function here returns None for a value that is undefined (an empty sample, a 1-token sample's
distinct-2, fewer than two samples for a diversity), never NaN or inf, so that results can go to JSON as is.
Token-level metrics work on token ids (model-agnostic, no detokenisation).
"""
from __future__ import annotations

import itertools
import json
import math
from numbers import Integral, Real
from typing import Any, Iterable, Sequence

import pandas as pd

# exp(-mean_logprob) is clamped at exp(MAX_LOG_PERPLEXITY) so that a sample of (near) impossible tokens
# still gets a finite perplexity (about 2.7e43): beyond that the number means "astronomically unlikely" anyway.
MAX_LOG_PERPLEXITY = 100.0

# Per-sample metric columns (the keys of sample_metrics), in display order.
METRIC_COLUMNS: tuple[str, ...] = (
    "num_tokens",
    "distinct_1",
    "distinct_2",
    "repeated_4gram_rate",
    "mean_logprob",
    "perplexity",
    "mean_entropy",
)
# averaged per cell when present: beam rows' scores, the watermark detection scores (engine/watermark.py) of the
# runs with a watermark on, and assisted decoding's acceptance rate and forwards per row
CELL_EXTRA_COLUMNS: tuple[str, ...] = ("beam_score", "watermark_green_fraction", "watermark_z", "watermark_p",
                                       "synthid_score", "acceptance_rate", "target_forwards")
# assisted decoding's figures per sample (engine/assisted.py), present only for rows that decoded that way
ASSIST_COLUMNS: tuple[str, ...] = ("drafted_tokens", "accepted_tokens", "acceptance_rate", "target_forwards")


def ngrams(token_ids: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """All contiguous n-grams of a token sequence, in order (empty when the sequence is shorter than n)."""
    return [tuple(token_ids[i:i + n]) for i in range(len(token_ids) - n + 1)]


def distinct_n(token_ids: Sequence[int], n: int) -> float | None:
    """Unique n-grams / total n-grams; None when the sample has no n-gram."""
    grams = ngrams(token_ids, n)
    return len(set(grams)) / len(grams) if grams else None


def repeated_ngram_rate(token_ids: Sequence[int], n: int = 4) -> float | None:
    """Fraction of n-grams that repeat an earlier n-gram of the same sample: (total - unique) / total."""
    grams = ngrams(token_ids, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else None


def _finite_mean(values: Iterable[float], floor: float | None = None) -> float | None:
    """Mean of the finite values; NaN is skipped, -inf becomes `floor` when one is given (else skipped)."""
    kept: list[float] = []
    for v in values:
        v = float(v)
        if math.isfinite(v):
            kept.append(v)
        elif floor is not None and v == -math.inf:
            kept.append(floor)
    # sum of v / n rather than sum / n: the partial sums of huge values (e.g. -1e308) cannot overflow
    return sum(v / len(kept) for v in kept) if kept else None


def sample_metrics(token_ids: list[int], raw_logprobs: list[float],
                   raw_entropies: list[float]) -> dict[str, float | None]:
    """Metrics of one generated sample.

    token_ids: the generated tokens; raw_logprobs: log p of each under the unmodified model (nats);
    raw_entropies: entropy (nats) of the unmodified next-token distribution at each step.

    Returns num_tokens, distinct_1, distinct_2, repeated_4gram_rate, mean_logprob, perplexity
    (exp(-mean_logprob), exponent clamped at MAX_LOG_PERPLEXITY) and mean_entropy. num_tokens is always
    set (0 for an empty sample); every other value is None where undefined. Non-finite inputs are not
    propagated: NaN logprobs/entropies are skipped and a -inf logprob counts as -MAX_LOG_PERPLEXITY.
    """
    mean_logprob = _finite_mean(raw_logprobs, floor=-MAX_LOG_PERPLEXITY)
    perplexity = None
    if mean_logprob is not None:
        perplexity = math.exp(min(-mean_logprob, MAX_LOG_PERPLEXITY))
    return {
        "num_tokens": len(token_ids),
        "distinct_1": distinct_n(token_ids, 1),
        "distinct_2": distinct_n(token_ids, 2),
        "repeated_4gram_rate": repeated_ngram_rate(token_ids, 4),
        "mean_logprob": mean_logprob,
        "perplexity": perplexity,
        "mean_entropy": _finite_mean(raw_entropies),
    }


def assist_metrics(row: Any) -> dict[str, float | int | None]:
    """Assisted decoding's figures of one RowResult: tokens drafted, drafts accepted, acceptance rate (None
    without drafts) and the model forwards the row took (prefill included; plain decoding takes one per token).
    Empty for a row decoded one token per forward."""
    if getattr(row, "target_forwards", None) is None:
        return {}
    rate = row.accepted_tokens / row.drafted_tokens if row.drafted_tokens else None
    return {"drafted_tokens": row.drafted_tokens, "accepted_tokens": row.accepted_tokens, "acceptance_rate": rate,
            "target_forwards": row.target_forwards}


def jaccard_distance(a: set, b: set) -> float:
    """1 - |A∩B| / |A∪B|; two empty sets are identical (distance 0)."""
    union = a | b
    return 1.0 - len(a & b) / len(union) if union else 0.0


def cell_diversity(token_id_lists: list[list[int]]) -> float | None:
    """Mean pairwise Jaccard distance between the samples' 2-gram sets (0 = all alike, 1 = nothing shared).

    None for fewer than two samples.
    """
    sets = [set(ngrams(ids, 2)) for ids in token_id_lists]
    pairs = list(itertools.combinations(sets, 2))
    if not pairs:
        return None
    return sum(jaccard_distance(a, b) for a, b in pairs) / len(pairs)


def _hashable(value: Any) -> Any:
    """Group keys must be hashable: lists/dicts (e.g. a `stop` axis) become their JSON-ish string."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def cell_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (grouped by `cell` and the `axis_*` columns) for grids and heatmaps.

    Columns: cell, the axis_* columns, `samples` (rows in the cell), the mean of each metric in
    METRIC_COLUMNS present in `df`, and `cell_diversity` (taken from the column when `df` has it, else
    computed from `token_ids`). A metric undefined for every sample of a cell is missing (NaN in the frame;
    pass the records through json_safe before JSON export). List-valued axis values become JSON strings.
    """
    axis_cols = [c for c in df.columns if c.startswith("axis_")]
    keys = ["cell", *axis_cols]
    metric_cols = [c for c in (*METRIC_COLUMNS, *CELL_EXTRA_COLUMNS) if c in df.columns]
    if df.empty:
        return pd.DataFrame(columns=[*keys, "samples", *metric_cols, "cell_diversity"])
    work = df.copy()
    for col in axis_cols:
        work[col] = work[col].map(_hashable)
    for col in [*metric_cols, "cell_diversity"]:
        if col in work.columns:
            work[col] = pd.to_numeric(work[col], errors="coerce")
    grouped = work.groupby(keys, sort=True, dropna=False)
    out = grouped[metric_cols].mean()
    out.insert(0, "samples", grouped.size())
    if "cell_diversity" in work.columns:  # the same value on every sample of a cell
        diversity = grouped["cell_diversity"].first()
    elif "token_ids" in work.columns:
        diversity = grouped["token_ids"].agg(lambda s: cell_diversity([list(t) for t in s]))
    else:
        diversity = pd.Series(float("nan"), index=out.index)
    out["cell_diversity"] = pd.to_numeric(diversity, errors="coerce")
    return out.reset_index()


def json_safe(obj: Any) -> Any:
    """Recursively replace NaN / inf floats with None, for JSON export.

    Dicts, lists and tuples are rebuilt (tuples become lists); numpy / torch arrays and scalars become plain
    Python values first. Everything else passes through unchanged.
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, Integral):
        return int(obj)
    if isinstance(obj, Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if callable(getattr(obj, "tolist", None)):  # numpy / torch arrays and scalars (np.bool_ etc.)
        return json_safe(obj.tolist())
    return obj


def flat_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A CSV/parquet-ready copy of a sweep's records (the command line's --out and the page's export):
    list/dict cells become JSON text; a column that still mixes types (an axis of numbers and strings) becomes
    text, since parquet needs one type per column."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype != object:
            continue
        df[col] = df[col].map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, tuple, dict)) else v)
        kinds = {type(v) for v in df[col] if v is not None}
        if len(kinds) > 1:
            df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
    return df
