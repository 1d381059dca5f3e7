"""Stop strings, in one place for the decode loop, the scheduler and the OpenAI stream; and max_time.

A stop string ends a row's output and is not part of it (as in OpenAI's API): the loop ends a row once its
text holds one, the final text is cut before the first one, and a stream holds back any tail that may be the
start of one until the next tokens say whether it is. A row with max_time ends once the run has taken longer.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from .params import SamplingParams


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string in `text` starts, or None when there is none."""
    found = [text.find(s) for s in stops if s in text]
    return min(found) if found else None


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the first stop string (all of it when there is none)."""
    end = first_stop(text, stops)
    return text if end is None else text[:end]


def sendable_length(text: str, stops: Sequence[str]) -> int:
    """How much of a growing text can be streamed now: nothing from a stop string on, and nothing of a tail
    that may be the start of one (the longest such tail per stop string is held back)."""
    safe = len(text)
    for stop in stops:
        found = text.find(stop)
        if found >= 0:
            safe = min(safe, found)
            continue
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                safe = min(safe, len(text) - k)
                break
    return safe


def tail_tokens(stops: Sequence[str]) -> int:
    """How many of a row's last tokens to decode to find a stop string its newest token may have completed.

    A stop string spans at most len(stop) tokens (every token decodes to one character or more, or to none);
    a tail a little longer than that still finds a string split across tokens."""
    return max(len(s) for s in stops) + 2


def stop_hits(decode: Callable[[list[int]], str], tokens: torch.Tensor, generated: int | torch.Tensor,
              params: Sequence[SamplingParams]) -> torch.Tensor:
    """[b] bool: the rows whose text now holds one of their stop strings.

    tokens: [b, L] every row's prompt and generated tokens, the last `generated` of them generated (one count for
    every row, or [b]: each row's own); params: each row's configuration. Only rows with stop strings, once past
    min_new_tokens, are decoded."""
    hits = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    counts = generated.tolist() if isinstance(generated, torch.Tensor) else [generated] * len(params)
    for row, (p, made) in enumerate(zip(params, counts)):
        if not p.stop or made < p.min_new_tokens:
            continue
        tail = decode(tokens[row, -min(made, tail_tokens(p.stop)):].tolist())
        hits[row] = any(s in tail for s in p.stop)
    return hits


clock: Callable[[], float] = time.perf_counter  # the run's clock for max_time (tests replace it)


def now() -> float:
    return clock()


def past_time(started: float, max_time: torch.Tensor) -> torch.Tensor:
    """[b] bool: the rows whose max_time [b] (seconds; 0 = no limit) the run has passed since `started` (a now()
    value), as transformers' MaxTimeCriteria: elapsed > max_time, checked after each step's token."""
    return (max_time > 0) & (max_time < now() - started)
