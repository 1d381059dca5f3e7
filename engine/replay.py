"""Exact replay of one (row, step) of a finished run: the full-vocabulary distribution at every stage.

The trace keeps small summaries only; a plot of one step needs [stages, V]. A replay recomputes the raw logits
with one forward of prompt + the row's first `step` tokens and rebuilds the processors' state from those
tokens, so it equals what the batch saw without keeping [B, V] per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .models import LoadedModel
from .dola_contrast import dola_logits
from .errors import ParamError
from .guidance import unconditional_context
from .params import SamplingParams
from .processors import apply_pipeline
from .results import GenerationResult, RowResult
from .row_tensors import row_params
from .rowstate import DecodeState


@dataclass
class Replay:
    """The distribution at every stage of one (row, step): stage 0 raw, then after each processor in order."""

    stage_names: list[str]
    probs: torch.Tensor  # [S, V] float32
    chosen: int
    # [V] float32: classifier-free guidance's unconditional distribution at this step (the companion's raw
    # next-token distribution: the negative prompt, or the prompt's last token, then the row's tokens so far);
    # None without guidance
    unconditional: torch.Tensor | None = None
    # DoLa: the premature layer this step contrasted the final layer with (its stage is "dola (layer k)": the
    # contrast, before the processors); None without dola_layers
    premature_layer: int | None = None


@torch.inference_mode()
def replay(loaded: LoadedModel, result: GenerationResult, row: int, step: int,
           params: SamplingParams | None = None) -> Replay:
    """Every stage's distribution at `step` of `row`. With `params`, the same context goes through another
    configuration's processors instead (e.g. another order): what that configuration would have made of exactly
    this context."""
    out = result.rows[row]
    if not 0 <= step < len(out.token_ids):
        raise ParamError("step", f"an integer in [0, {len(out.token_ids) - 1}] for row {row}", step)
    device = loaded.device
    params = params if params is not None else result.params[row]
    prompt = torch.tensor([result.prompt_of(row)], device=device)  # [1, P]
    generated = torch.tensor([out.token_ids[:step]], dtype=torch.long, device=device)  # [1, step]
    ids = torch.cat([prompt, generated], dim=1)  # [1, P + step]
    stages: list[torch.Tensor] = []
    names, layer = ["raw", *params.order], None
    if params.dola_layers:  # the final layer's distribution, then the DoLa contrast is the processors' input
        raw, logits, (layer,) = dola_logits(loaded, ids, params.dola_layers, 1)
        stages.append(raw.softmax(-1)[0])
        names.insert(1, f"dola (layer {layer})")
    else:
        logits = loaded.model(input_ids=ids, logits_to_keep=1).logits[:, -1, :].float()
    uncond = _unconditional_logits(loaded, result, row, params, step, 1)  # [1, V] or None
    _run_stages(loaded, result, row, step, logits, params, lambda scores: stages.append(scores.softmax(-1)[0]), uncond)
    return Replay(names, torch.stack(stages).cpu(), out.token_ids[step],
                  None if uncond is None else uncond.softmax(-1)[0].cpu(), layer)


@torch.inference_mode()
def final_distributions(loaded: LoadedModel, result: GenerationResult, row: int, steps: int) -> torch.Tensor:
    """[steps, V] float32: the distribution `row` sampled from at each of its first `steps` steps.

    One forward over the prompt and the row's first steps - 1 tokens gives every step's raw logits (a causal
    model's logits at a position see only the tokens before it); each step's processors then run on the state
    rebuilt from the tokens before that step, as in `replay`. Float rounding may differ from a one-step replay
    by ~1e-6 (another matmul shape), never by a removed token: the masks come from the same processors.
    """
    out = result.rows[row]
    if not 1 <= steps <= len(out.token_ids):
        raise ParamError("steps", f"an integer in [1, {len(out.token_ids)}] for row {row}", steps)
    device = loaded.device
    prompt = result.prompt_of(row)
    ids = torch.tensor([prompt + out.token_ids[:steps - 1]], device=device)  # [1, P + steps - 1]
    if result.params[row].dola_layers:  # DoLa: the processors' input is each step's contrast
        logits = dola_logits(loaded, ids, result.params[row].dola_layers, steps)[1]
    else:
        logits = loaded.model(input_ids=ids, logits_to_keep=steps).logits[0].float()  # [steps, V]
    uncond = _unconditional_logits(loaded, result, row, result.params[row], steps - 1, steps)  # [steps, V] or None
    finals: list[torch.Tensor] = []
    for step in range(steps):
        stages: list[torch.Tensor] = []
        _run_stages(loaded, result, row, step, logits[step:step + 1], result.params[row], stages.append,
                    None if uncond is None else uncond[step:step + 1])
        finals.append(stages[-1].softmax(-1)[0])  # the last stage: what the row sampled from
    return torch.stack(finals).cpu()


def _unconditional_logits(loaded: LoadedModel, result: GenerationResult, row: int, params: SamplingParams,
                          tokens: int, keep: int) -> torch.Tensor | None:
    """Classifier-free guidance: the companion's raw logits [keep, V] at the last `keep` of the positions after
    its context and the row's first `tokens` tokens (one forward, as the prompt's); None without guidance."""
    context = unconditional_context(loaded.tokenizer, params, result.prompt_of(row))
    if context is None:
        return None
    ids = torch.tensor([context + result.rows[row].token_ids[:tokens]], dtype=torch.long, device=loaded.device)
    return loaded.model(input_ids=ids, logits_to_keep=keep).logits[0].float()


def _run_stages(loaded: LoadedModel, result: GenerationResult, row: int, step: int, logits: torch.Tensor,
                params: SamplingParams, on_scores: Callable[[torch.Tensor], None],
                unconditional: torch.Tensor | None = None) -> None:
    """Run `params`' processors on `row`'s raw logits [1, V] at `step` (classifier-free guidance's companion
    logits: `unconditional` [1, V]); on_scores gets the raw scores, then the scores after every stage ([1, V]
    each)."""
    device = loaded.device
    out = result.rows[row]
    prompt = torch.tensor([result.prompt_of(row)], device=device)  # [1, P]
    generated = torch.tensor([out.token_ids[:step]], dtype=torch.long, device=device)  # [1, step]
    beam_row = result.params[row].num_beams > 1
    if params.num_beams > 1:  # beam search runs its processors on log-probabilities (as transformers does)
        logits = torch.log_softmax(logits, dim=-1)
    on_scores(logits)
    state = _state_before(loaded, out, prompt, generated, step, beam_row, params)
    state.unconditional_logits = unconditional
    apply_pipeline(logits, state,
                   row_params(loaded, [params], [0 if beam_row else result.sample_indices[row]]),
                   on_stage=lambda _s, scores, _c: on_scores(scores))


def _state_before(loaded: LoadedModel, out: RowResult, prompt: torch.Tensor, generated: torch.Tensor, step: int,
                  beam_row: bool, params: SamplingParams) -> DecodeState:
    """The processors' state of the row just before `step`, rebuilt from what the row recorded."""
    device, vocab = loaded.device, loaded.vocab_size
    # a beam run keys every beam with sample index 0 and records no surprise (its final log-probs are
    # unnormalized scores); a sampled row's state is rebuilt from what it recorded
    final_logp = None if beam_row else torch.tensor([out.final_logprobs[:step]], dtype=torch.float32, device=device)
    adaptive = (None if out.adaptive_probs is None
                else torch.tensor([out.adaptive_probs[:step]], dtype=torch.float64, device=device))
    state = DecodeState.start(prompt, vocab, generated, final_logp, adaptive)
    if out.peer_tokens is not None and params.num_beam_groups > 1:  # what the earlier beam groups chose
        state.peer_counts = torch.zeros(1, vocab, device=device)
        state.peer_counts[0].index_add_(0, torch.tensor(out.peer_tokens[step], dtype=torch.long, device=device),
                                        torch.ones(len(out.peer_tokens[step]), device=device))
    return state
