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
from typing import Sequence

import torch

from .beam_results import NEG, BeamResult, BeamSequence, BeamStep, BeamSteps
from .generate import Engine
from .group_beams import group_beam_steps
from .errors import ParamError
from .params import SamplingParams
from .prefill import decode_one_token, prefill
from .processors import apply_pipeline, plan_stages
from .steps import run_to_end

# the result types moved to engine/beam_results.py; kept importable from here
__all__ = ["BeamResult", "BeamSequence", "BeamStep", "BeamSteps", "NEG", "beam_search", "beam_search_steps",
           "check_batch"]


def check_batch(configs: Sequence[SamplingParams]) -> None:
    """Configurations decode together only if they share the beam width, group count and length (stop strings
    are already refused with beams by SamplingParams)."""
    first = configs[0]
    for p in configs:
        if p.num_beams < 2:
            raise ParamError("num_beams", ">= 2 for beam search", p.num_beams)
        shape = (p.num_beams, p.num_beam_groups, p.max_new_tokens)
        if bool(p.force_words) != bool(first.force_words):
            raise ParamError("force_words", "set in every configuration of a beam batch or in none (constrained beam "
                                            "search is a batch of its own)", list(p.force_words))
        if shape != (first.num_beams, first.num_beam_groups, first.max_new_tokens):
            raise ParamError("num_beams", "the same num_beams, num_beam_groups and max_new_tokens in one beam batch "
                                          f"({first.num_beams}, {first.num_beam_groups}, {first.max_new_tokens})", shape)


def beam_search(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                cancel: threading.Event | None = None) -> list[BeamResult]:
    """Decode every configuration (all with the same num_beams, num_beam_groups and max_new_tokens) as one batch
    of b*W rows; each result holds its num_return_sequences best hypotheses, best first."""
    return run_to_end(beam_search_steps(engine, prompt_ids, configs, cancel))


