"""Oracle tests: each batched processor row equals transformers' own LogitsProcessor on that row alone.

Random logits, random per-row parameters (some rows disabled), fp32; values allclose 1e-6 and the same -inf
mask. Every test also checks the input scores were not changed in place.
"""
from __future__ import annotations

import random

import pytest
import torch
from transformers.generation import logits_process as hf

from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import SamplingParams
from engine.processors import REGISTRY, apply_pipeline
from engine.rowstate import DecodeState, RowParams
from assertions import assert_same_scores
from synthetic import B, EOS, PROMPT_LEN, V, random_logits
from synthetic import random_tokens as synthetic_tokens



def random_tokens(seed: int, length: int) -> torch.Tensor:
    return synthetic_tokens(seed, length, alphabet=40)


def run_ours(name: str, params: list[SamplingParams], logits: torch.Tensor, tokens: torch.Tensor,
             **token_lists) -> torch.Tensor:
    rows = RowParams.build(params, EOS, V, **token_lists)
    state = DecodeState.start(tokens[:, :PROMPT_LEN], V, generated=tokens[:, PROMPT_LEN:])
    before = logits.clone()
    processor = REGISTRY[name]
    active = processor.active(rows)
    out = torch.where(active[:, None], processor.apply(logits, state, rows), logits)
    assert torch.equal(logits, before), "processor changed its input in place"
    return out


# name -> (random value for a row, value meaning "off", transformers processor for a scalar value)
CASES = {
    "temperature": (lambda r: r.choice([0.05, 0.3, 0.7, 1.3, 2.5, 1e-4]), 1.0, lambda v: hf.TemperatureLogitsWarper(v)),
    "top_k": (lambda r: r.choice([1, 2, 5, 50, 499, 500, 1000]), 0, lambda v: hf.TopKLogitsWarper(v)),
    "top_p": (lambda r: r.choice([1e-9, 0.1, 0.5, 0.9, 0.95, 0.999]), 1.0, lambda v: hf.TopPLogitsWarper(v)),
    "min_p": (lambda r: r.choice([0.01, 0.05, 0.1, 0.5, 1.0]), 0.0, lambda v: hf.MinPLogitsWarper(v)),
    "typical_p": (lambda r: r.choice([0.2, 0.5, 0.9, 0.95]), 1.0, lambda v: hf.TypicalLogitsWarper(v)),
    "epsilon_cutoff": (lambda r: r.choice([1e-4, 3e-4, 1e-3, 0.01]), 0.0, lambda v: hf.EpsilonLogitsWarper(v)),
    "eta_cutoff": (lambda r: r.choice([1e-4, 3e-4, 1e-3, 0.01]), 0.0, lambda v: hf.EtaLogitsWarper(v)),
    "repetition_penalty": (lambda r: r.choice([0.5, 1.1, 1.3, 2.0, 100.0]), 1.0,
                           lambda v: hf.RepetitionPenaltyLogitsProcessor(v)),
    "no_repeat_ngram_size": (lambda r: r.choice([1, 2, 3, 4]), 0, lambda v: hf.NoRepeatNGramLogitsProcessor(v)),
    "top_h": (lambda r: r.choice([0.05, 0.3, 0.5, 0.8, 0.95, 1.0]), 0.0, lambda v: hf.TopHLogitsWarper(v)),
    "renormalize_logits": (lambda r: True, False, lambda v: hf.LogitNormalization()),
}
PROCESSOR_OF = {"no_repeat_ngram_size": "no_repeat_ngram", "renormalize_logits": "renormalize"}


