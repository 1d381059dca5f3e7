"""Assertions and waits several test modules share (one place, one wording of each failure)."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import pytest
import torch


def assert_same_scores(ours: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Processed scores equal a reference: the same -inf entries exactly, the rest within 1e-6."""
    ours_removed, expected_removed = torch.isneginf(ours), torch.isneginf(expected)
    assert torch.equal(ours_removed, expected_removed), \
        f"{what}: -inf mask differs at {(ours_removed != expected_removed).nonzero()[:, -1].tolist()}"
    finite = ~expected_removed
    torch.testing.assert_close(ours[finite], expected[finite], rtol=1e-6, atol=1e-6, msg=what)


def assert_same_beams(result, sequences: list[list[int]], scores: list[float], pad: int | None = None) -> None:
    """A beam search's returned sequences equal a reference's, token for token, with their scores. With `pad`,
    the reference may be longer and padded with it (transformers pads shorter sequences of one batch)."""
    assert len(result.sequences) == len(sequences)
    for ours, ref, ref_score in zip(result.sequences, sequences, scores):
        if pad is None:
            assert ours.token_ids == ref
        else:
            assert ours.token_ids == ref[:len(ours.token_ids)]
            assert all(t == pad for t in ref[len(ours.token_ids):])
        assert ours.score == pytest.approx(ref_score, rel=1e-4, abs=1e-4)  # float32 sums in another order, other CPUs


def assert_logprobs(values: Iterable[float], where: Any = "") -> None:
    """Log-probabilities: every one a finite number <= 0."""
    values = list(values)
    bad = [(i, v) for i, v in enumerate(values) if not (math.isfinite(v) and v <= 0)]
    assert not bad, f"{where}: log-probs not finite and <= 0 at (index, value) {bad[:5]} of {len(values)}"


def assert_finite(value: Any, where: str = "") -> None:
    """No NaN or infinity anywhere in a JSON-like value, and no null inside a list of log-probs."""
    if isinstance(value, float):
        assert math.isfinite(value), f"{where}: {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if "logprob" in str(key) and isinstance(item, list):
                assert None not in item, f"{where}.{key}: null log-prob"
            assert_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_finite(item, f"{where}[{i}]")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Wait until `condition()` holds (checked every poll_s), failing after timeout_s with what was awaited. For
    conditions outside a browser page (tests/pages.py has the page's own)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(poll_s)
