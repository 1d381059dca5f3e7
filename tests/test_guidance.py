"""Classifier-free guidance (guidance_scale, negative_prompt) against transformers 5's own processor and generate().

The oracle: transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor, run with the same model on one row's
own context step by step, and `model.generate(guidance_scale=..., negative_prompt_ids=...)` token for token.
The engine decodes each guided row's unconditional context as a companion row of the batch forward, so its
logits differ from transformers' single-row forward in the last bits only.
"""
from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (LogitsProcessorList, MinNewTokensLengthLogitsProcessor, TemperatureLogitsWarper,
                          TopKLogitsWarper)
from transformers.generation.logits_process import UnbatchedClassifierFreeGuidanceLogitsProcessor

import engine.steps as steps_module  # the sampling loops run each step through steps.choose
from engine.errors import ParamError
from engine.generate import Engine
from engine.models import tiny_random_model
from engine.params import SamplingParams, from_dict
from engine.processors import guidance
from engine.rowstate import DecodeState, RowParams
from engine.sampling import choose_next, row_keys
from engine.values import parse_axis_values

NEGATIVE = "A dull, sad story about"
STEPS = 8
# fp32 logits of another batch shape differ in the last bits; scaled by g (up to 3 here) and summed in the mix
ATOL = 2e-4


@pytest.fixture(scope="module")
def spread() -> Engine:
    """A tiny random Llama whose logits are spread like a trained model's (no near-ties for greedy to split)."""
    return Engine(tiny_random_model(init_std=1.0, seed=3))


def _live_scores(engine: Engine, prompts, params, monkeypatch) -> tuple[object, list[torch.Tensor]]:
    """Run the engine, keeping every step's final scores [b, V] (min_new_tokens keeps all rows to the end)."""
    seen: list[torch.Tensor] = []
    original = steps_module.apply_pipeline

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.clone())
        return out

    monkeypatch.setattr(steps_module, "apply_pipeline", recording)
    result = engine.generate(prompts, params)
    monkeypatch.setattr(steps_module, "apply_pipeline", original)
    return result, seen


def _oracle_steps(engine: Engine, prompt: list[int], tokens: list[int], params: SamplingParams) -> list[torch.Tensor]:
    """transformers' processors (CFG first, then the warpers it would add) on one row alone, step by step."""
    model, tok = engine.loaded.model, engine.loaded.tokenizer
    negative = torch.tensor([tok(params.negative_prompt)["input_ids"]]) if params.negative_prompt else None
    processors = LogitsProcessorList([
        UnbatchedClassifierFreeGuidanceLogitsProcessor(params.guidance_scale, model, unconditional_ids=negative),
        MinNewTokensLengthLogitsProcessor(len(prompt), params.min_new_tokens, engine.loaded.eos_token_ids)])
    if not params.greedy:
        processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            processors.append(TopKLogitsWarper(params.top_k))
    out = []
    with torch.inference_mode():
        for t in range(len(tokens)):
            ids = torch.tensor([prompt + tokens[:t]])
            scores = model(input_ids=ids).logits[:, -1, :].float()
            out.append(processors(ids, scores)[0])
    return out


def _rows(engine: Engine):
    p1 = engine.encode("Once upon a time there", raw=True)
    p2 = engine.encode("The weather today", raw=True)
    params = [
        SamplingParams(do_sample=False, guidance_scale=3.0, negative_prompt=NEGATIVE),
        SamplingParams(do_sample=False, max_new_tokens=STEPS, min_new_tokens=STEPS),  # unguided neighbour
        SamplingParams(do_sample=False, guidance_scale=1.5),  # transformers' default context
        SamplingParams(temperature=0.7, top_k=50, seed=11, guidance_scale=2.0, negative_prompt="Sad"),
        SamplingParams(temperature=1.0, seed=5, guidance_scale=0.5, negative_prompt=NEGATIVE),
    ]
    params = [p.replace(max_new_tokens=STEPS, min_new_tokens=STEPS) for p in params]
    return [p1, p2, p1, p2, p1], params


