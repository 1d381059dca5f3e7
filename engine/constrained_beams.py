"""Constrained beam search (force_words, num_beams > 1) with transformers 4.x semantics.

Hokamp & Liu 2017 / Post & Vilar 2018 ("grid" / dynamic beam allocation): every output must contain each forced
word (or one of a list of alternatives). Each step, besides the best continuations of every beam, the tokens
that advance a beam's constraints are candidates too, and the beams are taken round-robin from "banks" of equal
progress through the constraints, best first within a bank, so hypotheses that are further along survive.

transformers 5 moved constrained beam search out of the library (to a hub repository that `generate()`
fetches); this is a port of transformers 4.55's `GenerationMixin._constrained_beam_search` with its
`ConstrainedBeamSearchScorer` (process, step_sentence_constraint, finalize) and the constraint classes
(engine/constraints.py). The finished hypotheses are group_beams.Hypotheses (transformers' BeamHypotheses).
Several configurations that share num_beams and max_new_tokens decode together (item i: rows i*W .. i*W+W-1),
each with its own constraints; sequences and sequence scores equal transformers 4.55's
`generate(force_words_ids=..., num_beams=...)` (tests/test_constrained_beams.py, against outputs recorded with
it: tests/data/make_constrained_oracle.py).

The texts become token ids with params.force_words_ids: each text as written and with a leading space (how a
word appears mid-sentence), one spelling a phrase, several a disjunctive constraint. As in transformers, a
hypothesis's progress is read from the prompt and the output together (a forced word in the prompt counts), an
EOS candidate becomes a finished hypothesis only once every constraint is met, and at the end, when fewer than
num_return_sequences running beams meet them, every running beam is added (so an output may miss a constraint:
BeamSequence.constraints_met says which it holds).

What each step does, per item (Python over the item's W beams and their candidates, as transformers does):
  1. log-softmax, the processors, plus each beam's score; the K = max(2, 1 + #EOS) x W best continuations;
  2. an EOS among the first W whose beam meets every constraint becomes a finished hypothesis; the first W
     others are the top-k candidates;
  3. each beam's advance tokens (what would progress its constraints) join them, then the W beams are taken
     bank by bank (step_sentence_constraint);
  4. the item is done once its W hypotheses cannot be beaten (early_stopping True / False / "never").

Shapes: b items, W beams, N = b * W rows, V vocabulary, T new tokens.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

from .beam_results import NEG, BeamResult, BeamSequence, BeamStep, BeamSteps
from .constraints import ConstraintListState, contains, make_constraint
from .errors import ParamError
from .generate import Engine
from .group_beams import Hypotheses
from .params import SamplingParams, force_words_ids
from .prefill import decode_one_token, prefill
from .processors import apply_pipeline, plan_stages


def constraint_ids(engine: Engine, params: SamplingParams) -> list[list[int] | list[list[int]]]:
    """The configuration's force_words as transformers' force_words_ids (checked against the vocabulary)."""
    ids = force_words_ids(engine.loaded.tokenizer, params.force_words)
    for entry in ids:
        for option in (entry if isinstance(entry[0], list) else [entry]):
            if max(option) >= engine.loaded.vocab_size:
                raise ParamError("force_words", f"token ids in [0, {engine.loaded.vocab_size - 1}]", option)
    return ids


class _Item:
    """One configuration's constraints and finished hypotheses."""

    def __init__(self, engine: Engine, params: SamplingParams, T: int):
        self.ids = constraint_ids(engine, params)
        self.constraints = [make_constraint(entry) for entry in self.ids]
        self.hypotheses = Hypotheses(params.num_beams, params.length_penalty, params.early_stopping, T)
        self.done = False

    def states(self, n: int) -> list[ConstraintListState]:
        return [ConstraintListState([c.copy() for c in self.constraints]) for _ in range(n)]

    def completes(self, sequence: list[int]) -> bool:
        state = self.states(1)[0]
        state.reset(sequence)
        return state.completed


