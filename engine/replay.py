"""Exact replay of one (row, step) of a finished run: the full-vocabulary distribution at every stage.

The trace keeps small summaries only; a plot of one step needs [stages, V]. A replay recomputes the raw logits
with one forward of prompt + the row's first `step` tokens and rebuilds the processors' state from those
tokens, so it equals what the batch saw without keeping [B, V] per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import LoadedModel
from .params import ParamError, SamplingParams
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
    logits = loaded.model(input_ids=torch.cat([prompt, generated], dim=1), logits_to_keep=1).logits[:, -1, :].float()
    beam_row = result.params[row].num_beams > 1
    if params.num_beams > 1:  # beam search runs its processors on log-probabilities (as transformers does)
        logits = torch.log_softmax(logits, dim=-1)
    stages = [logits.softmax(-1)[0]]
    apply_pipeline(logits, _state_before(loaded, out, prompt, generated, step, beam_row, params),
                   row_params(loaded, [params], [0 if beam_row else result.sample_indices[row]]),
                   on_stage=lambda _s, scores, _c: stages.append(scores.softmax(-1)[0]))
    return Replay(["raw", *params.order], torch.stack(stages).cpu(), out.token_ids[step])


def _state_before(loaded: LoadedModel, out: RowResult, prompt: torch.Tensor, generated: torch.Tensor, step: int,
                  beam_row: bool, params: SamplingParams) -> DecodeState:
    """The processors' state of the row just before `step`, rebuilt from what the row recorded."""
    device, vocab = loaded.device, loaded.vocab_size
    # a beam run keys every beam with sample index 0 and records no surprise (its final log-probs are
    # unnormalized scores); a sampled row's state is rebuilt from what it recorded
    final_logp = None if beam_row else torch.tensor([out.final_logprobs[:step]], dtype=torch.float32, device=device)
    state = DecodeState.start(prompt, vocab, generated, final_logp)
    if out.peer_tokens is not None and params.num_beam_groups > 1:  # what the earlier beam groups chose
        state.peer_counts = torch.zeros(1, vocab, device=device)
        state.peer_counts[0].index_add_(0, torch.tensor(out.peer_tokens[step], dtype=torch.long, device=device),
                                        torch.ones(len(out.peer_tokens[step]), device=device))
    return state