def test_every_step_equals_transformers_processor(spread, monkeypatch):
    """Final scores and tokens, greedy and seeded, each guided row against transformers' processor on that row
    alone (the batch also holds an unguided row and another prompt)."""
    prompts, params = _rows(spread)
    result, live = _live_scores(spread, prompts, params, monkeypatch)
    assert len(live) == STEPS
    worst = worst_rel = 0.0
    for row, p in enumerate(params):
        if p.guidance_scale == 1.0:
            continue
        tokens = result.rows[row].token_ids
        oracle = _oracle_steps(spread, prompts[row], tokens, p)
        for step, expected in enumerate(oracle):
            got = live[step][row]
            finite = torch.isfinite(expected)
            assert torch.equal(finite, torch.isfinite(got)), (row, step)
            torch.testing.assert_close(got[finite], expected[finite], rtol=1e-5, atol=ATOL)
            worst = max(worst, float((got[finite] - expected[finite]).abs().max()))
            worst_rel = max(worst_rel, float(((got[finite] - expected[finite]).abs()
                                              / expected[finite].abs().clamp(min=1.0)).max()))
            # the token: the engine's own choice (argmax, or its seeded Gumbel draw) on transformers' scores
            keys = row_keys(torch.tensor([p.seed]), torch.tensor([0]), step)
            again = choose_next(expected[None], torch.tensor([p.greedy]), keys)
            assert int(again) == tokens[step], (row, step)
    print(f"largest |engine - transformers| over the guided rows' final scores: {worst:.2e} "
          f"(relative {worst_rel:.2e})")


def test_the_mix_is_transformers_own_given_the_same_logits(spread):
    """With the same raw logits (single-row forwards, as transformers' processor runs them) the stage equals
    transformers' processor to float32 rounding: the differences above come from the batch forward's last bits."""
    model, tok = spread.loaded.model, spread.loaded.tokenizer
    prompt = spread.encode("Once upon a time there", raw=True)
    for scale, negative in ((3.0, NEGATIVE), (0.5, ""), (100.0, "Sad")):
        context = tok(negative)["input_ids"] if negative else prompt[-1:]
        with torch.inference_mode():
            cond = model(input_ids=torch.tensor([prompt])).logits[:, -1, :].float()
            uncond = model(input_ids=torch.tensor([context])).logits[:, -1, :].float()
            hf = UnbatchedClassifierFreeGuidanceLogitsProcessor(
                scale, model, unconditional_ids=torch.tensor([context]) if negative else None)(
                torch.tensor([prompt]), cond.clone())
        state = DecodeState.start(torch.tensor([prompt]), spread.loaded.vocab_size)
        state.unconditional_logits = uncond
        rows = RowParams.build([SamplingParams(guidance_scale=scale)], eos_token_ids=[0],
                               vocab_size=spread.loaded.vocab_size)
        torch.testing.assert_close(guidance(cond, state, rows), hf, rtol=1.3e-6, atol=1e-5)


def test_replay_rebuilds_the_live_step(spread, monkeypatch):
    """A replay of a random (row, step) gives the distributions the batch sampled from, and the unconditional one."""
    prompts, params = _rows(spread)
    result, live = _live_scores(spread, prompts, params, monkeypatch)
    rng = random.Random(0)
    for row in (0, 2, 3, 4):
        for step in rng.sample(range(STEPS), 3):
            replayed = spread.replay(result, row, step)
            assert replayed.stage_names[:2] == ["raw", "guidance"]
            assert replayed.unconditional is not None and abs(float(replayed.unconditional.sum()) - 1) < 1e-4
            torch.testing.assert_close(replayed.probs[-1], live[step][row].softmax(-1), rtol=1e-4, atol=1e-6)
    finals = spread.final_distributions(result, 3, STEPS)
    for step in range(STEPS):
        torch.testing.assert_close(finals[step], live[step][3].softmax(-1), rtol=1e-4, atol=1e-6)
    assert spread.replay(result, 1, 0).unconditional is None  # the unguided row


