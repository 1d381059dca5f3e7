"""Property-based tests: random settings of every knob, random processor orders, random logits.

Profiles (tests/conftest.py): "ci" (the default, a few hundred examples in all, under a minute) and "thorough"
(HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties.py) for long local runs.

What must hold for every setting hypothesis finds:
- the pipeline never changes its input, emits no NaN, and never brings back a token an earlier stage removed (but
  for a forced token, which transformers forces whatever came before: then it alone is left, at 0);
- a processor whose knob is at its off value is an exact no-op (that stage returns its input, bit for bit);
- the chosen token survived every stage (finite final score, probability > 0 in the trace);
- bad_words and suppress_tokens never appear in an output, a forced first token is the first; top_k = 1 equals greedy; no NaN or inf in logprobs or metrics;
- the exact replay of a (row, step) equals what the batch chose, and a row alone equals the row in the batch;
- a branch forcing a row's own first k tokens, for any k, continues exactly as the row did.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.generate import Engine
from engine.knobs import DRY_MODES, PROCESSORS
from engine.metrics import sample_metrics
from engine.models import tiny_random_model
from engine.errors import ParamError
from engine.order import DEFAULT_ORDER, ORDER_PRESETS
from engine.params import NUMERIC_FIELDS, SamplingParams
from engine.tokens import token_ids, word_variants
from engine.processors import apply_pipeline
from engine.rowstate import DecodeState
from engine.sampling import choose_next, row_keys
from engine.sweep import run_sweep
from engine.sweepspec import SweepSpec

# hypothesis' "ci" profile runs each of these for about a minute on 2 cores (tests/conftest.py)
pytestmark = pytest.mark.slow

DEFAULTS = {f.name: f.default for f in dataclasses.fields(SamplingParams)}
WORDS = ("the", "a", "and", "Paris", "once", "very", "of", "to", "is")
PROMPTS = ("Once upon a time", "The capital of France is", "Explain how rain forms.")
# knobs the strategy varies (each either at its off value or anywhere in its documented range)
PIPELINE_KNOBS = (
    "temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty",
    "presence_penalty", "frequency_penalty", "no_repeat_ngram_size", "dry_multiplier", "dry_base",
    "dry_allowed_length", "xtc_threshold", "xtc_probability", "mirostat_tau", "mirostat_eta", "dynatemp_low",
    "dynatemp_high", "dynatemp_exponent", "top_n_sigma", "top_a", "tfs", "min_new_tokens",
    "encoder_repetition_penalty", "smoothing_factor", "smoothing_curve", "top_h", "exponential_decay_factor",
    "exponential_decay_start", "adaptive_target", "adaptive_decay", "watermark_bias", "watermark_greenlist_ratio",
    "watermark_context_width",
)


# Stages that may bring a removed token back: transformers forces its token whatever the earlier stages did.
FORCING = frozenset({"forced_bos", "forced_eos"})


def is_off(name: str, p: SamplingParams) -> bool:
    """Whether processor `name` must leave row p's scores alone (written from the docs, not the engine)."""
    sampling_only = {
        "temperature": p.temperature == 1.0, "dynatemp": p.dynatemp_low == p.dynatemp_high == 1.0,
        "top_k": p.top_k == 0, "top_p": p.top_p == 1.0, "min_p": p.min_p == 0.0, "typical_p": p.typical_p == 1.0,
        "top_n_sigma": p.top_n_sigma == 0.0, "top_a": p.top_a == 0.0, "tfs": p.tfs == 1.0,
        "epsilon_cutoff": p.epsilon_cutoff == 0.0, "eta_cutoff": p.eta_cutoff == 0.0,
        "xtc": p.xtc_probability == 0.0, "mirostat": p.mirostat == 0,
        "smoothing": p.smoothing_factor == 0.0, "top_h": p.top_h == 0.0, "adaptive_p": p.adaptive_target == 0.0,
    }
    if name in sampling_only:
        return p.greedy or sampling_only[name]
    return {
        "sequence_bias": not p.sequence_bias and not p.logit_bias, "diversity_penalty": p.diversity_penalty == 0,
        "repetition_penalty": p.repetition_penalty == 1.0, "presence_penalty": p.presence_penalty == 0.0,
        "frequency_penalty": p.frequency_penalty == 0.0, "dry": p.dry_multiplier == 0.0,
        "no_repeat_ngram": p.no_repeat_ngram_size == 0, "bad_words": not p.bad_words,
        "min_new_tokens": p.min_new_tokens == 0, "encoder_repetition_penalty": p.encoder_repetition_penalty == 1.0,
        "renormalize": not p.renormalize_logits, "exponential_decay": p.exponential_decay_factor == 1.0,
        "suppress_tokens": not p.suppress_tokens, "begin_suppress_tokens": not p.begin_suppress_tokens,
        "forced_bos": p.forced_bos_token_id == -1, "forced_eos": p.forced_eos_token_id == -1,
        "guidance": p.guidance_scale == 1.0, "watermark": p.watermark_bias == 0.0, "synthid": not p.synthid_keys,
    }[name]


