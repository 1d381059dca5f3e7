"""Beam search and beam sampling with transformers' semantics, several configurations in one batch.

A port of transformers' vectorized `GenerationMixin._beam_search` (transformers 5), with every per-item knob
(length_penalty, early_stopping, the logits processors) a per-item tensor, so configurations that share
`num_beams` and `max_new_tokens` decode together: item i of the batch is one configuration, rows
i*W .. i*W+W-1 its beams. The result of each configuration equals `model.generate(num_beams=W, ...)` run on
that configuration alone (sequences and sequence scores; tests/test_beams.py). Beam sampling draws with
`torch.multinomial` from a generator seeded with the configuration's `seed`, which is what
`torch.manual_seed(seed); model.generate(do_sample=True, num_beams=W)` does for one configuration.

Shapes: b items, W beams, K = max(2, 1 + number of EOS ids) * W candidates kept per step, V vocabulary, T new tokens.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generator, Sequence

import torch

from .generate import Engine
from .params import ParamError, SamplingParams
from .processors import apply_pipeline, plan_stages
from .rowstate import DecodeState

NEG = -1.0e9  # transformers' "impossible" score


@dataclass
class BeamSequence:
    token_ids: list[int]  # generated tokens (no padding; the EOS that ended it included)
    score: float  # transformers' sequences_scores: sum of log-probs / length ** length_penalty
    text: str
    raw_logprobs: list[float]  # log p of each token under the unmodified model
    final_logprobs: list[float]  # the processed log-prob beam search added to the score for each token
    raw_entropies: list[float]  # entropy (nats) of the raw distribution at each step of this hypothesis
    # diverse beam search: per step, the tokens the beams of earlier groups chose (diversity_penalty's input),
    # and the group this hypothesis grew in
    peer_tokens: list[list[int]] | None = None
    group: int | None = None


@dataclass
class BeamResult:
    params: SamplingParams
    sequences: list[BeamSequence]  # num_return_sequences of them, best first


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor [b, k, ...] gathered along dim 1 by index [b, m] (transformers' _gather_beams)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def check_batch(configs: Sequence[SamplingParams]) -> None:
    """Configurations decode together only if they share the beam width, group count and length (stop strings
    are already refused with beams by SamplingParams)."""
    first = configs[0]
    for p in configs:
        if p.num_beams < 2:
            raise ParamError("num_beams", ">= 2 for beam search", p.num_beams)
        shape = (p.num_beams, p.num_beam_groups, p.max_new_tokens)
        if shape != (first.num_beams, first.num_beam_groups, first.max_new_tokens):
            raise ParamError("num_beams", "the same num_beams, num_beam_groups and max_new_tokens in one beam batch "
                                          f"({first.num_beams}, {first.num_beam_groups}, {first.max_new_tokens})", shape)


@dataclass
class BeamStep:
    """A beam batch after one step: per configuration its running beams, best first (for a live view; the
    results, with the finished hypotheses, come when the search ends)."""

    step: int  # steps done
    tokens: torch.Tensor  # [b, W, step] long, on the model's device (never changed in place afterwards)
    logprobs: torch.Tensor  # [b, W, step, 2]: raw and processed log-prob of each token


# A beam search as a generator: yields a BeamStep after each step, returns the results.
BeamSteps = Generator[BeamStep, None, list["BeamResult"]]


def beam_search(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                cancel: threading.Event | None = None) -> list[BeamResult]:
    """Decode every configuration (all with the same num_beams, num_beam_groups and max_new_tokens) as one batch
    of b*W rows; each result holds its num_return_sequences best hypotheses, best first."""
    steps = beam_search_steps(engine, prompt_ids, configs, cancel)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def beam_search_steps(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                      cancel: threading.Event | None = None) -> BeamSteps:
    """beam_search step by step (for progress). When `cancel` is set, the next step is the last: the beams
    end there as if at max_new_tokens. Configurations with num_beam_groups > 1 run diverse beam search
    (engine/group_beams.py)."""
    configs = list(configs)
    check_batch(configs)
    if configs[0].num_beam_groups > 1:
        from .group_beams import group_beam_steps  # imports this module's result types

        return (yield from group_beam_steps(engine, prompt_ids, configs, cancel))
    return (yield from _beam_steps(engine, prompt_ids, configs, cancel))


@torch.inference_mode()
def _beam_steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams],
                cancel: threading.Event | None) -> BeamSteps:
    engine.check(list(prompt_ids), [p for p in configs for _ in range(p.num_beams)])
    model, device = engine.loaded.model, engine.loaded.device
    b, W, T = len(configs), configs[0].num_beams, configs[0].max_new_tokens
    eos = torch.tensor(engine.loaded.eos_token_ids, device=device)
    K = max(2, 1 + len(engine.loaded.eos_token_ids)) * W
    # per item: length penalty, early stopping (True / False / "never") and sampling
    length_penalty = torch.tensor([[p.length_penalty] for p in configs], device=device)  # [b, 1]
    stop_early = torch.tensor([[p.early_stopping is True] for p in configs], device=device)  # [b, 1]
    never = torch.tensor([[p.early_stopping == "never"] for p in configs], device=device)  # [b, 1]
    sampling = [not p.greedy for p in configs]
    generators = [torch.Generator(device=device).manual_seed(p.seed) if s else None for p, s in zip(configs, sampling)]

    # rows: item-major, W beams each; beam rows run the processors like any other row
    row_params = engine.row_params([p for p in configs for _ in range(W)])
    plans = plan_stages(row_params)
    prefill = engine._prefill([list(prompt_ids)])  # the prompt once; its cache copied to every beam
    state = DecodeState.start(prefill.tokens.expand(b * W, -1), engine.loaded.vocab_size)
    cache = prefill.cache
    cache.batch_repeat_interleave(b * W)
    logits = prefill.logits.expand(b * W, -1)

    running = torch.full((b, W, T), -1, dtype=torch.long, device=device)  # generated tokens of running beams
    finished = running.clone()  # the best finished hypotheses so far
    # per token of each hypothesis: raw log p, processed log p, raw entropy (gathered along with the tokens)
    running_stats = torch.zeros(b, W, T, 3, device=device)
    finished_stats = running_stats.clone()
    running_scores = torch.zeros(b, W, device=device)
    running_scores[:, 1:] = NEG
    finished_scores = torch.full((b, W), NEG, device=device)
    is_finished = torch.zeros(b, W, dtype=torch.bool, device=device)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=device)
    top_w = torch.cat([torch.ones(W, dtype=torch.bool), torch.zeros(K - W, dtype=torch.bool)]).to(device)  # [K]
    lengths = torch.zeros(b, W, dtype=torch.long, device=device)  # generated length of each finished hypothesis
    item_done = torch.zeros(b, 1, dtype=torch.bool, device=device)

    for t in range(T):
        # 1. processors on the log-probabilities (transformers' beam search order), then add the beams' scores
        raw_log_probs = torch.log_softmax(logits, dim=-1)  # [b*W, V]
        raw_entropy = -(raw_log_probs.exp() * raw_log_probs).sum(-1)  # [b*W]
        log_probs = apply_pipeline(raw_log_probs, state, row_params, plans)  # [b*W, V]
        V = log_probs.shape[-1]
        accumulated = (log_probs.view(b, W, V) + running_scores[:, :, None]).view(b, W * V)  # [b, W*V]

        # 2. the K best (or sampled) continuations over all beams of each item
        chosen = torch.topk(accumulated, K).indices  # [b, K]
        for i, gen in enumerate(generators):
            if gen is not None:
                chosen[i] = torch.multinomial(accumulated[i].softmax(-1), K, generator=gen)
        cand_scores = accumulated.gather(1, chosen)  # [b, K]
        cand_beam, cand_token = chosen // V, chosen % V  # [b, K]
        cand_seqs = _gather(running, cand_beam)  # [b, K, T] (a new tensor)
        cand_seqs[:, :, t] = cand_token
        flat = (cand_beam + torch.arange(b, device=device)[:, None] * W)  # [b, K] row of each candidate's beam
        cand_stats = _gather(running_stats, cand_beam)  # [b, K, T, 3]
        cand_stats[:, :, t, 0] = raw_log_probs[flat, cand_token]
        cand_stats[:, :, t, 1] = log_probs[flat, cand_token]
        cand_stats[:, :, t, 2] = raw_entropy[flat]
        last = t + 1 >= T or (cancel is not None and cancel.is_set())  # max length (or stopped)
        hits = torch.isin(cand_token, eos) | last  # [b, K] EOS or the end

        # 3. next running beams: the W best candidates that did not just finish
        alive = cand_scores + hits.float() * NEG
        next_idx = torch.topk(alive, W).indices  # [b, W]
        running, running_scores = _gather(cand_seqs, next_idx), _gather(alive, next_idx)
        running_stats = _gather(cand_stats, next_idx)
        beam_origin = _gather(cand_beam, next_idx)  # [b, W] which old beam each new running beam extends

        # 4. finished hypotheses: merge the top-W candidates that just finished, with the length penalty
        just_done = hits & top_w[None, :]
        penalized = cand_scores / (float(t + 1) ** length_penalty)
        penalized = penalized + (is_finished.all(-1, keepdim=True) & stop_early).float() * NEG
        penalized = penalized + (~improvable).float() * NEG
        penalized = penalized + (~just_done).float() * NEG
        penalized = penalized + item_done.float() * NEG  # an item that would have stopped alone changes no more
        merged_scores = torch.cat([finished_scores, penalized], dim=1)
        keep = torch.topk(merged_scores, W).indices
        finished = _gather(torch.cat([finished, cand_seqs], dim=1), keep)
        finished_stats = _gather(torch.cat([finished_stats, cand_stats], dim=1), keep)
        finished_scores = _gather(merged_scores, keep)
        is_finished = _gather(torch.cat([is_finished, just_done], dim=1), keep)
        lengths = _gather(torch.cat([lengths, torch.full_like(cand_token, t + 1)], dim=1), keep)

        # 5. early-stop heuristic and the loop's end (transformers' _check_early_stop_heuristic)
        best_len = torch.where(never & (length_penalty > 0), torch.full_like(length_penalty, T), torch.full_like(length_penalty, t + 1))
        best_running = running_scores[:, :1] / (best_len ** length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, NEG)
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
        # an item alone would stop here (transformers' _beam_search_has_unfinished_sequences, per item); the
        # batch goes on until every item has stopped
        item_done = item_done | ~improvable | (is_finished.all(-1, keepdim=True) & stop_early) | hits.all(-1, keepdim=True)
        yield BeamStep(t + 1, running[:, :, :t + 1], running_stats[:, :, :t + 1, :2])  # sorted by score
        if last or bool(item_done.all()):
            break

        # 6. reorder the cache and the processors' state by beam origin, append the new tokens, one forward
        rows = (beam_origin + torch.arange(b, device=device)[:, None] * W).view(-1)  # [b*W]
        cache.reorder_cache(rows)
        state = state.select(rows)
        new_tokens = running[:, :, t].reshape(-1)
        state.append(new_tokens)
        logits = model(input_ids=new_tokens[:, None], past_key_values=cache, use_cache=True).logits[:, -1, :].float()

    results = []
    for i, p in enumerate(configs):
        sequences = []
        for j in range(p.num_return_sequences):
            n = int(lengths[i, j])
            stats = finished_stats[i, j, :n]
            ids = finished[i, j, :n].tolist()
            sequences.append(BeamSequence(ids, float(finished_scores[i, j]), engine.loaded.decode(ids),
                                          stats[:, 0].tolist(), stats[:, 1].tolist(), stats[:, 2].tolist()))
        results.append(BeamResult(p, sequences))
    return results