@torch.inference_mode()
def constrained_beam_steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams],
                           cancel: threading.Event | None = None) -> BeamSteps:
    """Decode every configuration (same num_beams, max_new_tokens; engine.beams.check_batch) as one batch of b*W
    rows; yields the running beams after each step, returns the results. Once `cancel` is set, the next step is
    the last (the running beams are then finalized, as at max_new_tokens)."""
    engine.check(list(prompt_ids), [p for p in configs for _ in range(p.num_beams)])
    loaded, device = engine.loaded, engine.loaded.device
    b, W, T = len(configs), configs[0].num_beams, configs[0].max_new_tokens
    N, eos_ids = b * W, list(loaded.eos_token_ids)
    K = max(2, 1 + len(eos_ids)) * W
    pad = eos_ids[0]
    items = [_Item(engine, p, T) for p in configs]
    prompt = list(prompt_ids)

    row_params = engine.row_params([p for p in configs for _ in range(W)])  # constrained beams are greedy
    plans = plan_stages(row_params)
    start = prefill(loaded, [prompt], N)
    logits, cache, state = start.logits, start.cache, start.state
    beam_scores = torch.zeros(b, W)
    beam_scores[:, 1:] = NEG  # only the first beam is alive at the start
    beam_scores = beam_scores.view(N)
    generated: list[list[int]] = [[] for _ in range(N)]  # each beam's new tokens
    stats: list[list[tuple[float, float, float]]] = [[] for _ in range(N)]  # raw log p, processed log p, raw entropy

    t = 0
    for t in range(T):
        raw_log_probs = torch.log_softmax(logits, dim=-1)  # [N, V]
        raw_entropy = -(raw_log_probs.exp() * raw_log_probs).sum(-1)
        log_probs = apply_pipeline(raw_log_probs, state, row_params, plans)  # [N, V]
        vocab_scores = (log_probs + beam_scores.to(device)[:, None]).cpu()  # transformers' scores_for_all_vocab
        V = vocab_scores.shape[-1]
        top_scores, top = torch.topk(vocab_scores.view(b, W * V), K, dim=1, largest=True, sorted=True)
        top_beam, top_token = top // V, top % V
        token_stats = (raw_log_probs.cpu(), log_probs.cpu(), raw_entropy.cpu())

        next_scores, next_tokens, next_rows = torch.zeros(b, W), torch.zeros(b, W, dtype=torch.long), \
            torch.zeros(b, W, dtype=torch.long)
        for i, item in enumerate(items):
            if item.done:  # a done item feeds pad (transformers pads with index 0: here the item's own first beam)
                next_tokens[i], next_rows[i] = pad, i * W
                continue
            chosen = 0
            for rank in range(K):
                token, score, row = int(top_token[i, rank]), top_scores[i, rank], i * W + int(top_beam[i, rank])
                if token in eos_ids:
                    if rank < W and item.completes(prompt + generated[row]):
                        item.hypotheses.add(generated[row] + [token],
                                            torch.tensor(stats[row] + [_stat(token_stats, row, token)]).view(-1, 3),
                                            float(score))
                else:
                    next_scores[i, chosen], next_tokens[i, chosen], next_rows[i, chosen] = score, token, row
                    chosen += 1
                if chosen == W:
                    break
            next_scores[i], next_tokens[i], next_rows[i] = _step_sentence_constraint(
                item, i, W, prompt, generated, vocab_scores, next_scores[i], next_tokens[i], next_rows[i])
            item.done = item.done or item.hypotheses.is_done(float(top_scores[i].max()), t + 1)

        rows, tokens = next_rows.view(N), next_tokens.view(N)
        rows_l, tokens_l = rows.tolist(), tokens.tolist()
        generated = [generated[r] + [tok] for r, tok in zip(rows_l, tokens_l)]
        stats = [stats[r] + [_stat(token_stats, r, tok)] for r, tok in zip(rows_l, tokens_l)]
        beam_scores = next_scores.view(N)
        yield _running(generated, stats, beam_scores, items, W, t + 1)
        last = t + 1 >= T or (cancel is not None and cancel.is_set())
        if last or all(item.done for item in items):
            break
        rows, tokens = rows.to(device), tokens.to(device)
        cache.reorder(rows)
        state = state.select(rows)
        state.append(tokens)
        logits = decode_one_token(loaded.model, tokens, cache)

    return _finalize(engine, configs, items, prompt, generated, stats, beam_scores, W)


def _stat(token_stats: tuple[torch.Tensor, ...], row: int, token: int) -> tuple[float, float, float]:
    raw, processed, entropy = token_stats
    return float(raw[row, token]), float(processed[row, token]), float(entropy[row])


