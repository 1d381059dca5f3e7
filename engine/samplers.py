"""The community samplers (text-generation-webui, llama.cpp): DRY, dynamic temperature, top-nσ, top-a,
tail-free, XTC and mirostat v2, vectorized per row like the transformers-equivalent processors.

Each follows its source's definition for one row; tests/test_samplers.py compares every one with a plain
one-row-at-a-time reference. They are registered, and ordered, in engine/processors.py.
"""
from __future__ import annotations

import math

import torch

from .rowstate import NEG_INF, DecodeState, RowParams, as_column
from .sampling import XTC_STREAM, row_keys, row_uniform

DRY_MAX_MATCH = 50  # text-generation-webui stops extending a match at 50 tokens (base^length would overflow)


def dry(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """DRY, "Don't Repeat Yourself" (p-e-w, text-generation-webui PR #5677; llama.cpp `llama_sampler_dry`), with
    each row's `dry_mode`: "webui" (text-generation-webui's rules) or "llama.cpp" (llama.cpp's)."""
    llama = rows.dry_restarts.llama  # [B] bool
    if state.tokens.shape[1] < 2 or not bool(llama.any()):
        return _dry_webui(scores, state, rows)
    ours = _dry_llama_cpp(scores, state, rows)
    return ours if bool(llama.all()) else torch.where(llama[:, None], ours, _dry_webui(scores, state, rows))


def _dry_webui(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """DRY with text-generation-webui's rules (its DRYLogitsProcessor, PR #5677 by p-e-w).

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


LLAMA_CPP_FLOAT_MAX_LOG = 88.7228391  # llama.cpp's bound on base^exponent: about log(FLT_MAX)


def _dry_llama_cpp(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """DRY with llama.cpp's rules (llama_sampler_dry_apply in src/llama-sampling.cpp), per row.

    1. The repeat limit: going back from the last token, the most recent breaker ends it. A breaker is a token
       whose text contains a breaker string, or a token ending with the start of a longer breaker followed by
       the tokens of its rest (engine.tokens.restart_sequences); the limit is the number of tokens after it.
    2. For every earlier position i, how far the text ending at i equals the text ending now, capped at the
       limit (no other cap: llama.cpp's window, dry_penalty_last_n, is here the whole context; the work per step
       grows with the longest repeat, which the limit and the context bound).
    3. The token that followed i would extend that repeat: when the length n >= allowed_length it loses
       multiplier * base^(n - allowed_length) (its longest repeat counts), unless it is a breaker on its own;
       the exponent is capped at 88.7228391 / log(base) (base > 1.000001) so base^exponent stays finite.
       multiplier and base are llama.cpp's floats; the penalty is computed as C++'s std::pow does, in double.
    Prompt padding (-1) acts as the start of the row's text.
    """
    tokens = state.tokens  # [B, L]
    length = tokens.shape[1]
    table = rows.dry_restarts
    vocab = table.single.shape[1] - 1
    index = torch.where(tokens >= 0, tokens, vocab)  # padding -> the table's last column (a breaker)
    which = table.row[:, None]  # [B, 1]: the row's breaker table
    single = table.single[which, index]  # [B, L] bool
    matched = torch.where(single, 0, -1)  # [B, L]: the longest breaker sequence starting at each position
    for tail, heads in zip(table.tails, table.heads):
        size = tail.numel()
        if size >= length:
            continue
        starts = heads[which, index][:, :length - size]
        for j in range(size):
            starts = starts & (tokens[:, 1 + j:length - size + 1 + j] == tail[j])
        starts = torch.nn.functional.pad(starts, (0, size), value=False)
        matched = torch.where(starts & (matched < size), size, matched)
    positions = torch.arange(length, device=tokens.device)
    last = torch.where(matched >= 0, positions, -1).amax(dim=-1)  # [B]: the most recent breaker's start
    limit = torch.where(last >= 0, length - 1 - last - matched.gather(1, last.clamp(min=0)[:, None])[:, 0],
                        length)[:, None]  # [B, 1]: tokens after the breaker (sequence)
    alive = (tokens[:, :-1] == tokens[:, -1:]) & (limit > 0)  # [B, L-1]
    match_len = alive.to(torch.long)
    t, most = 1, min(int(limit.max()), length - 1)
    while t < most and bool(alive.any()):
        same = tokens[:, :length - 1 - t] == tokens[:, length - 1 - t:length - t]
        alive = alive & torch.nn.functional.pad(same, (t, 0), value=False) & (limit > t)
        match_len += alive
        t += 1
    allowed = rows.dry_allowed_length  # [B, 1]
    penalized = (match_len >= allowed) & ~single[:, 1:]  # [B, L-1]
    base = rows.dry_base.to(torch.float32)  # [B, 1]
    top = torch.where(base > torch.tensor(1.000001, dtype=torch.float32),
                      (torch.tensor(LLAMA_CPP_FLOAT_MAX_LOG, dtype=torch.float32) / base.log()).to(torch.long), 0)
    exponent = match_len - allowed
    exponent = torch.where((top > 0) & (exponent > top), top, exponent).clamp(min=0).to(torch.float64)
    multiplier = rows.dry_multiplier.to(torch.float32).to(torch.float64)
    penalty = torch.where(penalized, multiplier * base.to(torch.float64) ** exponent, 0.0).to(scores.dtype)
    per_token = torch.zeros(scores.shape[0], scores.shape[1] + 1, dtype=scores.dtype, device=scores.device)
    per_token.scatter_reduce_(1, torch.where(penalized, tokens[:, 1:], scores.shape[1]), penalty, "amax")
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


def smoothing(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Quadratic sampling (text-generation-webui's QuadraticSamplingLogitsWarper, per row): with d = logit - max,
    logit' = max - k f d^2 + s f d^3, k = (3 - curve) / 2, s = (curve - 1) / 2; removed tokens stay removed."""
    top = scores.amax(dim=-1, keepdim=True)  # [B, 1]
    diff = scores - top
    factor, curve = rows.smoothing_factor, rows.smoothing_curve  # [B, 1] float32
    k, s = (3 - curve) / 2, (curve - 1) / 2
    smoothed = -(k * factor * diff ** 2) + (s * factor * diff ** 3) + top
    # a difference beyond ~1e12 overflows d^3 (and, for curve > 3, d^2 too: inf - inf): the token is then
    # infinitely far below the top, and the cubic term says where: removed
    smoothed = torch.where(smoothed.isnan(), NEG_INF, smoothed)
    return torch.where(scores != NEG_INF, smoothed, scores)


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
    act = row_uniform(row_keys(rows.seed, rows.sample_index, state.row_step), XTC_STREAM) < rows.xtc_probability  # [B]
    probs = scores.softmax(dim=-1)
    above = (probs >= rows.xtc_threshold) & (scores > NEG_INF)  # [B, V]; a removed token is no candidate (threshold 0)
    least = torch.where(above, probs, math.inf).argmin(dim=-1, keepdim=True)  # [B, 1]
    remove = above & (act & (above.sum(-1) >= 2))[:, None]
    remove.scatter_(1, least, False)
    return scores.masked_fill(remove, NEG_INF)


def mirostat_mu(tau: float, eta: float, final_logprobs: list[float]) -> list[float]:
    """Mirostat's mu (bits) before each step of a row that chose tokens with these final log-probs (nats):
    mu_t = 2 tau - eta * (surprise of steps < t - t tau), the state `mirostat` below works from."""
    mu, surprise_so_far = [], 0.0
    for t, logprob in enumerate(final_logprobs):
        mu.append(2 * tau - eta * (surprise_so_far - t * tau))
        surprise_so_far += -logprob / math.log(2)
    return mu


def mirostat(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Mirostat v2 (Basu et al. 2021, Algorithm 2; llama.cpp `llama_sampler_mirostat_v2`).

    Drop the tokens whose surprise -log2 p exceeds mu (the top token always stays); after each choice mu moves
    by -eta * (surprise of the chosen token - tau), starting from 2 * tau, so the text's surprise tracks tau.
    The chosen token's surprise is taken under the final distribution (with mirostat last, its own truncated
    and renormalised one, as in llama.cpp); DecodeState sums it, so mu = 2 tau - eta * (sum - steps * tau).
    """
    tau, eta = rows.mirostat_tau, rows.mirostat_eta  # [B, 1] float64
    mu = (2 * tau - eta * (state.surprise_bits[:, None] - as_column(state.row_step) * tau)).to(scores.dtype)  # [B, 1]
    surprise = -torch.log_softmax(scores, dim=-1) / math.log(2)  # [B, V] bits
    remove = surprise > mu
    remove.scatter_(1, scores.argmax(dim=-1, keepdim=True), False)  # keep at least the top token
    return scores.masked_fill(remove, NEG_INF)


# adaptive-P's fixed shape (llama.cpp PR #17927, text-generation-webui AdaptivePLogitsWarper)
ADAPTIVE_WIDTH = 0.3  # how far from the target a probability may be before its logit falls off
ADAPTIVE_PEAK = 5.0  # the logit of a token exactly at the target
ADAPTIVE_SHARPNESS = 10.0


def adaptive_target_now(target: torch.Tensor, decay: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """[B, 1] float64: adaptive-P's adapted target, 2 * target - (moving average of the chosen tokens' input
    probabilities), clamped to [0, 1]. The average starts at equilibrium (as if the target had been met:
    weighted sum target / (1 - decay), total weight 1 / (1 - decay)) and takes each choice as
    sum = p + decay * sum, weight = 1 + decay * weight; the weight therefore stays 1 / (1 - decay) and the
    average after n choices is decay^n * target + (1 - decay) * sum_k p_k decay^(n-1-k).
    target, decay: [B, 1] float64; history: [B, n] float64 (the chosen tokens' probabilities so far)."""
    n = history.shape[1]
    powers = decay ** torch.arange(n - 1, -1, -1, dtype=torch.float64, device=history.device)  # [B, n]
    average = decay ** n * target + (1 - decay) * (history * powers).sum(dim=1, keepdim=True)
    return (2 * target - average).clamp(0.0, 1.0)


def adaptive_p(scores: torch.Tensor, state: DecodeState, rows: RowParams) -> torch.Tensor:
    """Adaptive-P (MrJackSpade, llama.cpp PR #17927; text-generation-webui AdaptivePLogitsWarper): favour tokens
    whose probability is near a target, and move the target so that the chosen tokens' probabilities average
    `adaptive_target` over time.

    Each token's new logit is 5 - 10 d^2 / (1 + d) with d = |p - adapted target| / 0.3 (quadratic near the
    target, linear in the tails); removed tokens stay removed. The probabilities p it reads are this stage's
    input distribution, and so is the feedback: the chosen token's p at this stage (DecodeState keeps it).
    In llama.cpp and text-generation-webui it picks the token itself, so it belongs last: the default order puts
    it after every other sampler.
    """
    probs = scores.softmax(dim=-1)  # [B, V] this stage's input distribution
    state.adaptive_input = probs  # the chosen token's p here is the feedback of the next step
    target = adaptive_target_now(rows.adaptive_target, rows.adaptive_decay, state.adaptive_probs)  # [B, 1] float64
    # in the scores' dtype, operation for operation as the reference (a float32 tensor minus a Python float)
    distance = torch.abs((probs - target.to(probs.dtype)) * (1.0 / ADAPTIVE_WIDTH))  # [B, V]
    shaped = ADAPTIVE_PEAK - ADAPTIVE_SHARPNESS * distance * distance / (1.0 + distance)
    return torch.where(torch.isfinite(scores), shaped, scores)
