"""The community samplers (DRY, XTC, mirostat v2, dynamic temperature, top-nσ, top-a, tail-free) against
plain references written from each source's definition, one row at a time with loops.

Every vectorized processor runs through the real pipeline on random logits with random per-row parameters,
mixed with disabled rows that must come back bit-identical; values allclose 1e-6 with the same -inf mask, and
the input is never modified in place. Then: DRY on hand-made token sequences, XTC's seeded decisions and their
rate, and mirostat's mu trajectory against a loop over a short generation on the tiny model and its exact
replay (tests/test_samplers_together.py: all of them in one run, defaults, validation and JSON form).
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from engine.generate import Engine
from engine.order import DEFAULT_ORDER
from engine.knobs import DRY_SEQUENCE_BREAKERS
from engine.params import SamplingParams
from engine.tokens import sequence_breaker_ids
from engine.processors import REGISTRY, apply_pipeline
from engine.rowstate import DecodeState, RowParams
from engine.sampling import XTC_STREAM, choose_next, row_keys, row_uniform, uniform_noise
from assertions import assert_same_scores
from synthetic import B, EOS, PROMPT_LEN, V, pipeline, state_of
from synthetic import random_logits as synthetic_logits
from synthetic import random_tokens as synthetic_tokens



def random_logits(seed: int) -> torch.Tensor:
    return synthetic_logits(seed, few_left_row=True)


def random_tokens(seed: int, length: int, alphabet: int = 12) -> torch.Tensor:
    return synthetic_tokens(seed, length, alphabet)


def check_rows(out: torch.Tensor, logits: torch.Tensor, values: list, off, reference) -> None:
    """Disabled rows bit-identical to the input; every other row equal to the one-row reference."""
    changed = 0
    for row, value in enumerate(values):
        if value == off:
            assert torch.equal(out[row], logits[row]), f"disabled row {row} changed"
        else:
            assert_same_scores(out[row], reference(row, value), f"row {row}, value {value}")
            changed += not torch.equal(out[row], logits[row])
    assert changed >= 2, "too few rows changed for the comparison to mean much"


def mixed(rng: random.Random, draw, off) -> list:
    """Per-row values: rows 5 and 7 (and about one in ten others) disabled, the rest drawn at random."""
    return [off if row in (5, 7) or rng.random() < 0.1 else draw() for row in range(B)]


# ----------------------------------------------------------------------------------------------------------
# References, one row at a time, from each source's definition


def ref_top_n_sigma(row: torch.Tensor, n: float) -> torch.Tensor:
    """Top-nσ (Tang et al. 2024; llama.cpp): keep logit >= max - n * std of the finite logits (population std)."""
    x = row.double().numpy()
    finite = x[np.isfinite(x)]
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    cut = finite.max() - n * std
    out = row.clone()
    for i in range(len(x)):
        if x[i] < cut:
            out[i] = float("-inf")
    return out


def ref_smoothing(row: torch.Tensor, factor: float, curve: float) -> torch.Tensor:
    """text-generation-webui's QuadraticSamplingLogitsWarper on one row (modules/sampler_hijack.py)."""
    max_logit = row.max()
    diff = row - max_logit
    k = (3 - curve) / 2
    s = (curve - 1) / 2
    return torch.where(row != float("-inf"), -(k * factor * diff**2) + (s * factor * diff**3) + max_logit, row)


def ref_top_a(row: torch.Tensor, a: float) -> torch.Tensor:
    """Top-a (text-generation-webui): remove tokens with p < a * p_max^2."""
    probs = row.softmax(-1).tolist()
    p_max = max(probs)
    out = row.clone()
    for i, p in enumerate(probs):
        if p < p_max * p_max * a:
            out[i] = float("-inf")
    return out


def ref_tfs(row: torch.Tensor, z: float) -> torch.Tensor:
    """Tail-free sampling (Bricken; text-generation-webui): normalised |second differences| of the sorted
    probabilities, accumulated; the first token stays, tokens past where the sum exceeds z go, the last goes."""
    order = np.argsort(-row.numpy(), kind="stable")  # ties by token id
    probs = row[torch.from_numpy(order)].softmax(-1).tolist()
    d2 = [abs((probs[i + 2] - probs[i + 1]) - (probs[i + 1] - probs[i])) for i in range(len(probs) - 2)]
    total = sum(d2)
    out = row.clone()
    cumulative = 0.0
    for k, d in enumerate(d2):
        cumulative += d
        if total > 0 and cumulative / total > z:  # a flat distribution (total 0) cuts nothing
            out[order[k + 1]] = float("-inf")
    out[order[-1]] = float("-inf")
    return out