def knob_value(name: str) -> st.SearchStrategy:
    """The knob's off value half the time, else any value of its documented range (edges included)."""
    kind, allowed = NUMERIC_FIELDS[name]
    if kind is int:
        high = int(min(allowed.high, 2**63 - 1))
        values = st.integers(int(allowed.low) + allowed.low_open, high - allowed.high_open)
        if name == "min_new_tokens":
            values = st.integers(0, 12)
    else:
        values = st.floats(allowed.low, allowed.high, exclude_min=allowed.low_open,
                           exclude_max=allowed.high_open or math.isinf(allowed.high), allow_nan=False)
    return st.one_of(st.just(DEFAULTS[name]), values)


def token_list() -> st.SearchStrategy:
    """suppress_tokens / begin_suppress_tokens: words and token ids of the bundled vocabulary, mixed."""
    return st.lists(st.one_of(st.sampled_from(WORDS), st.integers(0, 49_151)), max_size=3)


def forced_token() -> st.SearchStrategy:
    """forced_bos_token_id / forced_eos_token_id: off half the time, else any token id of the vocabulary."""
    return st.one_of(st.just(-1), st.integers(0, 49_151))


@st.composite
def sampling_params(draw, beams: bool = False) -> SamplingParams:
    """Any valid configuration of every knob and a random processor order (invalid combinations rejected)."""
    values = {name: draw(knob_value(name)) for name in PIPELINE_KNOBS}
    values.update(
        do_sample=draw(st.booleans()) if not beams else draw(st.sampled_from([False, False, True])),
        mirostat=draw(st.sampled_from([0, 0, 2])),
        renormalize_logits=draw(st.booleans()),
        bad_words=draw(st.lists(st.sampled_from(WORDS), max_size=3, unique=True)),
        sequence_bias=draw(st.lists(st.tuples(st.sampled_from(WORDS), st.one_of(
            st.floats(-20, 20, allow_nan=False), st.just(float("-inf")))), max_size=2, unique_by=lambda t: t[0])),
        logit_bias=draw(st.lists(st.tuples(st.integers(0, 49_151), st.floats(-100, 100, allow_nan=False)),
                                 max_size=2, unique_by=lambda t: t[0])),
        suppress_tokens=draw(token_list()), begin_suppress_tokens=draw(token_list()),
        forced_bos_token_id=draw(forced_token()), forced_eos_token_id=draw(forced_token()),
        order=draw(st.one_of(st.permutations(DEFAULT_ORDER), st.sampled_from(list(ORDER_PRESETS)))),
        dry_mode=draw(st.sampled_from(DRY_MODES)),
        seed=draw(st.integers(0, 2**63 - 1)),
        max_new_tokens=draw(st.integers(1, 8)),
    )
    if beams:
        num_beams = draw(st.integers(2, 4))
        values.update(num_beams=num_beams, num_return_sequences=draw(st.integers(1, num_beams)),
                      length_penalty=draw(st.floats(-2, 2)), early_stopping=draw(st.sampled_from([False, True, "never"])))
        for name in ("dry_multiplier", "xtc_probability", "mirostat", "dynatemp_low", "dynatemp_high",
                     "top_n_sigma", "top_a", "tfs", "presence_penalty", "frequency_penalty", "smoothing_factor",
                     "adaptive_target"):
            values[name] = DEFAULTS[name]  # community samplers are sampling-loop processors only
    try:
        return SamplingParams(**values)
    except ParamError:
        from hypothesis import reject
        reject()


