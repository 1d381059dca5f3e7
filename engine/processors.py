"""Vectorized per-row logits processors, their registry and the pipeline that applies them in each row's order.

Every processor maps scores [B, V] to new scores [B, V] (never in place) using per-row parameter tensors, so
one batch can mix settings. For each processor that transformers has, a row's result equals transformers' own
LogitsProcessor applied to that row alone with the scalar value (tests/test_processors.py proves it).
The per-row tensors and state live in engine/rowstate.py, the community samplers in engine/samplers.py.
A row whose value is the disabled one is left exactly as it was (the pipeline masks it out).

    >>> rows = RowParams.build([SamplingParams(top_k=2), SamplingParams()], eos_token_ids=[0], vocab_size=4)
    >>> state = DecodeState.start(torch.tensor([[1, 2]]).expand(2, -1), vocab_size=4)
    >>> apply_pipeline(torch.tensor([[1., 2., 3., 4.]] * 2), state, rows)
    tensor([[-inf, -inf, 3., 4.],
            [1., 2., 3., 4.]])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import samplers, watermark as wm
from .knobs import KNOBS, PROCESSORS, ProcessorSpec
from .order import DEFAULT_ORDER
from .rowstate import NEG_INF, BiasTable, DecodeState, RowParams, TokenSet, as_column


# ----------------------------------------------------------------------------------------------------------
# The processors. Each: (scores [B, V], state, rows) -> new scores [B, V]; `active` says which rows it changes.


def guidance(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Classifier-free guidance (transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor, batched):
    g x (log_softmax(scores) - log_softmax(uncond)) + log_softmax(uncond), where uncond [B, V] are the raw
    next-token logits of the row's unconditional companion (state.unconditional_logits: the negative prompt, or
    the prompt's last token, followed by the row's tokens so far), decoded in the same batch forward.

    Beyond transformers (which can give NaN there): a token removed before this stage (-inf) stays removed (at
    g = 0 transformers' 0 x -inf is NaN), a token the unconditional branch rules out (-inf) is removed, and a row
    with nothing left stays as it is."""
    uncond_logits = state.unconditional_logits
    if uncond_logits is None:
        raise RuntimeError("guidance needs the unconditional logits of the step (DecodeState.unconditional_logits)")
    cond = torch.log_softmax(scores, dim=-1)
    uncond = torch.log_softmax(uncond_logits, dim=-1)
    mixed = rows.guidance_scale * (cond - uncond) + uncond
    removed = (cond == NEG_INF) | (uncond == NEG_INF) | torch.isnan(mixed)
    mixed = mixed.masked_fill(removed, NEG_INF)
    empty = scores.amax(dim=-1, keepdim=True) == NEG_INF  # [B, 1]
    return torch.where(empty, scores, mixed)