def beam_search_steps(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                      cancel: threading.Event | None = None) -> BeamSteps:
    """beam_search step by step (for progress). When `cancel` is set, the next step is the last: the beams
    end there as if at max_new_tokens. Configurations with num_beam_groups > 1 run diverse beam search
    (engine/group_beams.py), those with force_words constrained beam search (engine/constrained_beams.py)."""
    configs = [p.for_prompt(len(prompt_ids)) for p in configs]  # min_length / max_length count the prompt
    check_batch(configs)
    # each step in the engine's turn, as Engine.stream's: beam batches alternate steps with other runs too
    if configs[0].num_beam_groups > 1:
        return (yield from engine.turns.taking_turns(group_beam_steps(engine, prompt_ids, configs, cancel)))
    if configs[0].force_words:
        from .constrained_beams import constrained_beam_steps  # it imports group_beams' Hypotheses
        return (yield from engine.turns.taking_turns(constrained_beam_steps(engine, prompt_ids, configs, cancel)))
    return (yield from engine.turns.taking_turns(_beam_steps(engine, prompt_ids, configs, cancel)))


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor [b, k, ...] gathered along dim 1 by index [b, m] (transformers' _gather_beams)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


@dataclass
class _PerItem:
    """Each configuration's beam settings, one entry per item."""

    length_penalty: torch.Tensor  # [b, 1]
    stop_early: torch.Tensor  # [b, 1] early_stopping is True
    never: torch.Tensor  # [b, 1] early_stopping == "never"
    generators: list[torch.Generator | None]  # beam sampling: the item's own, seeded with its seed; None: top-K

    @classmethod
    def of(cls, configs: list[SamplingParams], device: torch.device) -> "_PerItem":
        return cls(torch.tensor([[p.length_penalty] for p in configs], device=device),
                   torch.tensor([[p.early_stopping is True] for p in configs], device=device),
                   torch.tensor([[p.early_stopping == "never"] for p in configs], device=device),
                   [None if p.greedy else torch.Generator(device=device).manual_seed(p.seed) for p in configs])


@dataclass
class _Finished:
    """The W best finished hypotheses of every item so far (transformers' beam hypotheses, as tensors)."""

    tokens: torch.Tensor  # [b, W, T] generated tokens, -1 past each hypothesis's length
    stats: torch.Tensor  # [b, W, T, 3] per token: raw log p, processed log p, raw entropy
    scores: torch.Tensor  # [b, W] length-penalized; NEG in a slot that holds none yet
    is_finished: torch.Tensor  # [b, W] bool: the slot holds a hypothesis
    lengths: torch.Tensor  # [b, W] generated length of each hypothesis

    @classmethod
    def empty(cls, b: int, W: int, T: int, device: torch.device) -> "_Finished":
        return cls(torch.full((b, W, T), -1, dtype=torch.long, device=device), torch.zeros(b, W, T, 3, device=device),
                   torch.full((b, W), NEG, device=device), torch.zeros(b, W, dtype=torch.bool, device=device),
                   torch.zeros(b, W, dtype=torch.long, device=device))

    def merge(self, tokens: torch.Tensor, stats: torch.Tensor, scores: torch.Tensor, just_done: torch.Tensor,
              length: int) -> "_Finished":
        """The W best of these and the candidates (tokens [b, K, T], stats [b, K, T, 3], penalized scores
        [b, K], NEG where a candidate may not finish; just_done [b, K]), all `length` tokens long."""
        merged_scores = torch.cat([self.scores, scores], dim=1)  # [b, W + K]
        keep = torch.topk(merged_scores, self.scores.shape[1]).indices  # [b, W]
        return _Finished(_gather(torch.cat([self.tokens, tokens], dim=1), keep),
                         _gather(torch.cat([self.stats, stats], dim=1), keep),
                         _gather(merged_scores, keep),
                         _gather(torch.cat([self.is_finished, just_done], dim=1), keep),
                         _gather(torch.cat([self.lengths, torch.full_like(just_done, length, dtype=torch.long)], dim=1), keep))


def _top_or_sampled(accumulated: torch.Tensor, K: int, generators: list[torch.Generator | None]) -> torch.Tensor:
    """[b, W*V] scores -> [b, K] indices: the K best of each item, or (beam sampling) K drawn without
    replacement from their softmax with the item's own generator, as transformers does with torch.multinomial."""
    chosen = torch.topk(accumulated, K).indices
    for i, gen in enumerate(generators):
        if gen is None:
            continue
        possible = int(torch.isfinite(accumulated[i]).sum())  # continuations no processor removed
        if possible >= K:
            chosen[i] = torch.multinomial(accumulated[i].softmax(-1), K, generator=gen)
        elif possible > 0:  # fewer than K (transformers' multinomial fails here): draw them all, then impossible ones
            drawn = torch.multinomial(accumulated[i].softmax(-1), possible, generator=gen)
            chosen[i] = torch.cat([drawn, chosen[i, possible:]])
        # possible == 0: every continuation was removed; the top K are all impossible (-inf) and never finish
    return chosen


def _can_improve(per_item: _PerItem, running_scores: torch.Tensor, finished: _Finished, t: int, T: int) -> torch.Tensor:
    """[b, 1] bool: could the best running beam still beat the worst finished hypothesis? (transformers'
    _check_early_stop_heuristic; with early_stopping "never" and a positive length penalty the running beam is
    scored at the longest length it can reach)."""
    lp = per_item.length_penalty
    best_len = torch.where(per_item.never & (lp > 0), torch.full_like(lp, T), torch.full_like(lp, t + 1))
    best_running = running_scores[:, :1] / (best_len ** lp)
    worst_finished = torch.where(finished.is_finished, finished.scores.min(dim=1, keepdim=True).values, NEG)
    return (best_running > worst_finished).any(dim=-1, keepdim=True)


@torch.inference_mode()
def _beam_steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams],
                cancel: threading.Event | None) -> BeamSteps:
    engine.check(list(prompt_ids), [p for p in configs for _ in range(p.num_beams)])
    model, device = engine.loaded.model, engine.loaded.device
    b, W, T = len(configs), configs[0].num_beams, configs[0].max_new_tokens
    eos = torch.tensor(engine.loaded.eos_token_ids, device=device)
    K = max(2, 1 + len(engine.loaded.eos_token_ids)) * W
    per_item = _PerItem.of(configs, device)
    first_row = torch.arange(b, device=device)[:, None] * W  # [b, 1] each item's first row

    # rows: item-major, W beams each; beam rows run the processors like any other row
    row_params = engine.row_params([p for p in configs for _ in range(W)])
    plans = plan_stages(row_params)
    start = prefill(engine.loaded, [list(prompt_ids)], b * W)  # the prompt once; its cache copied to every beam
    logits, cache, state = start.logits, start.cache, start.state

    running = torch.full((b, W, T), -1, dtype=torch.long, device=device)  # generated tokens of running beams
    running_stats = torch.zeros(b, W, T, 3, device=device)  # per token: raw log p, processed log p, raw entropy
    running_scores = torch.zeros(b, W, device=device)
    running_scores[:, 1:] = NEG  # only the first beam is alive at the start
    finished = _Finished.empty(b, W, T, device)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=device)
    item_done = torch.zeros(b, 1, dtype=torch.bool, device=device)
    top_w = torch.cat([torch.ones(W, dtype=torch.bool), torch.zeros(K - W, dtype=torch.bool)]).to(device)  # [K]

    for t in range(T):
        # 1. processors on the log-probabilities (transformers' beam search order), then add the beams' scores
        raw_log_probs = torch.log_softmax(logits, dim=-1)  # [b*W, V]
        raw_entropy = -(raw_log_probs.exp() * raw_log_probs).sum(-1)  # [b*W]
        log_probs = apply_pipeline(raw_log_probs, state, row_params, plans)  # [b*W, V]
        V = log_probs.shape[-1]
        accumulated = (log_probs.view(b, W, V) + running_scores[:, :, None]).view(b, W * V)  # [b, W*V]

        # 2. the K best (or sampled) continuations over all beams of each item
        chosen = _top_or_sampled(accumulated, K, per_item.generators)  # [b, K]
        cand_scores = accumulated.gather(1, chosen)  # [b, K]
        cand_beam, cand_token = chosen // V, chosen % V  # [b, K]
        cand_seqs = _gather(running, cand_beam)  # [b, K, T] (a new tensor)
        cand_seqs[:, :, t] = cand_token
        flat = cand_beam + first_row  # [b, K] row of each candidate's beam
        cand_stats = _gather(running_stats, cand_beam)  # [b, K, T, 3]
        cand_stats[:, :, t] = torch.stack([raw_log_probs[flat, cand_token], log_probs[flat, cand_token],
                                           raw_entropy[flat]], dim=-1)
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
        penalized = cand_scores / (float(t + 1) ** per_item.length_penalty)
        penalized = penalized + (finished.is_finished.all(-1, keepdim=True) & per_item.stop_early).float() * NEG
        penalized = penalized + (~improvable).float() * NEG
        penalized = penalized + (~just_done).float() * NEG
        penalized = penalized + item_done.float() * NEG  # an item that would have stopped alone changes no more
        finished = finished.merge(cand_seqs, cand_stats, penalized, just_done, t + 1)

        # 5. early-stop heuristic and the loop's end (transformers' _check_early_stop_heuristic)
        improvable = improvable & _can_improve(per_item, running_scores, finished, t, T)
        # an item alone would stop here (transformers' _beam_search_has_unfinished_sequences, per item); the
        # batch goes on until every item has stopped
        all_finished = finished.is_finished.all(-1, keepdim=True)
        item_done = item_done | ~improvable | (all_finished & per_item.stop_early) | hits.all(-1, keepdim=True)
        yield BeamStep(t + 1, running[:, :, :t + 1], running_stats[:, :, :t + 1, :2])  # sorted by score
        if last or bool(item_done.all()):
            break

        # 6. reorder the cache and the processors' state by beam origin, append the new tokens, one forward
        rows = (beam_origin + first_row).view(-1)  # [b*W]
        cache.reorder(rows)
        state = state.select(rows)
        new_tokens = running[:, :, t].reshape(-1)  # [b*W]
        state.append(new_tokens)
        logits = decode_one_token(model, new_tokens, cache)

    return _results(engine, configs, finished)


def _results(engine: Engine, configs: list[SamplingParams], finished: _Finished) -> list[BeamResult]:
    """Each configuration's num_return_sequences best finished hypotheses, best first."""
    results = []
    for i, p in enumerate(configs):
        sequences = []
        for j in range(p.num_return_sequences):
            if not bool(finished.is_finished[i, j]):  # no hypothesis: the processors removed every continuation
                sequences.append(BeamSequence.none_possible())
                continue
            n = int(finished.lengths[i, j])
            ids = finished.tokens[i, j, :n].tolist()
            sequences.append(BeamSequence.of(ids, float(finished.scores[i, j]), engine.loaded.decode(ids),
                                             finished.stats[i, j, :n]))
        results.append(BeamResult(p, sequences))
    return results
