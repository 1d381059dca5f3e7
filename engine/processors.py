"""Vectorized per-row logits processors, their registry and the pipeline that applies them in each row's order.

Every processor maps scores [B, V] to new scores [B, V] (never in place) using per-row parameter tensors, so
one batch can mix settings. For each processor that transformers has, a row's result equals transformers' own
LogitsProcessor applied to that row alone with the scalar value (tests/test_processors.py proves it).
A row whose value is the disabled one is left exactly as it was (the pipeline masks it out).

    >>> rows = RowParams.build([SamplingParams(top_k=2), SamplingParams()], eos_token_ids=[0], vocab_size=4)
    >>> state = DecodeState.start(torch.tensor([[1, 2]]).expand(2, -1), vocab_size=4)
    >>> apply_pipeline(torch.tensor([[1., 2., 3., 4.]] * 2), state, rows)
    tensor([[-inf, -inf, 3., 4.],
            [1., 2., 3., 4.]])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Sequence

import torch

from .params import DEFAULT_ORDER, SAMPLING_ONLY, SamplingParams
from .sampling import XTC_STREAM, row_keys, row_uniform

NEG_INF = float("-inf")


# ----------------------------------------------------------------------------------------------------------
# Per-row parameters and decoding state


@dataclass
class BiasTable:
    """Per-row additive biases on token sequences (transformers' SequenceBiasLogitsProcessor, batched).

    single: [B, V] bias for one-token sequences, applied at every step.
    groups: for each prefix length P, the entries (row, prefix [P], last token, bias) whose prefix must match
            the end of that row's tokens for the bias to apply to the last token.
    """

    single: torch.Tensor  # [B, V] float32
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # (rows [M], prefixes [M,P], last [M], bias [M])
    active: torch.Tensor  # [B] bool

    @staticmethod
    def build(per_row: Sequence[Sequence[tuple[Sequence[int], float]]], vocab_size: int,
              device: torch.device | str = "cpu") -> "BiasTable":
        single = torch.zeros(len(per_row), vocab_size, dtype=torch.float32, device=device)
        by_len: dict[int, list[tuple[int, list[int], int, float]]] = {}
        for r, entries in enumerate(per_row):
            # transformers keys its dict by the sequence, so a repeated sequence keeps its last bias
            for seq, bias in dict((tuple(s), b) for s, b in entries).items():
                if len(seq) == 1:
                    single[r, seq[0]] = bias
                else:
                    by_len.setdefault(len(seq) - 1, []).append((r, list(seq[:-1]), seq[-1], bias))
        groups = [
            (torch.tensor([e[0] for e in g], device=device), torch.tensor([e[1] for e in g], device=device),
             torch.tensor([e[2] for e in g], device=device),
             torch.tensor([e[3] for e in g], dtype=torch.float32, device=device))
            for g in by_len.values()
        ]
        active = torch.tensor([bool(entries) for entries in per_row], dtype=torch.bool, device=device)
        return BiasTable(single, groups, active)

    def select(self, keep: torch.Tensor) -> "BiasTable":
        """Keep rows `keep` (indices into the current rows), renumbering the multi-token entries."""
        new_index = torch.full((self.single.shape[0],), -1, dtype=torch.long, device=keep.device)
        new_index[keep] = torch.arange(keep.numel(), device=keep.device)
        groups = []
        for rows, prefixes, last, bias in self.groups:
            mapped = new_index[rows]
            kept = mapped >= 0
            if kept.any():
                groups.append((mapped[kept], prefixes[kept], last[kept], bias[kept]))
        return BiasTable(self.single[keep], groups, self.active[keep])

    def bias(self, tokens: torch.Tensor) -> torch.Tensor:
        """The [B, V] bias to add given each row's tokens so far [B, L]."""
        bias = self.single.clone()
        for rows, prefixes, last, seq_bias in self.groups:
            prefix_len = prefixes.shape[1]
            if prefix_len > tokens.shape[1]:  # the prefix is longer than the context: it cannot match
                continue
            matches = (tokens[rows, -prefix_len:] == prefixes).all(dim=-1)  # [M]
            bias.index_put_((rows, last), torch.where(matches, seq_bias, 0.0), accumulate=True)
        return bias


@dataclass
class RowParams:
    """SamplingParams of B rows as tensors ([B, 1] floats so they broadcast against [B, V] scores)."""

    greedy: torch.Tensor  # [B] bool
    temperature: torch.Tensor  # [B, 1] float32 (1 for greedy rows)
    top_k: torch.Tensor  # [B] long
    top_p: torch.Tensor  # [B, 1] float64 (thresholds are derived in float64, then cast like Python floats)
    min_p: torch.Tensor  # [B, 1] float32
    typical_p: torch.Tensor  # [B, 1] float32
    epsilon_cutoff: torch.Tensor  # [B, 1] float32
    eta_cutoff: torch.Tensor  # [B, 1] float32
    repetition_penalty: torch.Tensor  # [B, 1] float32
    presence_penalty: torch.Tensor  # [B, 1] float32
    frequency_penalty: torch.Tensor  # [B, 1] float32
    no_repeat_ngram_size: torch.Tensor  # [B] long
    min_new_tokens: torch.Tensor  # [B] long
    eos_mask: torch.Tensor  # [V] bool
    sequence_bias: BiasTable
    bad_words: BiasTable
    order: torch.Tensor  # [B, S] long: index into DEFAULT_ORDER of each row's stage s
    dry_multiplier: torch.Tensor  # [B, 1] float64 (the penalty is computed in float64, as Python does)
    dry_base: torch.Tensor  # [B, 1] float64
    dry_allowed_length: torch.Tensor  # [B, 1] long
    dry_breakers: torch.Tensor  # [B, K] long: sequence-breaker token ids, padded with -1 (padding is a breaker)
    dynatemp_low: torch.Tensor  # [B, 1] float32
    dynatemp_high: torch.Tensor  # [B, 1] float32
    dynatemp_exponent: torch.Tensor  # [B, 1] float32
    top_n_sigma: torch.Tensor  # [B, 1] float64
    top_a: torch.Tensor  # [B, 1] float32
    tfs: torch.Tensor  # [B, 1] float32
    xtc_threshold: torch.Tensor  # [B, 1] float32
    xtc_probability: torch.Tensor  # [B] float64
    mirostat: torch.Tensor  # [B] bool: mirostat v2 on
    mirostat_tau: torch.Tensor  # [B, 1] float64
    mirostat_eta: torch.Tensor  # [B, 1] float64
    seed: torch.Tensor  # [B] long: the row's seed and sample index key its random decisions (XTC)
    sample_index: torch.Tensor  # [B] long

    @staticmethod
    def build(params: Sequence[SamplingParams], eos_token_ids: Sequence[int], vocab_size: int,
              device: torch.device | str = "cpu",
              sequence_bias: Sequence[Sequence[tuple[Sequence[int], float]]] | None = None,
              bad_words: Sequence[Sequence[Sequence[int]]] | None = None,
              sequence_breakers: Sequence[Sequence[int]] | None = None,
              sample_indices: Sequence[int] | None = None) -> "RowParams":
        """`sequence_bias` / `bad_words` are per-row token-id sequences, `sequence_breakers` per-row token ids
        of DRY's breakers (the engine tokenizes the texts); `sample_indices` default to 0."""
        def col(values: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device).unsqueeze(1)

        greedy = [p.greedy for p in params]
        # Greedy rows skip the sampling-only processors, as transformers does when do_sample=False.
        def sampling(name: str, off: float) -> list[float]:
            return [off if g else getattr(p, name) for p, g in zip(params, greedy)]

        eos_mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        eos_mask[list(eos_token_ids)] = True
        no_bias: list[list[tuple[list[int], float]]] = [[] for _ in params]
        breakers = [list(ids) for ids in sequence_breakers] if sequence_breakers else [[] for _ in params]
        width = max([1, *(len(ids) for ids in breakers)])
        return RowParams(
            greedy=torch.tensor(greedy, dtype=torch.bool, device=device),
            temperature=col(sampling("temperature", 1.0)),
            top_k=torch.tensor(sampling("top_k", 0), dtype=torch.long, device=device),
            top_p=col(sampling("top_p", 1.0), torch.float64),
            min_p=col(sampling("min_p", 0.0)),
            typical_p=col(sampling("typical_p", 1.0)),
            epsilon_cutoff=col(sampling("epsilon_cutoff", 0.0)),
            eta_cutoff=col(sampling("eta_cutoff", 0.0)),
            repetition_penalty=col([p.repetition_penalty for p in params]),
            presence_penalty=col([p.presence_penalty for p in params]),
            frequency_penalty=col([p.frequency_penalty for p in params]),
            no_repeat_ngram_size=torch.tensor([p.no_repeat_ngram_size for p in params], device=device),
            min_new_tokens=torch.tensor([p.min_new_tokens for p in params], device=device),
            eos_mask=eos_mask,
            sequence_bias=BiasTable.build(sequence_bias or no_bias, vocab_size, device),
            bad_words=BiasTable.build(
                [[(ids, NEG_INF) for ids in row] for row in bad_words] if bad_words else no_bias, vocab_size, device),
            order=torch.tensor([[DEFAULT_ORDER.index(n) for n in p.order] for p in params], device=device),
            dry_multiplier=col([p.dry_multiplier for p in params], torch.float64),
            dry_base=col([p.dry_base for p in params], torch.float64),
            dry_allowed_length=col([p.dry_allowed_length for p in params], torch.long),
            dry_breakers=torch.tensor([ids + [-1] * (width - len(ids)) for ids in breakers], dtype=torch.long,
                                      device=device),
            dynatemp_low=col(sampling("dynatemp_low", 1.0)),
            dynatemp_high=col(sampling("dynatemp_high", 1.0)),
            dynatemp_exponent=col(sampling("dynatemp_exponent", 1.0)),
            top_n_sigma=col(sampling("top_n_sigma", 0.0), torch.float64),
            top_a=col(sampling("top_a", 0.0)),
            tfs=col(sampling("tfs", 1.0)),
            xtc_threshold=col(sampling("xtc_threshold", 0.1)),
            xtc_probability=torch.tensor(sampling("xtc_probability", 0.0), dtype=torch.float64, device=device),
            mirostat=torch.tensor([m == 2 for m in sampling("mirostat", 0)], dtype=torch.bool, device=device),
            mirostat_tau=col(sampling("mirostat_tau", 5.0), torch.float64),
            mirostat_eta=col(sampling("mirostat_eta", 0.1), torch.float64),
            seed=torch.tensor([p.seed for p in params], dtype=torch.long, device=device),
            sample_index=torch.tensor(list(sample_indices) if sample_indices is not None else [0] * len(params),
                                      dtype=torch.long, device=device),
        )

    def select(self, keep: torch.Tensor) -> "RowParams":
        """The same parameters for the rows `keep` only (finished rows leave the batch)."""
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "eos_mask":
                continue
            changes[f.name] = value.select(keep) if isinstance(value, BiasTable) else value[keep]
        return replace(self, **changes)


@dataclass
class DecodeState:
    """What the processors need to know about each row's tokens so far; rebuilt exactly by `start` for replays."""

    tokens: torch.Tensor  # [B, L] prompt + generated tokens
    prompt_len: int
    seen: torch.Tensor  # [B, V] bool: token occurs in prompt or output (repetition penalty)
    counts: torch.Tensor  # [B, V] float32: occurrences in the generated output (presence/frequency)
    # [B] float64: total surprise (bits) of the generated tokens under the final distributions they were drawn
    # from; mirostat's mu is a function of it. None means zeros (no token recorded with its log-probability).
    surprise_bits: torch.Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        if self.surprise_bits is None:
            self.surprise_bits = torch.zeros(self.tokens.shape[0], dtype=torch.float64, device=self.tokens.device)

    @property
    def step(self) -> int:
        """Number of tokens generated so far."""
        return self.tokens.shape[1] - self.prompt_len

    @staticmethod
    def start(prompt: torch.Tensor, vocab_size: int, generated: torch.Tensor | None = None,
              final_logprobs: torch.Tensor | None = None) -> "DecodeState":
        """State before the next token, given prompt [B, P] and optionally generated tokens [B, G] with the
        log-probabilities [B, G] each had under its final distribution (a run's `final_logprobs`, which
        mirostat's state is rebuilt from: the same float32 values summed in the same order as the run did).

        A prompt may be left-padded with -1 (rows with prompts of different lengths): padding is never "seen".
        """
        batch = prompt.shape[0]
        seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=prompt.device)
        if bool((prompt < 0).any()):
            hits = torch.zeros(batch, vocab_size, dtype=torch.int32, device=prompt.device)
            hits.scatter_add_(1, prompt.clamp(min=0), (prompt >= 0).to(torch.int32))
            seen = hits > 0
        else:
            seen.scatter_(1, prompt, True)
        counts = torch.zeros(batch, vocab_size, dtype=torch.float32, device=prompt.device)
        state = DecodeState(prompt, prompt.shape[1], seen, counts)
        if generated is not None:
            for t in range(generated.shape[1]):
                state.append(generated[:, t], None if final_logprobs is None else final_logprobs[:, t])
        return state

    def append(self, next_tokens: torch.Tensor, final_logprobs: torch.Tensor | None = None) -> None:
        """Record the tokens [B] just chosen, and their log-probabilities [B] under the final distribution
        (nats; mirostat's feedback: without them its mu stays at 2 * tau)."""
        self.tokens = torch.cat([self.tokens, next_tokens[:, None]], dim=1)
        self.seen.scatter_(1, next_tokens[:, None], True)
        self.counts.scatter_add_(1, next_tokens[:, None], torch.ones_like(next_tokens[:, None], dtype=torch.float32))
        if final_logprobs is not None:
            self.surprise_bits = self.surprise_bits - final_logprobs.to(torch.float64) / math.log(2)

    def select(self, keep: torch.Tensor) -> "DecodeState":
        return DecodeState(self.tokens[keep], self.prompt_len, self.seen[keep], self.counts[keep],
                           self.surprise_bits[keep])