def test_a_guided_row_decodes_the_same_alone_and_in_a_mixed_batch(spread):
    prompts, params = _rows(spread)
    together = spread.generate(prompts, params)
    for row in (0, 2, 3, 4):
        alone = spread.generate(prompts[row], [params[row]])
        assert alone.rows[0].token_ids == together.rows[row].token_ids, row
        for a, b in zip(alone.rows[0].final_logprobs, together.rows[row].final_logprobs):
            assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    plain = spread.generate(prompts[1], [params[1]])  # the unguided neighbour, without any companion row
    assert plain.rows[0].token_ids == together.rows[1].token_ids


def test_rows_leaving_early_take_their_companions_with_them(spread):
    """Rows of different lengths: a guided row that finishes frees its companion; the others go on unchanged."""
    prompt = spread.encode("Once upon a time there", raw=True)
    params = [SamplingParams(do_sample=False, guidance_scale=2.0, max_new_tokens=n, min_new_tokens=n,
                             negative_prompt=NEGATIVE if n % 2 else "") for n in (2, 7, 4, 9)]
    together = spread.generate(prompt, params)
    for row, p in enumerate(params):
        assert together.rows[row].token_ids == spread.generate(prompt, [p]).rows[0].token_ids


def _hf_generate(engine: Engine, prompt: list[int], scale: float, negative: str, steps: int) -> list[int]:
    tok, model = engine.loaded.tokenizer, engine.loaded.model
    kwargs = dict(do_sample=False, max_new_tokens=steps, guidance_scale=scale)
    if negative:
        kwargs["negative_prompt_ids"] = torch.tensor([tok(negative)["input_ids"]])
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=tok.eos_token_id, **kwargs)
    return out[0, len(prompt):].tolist()


def _engine_tokens(engine: Engine, prompt: list[int], scale: float, negative: str, steps: int) -> list[int]:
    params = SamplingParams(do_sample=False, guidance_scale=scale, negative_prompt=negative, max_new_tokens=steps)
    neighbour = SamplingParams(do_sample=False, max_new_tokens=steps)  # another row in the batch
    return engine.generate(prompt, [neighbour, params]).rows[1].token_ids


def _same_until_eos(engine: Engine, ours: list[int], theirs: list[int]) -> None:
    """transformers pads after its EOS; the engine's row ends at it."""
    assert ours == theirs[:len(ours)]
    assert len(ours) == len(theirs) or ours[-1] in engine.loaded.eos_token_ids


@pytest.mark.parametrize("scale, negative", [(1.5, ""), (3.0, NEGATIVE), (0.0, NEGATIVE), (0.5, "")])
def test_greedy_generation_equals_transformers_generate_on_a_tiny_model(spread, scale, negative):
    prompt = spread.encode("Once upon a time there", raw=True)
    _same_until_eos(spread, _engine_tokens(spread, prompt, scale, negative, 16),
                    _hf_generate(spread, prompt, scale, negative, 16))


@pytest.mark.parametrize("scale, negative", [(1.5, ""), (3.0, "Write a sad, gloomy answer.")])
def test_greedy_generation_equals_transformers_generate_on_the_bundled_model(engine, scale, negative):
    prompt = engine.encode("Write one sentence about the sea.")
    ours, theirs = (_engine_tokens(engine, prompt, scale, negative, 12), _hf_generate(engine, prompt, scale, negative, 12))
    _same_until_eos(engine, ours, theirs)
    assert ours != _engine_tokens(engine, prompt, 1.0, "", 12)  # guidance changed the text


def test_the_processor_changes_nothing_in_place():
    scores = torch.randn(3, 50)
    uncond = torch.randn(3, 50)
    state = DecodeState.start(torch.tensor([[1, 2]] * 3), 50)
    state.unconditional_logits = uncond.clone()
    rows = RowParams.build([SamplingParams(guidance_scale=g) for g in (2.0, 1.0, 0.0)], eos_token_ids=[0], vocab_size=50)
    before = scores.clone()
    out = guidance(scores, state, rows)
    assert torch.equal(scores, before) and torch.equal(state.unconditional_logits, uncond)
    expected = 2.0 * (scores[0].log_softmax(-1) - uncond[0].log_softmax(-1)) + uncond[0].log_softmax(-1)
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[2], uncond[2].log_softmax(-1))  # g = 0: the unconditional model alone


