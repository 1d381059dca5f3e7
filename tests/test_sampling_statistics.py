"""The sampler at scale: noise strictly inside (0, 1) for every bit pattern, sampled frequencies equal to the
softmax of the final scores, and never a removed token — checked over millions of draws, not a handful.

Every draw goes through the engine's own `choose_next`, with row keys varied the way the engine varies them
(seed, sample index, step). A sampler that picks a removed token on 1 step in 400 fails these tests (the bug
they were written for did so on ~0.3% of steps at this vocabulary size).
"""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest, chisquare
from transformers import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from engine.sampling import (
    XTC_STREAM, _as_int32, bits_to_uniform, choose_next, gumbel_noise, row_keys, row_uniform, uniform_noise,
)

MODEL_VOCAB = 49_152  # the bundled model's vocabulary: the rate of a per-token noise fault scales with it
P_MIN = 1e-4  # smallest chi-square p-value accepted (a false alarm once in 10,000 runs)


def engine_keys(draws: int, first_step: int = 0) -> list[torch.Tensor]:
    """Row keys [rows] per step as a sweep makes them: 25 seeds x 40 sample indices, one step after another."""
    seeds = torch.tensor([0, 1, 2, 7, 42, 1234, 2**31 - 1, 2**32 + 5, 2**62 + 11] + list(range(100, 116)))
    grid_seeds = seeds.repeat_interleave(40)  # [1000]
    grid_samples = torch.arange(40).repeat(len(seeds))
    steps = math.ceil(draws / len(grid_seeds))
    return [row_keys(grid_seeds, grid_samples, first_step + step) for step in range(steps)]


def draw_counts(scores: torch.Tensor, draws: int, chunk: int = 128) -> torch.Tensor:
    """How often choose_next picks each token of one row of final scores [V] over `draws` engine keys -> [V]."""
    counts = torch.zeros(scores.shape[0], dtype=torch.long)
    left = draws
    for keys in engine_keys(draws):
        for part in keys.split(chunk):
            part = part[:left]
            chosen = choose_next(scores.expand(len(part), -1), torch.zeros(len(part), dtype=torch.bool), part)
            counts += torch.bincount(chosen, minlength=scores.shape[0])
            left -= len(part)
            if left == 0:
                return counts
    return counts


def chi_square_p(counts: torch.Tensor, scores: torch.Tensor) -> float:
    """Goodness of fit of the counts [V] to softmax(scores), over bins whose expected count is >= 5 (the rest
    of the kept tokens merged into one bin, itself included when its expectation reaches 5)."""
    probs = torch.softmax(scores.double(), -1)
    kept = probs > 0
    expected = probs[kept] * int(counts.sum())
    observed = counts[kept].double()
    big = expected >= 5
    obs, exp = list(observed[big].tolist()), list(expected[big].tolist())
    if float(expected[~big].sum()) >= 5:
        obs.append(float(observed[~big].sum()))
        exp.append(float(expected[~big].sum()))
    scale = sum(obs) / sum(exp)  # renormalise the few bins dropped below 5 in total
    return float(chisquare(obs, [e * scale for e in exp]).pvalue)


def zipf_logits(vocab: int, s: float = 1.1, seed: int = 0) -> torch.Tensor:
    """log of a Zipf distribution over a shuffled vocabulary [V] (the likely tokens are not the low ids)."""
    ranks = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed)) + 1
    return -s * ranks.double().log().float()


def warped(processor, logits: torch.Tensor) -> torch.Tensor:
    """transformers' own warper on one row [V] -> the masked final scores [V]."""
    return processor(torch.zeros(1, 1, dtype=torch.long), logits[None].clone())[0]


# ----------------------------------------------------------------------------------------------------------
# The noise itself


@pytest.mark.slow  # 3 x 2**24 values and a sort of 2**24: ~9 s of CPU
def test_every_bit_pattern_gives_noise_strictly_inside_0_1() -> None:
    """All 2**24 values of the top 24 hash bits (the low byte varied too): u in (0, 1), finite Gumbel noise."""
    k = torch.arange(1 << 24, dtype=torch.long)
    for low in (0x00, 0xA5, 0xFF):
        bits = _as_int32((k << 8) | low)  # int32, negative above 2**31, as hash32_int32 returns them
        u = bits_to_uniform(bits)
        assert float(u.min()) > 0.0 and float(u.max()) < 1.0
        gumbel = -torch.log(-torch.log(u))
        assert bool(torch.isfinite(gumbel).all())
    assert len(torch.unique(u)) == 1 << 23  # the top 23 bits, each value its own evenly spaced level
    assert float(u.min()) == 2.0**-24 and float(u.max()) == 1.0 - 2.0**-24


@pytest.mark.slow
def test_engine_noise_is_finite_over_millions_of_row_tokens() -> None:
    keys = torch.cat(engine_keys(2000, first_step=0))  # 2,000 rows x the model's vocabulary: ~10^8 values
    for part in keys.split(250):
        u = uniform_noise(part, MODEL_VOCAB)
        assert float(u.min()) > 0.0 and float(u.max()) < 1.0
        assert bool(torch.isfinite(gumbel_noise(part, MODEL_VOCAB)).all())