# ----------------------------------------------------------------------------------------------------------
# The processors. Each: (scores [B, V], state, rows) -> new scores [B, V]; `active` says which rows it changes.


def sequence_bias(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    return scores + rows.sequence_bias.bias(state.tokens)


def bad_words(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    return scores + rows.bad_words.bias(state.tokens)


def repetition_penalty(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # transformers: divide positive logits, multiply negative ones, for every token in prompt + output
    p = rows.repetition_penalty
    penalized = torch.where(scores < 0, scores * p, scores / p)
    return torch.where(state.seen, penalized, scores)


def presence_penalty(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # OpenAI: subtract a flat amount from every token already generated
    return scores - rows.presence_penalty * (state.counts > 0)


def frequency_penalty(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # OpenAI: subtract an amount proportional to how often the token was generated
    return scores - rows.frequency_penalty * state.counts


def no_repeat_ngram(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Ban every token that would complete an n-gram already present in the row (prompt + output)."""
    tokens = state.tokens  # [B, L]
    batch, length = tokens.shape
    n = rows.no_repeat_ngram_size  # [B]
    max_n = int(n.max())
    padded = torch.nn.functional.pad(tokens, (0, max_n), value=-1)  # [B, L + max_n]
    start = torch.arange(length, device=tokens.device)  # candidate n-gram starts i
    # the n-gram starting at i repeats the last n-1 tokens when tokens[i + j] == tokens[L - n + 1 + j] for j < n-1
    matches = start[None, :] <= (length - n)[:, None]  # [B, L]: the n-gram fits before the end
    for j in range(max_n - 1):
        suffix = tokens.gather(1, (length - n + 1 + j).clamp(0, length - 1)[:, None])  # [B, 1]
        same = padded[:, j:j + length] == suffix
        matches &= same | (j >= n - 1)[:, None]
    banned = padded.gather(1, (start[None, :] + n[:, None] - 1).clamp(min=0))  # [B, L] token completing each n-gram
    banned = torch.where(matches & (n > 0)[:, None], banned, scores.shape[1])  # non-matches go to a spare column
    mask = torch.zeros(batch, scores.shape[1] + 1, dtype=torch.bool, device=scores.device)
    mask.scatter_(1, banned, True)
    return scores.masked_fill(mask[:, :-1], NEG_INF)


def min_new_tokens(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    too_short = (state.step < rows.min_new_tokens)[:, None]  # [B, 1]
    return torch.where(too_short & rows.eos_mask[None, :], NEG_INF, scores)


def temperature(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    return scores / rows.temperature


def top_k(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    k = rows.top_k.clamp(1, scores.shape[1])  # [B]
    top_values = torch.topk(scores, int(k.max()), dim=-1).values  # [B, kmax], descending
    kth = top_values.gather(1, (k - 1)[:, None])  # [B, 1]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Keep the smallest top set whose mass reaches top_p (transformers' TopPLogitsWarper, batched).

    transformers sorts the whole vocabulary ascending and removes tokens whose cumulative probability is
    <= 1 - top_p. On the CPU that cumulative sum is accumulated in float64, so for a token near the top it
    equals (total mass - mass above it) computed in float64: the top candidates from one topk decide the cut,
    without sorting 49k entries per row. Rows whose cut is not inside the candidates, or falls between two
    tokens of exactly equal probability (where the full sort's tie order decides), take the full sort.
    """
    threshold = (1 - rows.top_p).to(scores.dtype)  # float64 arithmetic then float32, like a Python float
    probs = scores.softmax(dim=-1)
    k = min(_TOP_P_CANDIDATES, scores.shape[1])
    top_probs, top_ids = probs.topk(k, dim=-1)  # [B, k] descending
    top64 = top_probs.double()
    mass_up_to = (probs.double().sum(-1, keepdim=True) - (top64.cumsum(-1) - top64)).to(scores.dtype)
    remove_top = mass_up_to <= threshold  # [B, k]; monotone: kept tokens form a prefix
    remove_top[:, 0] = False  # keep at least one token
    kept = (~remove_top).sum(-1)  # [B]
    boundary = kept.clamp(max=k - 1)
    tie = top_probs.gather(1, (kept - 1)[:, None])[:, 0] == top_probs.gather(1, boundary[:, None])[:, 0]
    exact = remove_top[:, -1] & ~tie  # the cut is inside the candidates and not between equal tokens
    remove = torch.ones_like(scores, dtype=torch.bool).scatter(1, top_ids, remove_top)
    if not bool(exact.all()):
        slow = (~exact).nonzero()[:, 0]
        remove[slow] = _top_p_full_sort(scores[slow], threshold[slow])
    return scores.masked_fill(remove, NEG_INF)


_TOP_P_CANDIDATES = 256


def _top_p_full_sort(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """transformers' own computation: [b, V] scores -> [b, V] remove mask."""
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= threshold
    remove_sorted[:, -1] = False  # keep at least one token
    return remove_sorted.scatter(1, sorted_indices, remove_sorted)


def min_p(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    probs = scores.softmax(dim=-1)
    top_prob = probs.amax(dim=-1, keepdim=True)
    remove = probs < rows.min_p * top_prob
    remove.scatter_(1, probs.argmax(dim=-1, keepdim=True), False)  # keep at least the top token
    return scores.masked_fill(remove, NEG_INF)


def typical_p(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # keep the tokens whose surprisal is closest to the entropy, until their mass reaches typical_p
    normalized = torch.log_softmax(scores, dim=-1)
    p = torch.exp(normalized)
    entropy = -(normalized * p).nansum(-1, keepdim=True)
    shifted = torch.abs(-normalized - entropy)
    sorted_scores, sorted_indices = torch.sort(shifted, descending=False)
    cumulative = scores.gather(-1, sorted_indices).softmax(dim=-1).cumsum(dim=-1)
    last_ind = (cumulative < rows.typical_p).sum(dim=1).clamp(max=scores.shape[1] - 1)
    remove_sorted = sorted_scores > sorted_scores.gather(1, last_ind[:, None])
    remove_sorted[:, 0] = False
    remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
    return scores.masked_fill(remove, NEG_INF)


def epsilon_cutoff(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    probs = scores.softmax(dim=-1)
    remove = (probs < rows.epsilon_cutoff) & (scores < scores.amax(dim=-1, keepdim=True))
    return scores.masked_fill(remove, NEG_INF)


def eta_cutoff(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # eta = min(epsilon, sqrt(epsilon) * exp(-entropy)), entropy computed as torch.distributions.Categorical does
    probs = scores.softmax(dim=-1)
    logp = (scores - scores.logsumexp(dim=-1, keepdim=True)).clamp(min=torch.finfo(scores.dtype).min)
    entropy = -(logp * logp.softmax(dim=-1)).sum(-1, keepdim=True)
    eps = rows.eta_cutoff
    eta = torch.minimum(eps, torch.sqrt(eps) * torch.exp(-entropy))
    remove = (probs < eta) & (scores < scores.amax(dim=-1, keepdim=True))
    return scores.masked_fill(remove, NEG_INF)


# ----------------------------------------------------------------------------------------------------------
# The community samplers (text-generation-webui, llama.cpp). Each follows its source's definition for one row;
# tests/test_samplers.py compares every one with a plain one-row-at-a-time reference.

DRY_MAX_MATCH = 50  # text-generation-webui stops extending a match at 50 tokens (base^length would overflow)


def dry(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """DRY, "Don't Repeat Yourself" (p-e-w, text-generation-webui PR #5677; llama.cpp `llama_sampler_dry`).

    For every earlier occurrence i of the row's last token, the match length is how far the text ending at i
    equals the text ending now (at most DRY_MAX_MATCH tokens, never through a sequence breaker). The token that
    followed i would extend the repeat: it loses multiplier * base^(length - allowed_length) from its logit when
    length >= allowed_length (its longest match counts). Prompt and output are searched alike.
    """
    tokens = state.tokens  # [B, L]; prompt padding is -1, which the breaker list's own padding matches
    length = tokens.shape[1]
    if length < 2:
        return scores
    breaker = (tokens[:, :, None] == rows.dry_breakers[:, None, :]).any(-1) | (tokens < 0)  # [B, L]
    # alive[:, i]: the text ending at i (i < L-1) still equals the text ending at L-1, t+1 tokens back
    alive = (tokens[:, :-1] == tokens[:, -1:]) & ~breaker[:, -1:]  # [B, L-1], t = 0
    match_len = alive.to(torch.long)  # [B, L-1]
    for t in range(1, min(DRY_MAX_MATCH, length - 1)):
        if not bool(alive.any()):
            break
        # position i - t against position L-1-t (only i >= t has one), and no breaker at L-1-t
        same = (tokens[:, :length - 1 - t] == tokens[:, length - 1 - t:length - t]) & ~breaker[:, length - 1 - t:length - t]
        alive = alive & torch.nn.functional.pad(same, (t, 0), value=False)
        match_len += alive
    following = tokens[:, 1:]  # [B, L-1]: the token after each i
    allowed = rows.dry_allowed_length  # [B, 1]
    penalized = (match_len >= allowed) & (match_len > 0) & ~breaker[:, 1:]  # [B, L-1]
    exponent = (match_len - allowed).clamp(min=0).to(torch.float64)
    penalty = torch.where(penalized, rows.dry_multiplier * rows.dry_base ** exponent, 0.0).to(scores.dtype)
    # the penalty grows with the match length, so a token's largest penalty is that of its longest match
    per_token = torch.zeros(scores.shape[0], scores.shape[1] + 1, dtype=scores.dtype, device=scores.device)
    per_token.scatter_reduce_(1, torch.where(penalized, following, scores.shape[1]), penalty, "amax")
    return torch.where(per_token[:, :-1] > 0, scores - per_token[:, :-1], scores)


def dynatemp(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Dynamic temperature (text-generation-webui's DynamicTemperatureLogitsWarper; llama.cpp `temp_ext`).

    T = low + (high - low) * (H / H_max)^exponent, with H the entropy of the current distribution and H_max
    the log of the number of tokens not yet removed (logit > -inf); both guarded at 1e-10 as the source does.
    A confident step (low entropy) gets a temperature near dynatemp_low, an uncertain one near dynatemp_high.
    """
    log_probs = torch.log_softmax(scores, dim=-1)
    probs = log_probs.exp()
    entropy = (-torch.where(probs > 0, probs * log_probs, 0.0).sum(-1, keepdim=True)).clamp(min=1e-10)  # [B, 1]
    max_entropy = (scores > NEG_INF).sum(-1, keepdim=True).to(torch.float64).log()  # [B, 1]
    max_entropy = torch.where(max_entropy > 0, max_entropy, 1e-10).to(scores.dtype)
    low, high = rows.dynatemp_low, rows.dynatemp_high
    temperature = low + (high - low) * (entropy / max_entropy).pow(rows.dynatemp_exponent)  # [B, 1]
    return scores / temperature


def top_n_sigma(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Top-nσ (Tang et al. 2024, "Top-nσ: Not All Logits Are You Need"; llama.cpp `llama_sampler_top_n_sigma`).

    Keep the tokens whose logit is >= max - n * σ, σ the standard deviation (population) of the finite logits.
    The cut lives in logit space, so it does not move with the temperature. Mean and σ in float64.
    """
    finite = scores > NEG_INF  # [B, V]
    count = finite.sum(-1, keepdim=True).clamp(min=1)  # [B, 1]
    values = torch.where(finite, scores, 0.0).to(torch.float64)
    mean = values.sum(-1, keepdim=True) / count
    variance = torch.where(finite, values - mean, 0.0).square().sum(-1, keepdim=True) / count
    threshold = scores.amax(-1, keepdim=True).to(torch.float64) - rows.top_n_sigma * variance.sqrt()  # [B, 1]
    return scores.masked_fill(scores.to(torch.float64) < threshold, NEG_INF)


def top_a(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Top-a (BlinkDL; text-generation-webui's TopALogitsWarper): drop tokens with p < top_a * p_max^2.

    The cut rises with the square of the top probability: strict when the model is sure, loose when it is not.
    The top token always stays (p_max >= p_max^2 * top_a for top_a <= 1).
    """
    probs = scores.softmax(dim=-1)
    top = probs.amax(dim=-1, keepdim=True)  # [B, 1]
    return scores.masked_fill(probs < top * top * rows.top_a, NEG_INF)


def tfs(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Tail-free sampling (Trenton Bricken 2019; text-generation-webui's TailFreeLogitsWarper).

    Sort the probabilities, take the absolute second differences, normalise them to sum 1 and accumulate:
    tokens past the point where that sum exceeds z are the tail and go. As in the source, the first token
    always stays and the last always goes ("centred around the cutoff"). Ties sort by token id (stable).
    """
    sorted_logits, order = torch.sort(scores, dim=-1, descending=True, stable=True)  # [B, V]
    probs = sorted_logits.softmax(dim=-1)
    curvature = probs.diff(dim=-1).diff(dim=-1).abs()  # [B, V-2]
    cdf = (curvature / curvature.sum(-1, keepdim=True)).cumsum(dim=-1)  # NaN when flat: keeps those tokens
    batch = scores.shape[0]
    remove_sorted = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=scores.device), cdf > rows.tfs,
                               torch.ones(batch, 1, dtype=torch.bool, device=scores.device)], dim=-1)
    return scores.masked_fill(remove_sorted.scatter(1, order, remove_sorted), NEG_INF)


def xtc(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """XTC, "Exclude Top Choices" (p-e-w; text-generation-webui's XTCLogitsWarper, llama.cpp `llama_sampler_xtc`).

    With probability xtc_probability, decided per row and step, remove every token with p >= xtc_threshold
    except the least likely of them, when at least two reach the threshold: the obvious choices go, one viable
    choice stays. The decision comes from the row's own counter-based stream (seed, sample index, step) on a
    stream of its own, so it is reproducible and independent of the token draw. Among equally likely tokens
    at the threshold's bottom, the lowest token id stays.
    """
    act = row_uniform(row_keys(rows.seed, rows.sample_index, state.step), XTC_STREAM) < rows.xtc_probability  # [B]
    probs = scores.softmax(dim=-1)
    above = probs >= rows.xtc_threshold  # [B, V]
    least = torch.where(above, probs, math.inf).argmin(dim=-1, keepdim=True)  # [B, 1]
    remove = above & (act & (above.sum(-1) >= 2))[:, None]
    remove.scatter_(1, least, False)
    return scores.masked_fill(remove, NEG_INF)


def mirostat(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Mirostat v2 (Basu et al. 2021, Algorithm 2; llama.cpp `llama_sampler_mirostat_v2`).

    Drop the tokens whose surprise -log2 p exceeds mu (the top token always stays); after each choice mu moves
    by -eta * (surprise of the chosen token - tau), starting from 2 * tau, so the text's surprise tracks tau.
    The chosen token's surprise is taken under the final distribution (with mirostat last, its own truncated
    and renormalised one, as in llama.cpp); DecodeState sums it, so mu = 2 tau - eta * (sum - steps * tau).
    """
    tau, eta = rows.mirostat_tau, rows.mirostat_eta  # [B, 1] float64
    mu = (2 * tau - eta * (state.surprise_bits[:, None] - state.step * tau)).to(scores.dtype)  # [B, 1]
    surprise = -torch.log_softmax(scores, dim=-1) / math.log(2)  # [B, V] bits
    remove = surprise > mu
    remove.scatter_(1, scores.argmax(dim=-1, keepdim=True), False)  # keep at least the top token
    return scores.masked_fill(remove, NEG_INF)


ProcessorFn = Callable[[torch.Tensor, DecodeState, RowParams], torch.Tensor]


@dataclass(frozen=True)
class Processor:
    name: str
    apply: ProcessorFn
    active: Callable[[RowParams], torch.Tensor]  # [B] bool: rows whose value is not the disabled one
    doc: str
    # A sampling-only processor that reads a per-row part of DecodeState (not just the step count) must say so:
    # the pipeline cannot run it on a subset of the rows, since the state holds every row.
    per_row_state: bool = False


REGISTRY: dict[str, Processor] = {p.name: p for p in [
    Processor("sequence_bias", sequence_bias, lambda r: r.sequence_bias.active, "add a bias to chosen token sequences"),
    Processor("repetition_penalty", repetition_penalty, lambda r: r.repetition_penalty[:, 0] != 1.0,
              "shrink logits of tokens already in prompt or output"),
    Processor("presence_penalty", presence_penalty, lambda r: r.presence_penalty[:, 0] != 0.0,
              "subtract a flat penalty from tokens already generated"),
    Processor("frequency_penalty", frequency_penalty, lambda r: r.frequency_penalty[:, 0] != 0.0,
              "subtract a penalty proportional to each token's count so far"),
    Processor("no_repeat_ngram", no_repeat_ngram, lambda r: r.no_repeat_ngram_size > 0,
              "ban tokens that would repeat an n-gram"),
    Processor("bad_words", bad_words, lambda r: r.bad_words.active, "ban the listed words"),
    Processor("min_new_tokens", min_new_tokens, lambda r: r.min_new_tokens > 0, "forbid EOS before the minimum length"),
    Processor("temperature", temperature, lambda r: r.temperature[:, 0] != 1.0, "divide logits by the temperature"),
    Processor("top_k", top_k, lambda r: r.top_k > 0, "keep the k most likely tokens"),
    Processor("top_p", top_p, lambda r: r.top_p[:, 0] < 1.0, "keep the smallest set with mass >= top_p"),
    Processor("min_p", min_p, lambda r: r.min_p[:, 0] > 0.0, "drop tokens below min_p x the top probability"),
    Processor("typical_p", typical_p, lambda r: r.typical_p[:, 0] < 1.0, "keep locally typical tokens up to mass typical_p"),
    Processor("epsilon_cutoff", epsilon_cutoff, lambda r: r.epsilon_cutoff[:, 0] > 0.0,
              "drop tokens with probability below epsilon"),
    Processor("eta_cutoff", eta_cutoff, lambda r: r.eta_cutoff[:, 0] > 0.0, "drop tokens below an entropy-adapted cutoff"),
    Processor("dry", dry, lambda r: r.dry_multiplier[:, 0] != 0.0, "penalize the token that would extend a repeated sequence"),
    Processor("dynatemp", dynatemp, lambda r: (r.dynatemp_low[:, 0] != 1.0) | (r.dynatemp_high[:, 0] != 1.0),
              "divide logits by a temperature that follows the entropy"),
    Processor("top_n_sigma", top_n_sigma, lambda r: r.top_n_sigma[:, 0] > 0.0,
              "keep logits within n standard deviations of the top one"),
    Processor("top_a", top_a, lambda r: r.top_a[:, 0] > 0.0, "drop tokens below top_a x the top probability squared"),
    Processor("tfs", tfs, lambda r: r.tfs[:, 0] < 1.0, "tail-free: cut where the sorted probabilities flatten out"),
    Processor("xtc", xtc, lambda r: r.xtc_probability > 0.0, "sometimes remove every top choice but the least likely"),
    Processor("mirostat", mirostat, lambda r: r.mirostat, "keep tokens below a surprise cap that adapts toward tau",
              per_row_state=True),
]}
REGISTRY = {name: REGISTRY[name] for name in DEFAULT_ORDER}
assert tuple(REGISTRY) == DEFAULT_ORDER and SAMPLING_ONLY <= set(REGISTRY)


# ----------------------------------------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class PlannedStep:
    """One processor at one stage, for all rows (rows is None) or for the row indices `rows` only."""

    processor: Processor
    rows: torch.Tensor | None = None  # [b] row indices
    row_params: RowParams | None = None  # the parameters of just those rows (stateless processors only)


@dataclass(frozen=True)
class StagePlan:
    steps: tuple[PlannedStep, ...]


def plan_stages(rows: RowParams) -> list[StagePlan]:
    """Work out once (not every step) which processors each stage runs on which rows, skipping disabled ones.

    A sampling-only processor that reads no per-row state needs nothing but the scores and its parameters, so
    when only some rows use it, it runs on just those rows (a sort over 12 rows instead of 36); the others
    (penalties, mirostat) run on all rows and are masked.
    """
    plans = []
    for s in range(rows.order.shape[1]):
        steps = []
        for code in torch.unique(rows.order[:, s]).tolist():
            processor = REGISTRY[DEFAULT_ORDER[code]]
            mask = (rows.order[:, s] == code) & processor.active(rows)
            if bool(mask.all()):
                steps.append(PlannedStep(processor))
            elif bool(mask.any()):
                index = mask.nonzero()[:, 0]
                subset = rows.select(index) if processor.name in SAMPLING_ONLY and not processor.per_row_state else None
                steps.append(PlannedStep(processor, index, subset))
        plans.append(StagePlan(tuple(steps)))
    return plans


def _run(step: PlannedStep, scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    if step.rows is None:
        return step.processor.apply(scores, state, rows)
    if step.row_params is not None:  # stateless: compute the selected rows only
        return scores.index_copy(0, step.rows, step.processor.apply(scores[step.rows], state, step.row_params))
    mask = torch.zeros(scores.shape[0], 1, dtype=torch.bool, device=scores.device)
    mask[step.rows] = True
    return torch.where(mask, step.processor.apply(scores, state, rows), scores)


# on_stage(stage index, scores after it, whether it changed anything for any row)
StageCallback = Callable[[int, torch.Tensor, bool], None]


def apply_pipeline(scores: torch.Tensor, state: DecodeState, rows: RowParams,
                   plans: list[StagePlan] | None = None, on_stage: StageCallback | None = None) -> torch.Tensor:
    """Run every row's processors in that row's order. scores: [B, V] raw logits -> [B, V] final scores."""
    for s, plan in enumerate(plans if plans is not None else plan_stages(rows)):
        for step in plan.steps:
            scores = _run(step, scores, state, rows)
        if on_stage is not None:
            on_stage(s, scores, bool(plan.steps))
    return scores
