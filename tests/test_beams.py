"""Beam search and beam sampling against transformers' generate(): sequences and sequence scores, for each
configuration alone and for several configurations decoded as one batch."""
from __future__ import annotations

import pytest
import torch

from engine.beams import beam_search
from engine.generate import Engine
from engine.errors import ParamError
from engine.params import SamplingParams

from assertions import assert_same_beams

CONFIGS = [
    dict(num_beams=3, num_return_sequences=2),
    dict(num_beams=3, length_penalty=0.5, early_stopping=True, no_repeat_ngram_size=2, num_return_sequences=3),
    dict(num_beams=3, early_stopping="never", repetition_penalty=1.3),
    dict(num_beams=3, length_penalty=-1.0, min_new_tokens=8, bad_words=("sea",)),
    dict(num_beams=3, suppress_tokens=("sea", 13), begin_suppress_tokens=("In",), forced_eos_token_id=30,
         num_return_sequences=2),
]


_REFERENCE: dict = {}  # (prompt, params) -> transformers' output: each reference is generated once


def transformers_beams(engine: Engine, prompt: list[int], params: SamplingParams):
    key = (engine.loaded.name, tuple(prompt), params)
    if key not in _REFERENCE:
        _REFERENCE[key] = _transformers_beams(engine, prompt, params)
    return _REFERENCE[key]


def _transformers_beams(engine: Engine, prompt: list[int], params: SamplingParams):
    model, tok = engine.loaded.model, engine.loaded.tokenizer
    torch.manual_seed(params.seed)
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         **params.generate_kwargs(tok), pad_token_id=engine.loaded.eos_token_ids[0],
                         return_dict_in_generate=True, output_scores=True)
    return out.sequences[:, len(prompt):].tolist(), out.sequences_scores.tolist()


def assert_same(engine: Engine, result, sequences, scores) -> None:
    assert_same_beams(result, sequences, scores, pad=engine.loaded.eos_token_ids[0])  # transformers pads


@pytest.fixture(scope="module")
def prompt(engine) -> list[int]:
    return engine.encode("Write a short poem about the sea.")


@pytest.mark.parametrize("config", CONFIGS)
def test_beam_search_equals_transformers(engine, prompt, config):
    params = SamplingParams(do_sample=False, max_new_tokens=16, **config)
    (result,) = beam_search(engine, prompt, [params])
    assert_same(engine, result, *transformers_beams(engine, prompt, params))


def test_transformers_prompt_inclusive_lengths_in_beam_search_equal_transformers(engine, prompt):
    """max_length / min_length count the prompt; the engine turns them into new-token counts."""
    params = SamplingParams(do_sample=False, num_beams=3, num_return_sequences=2, max_length=len(prompt) + 12,
                            min_length=len(prompt) + 9)
    (result,) = beam_search(engine, prompt, [params])
    assert max(len(seq.token_ids) for seq in result.sequences) <= 12
    assert_same(engine, result, *transformers_beams(engine, prompt, params))


def test_configs_batched_together_equal_each_alone(engine, prompt):
    configs = [SamplingParams(do_sample=False, max_new_tokens=16, **c) for c in CONFIGS]
    for params, result in zip(configs, beam_search(engine, prompt, configs)):
        assert_same(engine, result, *transformers_beams(engine, prompt, params))


@pytest.mark.parametrize("seed", [3, 11])
def test_beam_sampling_equals_transformers_with_the_same_seed(engine, prompt, seed):
    params = SamplingParams(do_sample=True, temperature=0.8, top_k=20, num_beams=3, num_return_sequences=2,
                            max_new_tokens=16, seed=seed)
    (result,) = beam_search(engine, prompt, [params])
    assert_same(engine, result, *transformers_beams(engine, prompt, params))


