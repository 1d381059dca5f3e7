"""Contrastive search (penalty_alpha > 0, top_k > 1) with transformers 4.x semantics, several configurations in one batch.

Su et al. 2022, "A Contrastive Framework for Neural Text Generation" (arXiv:2202.06417): at each step, of the
top_k most likely next tokens take the one with the best

    (1 - alpha) x p(token) - alpha x max_j cos(h(token), h_j)

where h(token) is the last layer's hidden state of the candidate token and h_j those of every earlier position
(prompt and output): a token whose representation repeats the context is penalized (the degeneration penalty).

transformers 5 moved contrastive search out of the library (to a hub repository that `generate()` fetches); this
is a port of transformers 4.55's `GenerationMixin._contrastive_search` and `_ranking_fast`:
  - the processors run on the raw logits (transformers' `logits_processor`, no warpers: the row is greedy, so
    temperature, top_p and the other sampling-only stages are skipped, and top_k only sets the candidates);
  - p is the softmax of the processed logits, the candidates its top_k (ties: torch.topk's order);
  - the top_k candidates of every row run as one forward (the row's cache expanded top_k times), which gives
    their hidden states and their next-token logits; the chosen candidate's cache, hidden state and logits carry
    on, so a step costs one forward of rows x top_k tokens;
  - the result is the greedy-style sequence; its per-token scores are the processed distribution's.
Configurations with the same top_k and max_new_tokens decode together: item i is one configuration, rows
i*k .. i*k+k-1 its candidates during the candidates' forward; an item that ends (EOS, max_new_tokens) leaves the
batch. Tokens equal transformers 4.55's `generate(penalty_alpha=..., top_k=...)` (tests/test_contrastive.py,
against outputs recorded with it: tests/data/make_contrastive_oracle.py).

One difference, on purpose: a candidate the processors removed (-inf, e.g. a banned n-gram) is never chosen. In
transformers it can be, when fewer than top_k tokens remain possible (its probability 0 still gets a score).

Shapes: n items still running, k = top_k, V vocabulary, H hidden size, L positions so far (prompt + output).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generator, Sequence

import torch

from .errors import ParamError
from .events import RunningBeam
from .generate import Engine
from .params import SamplingParams
from .processors import apply_pipeline, plan_stages
from .results import RowResult
from .rowstate import DecodeState
from .steps import run_to_end

# What contrastive_steps yields after each step (per configuration, its output so far) and returns.
ContrastiveSteps = Generator[tuple[int, list[RunningBeam]], None, list[RowResult]]


def check_batch(configs: Sequence[SamplingParams], vocab_size: int) -> None:
    """Configurations decode together only if they share top_k and max_new_tokens."""
    first = configs[0]
    for p in configs:
        if p.penalty_alpha <= 0.0:
            raise ParamError("penalty_alpha", "> 0 for contrastive search", p.penalty_alpha)
        if (p.top_k, p.max_new_tokens) != (first.top_k, first.max_new_tokens):
            raise ParamError("top_k", "the same top_k and max_new_tokens in one contrastive batch "
                                      f"({first.top_k}, {first.max_new_tokens})", (p.top_k, p.max_new_tokens))
        if p.top_k > vocab_size:
            raise ParamError("top_k", f"<= the vocabulary ({vocab_size}) with penalty_alpha > 0", p.top_k)


def contrastive_search(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                       cancel: threading.Event | None = None) -> list[RowResult]:
    """Decode every configuration (same top_k and max_new_tokens) as one batch; one RowResult each."""
    return run_to_end(contrastive_steps(engine, prompt_ids, configs, cancel))


def contrastive_steps(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                      cancel: threading.Event | None = None) -> ContrastiveSteps:
    """contrastive_search step by step: yields (steps done, each configuration's output so far), returns the
    results. Once `cancel` is set, the step after it is the last (finish_reason "cancelled")."""
    configs = [p.for_prompt(len(prompt_ids)) for p in configs]  # min_length / max_length count the prompt
    check_batch(configs, engine.loaded.vocab_size)
    return (yield from engine.turns.taking_turns(_steps(engine, prompt_ids, configs, cancel)))


@dataclass
class _Rows:
    """The items still running: their ids, processors' parameters and state, alpha, and the model's context."""

    ids: torch.Tensor  # [n] item index
    params: object  # RowParams
    state: DecodeState
    keep_prob: torch.Tensor  # [n, 1] 1 - alpha
    alpha: torch.Tensor  # [n, 1]
    context: torch.Tensor  # [n, L, H] last hidden state of every position so far
    logits: torch.Tensor  # [n, V] raw next-token logits

    def select(self, keep: torch.Tensor) -> "_Rows":
        return _Rows(self.ids[keep], self.params.select(keep), self.state.select(keep), self.keep_prob[keep],
                     self.alpha[keep], self.context[keep], self.logits[keep])


def degeneration_penalty(context: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """transformers' _ranking_fast, its penalty: context [m, L, H], candidates [m, 1, H] -> [m], each candidate's
    highest cosine similarity to a context position (every position counts: no padding here)."""
    norm_context = context / context.norm(dim=2, keepdim=True)
    norm_next = candidates / candidates.norm(dim=2, keepdim=True)
    return torch.matmul(norm_context, norm_next.transpose(1, 2)).squeeze(-1).max(dim=-1).values  # [m]


@torch.inference_mode()
def _steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams],
           cancel: threading.Event | None) -> ContrastiveSteps:
    engine.check(list(prompt_ids), configs)
    loaded = engine.loaded
    model, device = loaded.model, loaded.device
    b, k, T = len(configs), configs[0].top_k, configs[0].max_new_tokens

    # the prompt once, with its hidden states (the first context); its cache copied to every item
    prompt = torch.tensor([list(prompt_ids)], device=device)  # [1, P]
    out = model(input_ids=prompt, use_cache=True, output_hidden_states=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(b)
    rows = _Rows(torch.arange(b, device=device), engine.row_params(configs),
                 DecodeState.start(prompt.expand(b, -1), loaded.vocab_size),
                 # as transformers' python-float alpha: 1 - alpha in double, then float32
                 torch.tensor([[1.0 - p.penalty_alpha] for p in configs], device=device),
                 torch.tensor([[p.penalty_alpha] for p in configs], device=device),
                 out.hidden_states[-1].expand(b, -1, -1), out.logits[:, -1, :].float().expand(b, -1))
    del out
    plans = plan_stages(rows.params)
    tokens: list[list[int]] = [[] for _ in range(b)]
    stats: list[list[tuple[float, float, float, float]]] = [[] for _ in range(b)]  # raw lp, final lp, entropy, penalty
    reasons = ["length"] * b

    for t in range(T):
        n = rows.ids.shape[0]
        # 1. the processors on the raw logits, the top_k candidates of the processed distribution
        raw_log_probs = torch.log_softmax(rows.logits, dim=-1)  # [n, V]
        raw_entropy = -(raw_log_probs.exp() * raw_log_probs).sum(-1)  # [n]
        scores = apply_pipeline(rows.logits, rows.state, rows.params, plans)  # [n, V]
        empty = scores.amax(-1) == float("-inf")  # [n] the processors removed every token
        probs = torch.softmax(torch.where(empty[:, None], rows.logits, scores), dim=-1)
        top_probs, top_ids = torch.topk(probs, k, dim=-1)  # [n, k]

        # 2. every candidate as one forward: the cache expanded k times
        cache.batch_repeat_interleave(k)
        out = model(input_ids=top_ids.reshape(-1, 1), past_key_values=cache, use_cache=True,
                    output_hidden_states=True)
        next_hidden = out.hidden_states[-1]  # [n*k, 1, H]
        cand_logits = out.logits[:, -1, :].float()  # [n*k, V]
        del out

        # 3. the contrastive score, the best candidate of each item
        penalty = degeneration_penalty(rows.context.repeat_interleave(k, dim=0), next_hidden).view(n, k)
        score = rows.keep_prob * top_probs - rows.alpha * penalty  # [n, k]
        removed = scores.gather(1, top_ids) == float("-inf")  # candidates the processors removed
        score = torch.where(removed, float("-inf"), score)
        selected = score.argmax(dim=-1)  # [n]
        chosen = top_ids.gather(1, selected[:, None])[:, 0]  # [n]
        flat = torch.arange(n, device=device) * k + selected  # [n] the chosen candidate's row
        cache.batch_select_indices(flat)
        final_log_probs = torch.log_softmax(scores, dim=-1)

        # 4. record, and which items end here
        last = t + 1 >= T or (cancel is not None and cancel.is_set())
        chosen_l, ids_l, empty_l = chosen.tolist(), rows.ids.tolist(), empty.tolist()
        item_stats = torch.stack([raw_log_probs.gather(1, chosen[:, None])[:, 0],
                                  final_log_probs.gather(1, chosen[:, None])[:, 0], raw_entropy,
                                  penalty.gather(1, selected[:, None])[:, 0]], dim=-1).tolist()
        done = []
        for j, item in enumerate(ids_l):
            if empty_l[j]:
                reasons[item] = "no_candidates"
                done.append(True)
                continue
            tokens[item].append(chosen_l[j])
            stats[item].append(tuple(item_stats[j]))
            ended = chosen_l[j] in loaded.eos_token_ids
            if ended:
                reasons[item] = "stop"
            elif last and t + 1 < T:
                reasons[item] = "cancelled"
            done.append(ended or last)
        yield t + 1, [RunningBeam(tokens[i], [s[0] for s in stats[i]], [s[1] for s in stats[i]]) for i in range(b)]
        if all(done):
            break

        # 5. the chosen candidates carry on: their hidden state joins the context, their logits are the next
        pick = torch.arange(n, device=device), selected
        rows.context = torch.cat([rows.context, next_hidden.view(n, k, -1)[pick][:, None]], dim=1)
        rows.logits = cand_logits.view(n, k, -1)[pick]
        rows.state.append(chosen)
        if any(done):
            keep = torch.tensor([not d for d in done], device=device).nonzero()[:, 0]
            cache.batch_select_indices(keep)
            rows = rows.select(keep)
            plans = plan_stages(rows.params)

    return [RowResult(tokens[i], loaded.decode(tokens[i]), [s[0] for s in stats[i]], [s[1] for s in stats[i]],
                      [s[2] for s in stats[i]], reasons[i], degeneration_penalties=[s[3] for s in stats[i]])
            for i in range(b)]
