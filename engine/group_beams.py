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

from .beam_results import NEG, BeamResult, BeamSequence, BeamStep, BeamSteps
from .generate import Engine
from .params import SamplingParams
from .prefill import decode_one_token, prefill
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


@dataclass
class _Step:
    """One step of the search: the raw distributions every group starts from, and what the groups choose,
    filled in group by group (item-major [b, W]: beam j of item i)."""

    t: int
    raw_log_probs: torch.Tensor  # [N, V]
    raw_entropy: torch.Tensor  # [N]
    tokens: torch.Tensor  # [b, W] the token each beam takes (pad for the beams of a done group)
    source: torch.Tensor  # [b, W] the row each beam continues
    stats: torch.Tensor  # [b, W, 3] its token's raw log p, processed log p, raw entropy
    scores: torch.Tensor  # [b, W] its running score after this step


@dataclass
class _Candidates:
    """A group's K best continuations over its beams, best first: [b, K] each."""

    scores: torch.Tensor  # the beam's running score + the token's processed log-prob
    beam: torch.Tensor  # beam within the group
    token: torch.Tensor
    is_eos: torch.Tensor
    log_probs: torch.Tensor  # [b*gs, V] the group's processed log-probabilities


class _GroupSearch:
    """A batch of diverse beam searches: the rows of each group, the running beams and the finished hypotheses.

    Rows are item-major; group g of item i holds rows i*W + g*gs .. i*W + g*gs + gs-1."""

    def __init__(self, engine: Engine, configs: list[SamplingParams]):
        device = engine.loaded.device
        eos_ids = engine.loaded.eos_token_ids
        self.pad = eos_ids[0]  # the model has no other pad token here; generate() is given the same one in the tests
        self.eos = torch.tensor(eos_ids, device=device)
        self.b, self.W, self.G, self.T = (len(configs), configs[0].num_beams, configs[0].num_beam_groups,
                                          configs[0].max_new_tokens)
        self.gs, self.N = self.W // self.G, self.b * self.W
        self.K = max(2, 1 + len(eos_ids)) * self.gs
        self.hypotheses = [[Hypotheses(self.gs, p.length_penalty, p.early_stopping, self.T) for _ in range(self.G)]
                           for p in configs]
        self.done = [[False] * self.G for _ in configs]
        # each group's rows (and their processors) are fixed, so plan them once
        row_params = engine.row_params([p for p in configs for _ in range(self.W)])  # diverse beams are greedy
        self.item_base = torch.arange(self.b, device=device)[:, None] * self.W  # [b, 1]
        self.group_rows = [(self.item_base + g * self.gs + torch.arange(self.gs, device=device)[None, :]).view(-1)
                           for g in range(self.G)]  # per group [b*gs]
        self.group_params = [row_params.select(rows) for rows in self.group_rows]
        self.group_plans = [plan_stages(p) for p in self.group_params]
        self.tokens = torch.zeros(self.N, self.T, dtype=torch.long, device=device)  # generated tokens of each beam
        self.stats = torch.zeros(self.N, self.T, 3, device=device)  # per token: raw log p, processed log p, raw entropy
        beam_scores = torch.full((self.b, self.W), NEG, device=device)
        beam_scores[:, ::self.gs] = 0.0  # only the first beam of each group is alive at the start
        self.beam_scores = beam_scores.view(self.N)
        self.taken: list[torch.Tensor] = []  # per step, [b, W]: the token each beam took (the peers' tokens)

    def start_step(self, t: int, logits: torch.Tensor) -> _Step:
        raw_log_probs = torch.log_softmax(logits, dim=-1)  # [N, V]
        b, W, device = self.b, self.W, logits.device
        return _Step(t, raw_log_probs, -(raw_log_probs.exp() * raw_log_probs).sum(-1),
                     torch.full((b, W), self.pad, dtype=torch.long, device=device),
                     torch.arange(self.N, device=device).view(b, W).clone(), torch.zeros(b, W, 3, device=device),
                     self.beam_scores.view(b, W).clone())

    def candidates(self, g: int, state: DecodeState, step: _Step) -> _Candidates:
        """Steps 1 and 2 for group g: its processed log-probabilities (diversity_penalty seeing what the groups
        before it chose at this step) plus each beam's score, and the K best continuations, best first."""
        rows = self.group_rows[g]  # [b*gs]
        V = step.raw_log_probs.shape[-1]
        group_state = state.select(rows)
        group_state.peer_counts = _peer_counts(step.tokens, g, self.gs, V)
        log_probs = apply_pipeline(step.raw_log_probs[rows], group_state, self.group_params[g],
                                   self.group_plans[g])  # [b*gs, V]
        accumulated = (log_probs + self.beam_scores[rows, None]).view(self.b, self.gs * V)
        scores, cand = torch.topk(accumulated, self.K, dim=1, largest=True, sorted=True)  # [b, K]
        token = cand % V
        return _Candidates(scores, cand // V, token, torch.isin(token, self.eos), log_probs)

    def add_finished(self, g: int, step: _Step, cands: _Candidates) -> None:
        """Step 3, first half: an EOS among the first gs candidates becomes a finished hypothesis of the group
        (its own list, in rank order)."""
        t = step.t
        for i, rank in (cands.is_eos[:, :self.gs]).nonzero().tolist():
            if self.done[i][g]:
                continue
            beam = int(cands.beam[i, rank])
            row = int(self.group_rows[g].view(self.b, self.gs)[i, beam])
            token = int(cands.token[i, rank])
            token_stats = torch.stack([step.raw_log_probs[row, token], cands.log_probs[i * self.gs + beam, token],
                                       step.raw_entropy[row]])
            self.hypotheses[i][g].add(self.tokens[row, :t].tolist() + [token],
                                      torch.cat([self.stats[row, :t], token_stats[None]]), float(cands.scores[i, rank]))

    def take_beams(self, g: int, step: _Step, cands: _Candidates) -> None:
        """Step 3, second half: the gs best non-EOS candidates become the group's beams (a stable sort keeps
        their rank order); a done group feeds pad with score 0 (transformers), which later groups see as chosen."""
        b, gs = self.b, self.gs
        keep = torch.argsort(cands.is_eos.to(torch.int8), dim=1, stable=True)[:, :gs]  # [b, gs]
        beam, token = cands.beam.gather(1, keep), cands.token.gather(1, keep)
        score = cands.scores.gather(1, keep)
        finished = torch.tensor([self.done[i][g] for i in range(b)], device=token.device)[:, None]  # [b, 1]
        token = torch.where(finished, self.pad, token)
        score = torch.where(finished, 0.0, score)
        beam = torch.where(finished, 0, beam)
        slots = slice(g * gs, (g + 1) * gs)
        step.tokens[:, slots] = token
        step.scores[:, slots] = score
        step.source[:, slots] = self.item_base + g * gs + beam
        from_rows = step.source[:, slots].reshape(-1)
        picked = (beam + torch.arange(b, device=beam.device)[:, None] * gs).view(-1)  # rows of log_probs
        step.stats[:, slots] = torch.stack([step.raw_log_probs[from_rows, token.view(-1)],
                                            cands.log_probs[picked, token.view(-1)],
                                            step.raw_entropy[from_rows]], dim=-1).view(b, gs, 3)

    def update_done(self, g: int, step: _Step, cands: _Candidates) -> None:
        """Step 4: is the group done? (the best candidate's raw score, at length t + 1)"""
        for i in range(self.b):
            if not self.done[i][g]:
                self.done[i][g] = self.hypotheses[i][g].is_done(float(cands.scores[i, 0]), step.t + 1)

    def advance(self, step: _Step) -> torch.Tensor:
        """Every group has chosen: reorder the beams and append their tokens -> the row each beam continues [N]."""
        rows = step.source.view(self.N)
        self.tokens, self.stats = self.tokens[rows], self.stats[rows]
        self.tokens[:, step.t] = step.tokens.view(self.N)
        self.stats[:, step.t] = step.stats.view(self.N, 3)
        self.beam_scores = step.scores.view(self.N)
        self.taken.append(step.tokens.cpu())
        return rows

    @property
    def all_done(self) -> bool:
        return all(all(d) for d in self.done)

    def running_beams(self, steps: int) -> BeamStep:
        """The running beams of every item best first by score, the beams of done groups last."""
        b, W = self.b, self.W
        finished = torch.tensor([[d for d in item for _ in range(self.gs)] for item in self.done],
                                device=self.beam_scores.device)  # [b, W]
        order = torch.where(finished, NEG * 2, self.beam_scores.view(b, W)).argsort(dim=1, descending=True, stable=True)
        rows = (order + torch.arange(b, device=order.device)[:, None] * W).view(-1)
        return BeamStep(steps, self.tokens[rows, :steps].view(b, W, steps), self.stats[rows, :steps, :2].view(b, W, steps, 2))

    def finalize(self, length: int) -> None:
        """Groups still running add their beams as hypotheses (transformers' BeamSearchScorer.finalize)."""
        W, gs = self.W, self.gs
        for i in range(self.b):
            for g in range(self.G):
                if not self.done[i][g]:
                    for r in range(i * W + g * gs, i * W + g * gs + gs):
                        self.hypotheses[i][g].add(self.tokens[r, :length].tolist(), self.stats[r, :length].clone(),
                                                  float(self.beam_scores[r]))

    def results(self, engine: Engine, configs: list[SamplingParams]) -> list[BeamResult]:
        """The num_return_sequences best hypotheses over all groups of each configuration, best first."""
        results = []
        for i, p in enumerate(configs):
            # Python's stable sort then pop() breaks ties as transformers does
            ranked = sorted([(*h, g) for g, group in enumerate(self.hypotheses[i]) for h in group.beams],
                            key=lambda h: h[0])
            sequences = []
            for _ in range(p.num_return_sequences):
                score, ids, seq_stats, g = ranked.pop()
                peers = [self.taken[s][i, :g * self.gs].tolist() for s in range(len(ids))]
                sequences.append(BeamSequence.of(ids, float(torch.tensor(score, dtype=torch.float32)),
                                                 engine.loaded.decode(ids), seq_stats, peers, g))
            results.append(BeamResult(p, sequences))
        return results


@torch.inference_mode()
def group_beam_steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams],
                     cancel: threading.Event | None = None) -> BeamSteps:
    """Decode every configuration (same num_beams, num_beam_groups, max_new_tokens; engine.beams.check_batch) as
    one batch of b*W rows; yields the steps done, returns the results. Once `cancel` is set, the next step is
    the last (the groups still running then add their beams, as at max_new_tokens)."""
    engine.check(list(prompt_ids), [p for p in configs for _ in range(p.num_beams)])
    search = _GroupSearch(engine, configs)
    start = prefill(engine.loaded, [list(prompt_ids)], search.N)  # the prompt once; its cache copied to every beam
    logits, cache, state = start.logits, start.cache, start.state

    for t in range(search.T):
        last = t + 1 >= search.T or (cancel is not None and cancel.is_set())  # max length (or stopped): the last step
        step = search.start_step(t, logits)
        for g in range(search.G):  # the groups choose in turn
            cands = search.candidates(g, state, step)  # 1. and 2.
            search.add_finished(g, step, cands)  # 3. EOS -> finished hypotheses ...
            search.take_beams(g, step, cands)  # ... the best others -> the group's beams
            search.update_done(g, step, cands)  # 4.
        rows = search.advance(step)
        yield search.running_beams(t + 1)
        if last or search.all_done:
            break
        cache.reorder(rows)
        state = state.select(rows)
        state.append(step.tokens.view(search.N))
        logits = decode_one_token(engine.loaded.model, step.tokens.view(search.N), cache)

    search.finalize(t + 1)
    return search.results(engine, configs)