def test_removed_tokens_stay_removed_and_no_nan():
    """transformers' 0 x -inf is NaN; here a token removed before the stage stays removed, and an empty row stays."""
    scores = torch.randn(3, 20)
    scores[0, :5] = float("-inf")
    scores[2] = float("-inf")
    state = DecodeState.start(torch.tensor([[1]] * 3), 20)
    state.unconditional_logits = torch.randn(3, 20)
    rows = RowParams.build([SamplingParams(guidance_scale=g) for g in (0.0, 100.0, 3.0)], eos_token_ids=[0], vocab_size=20)
    out = guidance(scores, state, rows)
    assert not torch.isnan(out).any()
    assert (out[0, :5] == float("-inf")).all() and torch.isfinite(out[0, 5:]).all()
    assert (out[2] == float("-inf")).all()


@pytest.mark.parametrize("scale", [0.0, 100.0])
def test_extreme_scales_decode_without_nan(spread, scale):
    prompt = spread.encode("Once upon a time", raw=True)
    params = [SamplingParams(guidance_scale=scale, negative_prompt=NEGATIVE, max_new_tokens=6, seed=1),
              SamplingParams(do_sample=False, guidance_scale=scale, max_new_tokens=6),
              # guidance after top_k: it meets removed tokens (transformers would give NaN at g = 0)
              SamplingParams(guidance_scale=scale, top_k=3, order=["top_k", "guidance"], max_new_tokens=6, seed=2)]
    result = spread.generate(prompt, params)
    for row in result.rows:
        assert row.token_ids and all(not math.isnan(v) for v in row.final_logprobs + row.raw_logprobs)
        assert all(v > float("-inf") for v in row.final_logprobs)


@pytest.mark.parametrize("changes, message", [
    ({"guidance_scale": -0.5}, r"^guidance_scale: must be a number in \[0, 100\], got -0.5"),
    ({"guidance_scale": 101}, r"^guidance_scale: must be a number in \[0, 100\], got 101"),
    ({"guidance_scale": float("nan")}, r"^guidance_scale: must be a number in \[0, 100\], got nan"),
    ({"guidance_scale": float("inf")}, r"^guidance_scale: must be a number in \[0, 100\], got inf"),
    ({"guidance_scale": "2"}, r"^guidance_scale: must be a number in \[0, 100\]"),
    ({"guidance_scale": True}, r"^guidance_scale: must be a number in \[0, 100\], got True"),
    ({"negative_prompt": 5}, r"^negative_prompt: must be a string, got 5"),
    ({"negative_prompt": ["a"]}, r"^negative_prompt: must be a string"),
    ({"negative_prompt": "bad \ud800"}, r"^negative_prompt: must be valid Unicode text"),
    ({"guidance_scale": 2.0, "num_beams": 2}, r"^guidance_scale: must be 1 \(off\) with num_beams > 1 \(the "
                                              r"unconditional context .* does not follow the beams"),
])
def test_bad_input_names_the_field_range_and_value(changes, message):
    with pytest.raises(ParamError, match=message):
        from_dict(changes)


def test_off_values_and_none():
    assert SamplingParams(negative_prompt=None).negative_prompt == ""
    assert SamplingParams(guidance_scale=1.0, num_beams=2).guidance_scale == 1.0  # off: fine with beams
    assert SamplingParams(negative_prompt="ignored while off").guidance_scale == 1.0


def test_a_negative_prompt_too_long_for_the_context_is_refused(spread):
    prompt = spread.encode("Hello", raw=True)
    long_text = "word " * 1500
    with pytest.raises(ParamError, match=r"^negative_prompt: must be at most 2048 tokens together with max_new_tokens"):
        spread.generate(prompt, [SamplingParams(guidance_scale=2.0, negative_prompt=long_text, max_new_tokens=600)])