def _step_sentence_constraint(item: _Item, i: int, W: int, prompt: list[int], generated: list[list[int]],
                              vocab_scores: torch.Tensor, sent_scores: torch.Tensor, sent_tokens: torch.Tensor,
                              sent_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """transformers' ConstrainedBeamSearchScorer.step_sentence_constraint for item i: the W top-k candidates
    (sent_*: score, token, row) and every beam's advance tokens, taken bank by bank, best first in each."""
    topk_states, advance_states = item.states(W), item.states(W)
    full = [generated[r] + [tok] for r, tok in zip(sent_rows.tolist(), sent_tokens.tolist())]
    new_seqs = list(full)
    new_rows: list[int] = []
    new_tokens: list[int] = []
    new_scores: list[torch.Tensor] = []
    new_states: list[ConstraintListState] = []
    for j in range(W):
        row = i * W + j
        topk_states[j].reset(prompt + full[j])
        advance = advance_states[j]
        advance.reset(prompt + generated[row])
        if advance.completed:
            continue
        for token in advance.advance() or ():
            new_state = advance.copy(stateful=True)
            new_state.add(token)
            seq = generated[row] + [token]
            if seq not in new_seqs:  # the same hypothesis only once
                new_seqs.append(seq)
                new_rows.append(row)
                new_tokens.append(token)
                new_scores.append(vocab_scores[row, token])
                new_states.append(new_state)
    if not new_rows:
        return sent_scores, sent_tokens, sent_rows
    all_states = topk_states + new_states
    all_tokens = torch.cat((sent_tokens, torch.tensor(new_tokens)))
    all_scores = torch.cat((sent_scores, torch.stack(new_scores)))
    all_banks = torch.tensor([s.get_bank() for s in all_states])
    indices = (all_banks * 100 + all_scores).sort(descending=True).indices
    sorted_banks = all_banks[indices]
    counter, current, increments = -1, sorted_banks[0], []
    for bank in sorted_banks:  # the rank of each within its bank: round-robin over the banks
        if bank == current:
            counter += 1
        else:
            counter, current = 0, bank
        increments.append(counter)
    indices = indices[torch.tensor(np.argsort(increments, kind="mergesort"))][:W]
    return all_scores[indices], all_tokens[indices], torch.cat((sent_rows, torch.tensor(new_rows)))[indices]


def _running(generated: list[list[int]], stats: list[list[tuple[float, float, float]]], scores: torch.Tensor,
             items: list[_Item], W: int, steps: int) -> BeamStep:
    """The running beams of every item, best first (a done item's last)."""
    order = []
    for i, item in enumerate(items):
        item_scores = scores[i * W:(i + 1) * W]
        ranked = torch.argsort(torch.where(torch.tensor(item.done), NEG * 2, item_scores), descending=True, stable=True)
        order += [i * W + int(j) for j in ranked]
    tokens = torch.tensor([generated[r] for r in order]).view(len(items), W, steps)
    logprobs = torch.tensor([[s[:2] for s in stats[r]] for r in order]).view(len(items), W, steps, 2)
    return BeamStep(steps, tokens, logprobs)


def _finalize(engine: Engine, configs: list[SamplingParams], items: list[_Item], prompt: list[int],
              generated: list[list[int]], stats: list[list[tuple[float, float, float]]], beam_scores: torch.Tensor,
              W: int) -> list[BeamResult]:
    """transformers' ConstrainedBeamSearchScorer.finalize: an item still running adds its beams that meet every
    constraint; when fewer than num_return_sequences do, every other beam too. Then the best, best first."""
    results = []
    for i, (item, p) in enumerate(zip(items, configs)):
        if not item.done:
            meeting = []
            for j in range(W):
                row = i * W + j
                if item.completes(prompt + generated[row]):
                    item.hypotheses.add(generated[row], torch.tensor(stats[row]).view(-1, 3), float(beam_scores[row]))
                    meeting.append(j)
            if len(meeting) < p.num_return_sequences:
                for j in range(W):
                    row = i * W + j
                    if j not in meeting:
                        item.hypotheses.add(generated[row], torch.tensor(stats[row]).view(-1, 3),
                                            float(beam_scores[row]))
        ranked = sorted(item.hypotheses.beams, key=lambda h: h[0])  # stable sort, then pop(): transformers' ties
        sequences = []
        for _ in range(p.num_return_sequences):
            score, ids, seq_stats = ranked.pop()
            met = [contains(ids, entry) for entry in item.ids]
            sequences.append(BeamSequence.of(ids, float(torch.tensor(score, dtype=torch.float32)),
                                             engine.loaded.decode(ids), seq_stats, constraints_met=met))
        results.append(BeamResult(p, sequences))
    return results
