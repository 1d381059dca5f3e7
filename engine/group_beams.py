"""Diverse beam search (num_beam_groups > 1, diversity_penalty) with transformers 4.x semantics.

Vijayakumar et al. 2016, "Diverse Beam Search" (arXiv:1610.02424): the W beams are split into G groups of
gs = W // G; at each step the groups choose in turn, and group g's scores are lowered by diversity_penalty
for every beam of groups 0..g-1 that chose the same token at this step (Hamming diversity).

transformers 5 moved group beam search out of the library (to a hub repository that `generate()` fetches);
this is a port of transformers 4.55's `GenerationMixin._group_beam_search` with its `BeamSearchScorer` and
`BeamHypotheses`, and `HammingDiversityLogitsProcessor` is the `diversity_penalty` processor of our pipeline
(in transformers' slot, right after sequence_bias). Several configurations that share num_beams,
num_beam_groups and max_new_tokens decode together: item i is one configuration, rows i*W .. i*W+W-1 its
beams, group g its rows i*W + g*gs .. i*W + g*gs + gs-1. Sequences and sequence scores equal transformers
4.55's `generate()` (tests/test_group_beams.py, against outputs recorded with it: tests/data/).

What each step does, as transformers 4.x does it:
  one forward for every row; then for each group g in order:
    1. log-softmax of the group's logits, the row's processors (diversity_penalty counts what groups < g chose
       at this step), plus each beam's running score;
    2. the K = max(2, 1 + #EOS) * gs best continuations over the group's beams (sorted);
    3. an EOS among the first gs of them becomes a finished hypothesis (score / length ** length_penalty);
       the gs best that are not EOS become the group's beams;
    4. the group is done once its gs hypotheses cannot be beaten (early_stopping True / False / "never");
       a done group keeps feeding the pad token, which later groups then see as chosen (as in transformers).
  The loop ends when every group of every item is done or at max_new_tokens; groups still running then
  add their beams as hypotheses. The num_return_sequences best hypotheses over all groups are the result.

The finished hypotheses are a small Python list per (item, group), kept exactly like transformers' list, so
that ties between equal scores resolve the same way.

Shapes: b items, W beams (G groups of gs), N = b * W rows, V vocabulary, T new tokens.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .beams import NEG, BeamResult, BeamSequence, BeamStep, BeamSteps
from .generate import Engine
from .params import SamplingParams
from .processors import apply_pipeline, plan_stages
from .rowstate import DecodeState


@dataclass
class Hypotheses:
    """transformers' BeamHypotheses: the `size` best finished hypotheses of one group of one configuration."""

    size: int
    length_penalty: float
    early_stopping: bool | str
    max_new_tokens: int
    beams: list[tuple[float, list[int], torch.Tensor]] = field(default_factory=list)  # (score, tokens, stats [n, 3])
    worst_score: float = 1e9

    def add(self, tokens: list[int], stats: torch.Tensor, sum_logprobs: float) -> None:
        """Keep a finished hypothesis if it is among the best `size` (its length is len(tokens))."""
        score = sum_logprobs / (len(tokens) ** self.length_penalty)
        if len(self.beams) < self.size or score > self.worst_score:
            self.beams.append((score, tokens, stats))
            if len(self.beams) > self.size:
                ranked = sorted((s, i) for i, (s, _, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, length: int) -> bool:
        """Can no running beam (best raw score `best_sum_logprobs` at `length` tokens) beat the worst kept one?"""
        if len(self.beams) < self.size:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            length = self.max_new_tokens  # the longest a running beam can become
        return self.worst_score >= best_sum_logprobs / length ** self.length_penalty


def _peer_counts(current: torch.Tensor, group: int, gs: int, vocab_size: int) -> torch.Tensor:
    """[b, W] tokens chosen at this step -> [b * gs, V]: per row of `group`, the count of each token among
    the beams of the groups before it (of the same item)."""
    earlier = current[:, :group * gs]  # [b, group*gs]
    counts = torch.zeros(current.shape[0], vocab_size, device=current.device)
    counts.scatter_add_(1, earlier, torch.ones_like(earlier, dtype=counts.dtype))
    return counts.repeat_interleave(gs, dim=0)


def _running_beams(step: int, tokens: torch.Tensor, stats: torch.Tensor, scores: torch.Tensor,
                   done: list[list[bool]], gs: int) -> BeamStep:
    """The running beams of every item best first by score, the beams of done groups last."""
    b, W = len(done), tokens.shape[0] // len(done)
    finished = torch.tensor([[d for d in item for _ in range(gs)] for item in done], device=scores.device)  # [b, W]
    order = torch.where(finished, NEG * 2, scores.view(b, W)).argsort(dim=1, descending=True, stable=True)
    rows = (order + torch.arange(b, device=order.device)[:, None] * W).view(-1)
    return BeamStep(step, tokens[rows, :step].view(b, W, step), stats[rows, :step, :2].view(b, W, step, 2))


@torch.inference_mode()
def group_beam_steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams],
                     cancel: threading.Event | None = None) -> BeamSteps:
    """Decode every configuration (same num_beams, num_beam_groups, max_new_tokens; engine.beams.check_batch) as
    one batch of b*W rows; yields the steps done, returns the results. Once `cancel` is set, the next step is
    the last (the groups still running then add their beams, as at max_new_tokens)."""
    engine.check(list(prompt_ids), [p for p in configs for _ in range(p.num_beams)])
    model, device = engine.loaded.model, engine.loaded.device
    eos_ids = engine.loaded.eos_token_ids
    pad = eos_ids[0]  # the model has no other pad token here; generate() is given the same one in the tests
    b, W, G, T = len(configs), configs[0].num_beams, configs[0].num_beam_groups, configs[0].max_new_tokens
    gs, N = W // G, len(configs) * configs[0].num_beams
    K = max(2, 1 + len(eos_ids)) * gs
    eos = torch.tensor(eos_ids, device=device)
    hypotheses = [[Hypotheses(gs, p.length_penalty, p.early_stopping, T) for _ in range(G)] for p in configs]
    done = [[False] * G for _ in configs]

    # rows item-major; each group's rows (and their processors) are fixed, so plan them once
    row_params = engine.row_params([p for p in configs for _ in range(W)])  # diverse beams are greedy
    item_base = torch.arange(b, device=device)[:, None] * W  # [b, 1]
    group_rows = [(item_base + g * gs + torch.arange(gs, device=device)[None, :]).view(-1) for g in range(G)]
    group_params = [row_params.select(rows) for rows in group_rows]
    group_plans = [plan_stages(p) for p in group_params]

    prefill = engine._prefill([list(prompt_ids)])  # the prompt once; its cache copied to every beam
    state = DecodeState.start(prefill.tokens.expand(N, -1), engine.loaded.vocab_size)
    cache = prefill.cache
    cache.batch_repeat_interleave(N)
    logits = prefill.logits.expand(N, -1)

    tokens = torch.zeros(N, T, dtype=torch.long, device=device)  # generated tokens of each running beam
    stats = torch.zeros(N, T, 3, device=device)  # per token: raw log p, processed log p, raw entropy
    beam_scores = torch.full((b, W), NEG, device=device)
    beam_scores[:, ::gs] = 0.0  # only the first beam of each group is alive at the start
    beam_scores = beam_scores.view(N)

    taken: list[torch.Tensor] = []  # per step, [b, W]: the token each beam took (for the results' peer_tokens)
    for t in range(T):
        last = t + 1 >= T or (cancel is not None and cancel.is_set())  # max length (or stopped): the last step
        raw_log_probs = torch.log_softmax(logits, dim=-1)  # [N, V]
        raw_entropy = -(raw_log_probs.exp() * raw_log_probs).sum(-1)  # [N]
        V = raw_log_probs.shape[-1]
        current = torch.full((b, W), pad, dtype=torch.long, device=device)  # token each beam takes at step t
        source = torch.arange(N, device=device).view(b, W).clone()  # row each beam continues
        step_stats = torch.zeros(b, W, 3, device=device)
        new_scores = beam_scores.view(b, W).clone()

        for g in range(G):
            rows = group_rows[g]  # [b*gs]
            # 1. the group's processed log-probabilities, diversity_penalty seeing what groups < g chose
            group_state = state.select(rows)
            group_state.peer_counts = _peer_counts(current, g, gs, V)
            log_probs = apply_pipeline(raw_log_probs[rows], group_state, group_params[g], group_plans[g])  # [b*gs, V]
            accumulated = (log_probs + beam_scores[rows, None]).view(b, gs * V)

            # 2. the K best continuations over the group's beams, best first
            cand_scores, cand = torch.topk(accumulated, K, dim=1, largest=True, sorted=True)  # [b, K]
            cand_beam, cand_token = cand // V, cand % V  # beam within the group, token
            is_eos = torch.isin(cand_token, eos)

            # 3. EOS among the first gs candidates -> finished hypotheses (the group's own list, in rank order)
            for i, rank in (is_eos[:, :gs]).nonzero().tolist():
                if done[i][g]:
                    continue
                row = int(group_rows[g].view(b, gs)[i, cand_beam[i, rank]])
                flat = i * gs + int(cand_beam[i, rank])
                token = int(cand_token[i, rank])
                token_stats = torch.stack([raw_log_probs[row, token], log_probs[flat, token], raw_entropy[row]])
                hypotheses[i][g].add(tokens[row, :t].tolist() + [token],
                                     torch.cat([stats[row, :t], token_stats[None]]), float(cand_scores[i, rank]))
            # ... and the gs best non-EOS candidates become the beams (a stable sort keeps their rank order)
            keep = torch.argsort(is_eos.to(torch.int8), dim=1, stable=True)[:, :gs]  # [b, gs]
            beam, token = cand_beam.gather(1, keep), cand_token.gather(1, keep)
            score = cand_scores.gather(1, keep)
            # a done group feeds pad with score 0 (transformers), and other groups see that pad as chosen
            finished = torch.tensor([done[i][g] for i in range(b)], device=device)[:, None]  # [b, 1]
            token = torch.where(finished, pad, token)
            score = torch.where(finished, 0.0, score)
            beam = torch.where(finished, 0, beam)
            slots = slice(g * gs, (g + 1) * gs)
            current[:, slots] = token
            new_scores[:, slots] = score
            source[:, slots] = item_base + g * gs + beam
            from_rows = source[:, slots].reshape(-1)
            picked = (beam + torch.arange(b, device=device)[:, None] * gs).view(-1)  # rows of log_probs
            step_stats[:, slots] = torch.stack([raw_log_probs[from_rows, token.view(-1)],
                                                log_probs[picked, token.view(-1)],
                                                raw_entropy[from_rows]], dim=-1).view(b, gs, 3)

            # 4. is the group done? (the best candidate's raw score, at length t + 1)
            for i in range(b):
                if not done[i][g]:
                    done[i][g] = hypotheses[i][g].is_done(float(cand_scores[i, 0]), t + 1)

        # every group has chosen: reorder the beams, append the tokens
        rows = source.view(N)
        tokens, stats = tokens[rows], stats[rows]
        tokens[:, t] = current.view(N)
        stats[:, t] = step_stats.view(N, 3)
        beam_scores = new_scores.view(N)
        taken.append(current.cpu())
        yield _running_beams(t + 1, tokens, stats, beam_scores, done, gs)
        if last or all(all(d) for d in done):
            break
        cache.reorder_cache(rows)
        state = state.select(rows)
        state.append(current.view(N))
        logits = model(input_ids=current.view(N, 1), past_key_values=cache, use_cache=True).logits[:, -1, :].float()

    # groups still running add their beams (transformers' BeamSearchScorer.finalize)
    length = t + 1
    for i in range(b):
        for g in range(G):
            if not done[i][g]:
                for r in range(i * W + g * gs, i * W + g * gs + gs):
                    hypotheses[i][g].add(tokens[r, :length].tolist(), stats[r, :length].clone(), float(beam_scores[r]))

    results = []
    for i, p in enumerate(configs):
        # best first over all groups; Python's stable sort then pop() breaks ties as transformers does
        ranked = sorted([(*h, g) for g, group in enumerate(hypotheses[i]) for h in group.beams], key=lambda h: h[0])
        sequences = []
        for _ in range(p.num_return_sequences):
            score, ids, seq_stats, g = ranked.pop()
            peers = [taken[s][i, :g * gs].tolist() for s in range(len(ids))]
            sequences.append(BeamSequence(ids, float(torch.tensor(score, dtype=torch.float32)),
                                          engine.loaded.decode(ids), seq_stats[:, 0].tolist(),
                                          seq_stats[:, 1].tolist(), seq_stats[:, 2].tolist(), peers, g))
        results.append(BeamResult(p, sequences))
    return results