def test_sweepable_and_exported():
    assert parse_axis_values("guidance_scale", "1,1.5,3") == (1, 1.5, 3)
    from playground.config import PlaygroundConfig
    with pytest.raises(ParamError, match=r"^guidance_scale: must be a number in \[0, 100\], got 200"):
        list(PlaygroundConfig(prompt="x", axes=(("guidance_scale", "1,200"),)).sweep_spec().cells())
    kwargs = SamplingParams(guidance_scale=2.0, negative_prompt="Sad", do_sample=False).generate_kwargs(
        tiny_tokenizer())
    assert kwargs["guidance_scale"] == 2.0 and kwargs["negative_prompt_ids"] == [tiny_tokenizer()("Sad")["input_ids"]]
    assert "guidance_scale" not in SamplingParams().generate_kwargs()
    with pytest.raises(ParamError, match="^tokenizer: must be given to convert negative_prompt"):
        SamplingParams(guidance_scale=2.0, negative_prompt="Sad").generate_kwargs()


def tiny_tokenizer():
    from engine.models import _bundled_tokenizer
    return _bundled_tokenizer()


def test_the_openai_api_takes_the_fields(spread):
    from playground.openai_request import RequestError, parse_request

    body = {"model": "m", "prompt": "Hello", "guidance_scale": 1.5, "negative_prompt": "Sad", "max_tokens": 4}
    parsed = parse_request(body, chat=False, engine=spread)
    assert parsed.params.guidance_scale == 1.5 and parsed.params.negative_prompt == "Sad"
    with pytest.raises(RequestError, match="guidance_scale"):
        parse_request({**body, "guidance_scale": -1}, chat=False, engine=spread)


def test_the_share_link_and_the_exports_carry_it():
    from playground import exports
    from playground.config import PlaygroundConfig

    config = PlaygroundConfig(prompt="hi", raw=True, samples=2,
                              params=SamplingParams(guidance_scale=1.5, negative_prompt="A sad: story\n x"),
                              axes=(("guidance_scale", "1,1.5,3"),))
    assert PlaygroundConfig.from_query(config.to_query()) == config
    script = exports.generate_snippet(config.replace(axes=()), "m")
    assert "guidance_scale=1.5," in script
    assert 'kwargs["negative_prompt_ids"] = tokenizer(negative_prompt, return_tensors="pt")["input_ids"].repeat(2, 1)' in script
    assert "negative_prompt" in exports.export_notes(config)["not_expressible"]
    assert '"negative_prompt": "A sad: story\\n x"' in exports.openai_request_json(config.replace(axes=()), "m")


def test_the_distributions_view_shows_the_unconditional_distribution(spread):
    from playground import views

    prompt = spread.encode("Once upon a time", raw=True)
    result = spread.generate(prompt, [SamplingParams(do_sample=False, guidance_scale=2.0, negative_prompt="Sad",
                                                     max_new_tokens=3)])
    replayed = spread.replay(result, 0, 1)
    names, probs = views.guidance_stages(replayed)
    assert names == views.GUIDANCE_STAGES and probs.shape == (3, spread.loaded.vocab_size)
    assert torch.equal(probs[0], replayed.unconditional) and torch.equal(probs[2], replayed.probs[1])


# a few examples: each decodes on the tiny model and runs transformers' generate() once
@settings(max_examples=6, deadline=None)
@given(scale=st.sampled_from([0.0, 0.25, 0.5, 1.25, 2.0, 4.0, 10.0, 100.0]) | st.floats(0.0, 8.0),
       negative=st.sampled_from(["", "Sad", "A very dull text.", " x y z"]),
       prompt=st.sampled_from(["Once upon a time", "The cat", "Hello, world! How", "1 2 3"]))
def test_property_random_scales_and_prompts_equal_transformers(spread, scale, negative, prompt):
    ids = spread.encode(prompt, raw=True)
    ours = _engine_tokens(spread, ids, scale, negative, 6)
    _same_until_eos(spread, ours, _hf_generate(spread, ids, scale, negative, 6))
