"""Watermarking against transformers: the green-list watermark (WatermarkLogitsProcessor, WatermarkDetector) and
SynthID Text (SynthIDTextWatermarkLogitsProcessor and its detector's g-values), per row and over whole generations.

Oracles: transformers' own classes on each row alone (random logits, random token histories of several lengths,
random configs by hypothesis), greedy generate() with the same watermarking_config token for token, the detector's
z-score on generated outputs. A statistical test measures that the z-score grows with the bias.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from transformers import (SynthIDTextWatermarkingConfig, SynthIDTextWatermarkLogitsProcessor, WatermarkDetector,
                          WatermarkingConfig, WatermarkLogitsProcessor)

from engine.errors import ParamError
from engine.params import SamplingParams
from engine.processors import REGISTRY
from engine.rowstate import DecodeState, RowParams
from engine.sweep import run_sweep
from engine.sweepspec import Axis, SweepSpec
from engine.watermark import SynthIDConfig, green_detection, synthid_mean_score
from assertions import assert_same_scores

V = 500
NEG_INF = float("-inf")
PROMPT = "Write a short story about a lighthouse keeper."


def _rows_and_state(params: list[SamplingParams], histories: list[list[int]]) -> tuple[RowParams, DecodeState]:
    """Rows whose prompts have different lengths: left-padded with -1, as the engine batches them."""
    width = max(len(h) for h in histories)
    prompt = torch.tensor([[-1] * (width - len(h)) + h for h in histories], dtype=torch.long)
    return RowParams.build(params, [0], V), DecodeState.start(prompt, V)


def _apply(name: str, params: list[SamplingParams], logits: torch.Tensor, state: DecodeState,
           rows: RowParams) -> torch.Tensor:
    before = logits.clone()
    processor = REGISTRY[name]
    out = torch.where(processor.active(rows)[:, None], processor.apply(logits, state, rows), logits)
    assert torch.equal(logits, before), "the processor changed its input in place"
    assert not torch.isnan(out).any()
    return out


def _logits(generator: torch.Generator, batch: int) -> torch.Tensor:
    logits = torch.randn(batch, V, generator=generator) * 3
    removed = torch.rand(batch, V, generator=generator) < 0.3  # earlier stages removed some tokens
    removed[:, 0] = False
    return logits.masked_fill(removed, NEG_INF)


def _hf_green(p: SamplingParams) -> WatermarkLogitsProcessor:
    return WatermarkLogitsProcessor(V, "cpu", p.watermark_greenlist_ratio, p.watermark_bias, p.watermark_hashing_key,
                                    p.watermark_seeding_scheme, p.watermark_context_width)


green_configs = st.builds(
    lambda bias, ratio, key, scheme, width: SamplingParams(
        watermark_bias=bias, watermark_greenlist_ratio=ratio, watermark_hashing_key=key,
        watermark_seeding_scheme=scheme, watermark_context_width=width),
    st.sampled_from([0.0, 0.5, 2.0, 7.25]), st.sampled_from([0.1, 0.25, 0.5, 0.9]),
    st.sampled_from([15485863, 0, 1, 2**40 + 7, 2**63 - 1]), st.sampled_from(["lefthash", "selfhash"]),
    st.integers(1, 5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.lists(green_configs, min_size=1, max_size=5), data=st.data())
def test_green_list_rows_equal_transformers_on_each_row_alone(params, data):
    """Random configs per row (some off), histories of 1-7 tokens (some shorter than context_width: transformers
    skips those), random logits with -inf entries: each row equals WatermarkLogitsProcessor on that row alone."""
    histories = [data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=7)) for _ in params]
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    logits = _logits(generator, len(params))
    rows, state = _rows_and_state(params, histories)
    ours = _apply("watermark", params, logits, state, rows)
    for r, (p, history) in enumerate(zip(params, histories)):
        if not p.watermark_bias:
            assert torch.equal(ours[r], logits[r])
            continue
        try:
            expected = _hf_green(p)(torch.tensor([history]), logits[r:r + 1].clone())[0]
        except IndexError:  # selfhash with no green candidate: transformers indexes with an empty float tensor
            assert p.watermark_seeding_scheme == "selfhash"
            expected = logits[r]
        assert_same_scores(ours[r], expected, f"row {r} {p.watermark_seeding_scheme} width {p.watermark_context_width}")
        if len(history) < p.watermark_context_width:
            assert torch.equal(ours[r], logits[r])  # too few tokens: left alone, as transformers skips the step


def test_green_list_adds_the_bias_to_one_greenlist_share_of_the_vocabulary():
    p = SamplingParams(watermark_bias=2.0, watermark_greenlist_ratio=0.3)
    logits = torch.zeros(1, V)
    rows, state = _rows_and_state([p], [[5, 9]])
    out = _apply("watermark", [p], logits, state, rows)
    assert int((out == 2.0).sum()) == int(V * 0.3) and int((out == 0).sum()) == V - int(V * 0.3)


synthid_configs = st.builds(
    lambda keys, n, size, seed, history, skip: SamplingParams(
        synthid_keys=keys, synthid_ngram_len=n, synthid_sampling_table_size=size, synthid_sampling_table_seed=seed,
        synthid_context_history_size=history, synthid_skip_first_ngram_calls=skip),
    st.lists(st.integers(0, 2**63 - 1), min_size=0, max_size=6), st.integers(2, 5),
    st.sampled_from([1, 2, 1000, 2**16]), st.sampled_from([0, 1, 12345]), st.sampled_from([0, 1, 3, 1024]),
    st.booleans())


def _hf_synthid(p: SamplingParams) -> SynthIDTextWatermarkLogitsProcessor:
    return SynthIDTextWatermarkLogitsProcessor(p.synthid_ngram_len, list(p.synthid_keys), p.synthid_sampling_table_size,
                                               p.synthid_sampling_table_seed, p.synthid_context_history_size, "cpu",
                                               p.synthid_skip_first_ngram_calls)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.lists(synthid_configs, min_size=1, max_size=4), data=st.data())
def test_synthid_rows_equal_transformers_over_a_whole_generation(params, data):
    """Each row's SynthID scores at every step equal transformers' processor run step by step on that row alone
    (its own state: context and history); tokens are drawn from a small alphabet so contexts repeat."""
    steps = 14
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    prompts = [data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=5)) for _ in params]
    rows, state = _rows_and_state(params, prompts)
    hf = [_hf_synthid(p) if p.synthid_keys else None for p in params]
    ids = [torch.tensor([prompt]) for prompt in prompts]
    for step in range(steps):
        logits = _logits(generator, len(params))
        ours = _apply("synthid", params, logits, state, rows)
        for r, p in enumerate(params):
            if hf[r] is None:
                assert torch.equal(ours[r], logits[r])
                continue
            expected = hf[r](ids[r], logits[r:r + 1].clone())[0]
            # transformers writes finfo.min where the input was -inf; here a removed token stays removed
            expected = torch.where(logits[r] == NEG_INF, NEG_INF, expected)
            assert_same_scores(ours[r], expected, f"row {r} step {step}")
        chosen = torch.randint(0, 6, (len(params),), generator=generator) + 20
        state.append(chosen)
        ids = [torch.cat([ids[r], chosen[r:r + 1, None]], dim=1) for r in range(len(params))]


def test_synthid_state_is_rebuilt_from_the_tokens_alone():
    """A state started from prompt + generated tokens (a replay, a branch) gives the same scores as the state that
    grew step by step."""
    p = SamplingParams(synthid_keys=[654, 400, 836, 123, 340], synthid_ngram_len=3, synthid_context_history_size=4)
    rows, grown = _rows_and_state([p], [[11, 12, 13]])
    generated = [21, 22, 21, 22, 21, 23, 21, 22]
    for token in generated:
        grown.append(torch.tensor([token]))
    rebuilt = DecodeState.start(torch.tensor([[11, 12, 13]]), V, generated=torch.tensor([generated]))
    logits = torch.randn(1, V)
    assert torch.equal(REGISTRY["synthid"].apply(logits, grown, rows), REGISTRY["synthid"].apply(logits, rebuilt, rows))


# -- whole generations on the bundled model -----------------------------------------------------------------

def _hf_greedy(bundled, prompt_ids: list[int], config, steps: int) -> list[int]:
    out = bundled.model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=steps, min_new_tokens=steps,
                                 watermarking_config=config, pad_token_id=bundled.eos_token_ids[0])
    return out[0, len(prompt_ids):].tolist()


@pytest.mark.parametrize("params", [
    SamplingParams(do_sample=False, watermark_bias=6.0),
    SamplingParams(do_sample=False, watermark_bias=4.0, watermark_seeding_scheme="selfhash", watermark_context_width=2,
                   watermark_greenlist_ratio=0.5, watermark_hashing_key=7),
    SamplingParams(do_sample=False, synthid_keys=[654, 400, 836, 123, 340, 443, 597, 160, 57], synthid_ngram_len=5),
    SamplingParams(do_sample=False, synthid_keys=[5, 6, 7], synthid_ngram_len=2, synthid_context_history_size=3),
], ids=["lefthash", "selfhash", "synthid", "synthid-short-history"])
def test_greedy_generation_equals_transformers_generate_with_the_watermarking_config(bundled, engine, params):
    steps = 24
    prompt_ids = engine.encode(PROMPT)
    plain = engine.generate(prompt_ids, [SamplingParams(do_sample=False, max_new_tokens=steps, min_new_tokens=steps)])
    ours = engine.generate(prompt_ids, [params.replace(max_new_tokens=steps, min_new_tokens=steps)]).rows[0].token_ids
    kind, arguments = params.watermarking_config()
    config = {"WatermarkingConfig": WatermarkingConfig,
              "SynthIDTextWatermarkingConfig": SynthIDTextWatermarkingConfig}[kind](**arguments)
    assert isinstance(params.generate_kwargs()["watermarking_config"], type(config))
    assert ours == _hf_greedy(bundled, prompt_ids, config, steps)
    assert ours != plain.rows[0].token_ids  # the watermark changed the greedy text


def test_sampled_rows_final_distributions_equal_transformers_processor_step_by_step(bundled, engine):
    """Sampled rows of one batch (green list and SynthID side by side): each step's final distribution, rebuilt by
    the engine, equals transformers' processor run step by step on the row's own tokens over the raw logits."""
    steps = 12
    params = [SamplingParams(watermark_bias=3.0, watermark_context_width=2, seed=3, max_new_tokens=steps),
              SamplingParams(synthid_keys=[1, 2, 3, 4], synthid_ngram_len=3, seed=4, max_new_tokens=steps),
              SamplingParams(watermark_bias=1.0, watermark_seeding_scheme="selfhash", seed=5, max_new_tokens=steps)]
    prompt_ids = engine.encode(PROMPT)
    result = engine.generate(prompt_ids, params, sample_indices=[0, 1, 2])
    for row, p in enumerate(params):
        tokens = result.rows[row].token_ids
        n = len(tokens)
        ids = torch.tensor([prompt_ids + tokens])
        with torch.no_grad():
            raw = bundled.model(input_ids=ids[:, :-1]).logits[0, len(prompt_ids) - 1:].float()  # [n, V]
        processor = (_hf_green_model(p, bundled.vocab_size) if p.watermark_bias
                     else SynthIDTextWatermarkLogitsProcessor(3, [1, 2, 3, 4], 2**16, 0, 1024, "cpu"))
        ours = engine.final_distributions(result, row, n)
        for t in range(n):
            expected = processor(ids[:, :len(prompt_ids) + t], raw[t:t + 1].clone()).softmax(-1)[0]
            torch.testing.assert_close(ours[t], expected, atol=1e-5, rtol=1e-4)
            # the recorded final log-prob of the chosen token is that distribution's
            assert math.exp(result.rows[row].final_logprobs[t]) == pytest.approx(float(expected[tokens[t]]), abs=1e-4)


def _hf_green_model(p: SamplingParams, vocab: int) -> WatermarkLogitsProcessor:
    return WatermarkLogitsProcessor(vocab, "cpu", p.watermark_greenlist_ratio, p.watermark_bias,
                                    p.watermark_hashing_key, p.watermark_seeding_scheme, p.watermark_context_width)


# -- detection ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme,width", [("lefthash", 1), ("lefthash", 3), ("selfhash", 1), ("selfhash", 2)])
def test_z_score_equals_transformers_watermark_detector_on_generated_outputs(bundled, engine, scheme, width):
    base = SamplingParams(watermark_seeding_scheme=scheme, watermark_context_width=width, watermark_hashing_key=99,
                          watermark_greenlist_ratio=0.25, max_new_tokens=32)
    spec = SweepSpec(PROMPT, base, (Axis("watermark_bias", (0.0, 3.0)),), samples=2)
    records = run_sweep(engine, spec).records()
    config = WatermarkingConfig(greenlist_ratio=0.25, bias=3.0, hashing_key=99, seeding_scheme=scheme,
                                context_width=width)
    detector = WatermarkDetector(bundled.model.config, "cpu", config)
    for record in records:
        if len(record["token_ids"]) <= width:
            assert record["watermark_z"] is None
            continue
        expected = detector(torch.tensor([record["token_ids"]]), return_dict=True)
        assert record["watermark_z"] == pytest.approx(float(expected.z_score[0]), abs=1e-12)
        assert record["watermark_p"] == pytest.approx(float(expected.p_value[0]), abs=1e-12)
        assert record["watermark_green_fraction"] == pytest.approx(float(expected.green_fraction[0]), abs=1e-12)


def test_green_detection_strips_a_leading_bos_as_the_detector_does(bundled):
    config = WatermarkingConfig(bias=2.0)
    detector = WatermarkDetector(bundled.model.config, "cpu", config)
    bos = bundled.model.config.bos_token_id
    ids = [bos, 5, 900, 33, 33, 33, 1200, 77, 5, 900]
    expected = detector(torch.tensor([ids]), return_dict=True)
    ours = green_detection(ids, bundled.model.config.vocab_size, 0.25, 15485863, "lefthash", 1, bos)
    assert ours["watermark_z"] == pytest.approx(float(expected.z_score[0]), abs=1e-12)
    assert green_detection([5], V, 0.25, 1, "lefthash", 1)["watermark_z"] is None  # nothing to score


def test_synthid_mean_score_equals_a_direct_computation_with_transformers_methods(engine):
    p = SamplingParams(synthid_keys=[654, 400, 836, 123, 340, 443], synthid_ngram_len=4,
                       synthid_context_history_size=6, max_new_tokens=40)
    spec = SweepSpec(PROMPT, p, samples=2)
    records = run_sweep(engine, spec).records()
    eos = engine.loaded.tokenizer.eos_token_id
    processor = SynthIDTextWatermarkLogitsProcessor(4, list(p.synthid_keys), 2**16, 0, 6, "cpu")
    for record in records:
        ids = torch.tensor([record["token_ids"] + [eos, 11, 12, 13, 14]])  # an EOS: the n-grams after it are not scored
        g = processor.compute_g_values(ids)
        mask = (processor.compute_context_repetition_mask(ids)
                * processor.compute_eos_token_mask(ids, eos)[:, processor.ngram_len - 1:])
        expected = float((g * mask[..., None]).sum() / (mask.sum() * g.shape[-1]))
        assert synthid_mean_score(ids[0].tolist(), SynthIDConfig.of(p), eos) == pytest.approx(expected, abs=1e-12)
        assert record["synthid_score"] is not None and 0 <= record["synthid_score"] <= 1


def test_z_score_grows_with_the_bias_measured(engine, capsys):
    """16 rows x 64 tokens per bias: the mean z at bias 4 is far above bias 0, where it is about 0 (no watermark),
    and perplexity goes up with the bias (the price of the watermark). Measured here: mean z 0.53 / 2.62 / 10.69 and
    perplexity 12.5 / 16.0 / 38.4 at bias 0 / 1 / 4."""
    base = SamplingParams(max_new_tokens=64, min_new_tokens=64, seed=11)
    spec = SweepSpec(PROMPT, base, (Axis("watermark_bias", (0.0, 4.0)),), samples=16)
    records = run_sweep(engine, spec).records()
    by_bias: dict[float, list[dict]] = {}
    for record in records:
        by_bias.setdefault(record["watermark_bias"], []).append(record)
    mean = {b: sum(r["watermark_z"] for r in rs) / len(rs) for b, rs in by_bias.items()}
    ppl = {b: sum(r["perplexity"] for r in rs) / len(rs) for b, rs in by_bias.items()}
    with capsys.disabled():
        print(f"\nmean z by bias {mean}; mean perplexity by bias {ppl}")
    assert abs(mean[0.0]) < 1.5
    assert mean[4.0] > 6.0 and min(r["watermark_z"] for r in by_bias[4.0]) > 4.0
    assert ppl[4.0] > ppl[0.0]


def test_synthid_score_is_higher_with_the_watermark(engine):
    keys = [654, 400, 836, 123, 340, 443]
    base = SamplingParams(max_new_tokens=40, min_new_tokens=40, seed=5, synthid_keys=keys)
    marked = run_sweep(engine, SweepSpec(PROMPT, base, samples=6)).records()
    plain = [engine.detector.scores(r["token_ids"], base) for r in
             run_sweep(engine, SweepSpec(PROMPT, base.replace(synthid_keys=[]), samples=6)).records()]
    mean_marked = sum(r["synthid_score"] for r in marked) / len(marked)
    mean_plain = sum(s["synthid_score"] for s in plain) / len(plain)
    assert mean_plain == pytest.approx(0.5, abs=0.08)
    assert mean_marked > mean_plain + 0.03


# -- input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,message", [
    ({"watermark_bias": -1}, "watermark_bias: must be a number in [0, 100], got -1"),
    ({"watermark_bias": math.nan}, "watermark_bias"),
    ({"watermark_greenlist_ratio": 0}, "watermark_greenlist_ratio: must be a number in (0, 1), got 0"),
    ({"watermark_greenlist_ratio": 1.0}, "watermark_greenlist_ratio: must be a number in (0, 1)"),
    ({"watermark_context_width": 0}, "watermark_context_width: must be a whole number in [1, 64], got 0"),
    ({"watermark_hashing_key": -5}, "watermark_hashing_key: must be a whole number in [0, 9223372036854775807]"),
    ({"watermark_seeding_scheme": "righthash"}, "watermark_seeding_scheme: must be one of 'lefthash', 'selfhash'"),
    ({"synthid_keys": [1, -2]}, "synthid_keys: must be a whole number in [0, 9223372036854775807], got -2"),
    ({"synthid_keys": "1, two"}, "synthid_keys: must be a list of at most 64 whole numbers"),
    ({"synthid_keys": list(range(65))}, "synthid_keys: must be a list of at most 64"),
    ({"synthid_ngram_len": 1}, "synthid_ngram_len: must be a whole number in [2, 64], got 1"),
    ({"synthid_sampling_table_size": 2**24 + 1}, "synthid_sampling_table_size: must be a whole number in [1, 16777216]"),
    ({"synthid_context_history_size": -1}, "synthid_context_history_size"),
    ({"synthid_keys": [1], "num_beams": 2}, "synthid_keys: must be empty with num_beams > 1"),
])
def test_bad_values_are_refused_by_field_range_and_value(fields, message):
    with pytest.raises(ParamError) as info:
        SamplingParams(**fields)
    assert message in str(info.value)


def test_keys_read_from_text_and_both_watermarks_refused_for_transformers():
    assert SamplingParams(synthid_keys="654, 400,836").synthid_keys == (654, 400, 836)
    assert SamplingParams(synthid_keys="").synthid_keys == ()
    assert SamplingParams(synthid_keys=[]).to_dict()["synthid_keys"] == []
    both = SamplingParams(watermark_bias=2.0, synthid_keys=[1])
    with pytest.raises(ParamError, match="synthid_keys: must be empty while watermark_bias is set"):
        both.generate_kwargs()
