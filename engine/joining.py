"""Rows that join a running batch between two of its steps (continuous batching: engine/scheduler.py).

    def admit() -> Sequence[Joining]:          # asked by the decode loop once per step: () in the common case
        return [Joining(prompt_ids, [params] * n, sample_indices=[0, 1, ...])]
    for update in engine.stream(prompt, params, admit=admit): ...

A joining prompt is prefilled alone, exactly as it would be alone, and its rows are merged into the batch: the
KV caches are left-padded to one length (the attention mask hides the padding and every row keeps its own
positions, as for a batch of prompts of different lengths), and the rows' parameters, processors' state and
endings are appended. Joined rows take the next row indices, in the order they were admitted. Each row counts
its own steps (DecodeState.row_step): its seeded noise row_keys(seed, sample index, step), min/max_new_tokens,
stop strings and penalties are its own, so a seeded request gives the same tokens alone or joined mid-batch (the
padded attention changes logits by float rounding only, as in mixed-prompt batches).

A run with a trace (trace_top_n > 0: the page's Generate, /v1 requests with logprobs) takes joining rows that ask
for the same trace (Joining.trace_top_n equal to the run's: their top-N summaries and logprobs are the run's
top-N); joined rows get trace rows of their own, indexed by their own step (engine/trace.py: TraceRecorder), so a
joined row's trace is its trace alone (up to the same float rounding as its logits). A run without a trace takes
only rows without one.

Only plain sampling and greedy rows join (`joinable`), into batches of such rows run without forced tokens: the modes
with a loop of their own (beams, contrastive, DoLa, assisted and prompt-lookup drafts), guidance's companion
rows, and the processors that read a row's prompt or history by column (encoder_repetition_penalty, adaptive-P,
SynthID) or the run's clock (max_time) start a batch of their own instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch

from .models import LoadedModel
from .params import SamplingParams
from .prefill import RowCache, prefill
from .rowstate import RowParams
from .steps import Endings, Rows


@dataclass(frozen=True)
class Joining:
    """One prompt's rows, to join a running batch at its next step."""

    prompt_ids: list[int]
    params: list[SamplingParams]
    sample_indices: list[int]
    trace_top_n: int = 0  # the trace it asks for: the running batch's must be the same


Admit = Callable[[], Sequence[Joining]]  # asked once per step boundary: the rows joining now (usually none)


class JoiningEngine(Protocol):
    """What a join needs of the engine (engine/generate.py's Engine, which imports this module)."""

    loaded: LoadedModel

    def healed_prompts(self, row_prompts: list[list[int]], params: Sequence[SamplingParams]) -> list[list[int]]: ...

    def row_params(self, params: Sequence[SamplingParams], sample_indices: Sequence[int] | None = None) -> RowParams: ...


def joinable(p: SamplingParams) -> bool:
    """Whether a row with these settings may join a running batch, or a batch may take joining rows beside it."""
    return (p.num_beams == 1 and not p.penalty_alpha and not p.dola_layers and not p.prompt_lookup_num_tokens
            and not p.assistant_model and p.guidance_scale == 1.0 and p.encoder_repetition_penalty == 1.0
            and not p.adaptive_target and not p.synthid_keys and not p.max_time)


class Limits(Protocol):
    """What `fits` reads of engine/generate.py's EngineLimits (which imports this module)."""

    max_rows: int
    max_total_tokens: int


def fits(limits: Limits, rows: int, tokens: int, more_rows: int, more_tokens: int) -> bool:
    """Whether `more_rows` rows asking `more_tokens` new tokens may join a batch already holding `rows` rows and
    `tokens` new tokens: the whole batch within the engine's max_rows and max_total_tokens."""
    return rows + more_rows <= limits.max_rows and tokens + more_tokens <= limits.max_total_tokens


def check_joinable(params: Sequence[SamplingParams], forced: object) -> None:
    """Refuse (a caller's mistake, not a request's) a batch that cannot take joining rows."""
    if forced is not None or not all(joinable(p) for p in params):
        raise ValueError("rows join only batches of plain sampling / greedy rows run without forced tokens "
                         "(engine/joining.py: joinable)")


def join(engine: JoiningEngine, joining: Joining, rows: Rows, cache: RowCache, logits: torch.Tensor, endings: Endings,
         trace_top_n: int) -> tuple[Rows, RowCache, torch.Tensor, list[int], list[SamplingParams]]:
    """Prefill `joining`'s prompt alone and append its n rows to the batch, whose next-token logits [b, V] were
    just computed and whose trace keeps `trace_top_n` -> (rows, cache, logits [b + n, V], the prompt as decoded
    (healed if asked), the rows' params). The new rows take the indices after every row so far (endings.params)."""
    check_joinable(joining.params, None)
    if joining.trace_top_n != trace_top_n:
        raise ValueError(f"rows asking for a trace of top {joining.trace_top_n} join only a run with the same trace "
                         f"(this one: top {trace_top_n}; engine/joining.py)")
    prompt = engine.healed_prompts([list(joining.prompt_ids)] * len(joining.params), joining.params)[0]
    params = [p.for_prompt(len(prompt)) for p in joining.params]
    start = prefill(engine.loaded, [prompt], len(params))
    first = len(endings.params)
    ids = torch.arange(first, first + len(params), device=rows.ids.device)  # [n]
    everyone = [endings.params[i] for i in rows.ids.tolist()] + params
    indices = rows.params.sample_index.tolist() + list(joining.sample_indices)
    # the row tensors are rebuilt from the settings (a join is rare: once per request), the state appended
    merged = Rows(torch.cat([rows.ids, ids]), engine.row_params(everyone, indices), rows.state.joined(start.state))
    endings.extend(params)
    return merged, cache.joined(start.cache), torch.cat([logits, start.logits]), prompt, params