@pytest.mark.slow  # 5 beams x 10 steps twice at the full vocabulary: ~5 s of CPU
def test_tiny_model_wide_beams(tiny):
    engine = Engine(tiny)
    prompt = engine.encode("hello world", raw=True)
    params = SamplingParams(do_sample=False, num_beams=5, num_return_sequences=5, max_new_tokens=10,
                            early_stopping=True)
    (result,) = beam_search(engine, prompt, [params])
    assert_same(engine, result, *transformers_beams(engine, prompt, params))


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_beams=3, num_beam_groups=2), "num_beams"),
    (dict(diversity_penalty=0.5), "diversity_penalty"),
    (dict(num_beams=2, stop=("\n",)), "stop"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(length_penalty=float("nan")), "length_penalty"),
])
def test_bad_beam_settings_name_the_field(kwargs, field):
    with pytest.raises(ParamError, match=f"^{field}: "):
        SamplingParams(**kwargs)


def test_a_beam_batch_needs_one_width_and_length(engine, prompt):
    with pytest.raises(ParamError, match="^num_beams: "):
        beam_search(engine, prompt, [SamplingParams(num_beams=2), SamplingParams(num_beams=3)])


def test_a_sweep_mixes_beam_and_sampling_cells(engine):
    """num_beams as a sweep axis: sampling cells stream as usual, beam cells give their best beams as rows."""
    from engine.sweepspec import Axis, SweepSpec
    from engine.sweep import run_sweep

    base = SamplingParams(temperature=0.7, seed=2, max_new_tokens=10, num_return_sequences=1)
    spec = SweepSpec("Write a short poem about the sea.", base, (Axis("num_beams", (1, 2, 3)),), samples=2)
    result = run_sweep(engine, spec)
    df = result.dataframe()
    assert list(df["axis_num_beams"]) == [1, 1, 2, 3]  # 2 samples, then one best beam per beam cell
    prompt = engine.encode(spec.prompt)
    alone = engine.generate(prompt, [base] * 2, [0, 1])
    assert [r.token_ids for r in result.generation.rows[:2]] == [r.token_ids for r in alone.rows]
    for row, width in ((2, 2), (3, 3)):
        (beams,) = beam_search(engine, prompt, [base.replace(num_beams=width)])
        assert result.generation.rows[row].token_ids == beams.sequences[0].token_ids
        assert df["beam_score"][row] == pytest.approx(beams.sequences[0].score)
    assert df["beam_score"][:2].isna().all()


# -- when the processors leave fewer continuations than beam search wants ----------------------------------

ONLY_THE_THEN_BANNED = dict(sequence_bias={"the": 1e6}, top_k=1, bad_words=["the"],
                            order=["sequence_bias", "top_k", "bad_words"])  # top_k keeps "the", bad_words bans it


@pytest.fixture(scope="module")
def tiny_engine(tiny) -> Engine:
    return Engine(tiny)


def test_beam_sampling_with_every_continuation_removed_ends_with_no_candidates(tiny_engine):
    """transformers' torch.multinomial fails here ("probability tensor contains either inf, nan"); the row ends
    as a sampled row does when nothing is left: no token, finish_reason no_candidates, no score."""
    from engine.sweep import run_sweep
    from engine.sweepspec import SweepSpec

    params = SamplingParams(do_sample=True, num_beams=2, max_new_tokens=3, seed=1, **ONLY_THE_THEN_BANNED)
    (record,) = run_sweep(tiny_engine, SweepSpec(prompt="Once upon a time", base=params)).records()
    assert record["finish_reason"] == "no_candidates" and record["token_ids"] == [] and "beam_score" not in record


def test_beam_sampling_with_fewer_continuations_than_candidates_draws_the_possible_ones(tiny_engine):
    """top_k=1 leaves one continuation per beam, fewer than the 2 W candidates beam search draws, and only one
    hypothesis exists at all (every beam follows the first): it is returned; the other slots say there is none."""
    prompt = tiny_engine.encode("Once upon a time")
    for beams in (2, 3):
        params = SamplingParams(do_sample=True, num_beams=beams, num_return_sequences=beams, max_new_tokens=4,
                                seed=2, top_k=1)
        (result,) = beam_search(tiny_engine, prompt, [params])
        best, *others = result.sequences
        assert len(best.token_ids) == 4 and best.score is not None and torch.isfinite(torch.tensor(best.score))
        assert all(lp > float("-inf") for lp in best.final_logprobs)
        assert [(s.token_ids, s.score) for s in others] == [([], None)] * (beams - 1)