@pytest.mark.parametrize("field", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("generated", [0, 5, 20])
def test_scalar_processors_match_transformers(field: str, seed: int, generated: int) -> None:
    draw, off, make_hf = CASES[field]
    rng = random.Random(seed * 100 + generated)
    values = [draw(rng) if rng.random() < 0.75 else off for _ in range(B)]
    logits = random_logits(seed)
    tokens = random_tokens(seed, PROMPT_LEN + generated)
    ours = run_ours(PROCESSOR_OF.get(field, field), [SamplingParams(**{field: v}) for v in values], logits, tokens)
    for row, value in enumerate(values):
        expected = logits[row:row + 1] if value == off else make_hf(value)(tokens[row:row + 1], logits[row:row + 1].clone())
        assert_same_scores(ours[row], expected[0], f"{field}={value} (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("generated", [0, 7])
def test_encoder_repetition_penalty_matches_transformers_with_the_prompt_as_encoder_input(seed, generated) -> None:
    rng = random.Random(seed)
    values = [rng.choice([0.5, 0.8, 1.3, 2.0, 100.0, 0.01]) if rng.random() < 0.75 else 1.0 for _ in range(B)]
    logits = random_logits(seed)
    tokens = random_tokens(seed, PROMPT_LEN + generated)
    ours = run_ours("encoder_repetition_penalty", [SamplingParams(encoder_repetition_penalty=v) for v in values],
                    logits, tokens)
    for row, value in enumerate(values):
        proc = hf.EncoderRepetitionPenaltyLogitsProcessor(value, encoder_input_ids=tokens[row:row + 1, :PROMPT_LEN])
        expected = logits[row:row + 1] if value == 1.0 else proc(tokens[row:row + 1], logits[row:row + 1].clone())
        assert_same_scores(ours[row], expected[0], f"encoder_repetition_penalty={value} (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exponential_decay_length_penalty_matches_transformers(seed) -> None:
    rng = random.Random(seed)
    values = [(rng.randrange(0, 8), rng.choice([0.0, 0.5, 0.9, 1.05, 1.5, 3.0])) if rng.random() < 0.75 else (0, 1.0)
              for _ in range(B)]
    logits = random_logits(seed)
    logits[0, EOS[0]] = float("-inf")  # a removed end-of-text token stays removed
    for generated in range(0, 12, 3):
        tokens = random_tokens(seed, PROMPT_LEN + generated)
        params = [SamplingParams(exponential_decay_start=start, exponential_decay_factor=factor, max_new_tokens=16)
                  for start, factor in values]
        ours = run_ours("exponential_decay", params, logits, tokens)
        for row, (start, factor) in enumerate(values):
            proc = hf.ExponentialDecayLengthPenalty((start, factor), EOS, PROMPT_LEN)
            expected = logits[row:row + 1] if factor == 1.0 else proc(tokens[row:row + 1], logits[row:row + 1].clone())
            assert_same_scores(ours[row], expected[0], f"decay ({start}, {factor}) at step {generated} (row {row})")


def test_exponential_decay_that_would_overflow_is_refused_naming_the_field() -> None:
    with pytest.raises(ParamError, match=r"^exponential_decay_factor: must be small enough .* 1e\+20 .*got 10"):
        SamplingParams(exponential_decay_factor=10.0, max_new_tokens=100)
    SamplingParams(exponential_decay_factor=10.0, max_new_tokens=100, exponential_decay_start=90)  # 10^10: fine


def test_top_h_on_rows_with_fewer_than_100_candidates_matches_transformers() -> None:
    """top-H after a truncation: most of its 100 candidates are already -inf."""
    logits = random_logits(4)
    truncated = torch.where(logits >= logits.topk(30, dim=-1).values[:, -1:], logits, float("-inf"))
    values = [0.1, 0.5, 0.9, 1.0, 0.3, 0.7, 0.05, 0.6][:B]
    ours = run_ours("top_h", [SamplingParams(top_h=v) for v in values], truncated, random_tokens(4, PROMPT_LEN))
    for row, value in enumerate(values):
        expected = hf.TopHLogitsWarper(value)(None, truncated[row:row + 1].clone())
        assert_same_scores(ours[row], expected[0], f"top_h={value} (row {row})")


def test_min_new_tokens_matches_transformers() -> None:
    logits = random_logits(5)
    for generated in (0, 3, 6):
        tokens = random_tokens(5, PROMPT_LEN + generated)
        values = [0, 1, 3, 4, 6, 10, 0, 2]
        ours = run_ours("min_new_tokens", [SamplingParams(min_new_tokens=v) for v in values], logits, tokens)
        for row, value in enumerate(values):
            proc = hf.MinNewTokensLengthLogitsProcessor(PROMPT_LEN, value, EOS)
            expected = proc(tokens[row:row + 1], logits[row:row + 1].clone())
            assert_same_scores(ours[row], expected[0], f"min_new_tokens={value} at step {generated} (row {row})")


def random_sequences(rng: random.Random) -> list[list[int]]:
    return [[rng.randrange(40) for _ in range(rng.choice([1, 1, 2, 3]))] for _ in range(rng.randrange(0, 5))]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sequence_bias_matches_transformers(seed: int) -> None:
    rng = random.Random(seed)
    logits = random_logits(seed)
    tokens = random_tokens(seed, PROMPT_LEN + 6)
    # include the row's own last tokens so multi-token sequences really match
    per_row = []
    for row in range(B):
        seqs = random_sequences(rng) + [tokens[row, -2:].tolist() + [rng.randrange(V)]]
        per_row.append([(s, rng.choice([-5.0, -1.5, 2.0, 4.5])) for s in seqs] if row % 3 else [])
    ours = run_ours("sequence_bias", [SamplingParams()] * B, logits, tokens, sequence_bias=per_row)
    for row, entries in enumerate(per_row):
        if not entries:
            expected = logits[row:row + 1]
        else:
            proc = hf.SequenceBiasLogitsProcessor({tuple(s): b for s, b in entries})
            expected = proc(tokens[row:row + 1], logits[row:row + 1].clone())
        assert_same_scores(ours[row], expected[0], f"sequence_bias (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bad_words_match_transformers(seed: int) -> None:
    rng = random.Random(seed)
    logits = random_logits(seed)
    tokens = random_tokens(seed, PROMPT_LEN + 6)
    per_row = []
    for row in range(B):
        seqs = random_sequences(rng) + [tokens[row, -1:].tolist() + [rng.randrange(V)]]
        per_row.append(seqs if row % 4 else [])
    ours = run_ours("bad_words", [SamplingParams()] * B, logits, tokens, bad_words=per_row)
    for row, seqs in enumerate(per_row):
        expected = hf.NoBadWordsLogitsProcessor(seqs)(tokens[row:row + 1], logits[row:row + 1].clone()) if seqs \
            else logits[row:row + 1]
        assert_same_scores(ours[row], expected[0], f"bad_words (row {row})")


def test_presence_and_frequency_follow_openai_semantics() -> None:
    logits = random_logits(9)
    tokens = random_tokens(9, PROMPT_LEN + 10)
    generated = tokens[:, PROMPT_LEN:]
    params = [SamplingParams(presence_penalty=0.5 * (r % 3), frequency_penalty=0.25 * (r % 4) - 0.5) for r in range(B)]
    out = run_ours("presence_penalty", params, logits, tokens)
    out = torch.where(REGISTRY["frequency_penalty"].active(RowParams.build(params, EOS, V))[:, None],
                      run_ours("frequency_penalty", params, out, tokens), out)
    for row, p in enumerate(params):
        counts = torch.bincount(generated[row], minlength=V).float()
        expected = logits[row] - p.presence_penalty * (counts > 0).float() - p.frequency_penalty * counts
        torch.testing.assert_close(out[row], expected, rtol=1e-6, atol=1e-6)
    # prompt-only tokens are not penalised (OpenAI counts generated text only)
    prompt_only = set(tokens[0, :PROMPT_LEN].tolist()) - set(generated[0].tolist())
    for t in prompt_only:
        assert out[0, t] == logits[0, t]


def test_disabled_values_are_exact_noops_through_the_whole_pipeline() -> None:
    logits = random_logits(3)
    tokens = random_tokens(3, PROMPT_LEN + 4)
    rows = RowParams.build([SamplingParams()] * B, EOS, V)
    state = DecodeState.start(tokens[:, :PROMPT_LEN], V, generated=tokens[:, PROMPT_LEN:])
    assert torch.equal(apply_pipeline(logits, state, rows), logits)


def test_greedy_rows_skip_sampling_processors() -> None:
    logits = random_logits(4)
    tokens = random_tokens(4, PROMPT_LEN)
    greedy = SamplingParams(temperature=0.0, top_k=3, top_p=0.5, repetition_penalty=1.3)
    rows = RowParams.build([greedy] * B, EOS, V)
    state = DecodeState.start(tokens, V)
    expected = hf.RepetitionPenaltyLogitsProcessor(1.3)(tokens, logits.clone())
    torch.testing.assert_close(apply_pipeline(logits, state, rows), expected)


def test_rows_follow_their_own_order() -> None:
    """Row 0: temperature then min_p (default). Row 1: min_p before temperature. Compared with transformers' chain."""
    logits = random_logits(6)[:2]
    tokens = random_tokens(6, PROMPT_LEN)[:2]
    params = [SamplingParams(temperature=2.0, min_p=0.2), SamplingParams(temperature=2.0, min_p=0.2, order=["min_p", "temperature"])]
    rows = RowParams.build(params, EOS, V)
    out = apply_pipeline(logits, DecodeState.start(tokens, V), rows)
    t, m = hf.TemperatureLogitsWarper(2.0), hf.MinPLogitsWarper(0.2)
    assert_same_scores(out[0], m(tokens[:1], t(tokens[:1], logits[:1].clone()))[0], "temperature>min_p (row 0)")
    assert_same_scores(out[1], t(tokens[1:], m(tokens[1:], logits[1:].clone()))[0], "min_p>temperature (row 1)")
    assert (out[0] > float("-inf")).sum() != (out[1] > float("-inf")).sum()


def test_default_order_is_transformers_order() -> None:
    warpers = ["temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"]
    assert [n for n in DEFAULT_ORDER if n in warpers] == warpers
    assert DEFAULT_ORDER.index("repetition_penalty") < DEFAULT_ORDER.index("no_repeat_ngram") < DEFAULT_ORDER.index("bad_words")
    # transformers' _get_logits_processor: classifier-free guidance first (on the raw scores), then sequence_bias
    assert DEFAULT_ORDER[:2] == ("guidance", "sequence_bias")


def test_extreme_values_produce_no_nan() -> None:
    logits = random_logits(8)
    tokens = random_tokens(8, PROMPT_LEN + 3)
    params = [SamplingParams(temperature=1e-4, top_p=1e-9, repetition_penalty=100.0, min_p=1.0, typical_p=1e-6,
                             epsilon_cutoff=0.99, eta_cutoff=0.99, top_k=1)] * B
    out = apply_pipeline(logits, DecodeState.start(tokens[:, :PROMPT_LEN], V, tokens[:, PROMPT_LEN:]),
                         RowParams.build(params, EOS, V))
    assert not torch.isnan(out).any()
    assert (torch.isfinite(out).sum(dim=1) >= 1).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_row_in_a_mixed_batch_equals_the_row_alone(seed: int) -> None:
    """Mixed settings take the subset and masked paths of the pipeline; each row must equal its run alone."""
    rng = random.Random(seed)
    logits = random_logits(seed)
    tokens = random_tokens(seed, PROMPT_LEN + 8)
    params = []
    for _ in range(B):
        chosen = {f: CASES[f][0](rng) for f in rng.sample(list(CASES), 3)}
        order = rng.sample(["temperature", "top_k", "top_p", "min_p"], rng.choice([0, 2, 4]))
        params.append(SamplingParams(**chosen, order=order))
    state = DecodeState.start(tokens[:, :PROMPT_LEN], V, generated=tokens[:, PROMPT_LEN:])
    together = apply_pipeline(logits, state, RowParams.build(params, EOS, V))
    for row, p in enumerate(params):
        alone_state = DecodeState.start(tokens[row:row + 1, :PROMPT_LEN], V, generated=tokens[row:row + 1, PROMPT_LEN:])
        alone = apply_pipeline(logits[row:row + 1], alone_state, RowParams.build([p], EOS, V))
        assert_same_scores(together[row], alone[0], f"{p} (row {row})")


@pytest.mark.parametrize("candidates", [(1,), (3,), (40,), (V,), (1, 3), (3, 40, V)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_top_p_fast_path_and_fallback_both_match_transformers(monkeypatch, candidates: tuple[int, ...],
                                                              seed: int) -> None:
    """top_p decides most cuts from a topk of candidates, then more candidates for the rows whose cut lies beyond
    them; a cut outside the last, or between tied tokens, re-sorts."""
    import engine.processors as processors
    monkeypatch.setattr(processors, "_TOP_P_CANDIDATES", candidates)
    test_scalar_processors_match_transformers("top_p", seed, 5)


def random_ids(rng: random.Random) -> list[int]:
    """A row's token ids to suppress: none, or a few (EOS among them now and then), repeats included."""
    return [rng.choice([*EOS, *range(V)]) for _ in range(rng.choice([0, 1, 3, 12]))]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("generated", [0, 1, 6])
def test_suppress_tokens_match_transformers(seed: int, generated: int) -> None:
    rng = random.Random(seed * 10 + generated)
    per_row = [random_ids(rng) for _ in range(B)]
    logits, tokens = random_logits(seed), random_tokens(seed, PROMPT_LEN + generated)
    ours = run_ours("suppress_tokens", [SamplingParams(suppress_tokens=ids) for ids in per_row], logits, tokens)
    for row, ids in enumerate(per_row):
        proc = hf.SuppressTokensLogitsProcessor(ids)
        expected = proc(tokens[row:row + 1], logits[row:row + 1].clone()) if ids else logits[row:row + 1]
        assert_same_scores(ours[row], expected[0], f"suppress_tokens={ids} at step {generated} (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("generated", [0, 1, 6])
def test_begin_suppress_tokens_match_transformers_with_begin_index_the_prompt_length(seed: int, generated: int) -> None:
    rng = random.Random(seed * 10 + generated + 5)
    per_row = [random_ids(rng) for _ in range(B)]
    logits, tokens = random_logits(seed), random_tokens(seed, PROMPT_LEN + generated)
    ours = run_ours("begin_suppress_tokens", [SamplingParams(begin_suppress_tokens=ids) for ids in per_row], logits, tokens)
    for row, ids in enumerate(per_row):
        proc = hf.SuppressTokensAtBeginLogitsProcessor(ids, begin_index=PROMPT_LEN)
        expected = proc(tokens[row:row + 1], logits[row:row + 1].clone()) if ids else logits[row:row + 1]
        assert_same_scores(ours[row], expected[0], f"begin_suppress_tokens={ids} at step {generated} (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("generated", [0, 1, 6])
def test_forced_bos_matches_transformers_at_the_first_new_token(seed: int, generated: int) -> None:
    """transformers forces the token when its decoder input is one token long (an encoder-decoder's first new
    token): its input here is the last prompt token and the tokens generated since."""
    rng = random.Random(seed * 10 + generated + 7)
    values = [rng.randrange(V) if rng.random() < 0.75 else -1 for _ in range(B)]
    logits, tokens = random_logits(seed), random_tokens(seed, PROMPT_LEN + generated)
    ours = run_ours("forced_bos", [SamplingParams(forced_bos_token_id=v) for v in values], logits, tokens)
    for row, value in enumerate(values):
        decoder_input = tokens[row:row + 1, PROMPT_LEN - 1:]
        expected = logits[row:row + 1] if value < 0 else \
            hf.ForcedBOSTokenLogitsProcessor(value)(decoder_input, logits[row:row + 1].clone())
        assert_same_scores(ours[row], expected[0], f"forced_bos_token_id={value} at step {generated} (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forced_eos_matches_transformers_at_the_last_new_token(seed: int) -> None:
    rng = random.Random(seed)
    values = [(rng.randrange(V) if rng.random() < 0.75 else -1, rng.randrange(1, 9)) for _ in range(B)]
    logits = random_logits(seed)
    params = [SamplingParams(forced_eos_token_id=token, max_new_tokens=n) for token, n in values]
    for generated in range(9):
        tokens = random_tokens(seed, PROMPT_LEN + generated)
        ours = run_ours("forced_eos", params, logits, tokens)
        for row, (token, n) in enumerate(values):
            proc = hf.ForcedEOSTokenLogitsProcessor(max_length=PROMPT_LEN + n, eos_token_id=token) if token >= 0 else None
            expected = proc(tokens[row:row + 1], logits[row:row + 1].clone()) if proc else logits[row:row + 1]
            assert_same_scores(ours[row], expected[0], f"forced_eos_token_id={token}, max_new_tokens={n} at step "
                                                       f"{generated} (row {row})")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_length_counts_the_prompt_as_transformers_min_length_processor(seed: int) -> None:
    """min_length becomes min_new_tokens = min_length - prompt length (with min_new_tokens, the larger holds)."""
    rng = random.Random(seed)
    values = [(rng.randrange(0, PROMPT_LEN + 8), rng.choice([0, 0, 2, 5])) for _ in range(B)]
    logits = random_logits(seed)
    params = [SamplingParams(min_length=m, min_new_tokens=n, max_new_tokens=8).for_prompt(PROMPT_LEN) for m, n in values]
    for generated in range(8):
        tokens = random_tokens(seed, PROMPT_LEN + generated)
        ours = run_ours("min_new_tokens", params, logits, tokens)
        for row, (m, n) in enumerate(values):
            expected = hf.MinLengthLogitsProcessor(m, EOS)(tokens[row:row + 1], logits[row:row + 1].clone())
            expected = hf.MinNewTokensLengthLogitsProcessor(PROMPT_LEN, n, EOS)(tokens[row:row + 1], expected)
            assert_same_scores(ours[row], expected[0], f"min_length={m}, min_new_tokens={n} at step {generated} (row {row})")


def test_a_row_with_every_new_processor_in_a_mixed_batch_equals_the_row_alone() -> None:
    rng = random.Random(11)
    logits = random_logits(11)
    params = [SamplingParams(suppress_tokens=random_ids(rng), begin_suppress_tokens=random_ids(rng),
                             forced_bos_token_id=rng.choice([-1, rng.randrange(V)]),
                             forced_eos_token_id=rng.choice([-1, rng.randrange(V)]), max_new_tokens=rng.randrange(1, 4),
                             temperature=rng.choice([0.0, 0.7]), top_k=rng.choice([0, 5]),
                             order=rng.sample(["suppress_tokens", "forced_bos", "forced_eos", "begin_suppress_tokens",
                                               "top_k"], rng.choice([0, 5])))
              for _ in range(B)]
    rows = RowParams.build(params, EOS, V)
    for generated in range(3):
        tokens = random_tokens(11, PROMPT_LEN + generated)
        state = DecodeState.start(tokens[:, :PROMPT_LEN], V, generated=tokens[:, PROMPT_LEN:])
        together = apply_pipeline(logits, state, rows)
        for row, p in enumerate(params):
            alone_state = DecodeState.start(tokens[row:row + 1, :PROMPT_LEN], V, generated=tokens[row:row + 1, PROMPT_LEN:])
            alone = apply_pipeline(logits[row:row + 1], alone_state, RowParams.build([p], EOS, V))
            assert_same_scores(together[row], alone[0], f"{p} at step {generated} (row {row})")


def test_renormalize_keeps_a_row_with_nothing_left_at_minus_infinity():
    """Found by the property tests: forced_eos then begin_suppress_tokens removed every token, and the
    log_softmax of an all -inf row was NaN, which the loop did not read as "nothing left to sample"."""
    from engine.processors import renormalize

    scores = torch.tensor([[float("-inf")] * 4, [0.0, 1.0, float("-inf"), 2.0]])
    out = renormalize(scores, None, None)
    assert torch.equal(out[0], scores[0]) and not out.isnan().any()
    assert torch.allclose(out[1].exp().sum(), torch.tensor(1.0))


def test_top_h_leaves_a_row_with_nothing_left_as_it_is():
    """Found by the property tests: forced_eos then begin_suppress_tokens removed every token, and top_h's
    Categorical refused the all -inf row (an exception in the middle of a run)."""
    from engine.processors import top_h

    scores = torch.full((2, 300), float("-inf"))
    scores[1, :5] = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])

    class Rows:  # only top_h is read
        top_h = torch.tensor([[0.5], [0.5]])
    out = top_h(scores, None, Rows())
    assert torch.equal(out[0], scores[0]) and not out.isnan().any() and out[1, 0] == 3.0