def sequence_bias(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    return scores + rows.sequence_bias.bias(state.tokens)


def diversity_penalty(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Diverse beam search (Vijayakumar et al. 2016; transformers 4.x HammingDiversityLogitsProcessor):
    subtract penalty x how many beams of the earlier groups chose each token at this step."""
    if state.peer_counts is None:  # not inside a group step: nothing chosen yet by other groups
        return scores
    return scores - rows.diversity_penalty * state.peer_counts


def bad_words(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    return scores + rows.bad_words.bias(state.tokens)


def repetition_penalty(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # transformers: divide positive logits, multiply negative ones, for every token in prompt + output
    p = rows.repetition_penalty
    penalized = torch.where(scores < 0, scores * p, scores / p)
    return torch.where(state.seen, penalized, scores)


def encoder_repetition_penalty(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' EncoderRepetitionPenaltyLogitsProcessor with the prompt as the "encoder" input: the prompt's
    tokens are scaled by 1 / penalty the other way round from repetition_penalty (> 1 favours them)."""
    prompt = state.tokens[:, :state.prompt_len]  # [B, P], left padding is -1
    hits = torch.zeros(scores.shape, dtype=torch.int32, device=scores.device)
    in_prompt = hits.scatter_add_(1, prompt.clamp(min=0), (prompt >= 0).to(torch.int32)) > 0  # [B, V]
    inverse = (1.0 / rows.encoder_repetition_penalty).to(scores.dtype)  # 1 / p in float64, as Python computes it
    penalized = torch.where(scores < 0, scores * inverse, scores / inverse)
    return torch.where(in_prompt, penalized, scores)


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
    too_short = (state.row_step < rows.min_new_tokens)[:, None]  # [B, 1]
    # only the end-of-text columns change: one copy of the scores instead of a [B, V] mask and a where over them
    eos = rows.eos_ids  # [E]
    out = scores.clone()
    out[:, eos] = torch.where(too_short, NEG_INF, scores[:, eos])  # [B, E]
    return out


def forced_bos(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' ForcedBOSTokenLogitsProcessor: at the first new token every score is -inf but that of
    forced_bos_token_id, which is 0. (transformers fires when the decoder's input is one token long, i.e. at the
    first new token of an encoder-decoder model; here it is the first new token of any model.)"""
    return _forced(scores, rows.forced_bos_token_id, as_column(state.row_step == 0))


def forced_eos(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' ForcedEOSTokenLogitsProcessor: at the token that reaches max_length (prompt + max_new_tokens),
    i.e. the row's last new token, every score is -inf but that of forced_eos_token_id, which is 0."""
    last = (state.row_step == rows.max_new_tokens - 1)[:, None]  # [B, 1]
    return _forced(scores, rows.forced_eos_token_id, last)


def _forced(scores: torch.Tensor, token: torch.Tensor, when: torch.Tensor | bool) -> torch.Tensor:
    """scores [B, V]; token [B, 1] (-1: off); when [B, 1] or a bool -> only `token` left, at 0, where `when`."""
    forced = torch.full_like(scores, NEG_INF).scatter_(1, token.clamp(min=0), 0.0)  # [B, V]
    return torch.where((token >= 0) & when, forced, scores)


def suppress_tokens(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' SuppressTokensLogitsProcessor: the listed tokens are -inf at every step."""
    return scores.masked_fill(rows.suppress_tokens.mask(scores.shape[1]), NEG_INF)


def begin_suppress_tokens(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' SuppressTokensAtBeginLogitsProcessor with begin_index = the prompt's length: the listed tokens
    are -inf at the first new token only."""
    first = as_column(state.row_step == 0)  # [B, 1] or a bool (the rows started together)
    if first is False:
        return scores
    return scores.masked_fill(rows.begin_suppress_tokens.mask(scores.shape[1]) & first, NEG_INF)


def exponential_decay(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' ExponentialDecayLengthPenalty: past `start` new tokens, each end-of-text logit s becomes
    s + |s| x (factor^(step - start) - 1) (factor^n in float64, as Python's pow, then float32)."""
    past = (state.row_step - rows.exponential_decay_start)[:, None]  # [B, 1] tokens past the start
    growth = (rows.exponential_decay_factor ** past.clamp(min=0) - 1).to(scores.dtype)  # [B, 1]
    penalty = scores.abs() * growth
    penalized = scores + torch.where(torch.isfinite(scores), penalty, 0.0)
    return torch.where((past > 0) & rows.eos_mask[None, :], penalized, scores)


def temperature(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    return scores / rows.temperature


def top_h(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' TopHLogitsWarper, batched: among the top 100 tokens, keep the most likely ones while their
    cumulative entropy terms -p log p stay within top_h x the entropy of those 100 (at least the top one)."""
    top_logits, top_ids = torch.topk(scores, min(_TOP_H_CANDIDATES, scores.shape[1]), dim=-1)  # [B, n] descending
    # a row whose earlier stages removed every token has no distribution (Categorical refuses all -inf): it stays
    empty = top_logits[:, :1] == NEG_INF  # [B, 1]
    top_logits = torch.where(empty, torch.zeros_like(top_logits), top_logits)
    dist = torch.distributions.Categorical(logits=top_logits)
    probs = dist.probs
    tau = dist.entropy()[:, None] * rows.top_h  # [B, 1]
    keep_top = torch.cumsum(-probs * torch.log(probs), dim=-1) <= tau  # [B, n]
    keep_top[:, 0] = True
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top_ids, keep_top)
    return torch.where(empty, scores, scores.masked_fill(~keep, NEG_INF))


_TOP_H_CANDIDATES = 100  # transformers' top_n: the entropy is that of the 100 most likely tokens


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
    total = probs.double().sum(-1, keepdim=True)  # [B, 1]
    # the fewest candidates first (a top-32 costs a third of a top-256); a row whose cut lies beyond them tries more.
    # The candidates' order and cumulative sums are prefixes of any larger topk's, so the cut is the same
    remove, exact = _top_p_cut(probs, total, threshold, _TOP_P_CANDIDATES[0])
    slow = None
    for k in _TOP_P_CANDIDATES[1:]:
        if bool(exact.all()):
            break
        slow = (~exact).nonzero()[:, 0] if slow is None else slow[~exact]
        remove[slow], exact = _top_p_cut(probs[slow], total[slow], threshold[slow], k)
    if not bool(exact.all()):
        slow = (~exact).nonzero()[:, 0] if slow is None else slow[~exact]
        remove[slow] = _top_p_full_sort(scores[slow], threshold[slow])
    return scores.masked_fill(remove, NEG_INF)


_TOP_P_CANDIDATES = (32, 256)


def _top_p_cut(probs: torch.Tensor, total: torch.Tensor, threshold: torch.Tensor, k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """top_p's cut among the k most likely tokens: probs [b, V], total [b, 1] their float64 sum, threshold [b, 1]
    -> (remove [b, V], exact [b]: the cut is inside the candidates and not between two equal tokens)."""
    k = min(k, probs.shape[1])
    top_probs, top_ids = probs.topk(k, dim=-1)  # [b, k] descending
    top64 = top_probs.double()
    mass_up_to = (total - (top64.cumsum(-1) - top64)).to(probs.dtype)
    remove_top = mass_up_to <= threshold  # [b, k]; monotone: kept tokens form a prefix
    remove_top[:, 0] = False  # keep at least one token
    kept = (~remove_top).sum(-1)  # [b]
    boundary = kept.clamp(max=k - 1)
    tie = top_probs.gather(1, (kept - 1)[:, None])[:, 0] == top_probs.gather(1, boundary[:, None])[:, 0]
    exact = remove_top[:, -1] & ~tie
    return torch.ones_like(probs, dtype=torch.bool).scatter_(1, top_ids, remove_top), exact


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


def watermark(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' WatermarkLogitsProcessor, per row: +watermark_bias on the row's green list, drawn from its
    previous token (lefthash) or its last tokens and each of its 40 most likely candidates (selfhash); a row with
    fewer tokens than watermark_context_width is left alone (engine/watermark.py)."""
    return wm.green_bias(scores, state.tokens, rows.watermark_bias, rows.watermark_greenlist_ratio,
                         rows.watermark_hashing_key, rows.watermark_selfhash, rows.watermark_context_width)


def synthid(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """transformers' SynthIDTextWatermarkLogitsProcessor, per row: the scores become the watermarked
    log-probabilities, the context and its history taken from the row's generated tokens (engine/watermark.py)."""
    return wm.synthid(scores, state.tokens, state.prompt_len, rows.synthid_keys)


def renormalize(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    # transformers' LogitNormalization: the final scores as log-probabilities. A row whose earlier stages removed
    # every token stays all -inf (log_softmax would make it NaN, which no later check reads as "nothing left")
    empty = scores.amax(dim=-1, keepdim=True) == float("-inf")  # [b, 1]
    return torch.where(empty, scores, scores.log_softmax(dim=-1))


ProcessorFn = Callable[[torch.Tensor, DecodeState, RowParams], torch.Tensor]


@dataclass(frozen=True)
class Processor:
    """A processor's spec (engine/knobs.py) and its function."""

    spec: ProcessorSpec
    apply: ProcessorFn

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def doc(self) -> str:
        return self.spec.help

    @property
    def per_row_state(self) -> bool:
        return self.spec.per_row_state

    def active(self, rows: RowParams) -> torch.Tensor:
        """[B] bool: the rows whose switch fields are not all at their off value (the others it leaves alone)."""
        on = torch.zeros_like(rows.greedy)
        for name in self.spec.switch_names():
            value = getattr(rows, name)
            if isinstance(value, (BiasTable, TokenSet, wm.SynthIDTable)):
                on = on | value.active
            else:
                on = on | (value != KNOBS[name].default).reshape(-1)
        return on


def _function(name: str) -> ProcessorFn:
    """A processor's function: the one named after it here or in engine/samplers.py."""
    fn = globals().get(name) or getattr(samplers, name, None)
    if not callable(fn):
        raise RuntimeError(f"processor {name!r} is declared in engine/knobs.py but has no function named {name}")
    return fn


REGISTRY: dict[str, Processor] = {spec.name: Processor(spec, _function(spec.name)) for spec in PROCESSORS}
assert tuple(REGISTRY) == DEFAULT_ORDER


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
    # [b] the row indices the stage may change (its processors are on there); None: any row. A row outside it leaves
    # the stage with exactly its input scores, so the trace summarises only these rows again
    changed: torch.Tensor | None = None

    def __bool__(self) -> bool:
        """Whether the stage runs anything at all."""
        return bool(self.steps)


# Processors that leave a row's scores exactly as they are at their off value, so running them on every row (one
# pass) equals running them on the rows that use them only (a gather, the pass, and a copy back): x / 1.0 == x
_IDENTITY_WHEN_OFF = frozenset({"temperature"})


def plan_stages(rows: RowParams) -> list[StagePlan]:
    """Work out once (not every step) which processors each stage runs on which rows, skipping disabled ones.

    A sampling-only processor that reads no per-row state needs nothing but the scores and its parameters, so
    when only some rows use it, it runs on just those rows (a sort over 12 rows instead of 36); the others
    (penalties, mirostat) run on all rows and are masked.
    """
    plans = []
    active: dict[str, torch.Tensor] = {}  # processor name -> [B] bool, once per plan rather than once per stage
    for s in range(rows.order.shape[1]):
        steps = []
        changed = torch.zeros_like(rows.greedy)  # [B]
        for code in torch.unique(rows.order[:, s]).tolist():
            processor = REGISTRY[DEFAULT_ORDER[code]]
            if processor.name not in active:
                active[processor.name] = processor.active(rows)
            here = rows.order[:, s] == code  # [B]
            mask = here & active[processor.name]
            changed |= mask
            if bool(mask.all()) or (processor.name in _IDENTITY_WHEN_OFF and bool(here.all()) and bool(mask.any())):
                steps.append(PlannedStep(processor))
            elif bool(mask.any()):
                index = mask.nonzero()[:, 0]
                subset = rows.select(index) if processor.spec.sampling_only and not processor.per_row_state else None
                steps.append(PlannedStep(processor, index, subset))
        plans.append(StagePlan(tuple(steps), None if bool(changed.all()) else changed.nonzero()[:, 0]))
    return plans


def _run(step: PlannedStep, scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    if step.rows is None:
        return step.processor.apply(scores, state, rows)
    # stateless: compute the selected rows only (not once rows joined mid-run: XTC's noise reads each row's own
    # step, a [B] tensor over every row)
    if step.row_params is not None and state.begun is None:
        return scores.index_copy(0, step.rows, step.processor.apply(scores[step.rows], state, step.row_params))
    mask = torch.zeros(scores.shape[0], 1, dtype=torch.bool, device=scores.device)
    mask[step.rows] = True
    return torch.where(mask, step.processor.apply(scores, state, rows), scores)


# on_stage(stage index, scores after it, the stage's plan: false when it ran nothing, .changed the rows it may change)
StageCallback = Callable[[int, torch.Tensor, StagePlan], None]


def apply_pipeline(scores: torch.Tensor, state: DecodeState, rows: RowParams,
                   plans: list[StagePlan] | None = None, on_stage: StageCallback | None = None) -> torch.Tensor:
    """Run every row's processors in that row's order. scores: [B, V] raw logits -> [B, V] final scores."""
    for s, plan in enumerate(plans if plans is not None else plan_stages(rows)):
        for step in plan.steps:
            scores = _run(step, scores, state, rows)
        if on_stage is not None:
            on_stage(s, scores, plan)
    return scores
