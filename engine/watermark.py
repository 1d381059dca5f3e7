"""The two watermarks transformers ships, batched per row, and their detection scores.

Green list (transformers' WatermarkLogitsProcessor, Kirchenbauer et al. 2023): a torch.Generator seeded from the
previous token ("lefthash": hashing_key x that token) or from the last context_width tokens and the candidate
itself ("selfhash": the smallest hashing_key x table[t] x table[candidate] over the window, int64 arithmetic as
transformers does it) gives randperm(vocabulary); its first int(V x greenlist_ratio) ids are green and get +bias.
A row with fewer tokens than context_width is left alone (transformers skips the step with a warning).
The permutation is torch's own (on the scores' device, like transformers'), so there is one randperm per distinct
seed: cached, since a seed is a (key, token) pair that recurs. selfhash tries the 40 most likely candidates of the
row, one seed each, as transformers does.

SynthID Text (transformers' SynthIDTextWatermarkLogitsProcessor): the context is the last ngram_len - 1 generated
tokens (zeros before the first ones: the prompt is not read); each candidate's g-value at each depth is a bit of a
seeded random table at the candidate's n-gram hash, and the distribution is reweighted layer by layer,
p <- p (1 + g - E_p[g]). A context seen among the last context_history_size contexts is not watermarked again.
transformers keeps that history in the processor; here it is a function of the row's generated tokens, so a replay
or a branch rebuilds it exactly. transformers turns removed tokens into finfo.min; here they stay -inf.

Detection: the green list's z-score and p-value as transformers' WatermarkDetector computes them over a text's
tokens, and SynthID's mean g-value over the n-grams its detector scores (not repeated, before the first EOS).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Sequence

import torch

NEG_INF = float("-inf")
TABLE_SIZE = 1_000_003  # transformers' selfhash table: randperm(1_000_003) seeded with the hashing key
SELFHASH_CANDIDATES = 40  # transformers tries the 40 most likely candidates (the original repository's number)
LCG_MULTIPLIER = 6364136223846793005  # SynthID's hash: an LCG with newlib/musl parameters, in int64
LCG_INCREMENT = 1


# ----------------------------------------------------------------------------------------------------------
# Green list


@lru_cache(maxsize=8)
def _fixed_table(hashing_key: int, device: str) -> torch.Tensor:
    generator = torch.Generator(device=device)
    generator.manual_seed(hashing_key)
    return torch.randperm(TABLE_SIZE, generator=generator, device=device)


@lru_cache(maxsize=1024)
def greenlist_mask(seed: int, vocab_size: int, size: int, device: str) -> torch.Tensor:
    """[V] bool: the green list of one seed (transformers' _get_greenlist_ids after set_seed)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed % (2**64 - 1))
    permutation = torch.randperm(vocab_size, device=device, generator=generator)
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[permutation[:size]] = True
    return mask


def greenlist_size(vocab_size: int, ratio: float) -> int:
    return int(vocab_size * ratio)


def lefthash_seed(hashing_key: int, last_token: int) -> int:
    return hashing_key * last_token


def selfhash_seed(hashing_key: int, window: torch.Tensor) -> int:
    """window: the last context_width tokens, the candidate last ([w] long)."""
    table = _fixed_table(hashing_key, str(window.device))
    a = table[window % TABLE_SIZE] + 1
    b = table[window[-1] % TABLE_SIZE] + 1
    return int((hashing_key * a * b).min().item())


@lru_cache(maxsize=1 << 16)
def _selfhash_green(hashing_key: int, window: tuple[int, ...], vocab_size: int, size: int, device: str) -> bool:
    seed = selfhash_seed(hashing_key, torch.tensor(window, dtype=torch.long, device=device))
    return bool(greenlist_mask(seed, vocab_size, size, device)[window[-1]])


def is_green(hashing_key: int, scheme: str, prefix: Sequence[int], target: int, vocab_size: int, size: int,
             device: str) -> bool:
    """Whether `target` is green after `prefix` (lefthash: the prefix's last token seeds the list; selfhash: the
    prefix ends with the target itself, as WatermarkDetector passes it)."""
    if scheme == "selfhash":
        return _selfhash_green(hashing_key, tuple(prefix), vocab_size, size, device)
    return bool(greenlist_mask(lefthash_seed(hashing_key, prefix[-1]), vocab_size, size, device)[target])


def green_bias(scores: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor, ratio: torch.Tensor,
               hashing_key: torch.Tensor, selfhash: torch.Tensor, context_width: torch.Tensor) -> torch.Tensor:
    """scores [B, V]; tokens [B, L] (left padding -1); bias [B, 1] float32; ratio, hashing_key, selfhash,
    context_width [B] -> scores with +bias on each row's green list (rows with bias 0 or too few tokens unchanged)."""
    batch, vocab = scores.shape
    device = str(scores.device)
    lengths = (tokens >= 0).sum(dim=1).tolist()
    green = torch.zeros(batch, vocab, dtype=torch.bool, device=scores.device)
    for r, (b, g, key, self_h, width) in enumerate(zip(bias[:, 0].tolist(), ratio.tolist(), hashing_key.tolist(),
                                                       selfhash.tolist(), context_width.tolist())):
        if b == 0 or lengths[r] < width:
            continue
        size = greenlist_size(vocab, g)
        history = tokens[r, tokens.shape[1] - lengths[r]:]
        if not self_h:
            green[r] = greenlist_mask(lefthash_seed(key, int(history[-1])), vocab, size, device)
            continue
        candidates = scores[r].sort(dim=-1, descending=True).indices[:SELFHASH_CANDIDATES].tolist()
        context = history[max(0, lengths[r] - width + 1):].tolist()  # the window's tokens before the candidate
        for c in candidates:
            if _selfhash_green(key, tuple((context + [c])[-width:]), vocab, size, device):
                green[r, c] = True
    return torch.where(green, scores + bias, scores)


# ----------------------------------------------------------------------------------------------------------
# SynthID Text


@dataclass(frozen=True)
class SynthIDConfig:
    """One SynthIDTextWatermarkingConfig (rows with equal configs are computed together)."""

    keys: tuple[int, ...]
    ngram_len: int
    sampling_table_size: int
    sampling_table_seed: int
    context_history_size: int
    skip_first_ngram_calls: bool

    @staticmethod
    def of(params: Any) -> "SynthIDConfig":
        return SynthIDConfig(tuple(params.synthid_keys), params.synthid_ngram_len, params.synthid_sampling_table_size,
                             params.synthid_sampling_table_seed, params.synthid_context_history_size,
                             params.synthid_skip_first_ngram_calls)


@dataclass
class SynthIDTable:
    """Each row's SynthID config: `row` [B] long indexes `configs`, `active` [B] bool (keys given)."""

    configs: tuple[SynthIDConfig, ...]
    row: torch.Tensor
    active: torch.Tensor

    @staticmethod
    def build(params: Sequence[Any], device: torch.device | str = "cpu") -> "SynthIDTable":
        configs = tuple(dict.fromkeys(SynthIDConfig.of(p) for p in params if p.synthid_keys))
        row = [configs.index(SynthIDConfig.of(p)) if p.synthid_keys else -1 for p in params]
        return SynthIDTable(configs, torch.tensor(row, dtype=torch.long, device=device),
                            torch.tensor([bool(p.synthid_keys) for p in params], dtype=torch.bool, device=device))

    def select(self, keep: torch.Tensor) -> "SynthIDTable":
        return replace(self, row=self.row[keep], active=self.active[keep])


@lru_cache(maxsize=8)
def sampling_table(seed: int, size: int, device: str) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(low=0, high=2, size=(size,), generator=generator, device=device)


def accumulate_hash(current: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """transformers' accumulate_hash: h <- (h + x) * multiplier + increment over data's last dimension (int64)."""
    for i in range(data.shape[-1]):
        current = torch.add(current, data[..., i])
        current = torch.mul(current, LCG_MULTIPLIER)
        current = torch.add(current, LCG_INCREMENT)
    return current


def _context_hashes(generated: torch.Tensor, ngram_len: int, calls: int) -> torch.Tensor:
    """[b, calls] long: the hash of the context (last ngram_len - 1 tokens, zeros before the first) at each of the
    first `calls` steps."""
    b = generated.shape[0]
    padded = torch.cat([torch.zeros(b, ngram_len - 1, dtype=torch.long, device=generated.device), generated], dim=1)
    contexts = padded[:, :calls + ngram_len - 2].unfold(1, ngram_len - 1, 1)  # [b, calls, n - 1]
    return accumulate_hash(torch.ones(b, calls, dtype=torch.long, device=generated.device), contexts)


def synthid_scores(scores: torch.Tensor, generated: torch.Tensor, config: SynthIDConfig) -> torch.Tensor:
    """scores [b, V] at step t = generated.shape[1] (generated [b, t]: the rows' tokens so far) -> the watermarked
    scores: log-probabilities (transformers' update_scores), -inf where the input was -inf, the input itself where
    the context repeats or the step is skipped."""
    step = generated.shape[1]
    n = config.ngram_len
    if config.skip_first_ngram_calls and step + 1 < n:
        return scores
    batch, vocab = scores.shape
    device = scores.device
    hashes = _context_hashes(generated, n, step + 1)  # [b, t + 1]
    context_hash = hashes[:, -1]  # [b]
    # the contexts transformers remembers: the last context_history_size of the earlier (not skipped) steps, and the
    # zeros it starts with while fewer steps than that have been recorded
    first = n - 1 if config.skip_first_ngram_calls else 0
    earlier = hashes[:, first:step]
    history = earlier[:, max(0, earlier.shape[1] - config.context_history_size):]
    repeated = (history == context_hash[:, None]).any(dim=1)
    if history.shape[1] < config.context_history_size:
        repeated |= context_hash == 0
    table = sampling_table(config.sampling_table_seed, config.sampling_table_size, str(device))
    candidates = torch.arange(vocab, device=device).unsqueeze(0).expand(batch, -1)
    with_candidate = accumulate_hash(context_hash[:, None], candidates[:, :, None])  # [b, V]
    probs = torch.softmax(scores, dim=1)
    for key in config.keys:
        g = table[accumulate_hash(with_candidate, torch.full((1, 1, 1), key, dtype=torch.long, device=device)[0])
                  % config.sampling_table_size]  # [b, V] int64 bits
        g_mass = (g * probs).sum(axis=1, keepdims=True)
        probs = probs * (1 + g - g_mass)
    log_probs = torch.log(probs)
    log_probs = torch.where(torch.isfinite(log_probs), log_probs, torch.finfo(log_probs.dtype).min)
    log_probs = torch.where(scores == NEG_INF, NEG_INF, log_probs)
    return torch.where(repeated[:, None], scores, log_probs)


def synthid(scores: torch.Tensor, tokens: torch.Tensor, prompt_len: int, table: SynthIDTable) -> torch.Tensor:
    """Every row's SynthID watermark, rows with the same config together."""
    out = scores
    for u, config in enumerate(table.configs):
        index = ((table.row == u) & table.active).nonzero()[:, 0]
        if index.numel():
            out = out.index_copy(0, index, synthid_scores(scores[index], tokens[index, prompt_len:], config))
    return out


# ----------------------------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True)
class Detector:
    """What detection needs of the model: the vocabulary size (its config's), the BOS id WatermarkDetector strips,
    the EOS id SynthID's detector masks from, and the device the watermark was drawn on."""

    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    device: str = "cpu"

    def scores(self, token_ids: Sequence[int], params: Any, always: bool = False) -> dict[str, float | None]:
        """The detection scores of a text's tokens under `params`' watermarks: watermark_green_fraction,
        watermark_z, watermark_p (green list; when watermark_bias is set, or `always`) and synthid_score (when
        synthid_keys are set); None where the text is too short to score."""
        out: dict[str, float | None] = {}
        if params.watermark_bias or always:
            out.update(green_detection(token_ids, self.vocab_size, params.watermark_greenlist_ratio,
                                       params.watermark_hashing_key, params.watermark_seeding_scheme,
                                       params.watermark_context_width, self.bos_token_id, self.device))
        if params.synthid_keys:
            out["synthid_score"] = synthid_mean_score(token_ids, SynthIDConfig.of(params), self.eos_token_id,
                                                      self.device)
        return out


WATERMARK_SCORE_COLUMNS: tuple[str, ...] = ("watermark_green_fraction", "watermark_z", "watermark_p", "synthid_score")


def green_detection(token_ids: Sequence[int], vocab_size: int, ratio: float, hashing_key: int, scheme: str,
                    context_width: int, bos_token_id: int | None = None, device: str = "cpu"
                    ) -> dict[str, float | None]:
    """WatermarkDetector's numbers for one text (ignore_repeated_ngrams=False): every n-gram of the tokens (a BOS
    first is dropped) scores its last token green or not; z = (green - gamma T) / sqrt(T gamma (1 - gamma)),
    p = P(Z > z). None when the text has no token to score after the first context_width."""
    ids = list(token_ids)
    if ids and bos_token_id is not None and ids[0] == bos_token_id:
        ids = ids[1:]
    none = {"watermark_green_fraction": None, "watermark_z": None, "watermark_p": None}
    if len(ids) - context_width < 1:
        return none
    selfhash = scheme == "selfhash"
    n = context_width + 1 - int(selfhash)
    size = greenlist_size(vocab_size, ratio)
    counts = Counter(tuple(ids[i:i + n]) for i in range(len(ids) - n + 1))
    total = sum(counts.values())
    green = sum(freq * is_green(hashing_key, scheme, gram if selfhash else gram[:-1], gram[-1], vocab_size, size,
                                device) for gram, freq in counts.items())
    numer = green - ratio * total
    denom = math.sqrt(total * ratio * (1 - ratio))
    z = numer / denom
    p = float(0.5 * torch.special.erfc(torch.as_tensor(z / math.sqrt(2), dtype=torch.float64)))
    return {"watermark_green_fraction": green / total, "watermark_z": z, "watermark_p": p}


def synthid_g_values(token_ids: torch.Tensor, config: SynthIDConfig) -> torch.Tensor:
    """[b, L - (n - 1), depth] long: the g-value of every n-gram's last token at every depth (transformers'
    compute_g_values)."""
    ngrams = token_ids.unfold(dimension=1, size=config.ngram_len, step=1)  # [b, N, n]
    hashes = accumulate_hash(torch.ones(ngrams.shape[:2], dtype=torch.long, device=token_ids.device), ngrams)
    keys = torch.tensor(config.keys, dtype=torch.long, device=token_ids.device)
    with_keys = accumulate_hash(hashes[:, :, None], keys[None, None, :, None])  # [b, N, depth]
    table = sampling_table(config.sampling_table_seed, config.sampling_table_size, str(token_ids.device))
    return table[with_keys % config.sampling_table_size]


def synthid_mask(token_ids: torch.Tensor, config: SynthIDConfig, eos_token_id: int | None) -> torch.Tensor:
    """[b, L - (n - 1)] bool: the n-grams SynthID's detector scores: their context not seen among the last
    context_history_size contexts before (transformers' compute_context_repetition_mask) and before the first EOS
    (compute_eos_token_mask, from the n-gram's last token)."""
    n = config.ngram_len
    b, length = token_ids.shape
    contexts = token_ids[:, :-1].unfold(1, n - 1, 1)  # [b, N, n - 1]
    hashes = accumulate_hash(torch.ones(contexts.shape[:2], dtype=torch.long, device=token_ids.device), contexts)
    size = config.context_history_size
    fresh = torch.ones(hashes.shape, dtype=torch.bool, device=token_ids.device)
    for i in range(hashes.shape[1]):
        history = hashes[:, max(0, i - size):i]
        repeated = (history == hashes[:, i:i + 1]).any(dim=1)
        if history.shape[1] < size:
            repeated |= hashes[:, i] == 0
        fresh[:, i] = ~repeated
    if eos_token_id is not None:
        is_eos = (token_ids == eos_token_id).to(torch.long)
        before_eos = is_eos.cumsum(dim=1) == 0
        fresh &= before_eos[:, n - 1:]
    return fresh


def synthid_mean_score(token_ids: Sequence[int], config: SynthIDConfig, eos_token_id: int | None = None,
                       device: str = "cpu") -> float | None:
    """The mean g-value over the scored n-grams and every depth (about 0.5 without the watermark, higher with it);
    None when no n-gram is scored."""
    if len(token_ids) < config.ngram_len:
        return None
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=device)
    mask = synthid_mask(ids, config, eos_token_id)
    if not bool(mask.any()):
        return None
    g = synthid_g_values(ids, config)
    return float((g * mask[..., None]).sum() / (mask.sum() * len(config.keys)))