def ref_dynatemp(row: torch.Tensor, low: float, high: float, exponent: float) -> torch.Tensor:
    """Dynamic temperature (text-generation-webui's DynamicTemperatureLogitsWarper)."""
    probs = row.softmax(-1)
    entropy = max(-sum(p * math.log(p) for p in probs.tolist() if p > 0), 1e-10)
    valid = int((row > float("-inf")).sum())
    max_entropy = math.log(valid) if valid > 1 else 1e-10
    temperature = low + (high - low) * (entropy / max_entropy) ** exponent
    return row / temperature


def ref_xtc(row: torch.Tensor, threshold: float, acts: bool) -> torch.Tensor:
    """XTC (text-generation-webui / llama.cpp): when it acts and >= 2 tokens reach the threshold, remove them all
    but the least likely (lowest id among equals)."""
    probs = row.softmax(-1).tolist()
    above = [i for i, p in enumerate(probs) if p >= threshold and row[i] > float("-inf")]  # candidates only
    out = row.clone()
    if acts and len(above) >= 2:
        keep = min(above, key=lambda i: (probs[i], i))
        for i in above:
            if i != keep:
                out[i] = float("-inf")
    return out


def ref_mirostat_truncate(row: torch.Tensor, mu: float) -> torch.Tensor:
    """Mirostat v2's truncation (llama.cpp): sorted by probability, cut at the first token with surprise > mu,
    keeping at least one."""
    surprise = (-torch.log_softmax(row, -1) / math.log(2)).tolist()
    order = sorted(range(len(surprise)), key=lambda i: (surprise[i], i))
    out = row.clone()
    for rank, i in enumerate(order):
        if rank > 0 and surprise[i] > mu:
            for j in order[rank:]:
                out[j] = float("-inf")
            break
    return out


def ref_mirostat_mu(tau: float, eta: float, final_logprobs: list[float]) -> float:
    """mu starts at 2 tau; after each token mu -= eta * (surprise of that token in bits - tau)."""
    mu = 2 * tau
    for logp in final_logprobs:
        mu -= eta * (-logp / math.log(2) - tau)
    return mu


def ref_dry(tokens: list[int], row: torch.Tensor, multiplier: float, base: float, allowed: int,
            breakers: set[int]) -> torch.Tensor:
    """DRY (text-generation-webui's DRYLogitsProcessor): for each earlier occurrence of the last token, extend
    the match backwards (at most 50, never through a breaker); the token that followed it loses
    multiplier * base^(length - allowed) if its longest match is >= allowed."""
    out = row.clone()
    last = tokens[-1]
    if last in breakers:
        return out
    longest: dict[int, int] = {}
    for i in range(len(tokens) - 1):
        if tokens[i] != last or tokens[i + 1] in breakers:
            continue
        length = 1
        while length < 50:
            j = i - length
            if j < 0 or tokens[j] != tokens[-(length + 1)] or tokens[-(length + 1)] in breakers:
                break
            length += 1
        longest[tokens[i + 1]] = max(longest.get(tokens[i + 1], 0), length)
    for token, length in longest.items():
        if length >= allowed:
            out[token] -= multiplier * base ** (length - allowed)
    return out


# ----------------------------------------------------------------------------------------------------------
# Each sampler against its reference


# sampler field, values drawn per row, its off value, the reference, whether the logits are flattened by a drawn
# factor first (top_a: so that it cuts at different places)
ONE_VALUE_SAMPLERS = [
    ("top_n_sigma", [0.1, 0.5, 1.0, 1.5, 3.0], 0.0, ref_top_n_sigma, False),
    ("top_a", [0.01, 0.1, 0.2, 0.5, 1.0], 0.0, ref_top_a, True),
    ("tfs", [0.0, 0.5, 0.9, 0.95, 0.99], 1.0, ref_tfs, False),
]