def test_a_removed_or_nan_token_is_never_chosen_even_with_the_largest_noise() -> None:
    """Put -inf (or NaN) exactly on the token whose noise is the row's largest, and make it otherwise the best."""
    keys = torch.cat(engine_keys(4000))[:4000]
    noise = gumbel_noise(keys, 512)  # [N, 512]
    favourite = noise.argmax(-1)  # the token each row's noise favours most
    for poison in (float("-inf"), float("nan")):
        scores = torch.zeros(len(keys), 512)
        scores.scatter_(1, favourite[:, None], poison)
        sampled = choose_next(scores, torch.zeros(len(keys), dtype=torch.bool), keys)
        greedy = choose_next(scores, torch.ones(len(keys), dtype=torch.bool), keys)
        assert not bool((sampled == favourite).any()) and not bool((greedy == favourite).any())
    only = torch.full((len(keys), 512), float("-inf"))
    only[:, 7] = -50.0  # one kept token, very unlikely-looking: still the only possible choice
    assert bool((choose_next(only, torch.zeros(len(keys), dtype=torch.bool), keys) == 7).all())


# ----------------------------------------------------------------------------------------------------------
# Frequencies at the model's vocabulary size


@pytest.mark.slow
def test_a_near_certain_token_is_drawn_as_often_as_it_should_be() -> None:
    """p = 0.999999 for one token, the rest spread over 49,151: in 6,000 draws another token is expected
    0.006 times; a noise fault at the 0.3% rate would draw ~17."""
    logits = torch.full((MODEL_VOCAB,), math.log(1e-6 / (MODEL_VOCAB - 1)))
    logits[123] = math.log(0.999999)
    counts = draw_counts(logits, 6_000)
    assert int(counts.sum() - counts[123]) <= 2


@pytest.mark.slow
def test_a_flat_distribution_over_the_whole_vocabulary_is_drawn_uniformly() -> None:
    counts = draw_counts(torch.zeros(MODEL_VOCAB), 6_000)
    per_bin = counts.reshape(48, 1024).sum(1)  # 48 bins of 1,024 token ids (125 draws expected each)
    assert float(chisquare(per_bin.tolist()).pvalue) > P_MIN


@pytest.mark.slow
@pytest.mark.parametrize("name, processor", [
    ("top_k=50", TopKLogitsWarper(50)),
    ("top_p=0.9", TopPLogitsWarper(0.9)),
    ("min_p=0.05", MinPLogitsWarper(0.05)),
])
def test_truncated_zipf_at_model_vocabulary(name: str, processor) -> None:
    """Zipf over 49,152 tokens, truncated by transformers' own warper: no removed token in 6,000 draws and the
    kept tokens drawn with their softmax probabilities."""
    scores = warped(processor, zipf_logits(MODEL_VOCAB))
    removed = torch.isinf(scores)
    assert int(removed.sum()) > MODEL_VOCAB // 2, name  # the mask removes most of the vocabulary
    counts = draw_counts(scores, 6_000)
    assert int(counts[removed].sum()) == 0, f"{name}: removed tokens drawn"
    assert chi_square_p(counts, scores) > P_MIN, name


# ----------------------------------------------------------------------------------------------------------
# Millions of draws on a smaller vocabulary (the same code path; cheaper noise per draw)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["zipf", "zipf+top_p=0.8", "peaked", "two ties"])
def test_a_million_draws_match_the_softmax(shape: str) -> None:
    vocab = 256
    logits = zipf_logits(vocab, s=1.3, seed=3)
    if shape == "zipf+top_p=0.8":
        logits = warped(TopPLogitsWarper(0.8), logits)
    elif shape == "peaked":
        logits = torch.full((vocab,), -12.0)
        logits[[5, 77, 200]] = torch.tensor([3.0, 0.0, -2.0])
    elif shape == "two ties":
        logits = torch.full((vocab,), float("-inf"))
        logits[[9, 250]] = 1.5
    counts = draw_counts(logits, 1_000_000, chunk=5000)
    assert int(counts.sum()) == 1_000_000
    assert int(counts[torch.isinf(logits)].sum()) == 0
    assert chi_square_p(counts, logits) > P_MIN, shape


# ----------------------------------------------------------------------------------------------------------
# XTC's coin and the coupling of settings that share a seed


@pytest.mark.parametrize("probability", [0.05, 0.5, 0.9])
def test_xtc_decides_at_its_rate_over_a_million_rows_and_steps(probability: float) -> None:
    keys = torch.cat(engine_keys(1_000_000))
    coin = row_uniform(keys, XTC_STREAM)
    assert float(coin.min()) > 0.0 and float(coin.max()) < 1.0
    acted = int((coin < probability).sum())
    assert binomtest(acted, len(keys), probability).pvalue > P_MIN
    # and the coin is uniform: 100 equal bins
    assert float(chisquare(torch.histc(coin.float(), 100, 0, 1).tolist()).pvalue) > P_MIN


@pytest.mark.slow
def test_truncation_couples_with_the_untruncated_draw() -> None:
    """Same seed, same step: a truncated setting picks exactly what the untruncated one picked whenever that
    token survived the truncation; the two agree as often as the kept mass says."""
    vocab = 256
    full = zipf_logits(vocab, s=1.2, seed=5)
    truncated = warped(TopKLogitsWarper(12), full)
    kept_mass = float(torch.softmax(full.double(), -1)[~torch.isinf(truncated)].sum())
    agree = total = 0
    for keys in engine_keys(500_000):
        a = choose_next(full.expand(len(keys), -1), torch.zeros(len(keys), dtype=torch.bool), keys)
        b = choose_next(truncated.expand(len(keys), -1), torch.zeros(len(keys), dtype=torch.bool), keys)
        survived = ~torch.isinf(truncated[a])
        assert torch.equal(a[survived], b[survived])  # coupled: never a different token when it survived
        agree += int(survived.sum())
        total += len(keys)
    assert binomtest(agree, total, kept_mass).pvalue > P_MIN