@st.composite
def logits_rows(draw, rows: int, vocab: int) -> torch.Tensor:
    """[rows, V] logits with the shapes processors find awkward: peaked, flat, ties, removed tokens."""
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * draw(st.sampled_from([0.5, 3.0, 30.0]))
    if draw(st.booleans()):
        logits[0, : draw(st.integers(1, 50))] = logits[0].max()  # ties at the top
    if draw(st.booleans()):
        logits[-1, torch.randperm(vocab, generator=g)[: vocab // 2]] = float("-inf")  # removed already
    return logits


# ----------------------------------------------------------------------------------------------------------
# The pipeline on random logits (tiny model's tokenizer for the text knobs)


@pytest.fixture(scope="module")
def tiny_engine(tiny) -> Engine:
    """A tiny model whose next-token distributions are spread like a trained model's (init_std 1.0). The session's
    `tiny` is nearly uniform (every p within a few ulps of 1/V): there typical_p's "most typical token" and other
    ties are decided by the last bit of the forward, which differs with the batch size and in a replay."""
    return Engine(tiny_random_model(vocab_from=tiny, init_std=1.0))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(params=st.lists(sampling_params(), min_size=1, max_size=4), data=st.data())
def test_every_stage_keeps_its_promises(tiny_engine: Engine, params: list[SamplingParams], data) -> None:
    vocab = tiny_engine.loaded.vocab_size
    rows = len(params)
    logits = data.draw(logits_rows(rows, vocab), label="logits")
    history = data.draw(st.lists(st.integers(0, 300), min_size=4, max_size=30), label="history")
    tokens = torch.tensor([history] * rows)  # a small alphabet, so that repeats and n-grams occur
    prompt_len = data.draw(st.integers(1, len(history)), label="prompt length")
    state = DecodeState.start(tokens[:, :prompt_len], vocab, tokens[:, prompt_len:])
    row_params = tiny_engine.row_params(params, list(range(rows)))
    stages: list[torch.Tensor] = [logits]
    before = logits.clone()
    final = apply_pipeline(logits, state, row_params, on_stage=lambda _s, scores, _c: stages.append(scores))
    assert torch.equal(logits, before), "the pipeline changed its input in place"
    forced_at = [0] * rows  # per row, the last stage that forced a token (0: none)
    for s, scores in enumerate(stages[1:], start=1):
        assert not bool(scores.isnan().any()), f"NaN after stage {s}"
        for r, p in enumerate(params):
            name = p.order[s - 1]
            if name in FORCING and not torch.equal(scores[r], stages[s - 1][r]):
                # transformers' forced token: every other score -inf, its own 0, even if an earlier stage removed it
                assert (scores[r] > float("-inf")).sum() == 1 and float(scores[r].max()) == 0.0, name
                forced_at[r] = s
                continue
            removed_before = torch.isinf(stages[s - 1][r]) & (stages[s - 1][r] < 0)
            assert bool((scores[r][removed_before] == float("-inf")).all()), f"{name} brought back a removed token"
            if is_off(name, p):
                assert torch.equal(scores[r], stages[s - 1][r]), f"{name} is off for row {r} but changed it"
    keys = row_keys(torch.tensor([p.seed for p in params]), torch.arange(rows), state.step)
    greedy = torch.tensor([p.greedy for p in params])
    chosen = choose_next(final, greedy, keys)
    for r in range(rows):
        if bool((final[r] > float("-inf")).any()):  # (a row with nothing left falls back to raw logits)
            assert all(math.isfinite(float(stage[r, chosen[r]])) or float(stage[r, chosen[r]]) == math.inf
                       for stage in stages[forced_at[r]:]), "the chosen token did not survive every stage"


# ----------------------------------------------------------------------------------------------------------
# Whole generations on the tiny model


def banned_in(token_ids: list[int], sequences: list[list[int]]) -> bool:
    return any(token_ids[i:i + len(s)] == s for s in sequences for i in range(len(token_ids) - len(s) + 1))


def token_left_by_forcing(p: SamplingParams, first: bool, last: bool) -> int | None:
    """The token the forcing stages leave at a step that is the first and/or the last new one: when forced_bos and
    forced_eos both fire (max_new_tokens 1), the later of the two in the row's order wins. None: none fires."""
    firing = [name for name in p.order if (name == "forced_bos" and first and p.forced_bos_token_id >= 0)
              or (name == "forced_eos" and last and p.forced_eos_token_id >= 0)]
    if not firing:
        return None
    return p.forced_bos_token_id if firing[-1] == "forced_bos" else p.forced_eos_token_id


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(params=st.lists(sampling_params(), min_size=1, max_size=3), prompt=st.sampled_from(PROMPTS), data=st.data())
def test_generations_keep_their_promises(tiny_engine: Engine, params: list[SamplingParams], prompt: str, data) -> None:
    engine, tok = tiny_engine, tiny_engine.loaded.tokenizer
    # top_k = 1 with every other sampling-only knob off must equal greedy with the same other settings, in
    # transformers' order (all penalties before the samplers: a bias applied after top_k could move the argmax)
    sampling_off = {name: DEFAULTS[name] for spec in PROCESSORS if spec.sampling_only
                    and spec.name not in ("temperature", "top_k") for name in spec.switch_names()}
    # (the watermarks, after every sampler, bias greedy rows too: they could move the greedy row's argmax)
    top1 = params[0].replace(**sampling_off, do_sample=True, temperature=data.draw(st.floats(0.05, 5)), top_k=1,
                             order=DEFAULT_ORDER, watermark_bias=0.0, synthid_keys=())
    params = [*params, top1, top1.replace(do_sample=False)]
    prompt_ids = engine.encode(prompt)
    result = engine.generate(prompt_ids, params, list(range(len(params))), trace_top_n=4)
    trace = result.trace
    for r, (p, row) in enumerate(zip(params, result.rows)):
        n = len(row.token_ids)
        assert 1 <= n <= p.max_new_tokens or (row.finish_reason == "no_candidates" and n < p.max_new_tokens)
        assert all(math.isfinite(x) for x in row.raw_logprobs + row.final_logprobs + row.raw_entropies)
        assert all(v is None or math.isfinite(v) for v in sample_metrics(row.token_ids, row.raw_logprobs,
                                                                          row.raw_entropies).values())
        assert bool((trace.chosen_prob[:n, -1, r] > 0).all()), "a chosen token had probability 0 when chosen"
        first_forced = token_left_by_forcing(p, first=True, last=p.max_new_tokens == 1)
        if row.token_ids and first_forced is not None:
            assert row.token_ids[0] == first_forced, "the forced first token was not the first"
        last_forced = token_left_by_forcing(p, first=n == 1, last=True)
        if n == p.max_new_tokens and last_forced is not None:
            assert row.token_ids[-1] == last_forced, "the forced last token was not the last"
        # a forced token wins over the bans (transformers' forcing processors set every other token to -inf,
        # whatever earlier stages did): the bans hold at every step no forcing stage decided
        free = list(row.token_ids)
        if free and first_forced is not None:
            free[0] = -1
        if n == p.max_new_tokens and last_forced is not None:
            free[-1] = -1
        banned = [ids for w in p.bad_words for ids in word_variants(tok, w)]
        assert not banned_in(free, banned), f"banned words in {row.text!r}"
        assert not set(free) & set(token_ids(tok, p.suppress_tokens)), "a suppressed token was generated"
        assert not free or free[0] not in token_ids(tok, p.begin_suppress_tokens)
    assert result.rows[-2].token_ids == result.rows[-1].token_ids, "top_k = 1 differs from greedy"
    # the exact replay of one (row, step) is what the batch saw (when some row has a token: settings may leave none)
    with_tokens = [i for i, row in enumerate(result.rows) if row.token_ids]
    if not with_tokens:
        assert all(row.finish_reason == "no_candidates" for row in result.rows)
        return
    r = data.draw(st.sampled_from(with_tokens), label="replay row")
    step = data.draw(st.integers(0, len(result.rows[r].token_ids) - 1), label="replay step")
    replay = engine.replay(result, r, step)
    assert replay.chosen == result.rows[r].token_ids[step] and float(replay.probs[-1][replay.chosen]) > 0
    if result.rows[r].final_logprobs[step] > -20:
        assert math.isclose(math.log(float(replay.probs[-1][replay.chosen])), result.rows[r].final_logprobs[step],
                            abs_tol=1e-3)
    # a row decodes exactly as it did whatever its neighbours, also with its lengths in transformers' prompt-inclusive
    # form (min_length / max_length), which must be the same run. The neighbours are plain greedy rows that stay
    # in the batch exactly as long as the originals did, so every step's forward has the same batch size: CPU
    # matrix kernels change with the batch size, and their last-bit differences can flip a float tie (typical_p
    # keeping one token among 49,152 picks it by differences of ~1e-6); README says so under Seeds.
    alone_params = params[r]
    if data.draw(st.booleans(), label="lengths as min_length / max_length"):
        alone_params = alone_params.replace(max_new_tokens=DEFAULTS["max_new_tokens"], min_new_tokens=0,
                                            max_length=len(prompt_ids) + alone_params.max_new_tokens,
                                            min_length=len(prompt_ids) + alone_params.min_new_tokens)
    neighbours = [SamplingParams(do_sample=False, max_new_tokens=steps, min_new_tokens=steps)
                  for steps in (len(row.token_ids) + (row.finish_reason == "no_candidates") for row in result.rows)]
    neighbours[r] = alone_params
    again = engine.generate(prompt_ids, neighbours, list(range(len(neighbours)))).rows[r]
    assert again.token_ids == result.rows[r].token_ids
    # a branch that forces a row's own first k tokens (any k) continues exactly as the row did (engine/forcing.py)
    forks = [data.draw(st.integers(0, len(row.token_ids)), label=f"fork of row {i}") for i, row in enumerate(result.rows)]
    branched = engine.generate(prompt_ids, params, list(range(len(params))),
                               forced=[row.token_ids[:k] for row, k in zip(result.rows, forks)])
    for row, branch in zip(result.rows, branched.rows):
        assert branch.token_ids == row.token_ids and branch.finish_reason == row.finish_reason
        assert branch.final_logprobs == row.final_logprobs, "a forced token's log-prob differs from its sampled one"


@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(params=sampling_params(beams=True), prompt=st.sampled_from(PROMPTS))
def test_beam_searches_keep_their_promises(tiny_engine: Engine, params: SamplingParams, prompt: str) -> None:
    result = run_sweep(tiny_engine, SweepSpec(prompt=prompt, base=params))
    banned = [ids for w in params.bad_words for ids in word_variants(tiny_engine.loaded.tokenizer, w)]
    records = result.records()
    assert len(records) == params.num_return_sequences
    for record in records:
        assert not banned_in(record["token_ids"], banned), record["text"]
        if record["finish_reason"] == "no_candidates":  # the processors removed every continuation
            assert record["token_ids"] == [] and "beam_score" not in record
            continue
        assert record["beam_score"] is not None and math.isfinite(record["beam_score"])
        assert all(math.isfinite(x) for x in record["logprobs"])