@pytest.mark.parametrize("field, choices, off, reference, flatten", ONE_VALUE_SAMPLERS, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_value_sampler_matches_reference(field, choices, off, reference, flatten, seed: int) -> None:
    rng = random.Random(seed)
    values = mixed(rng, lambda: rng.choice(choices), off)
    logits = random_logits(seed)
    if flatten:
        logits = logits / rng.choice([1.0, 3.0])
    out = pipeline([SamplingParams(**{field: v}) for v in values], logits, state_of(random_tokens(seed, PROMPT_LEN)))
    check_rows(out, logits, values, off, lambda r, v: reference(logits[r], v))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_smoothing_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    values = mixed(rng, lambda: (rng.choice([0.01, 0.1, 0.3, 1.0, 4.0]), rng.choice([1.0, 1.5, 2.0, 3.0, 4.3])),
                   (0.0, 1.0))
    logits = random_logits(seed)
    logits[0, :50] = float("-inf")  # removed tokens stay removed
    params = [SamplingParams(smoothing_factor=f, smoothing_curve=c) for f, c in values]
    out = pipeline(params, logits, state_of(random_tokens(seed, PROMPT_LEN)))
    check_rows(out, logits, values, (0.0, 1.0), lambda r, v: ref_smoothing(logits[r], *v))


def test_smoothing_never_makes_nan_even_when_its_cubic_overflows() -> None:
    logits = torch.tensor([[0.0, -1e13, -5.0, float("-inf")], [1e9, -1e9, 0.0, 3.0]])
    for curve in (1.0, 3.0, 4.0, 10.0):
        params = [SamplingParams(smoothing_factor=100.0, smoothing_curve=curve)] * 2
        out = pipeline(params, logits, state_of(torch.zeros(2, 3, dtype=torch.long)))
        assert not out.isnan().any(), curve
        assert out[0, 3] == float("-inf") and out[0, 0] == 0.0 and out[0, 1] == float("-inf")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dynatemp_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    values = mixed(rng, lambda: (rng.choice([0.1, 0.5, 1.0]), rng.choice([1.0, 1.5, 3.0]), rng.choice([0.5, 1.0, 2.0])), (1.0, 1.0, 1.0))
    values[6] = (1.0, 2.0, 1.0)  # low = 1 alone does not switch it off
    logits = random_logits(seed)
    params = [SamplingParams(dynatemp_low=lo, dynatemp_high=hi, dynatemp_exponent=e) for lo, hi, e in values]
    out = pipeline(params, logits, state_of(random_tokens(seed, PROMPT_LEN)))
    check_rows(out, logits, values, (1.0, 1.0, 1.0), lambda r, v: ref_dynatemp(logits[r], *v))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xtc_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    values = mixed(rng, lambda: (rng.choice([0.5, 0.8, 1.0]), rng.choice([0.001, 0.002, 0.005, 0.01, 0.02, 0.5])), (0.0, 0.1))
    logits = random_logits(seed) / 2
    tokens = random_tokens(seed, PROMPT_LEN + rng.randrange(10))
    seeds = [rng.randrange(1000) for _ in range(B)]
    samples = list(range(B))
    params = [SamplingParams(xtc_probability=p, xtc_threshold=t, seed=s) for (p, t), s in zip(values, seeds)]
    out = pipeline(params, logits, state_of(tokens), sample_indices=samples)
    step = tokens.shape[1] - PROMPT_LEN

    def reference(row: int, value: tuple[float, float]) -> torch.Tensor:
        coin = float(row_uniform(row_keys(torch.tensor([seeds[row]]), torch.tensor([row]), step), XTC_STREAM)[0])
        return ref_xtc(logits[row], value[1], coin < value[0])

    check_rows(out, logits, values, (0.0, 0.1), reference)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mirostat_truncation_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    values = mixed(rng, lambda: (rng.choice([1.0, 3.0, 5.0, 8.0]), rng.choice([0.05, 0.1, 0.5])), None)
    logits = random_logits(seed)
    tokens = random_tokens(seed, PROMPT_LEN + 6)
    logprobs = -torch.rand(B, 6, generator=torch.Generator().manual_seed(seed)) * 12  # any chosen tokens' log p
    params = [SamplingParams(mirostat=2, mirostat_tau=v[0], mirostat_eta=v[1]) if v else SamplingParams()
              for v in values]
    out = pipeline(params, logits, state_of(tokens, logprobs))

    def reference(row: int, value: tuple[float, float]) -> torch.Tensor:
        return ref_mirostat_truncate(logits[row], ref_mirostat_mu(*value, logprobs[row].tolist()))

    check_rows(out, logits, values, None, reference)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("generated", [0, 8, 30])
def test_dry_matches_reference(seed: int, generated: int) -> None:
    rng = random.Random(seed * 10 + generated)
    values = mixed(rng, lambda: (rng.choice([0.3, 0.8, 2.0]), rng.choice([1.0, 1.75, 3.0]), rng.choice([1, 2, 3, 4])), (0.0, 1.75, 2))
    breakers = [rng.sample(range(12), rng.choice([0, 1, 3])) for _ in range(B)]
    logits = random_logits(seed)
    tokens = repetitive_tokens(rng, PROMPT_LEN + generated)
    tokens[:2] = torch.tensor([1, 2, 3, 4, 5] * 9)[:tokens.shape[1]]  # rows 0 and 1: a clean repeat, no breakers
    breakers[0] = breakers[1] = []
    values[0] = values[1] = (0.8, 1.75, 2)
    params = [SamplingParams(dry_multiplier=m, dry_base=b, dry_allowed_length=a) for m, b, a in values]
    out = pipeline(params, logits, state_of(tokens), sequence_breakers=breakers)
    check_rows(out, logits, values, (0.0, 1.75, 2),
               lambda r, v: ref_dry(tokens[r].tolist(), logits[r], *v, set(breakers[r])))


def repetitive_tokens(rng: random.Random, length: int) -> torch.Tensor:
    """[B, length]: each row a short random phrase repeated, with some tokens changed (repeats of many lengths)."""
    rows = []
    for _ in range(B):
        phrase = [rng.randrange(12) for _ in range(rng.randrange(2, 7))]
        rows.append([t if rng.random() > 0.15 else rng.randrange(12) for t in (phrase * length)[:length]])
    return torch.tensor(rows)


def test_dry_by_hand() -> None:
    """5 6 7 8 ... 5 6 7: the 8 that followed "5 6 7" would extend a repeat of length 3."""
    logits = torch.zeros(4, 10)
    tokens = torch.tensor([[5, 6, 7, 8, 1, 2, 5, 6, 7]] * 4)
    params = [SamplingParams(dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=2)] * 3 + [SamplingParams()]
    breakers = [[], [6], [8], [6]]
    state = DecodeState.start(tokens[:, :5], 10, tokens[:, 5:])  # the repeat spans prompt and output
    out = apply_pipeline(logits, state, RowParams.build(params, EOS, 10, sequence_breakers=breakers))
    expected = torch.zeros(10)
    expected[8] = -1.0 * 2.0 ** (3 - 2)
    assert torch.equal(out[0], expected)
    assert torch.equal(out[1], torch.zeros(10))  # 6 breaks the match after one token: 1 < allowed_length 2
    assert torch.equal(out[2], torch.zeros(10))  # the token that would follow is itself a breaker
    assert torch.equal(out[3], torch.zeros(10))  # DRY off
    # two earlier occurrences: the longest match decides the penalty of each following token
    tokens = torch.tensor([[1, 2, 3, 9, 4, 2, 3, 5, 1, 2, 3]])
    out = apply_pipeline(torch.zeros(1, 10), DecodeState.start(tokens, 10),
                         RowParams.build([SamplingParams(dry_multiplier=0.5, dry_base=3.0, dry_allowed_length=1)], EOS, 10))
    expected = torch.zeros(10)
    expected[9] = -0.5 * 3.0 ** (3 - 1)  # "1 2 3" matched 3 tokens before 9
    expected[5] = -0.5 * 3.0 ** (2 - 1)  # "2 3" matched 2 tokens before 5
    assert torch.equal(out[0], expected)


def test_dry_ignores_prompt_padding() -> None:
    """Rows with shorter prompts are left-padded with -1; padding never matches, so a row equals itself alone."""
    tokens = torch.tensor([[4, 5, 4, 5, 4]])
    padded = torch.cat([torch.full((1, 3), -1), tokens], dim=1)
    params = [SamplingParams(dry_multiplier=1.0, dry_allowed_length=1)]
    alone = apply_pipeline(torch.zeros(1, 10), DecodeState.start(tokens, 10), RowParams.build(params, EOS, 10))
    with_pad = apply_pipeline(torch.zeros(1, 10), DecodeState.start(padded, 10), RowParams.build(params, EOS, 10))
    assert torch.equal(alone, with_pad) and alone[0, 5] < 0


def test_default_breakers_tokenize_like_text_generation_webui(tiny) -> None:
    ids = sequence_breaker_ids(tiny.tokenizer, DRY_SEQUENCE_BREAKERS)
    assert ids == [tiny.tokenizer("a" + s, add_special_tokens=False)["input_ids"][-1] for s in DRY_SEQUENCE_BREAKERS]
    assert tiny.tokenizer.decode([ids[0]]) == "\n"


# ----------------------------------------------------------------------------------------------------------
# XTC's random decision


def test_xtc_with_threshold_zero_keeps_one_candidate_when_tokens_were_already_removed() -> None:
    """Found by the property tests: at threshold 0 a removed token (p = 0) counted as reaching the threshold and,
    being the least likely, was the one kept: every token was gone."""
    logits = synthetic_logits(0)
    logits[:, V // 2:] = float("-inf")  # half the vocabulary removed by an earlier stage
    params = [SamplingParams(xtc_probability=1.0, xtc_threshold=0.0, seed=s) for s in range(B)]
    out = pipeline(params, logits, state_of(synthetic_tokens(0, PROMPT_LEN + 1, 50)))
    kept = torch.isfinite(out)
    assert kept.sum(-1).tolist() == [1] * B  # only the least likely candidate survives
    least = torch.where(torch.isfinite(logits), logits.softmax(-1), math.inf).argmin(-1)  # lowest id among equals
    assert torch.equal(kept.float().argmax(-1), least)


def xtc_removed_top(seeds: list[int], steps: int, probability: float, sample: int = 0) -> torch.Tensor:
    """[steps, rows] bool: whether XTC acted, on logits where three tokens always reach the threshold."""
    logits = torch.full((len(seeds), V), -5.0)
    logits[:, :3] = torch.tensor([3.0, 2.0, 1.0])
    params = [SamplingParams(xtc_probability=probability, xtc_threshold=0.05, seed=s) for s in seeds]
    rows = RowParams.build(params, EOS, V, sample_indices=[sample] * len(seeds))
    tokens = torch.zeros(len(seeds), steps, dtype=torch.long)
    acted = []
    for step in range(steps):  # the step is the number of tokens past the prompt
        state = DecodeState.start(tokens, V)
        state.prompt_len = steps - step
        acted.append(torch.isneginf(REGISTRY["xtc"].apply(logits, state, rows)[:, 0]))
    return torch.stack(acted)


def test_xtc_decisions_are_seeded_per_row_and_step() -> None:
    first = xtc_removed_top([1, 2, 3], 64, 0.5)
    assert torch.equal(first, xtc_removed_top([1, 2, 3], 64, 0.5))  # reproducible
    assert torch.equal(first[:, 1], xtc_removed_top([2], 64, 0.5)[:, 0])  # a row alone decides the same
    assert not torch.equal(first[:, 0], first[:, 1])  # seeds differ
    assert not torch.equal(first, xtc_removed_top([1, 2, 3], 64, 0.5, sample=1))  # sample indices differ
    assert first.any(0).all() and (~first).any(0).all()  # each row both acts and passes


@pytest.mark.parametrize("probability", [0.1, 0.5, 0.9])
def test_xtc_acts_with_its_probability(probability: float) -> None:
    acted = xtc_removed_top(list(range(40)), 100, probability)
    rate, n = float(acted.float().mean()), acted.numel()
    assert abs(rate - probability) < 4 * math.sqrt(probability * (1 - probability) / n)
    assert not xtc_removed_top([1], 50, 0.0).any() and xtc_removed_top([1], 50, 1.0).all()


def test_xtc_decision_does_not_correlate_with_the_token_noise() -> None:
    seeds, samples = torch.arange(4000) % 97, torch.arange(4000) // 97
    keys = row_keys(seeds, samples, 5)
    coin = row_uniform(keys, XTC_STREAM).float()
    noise = uniform_noise(keys, 50)  # [N, 50] the per-token uniforms behind the Gumbel draw
    centred = coin - coin.mean()
    corr = (centred[:, None] * (noise - noise.mean(0))).mean(0) / (centred.std() * noise.std(0))
    assert float(corr.abs().max()) < 0.07


# ----------------------------------------------------------------------------------------------------------
# Mirostat over a generation: its state, the loop reference and the replay

MIROSTAT = dict(mirostat=2, mirostat_tau=3.0, mirostat_eta=0.5, temperature=0.02, max_new_tokens=10, seed=11)


@pytest.mark.slow  # a full forward per step in the reference loop: ~8 s of CPU
def test_mirostat_mu_trajectory_matches_a_loop_reference(tiny) -> None:
    """A plain loop: forward the whole text, truncate at mu, renormalise, draw with the row's noise, update mu."""
    engine = Engine(tiny)
    prompt = engine.encode("Once upon a time")
    params = SamplingParams(**MIROSTAT)
    result = engine.generate(prompt, [params, SamplingParams(max_new_tokens=4)], [2, 0]).rows[0]
    mu, tokens, mus, kept = 2 * params.mirostat_tau, list(prompt), [], []
    with torch.inference_mode():
        for step in range(params.max_new_tokens):
            logits = tiny.model(input_ids=torch.tensor([tokens])).logits[0, -1].float() / params.temperature
            truncated = ref_mirostat_truncate(logits, mu)
            kept.append(int(torch.isfinite(truncated).sum()))
            key = row_keys(torch.tensor([params.seed]), torch.tensor([2]), step)
            token = int(choose_next(truncated[None], torch.tensor([False]), key)[0])
            surprise = float(-torch.log_softmax(truncated, -1)[token] / math.log(2))
            mus.append(mu)
            mu -= params.mirostat_eta * (surprise - params.mirostat_tau)
            tokens.append(token)
    assert result.token_ids == tokens[len(prompt):]
    engine_mus = [ref_mirostat_mu(params.mirostat_tau, params.mirostat_eta, result.final_logprobs[:t])
                  for t in range(params.max_new_tokens)]
    np.testing.assert_allclose(engine_mus, mus, rtol=0, atol=1e-4)
    assert len(set(kept)) > 2 and min(kept) >= 1  # mu moved, and with it how many tokens survive


@pytest.mark.slow  # 20 full-vocabulary replays: ~25 s of CPU
def test_mirostat_replay_rebuilds_mu(tiny) -> None:
    engine = Engine(tiny)
    prompt = engine.encode("Once upon a time")
    params = [SamplingParams(**MIROSTAT), SamplingParams(**{**MIROSTAT, "mirostat_tau": 2.0, "seed": 3}),
              SamplingParams(temperature=0.5, max_new_tokens=6)]  # a row that leaves early
    result = engine.generate(prompt, params, [0, 1, 0], trace_top_n=8)
    trace, stage = result.trace, 1 + DEFAULT_ORDER.index("mirostat")
    for row in (0, 1):
        for step in range(10):
            replay = engine.replay(result, row, step)
            assert replay.chosen == result.rows[row].token_ids[step]
            for s in range(len(replay.stage_names)):
                probs = replay.probs[s]
                torch.testing.assert_close(probs[trace.top_ids[step, s, row].long()], trace.top_probs[step, s, row],
                                           atol=1e-4, rtol=0)
                assert int((probs > 0).sum()) == int(trace.support[step, s, row])
            assert math.isclose(math.log(replay.probs[-1][replay.chosen]), result.rows[row].final_logprobs[step],
                                abs_tol=1e-4)
    assert len(set(trace.support[:, stage, 0].tolist())) > 1  # the truncation changed along the way


def test_decode_state_carries_the_surprise_through_select() -> None:
    tokens = random_tokens(0, PROMPT_LEN + 3)
    logprobs = -torch.rand(B, 3) * 5
    state = state_of(tokens, logprobs)
    expected = (-logprobs.double() / math.log(2)).sum(1)
    torch.testing.assert_close(state.surprise_bits, expected)
    keep = torch.tensor([1, 4, 6])
    torch.testing.assert_close(state.select(keep).surprise_bits, expected[keep])
    assert torch.equal(state_of(tokens).surprise_bits, torch.zeros(B, dtype=torch.float64))
