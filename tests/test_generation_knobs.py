"""The knobs added for transformers' generate() arguments, end to end on a tiny random model: min_length /
max_length (prompt-inclusive) as new-token counts per row, max_time with a clock the test controls, the forced
and suppressed tokens, each greedy row equal to transformers' generate() with the exported keyword arguments."""
from __future__ import annotations

import itertools

import pytest
import torch

import engine.stops as stops
from engine.generate import Engine
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweep import run_sweep
from engine.sweepspec import Axis, SweepSpec

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def tiny_engine(tiny) -> Engine:
    return Engine(tiny)


@pytest.fixture(scope="module")
def prompt_ids(tiny_engine) -> list[int]:
    return tiny_engine.encode(PROMPT, raw=True)


def hf_generate(engine: Engine, prompt_ids: list[int], params: SamplingParams) -> list[int]:
    model, tok = engine.loaded.model, engine.loaded.tokenizer
    out = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                         **params.generate_kwargs(tok), pad_token_id=engine.loaded.eos_token_ids[0])
    return out[0, len(prompt_ids):].tolist()


def greedy_path(engine: Engine, prompt_ids: list[int], n: int = 8) -> list[int]:
    return engine.generate(prompt_ids, [SamplingParams(temperature=0.0, max_new_tokens=n)]).rows[0].token_ids


def test_greedy_rows_with_the_new_knobs_equal_transformers_generate(tiny_engine, prompt_ids) -> None:
    engine, tok = tiny_engine, tiny_engine.loaded.tokenizer
    path = greedy_path(engine, prompt_ids)
    first_text, eos = tok.decode(path[:1]), engine.loaded.eos_token_ids[0]
    P = len(prompt_ids)
    cases = [
        SamplingParams(temperature=0.0, max_length=P + 7),
        SamplingParams(temperature=0.0, suppress_tokens=[path[0], path[3]], max_new_tokens=8),
        SamplingParams(temperature=0.0, suppress_tokens=[first_text.strip() or "the", path[2]], max_new_tokens=8),
        SamplingParams(temperature=0.0, begin_suppress_tokens=[path[0], eos], max_new_tokens=8),
        SamplingParams(temperature=0.0, forced_eos_token_id=path[1], max_new_tokens=6),
        # end-of-text made all but certain, held back until prompt + output reach min_length
        SamplingParams(temperature=0.0, logit_bias={str(eos): 100}, min_length=P + 5, max_new_tokens=10),
        SamplingParams(temperature=0.0, logit_bias={str(eos): 100}, min_length=P + 3, max_length=P + 9),
    ]
    result = engine.generate(prompt_ids, [SamplingParams(temperature=0.9, seed=1, max_new_tokens=10), *cases])
    for p, row in zip(cases, result.rows[1:]):
        assert row.token_ids == hf_generate(engine, prompt_ids, p), p
    assert len(result.rows[1].token_ids) == 7 and result.rows[1].finish_reason == "length"
    assert result.rows[6].token_ids == result.rows[6].token_ids[:5] + [eos] and result.rows[6].finish_reason == "stop"


def test_forced_bos_equals_transformers_on_a_one_token_prompt(tiny_engine) -> None:
    """transformers forces the first new token only when the input is one token long (for a decoder-only
    model); the engine forces it after any prompt."""
    engine = tiny_engine
    params = SamplingParams(temperature=0.0, forced_bos_token_id=1234, max_new_tokens=5)
    one = engine.encode("Hello", raw=True)[:1]
    row = engine.generate(one, [params]).rows[0]
    assert row.token_ids[0] == 1234 and row.token_ids == hf_generate(engine, one, params)
    assert engine.generate(engine.encode(PROMPT, raw=True), [params]).rows[0].token_ids[0] == 1234


def test_max_time_ends_rows_with_finish_reason_time(tiny_engine, prompt_ids, monkeypatch) -> None:
    """A clock that moves 1 s per reading: the run starts at one reading and each step reads it once, so after
    step k (from 0) the run has taken k + 1 s; a row with max_time 2.5 stops after its third token."""
    ticks = itertools.count()
    monkeypatch.setattr(stops, "clock", lambda: float(next(ticks)))
    params = [SamplingParams(max_new_tokens=8, min_new_tokens=8, seed=s, max_time=t) for s, t in ((1, 2.5), (2, 0.0), (3, 10.0), (4, 5.0))]
    rows = tiny_engine.generate(prompt_ids, params, [0, 1, 2, 3]).rows
    assert [len(r.token_ids) for r in rows] == [3, 8, 8, 6]
    assert [r.finish_reason for r in rows] == ["time", "length", "length", "time"]
    monkeypatch.setattr(stops, "clock", lambda: 0.0)  # a row cut short still drew the tokens it would alone
    alone = tiny_engine.generate(prompt_ids, [params[0].replace(max_time=0.0)], [0]).rows[0]
    assert alone.token_ids[:3] == rows[0].token_ids


def test_max_length_sets_max_new_tokens_per_prompt_and_is_sweepable(tiny_engine, prompt_ids) -> None:
    P = len(prompt_ids)
    spec = SweepSpec(prompt=PROMPT, raw=True, base=SamplingParams(min_new_tokens=0, seed=2, logit_bias={}),
                     axes=(Axis("max_length", (P + 2, P + 5)),))
    result = run_sweep(tiny_engine, spec)
    lengths = [len(r["token_ids"]) for r in result.records()]
    assert all(n <= m for n, m in zip(lengths, (2, 5)))
    assert [r["axis_max_length"] for r in result.records()] == [P + 2, P + 5]
    assert [p.max_new_tokens for p in result.generation.params] == [2, 5]
    # rows with different prompts: each row's own prompt decides its new-token count
    other = tiny_engine.encode("Hi", raw=True)
    both = tiny_engine.generate([prompt_ids, other], [SamplingParams(max_length=P + 3, min_new_tokens=0)] * 2)
    assert [p.max_new_tokens for p in both.params] == [3, P + 3 - len(other)]


def test_length_conflicts_and_out_of_range_values_are_refused_by_name(tiny_engine, prompt_ids) -> None:
    P = len(prompt_ids)
    with pytest.raises(ParamError, match=r"^max_length: must be 0 \(unset\) when max_new_tokens is set \(10;.*got 50"):
        SamplingParams(max_length=50, max_new_tokens=10)
    with pytest.raises(ParamError, match=rf"^max_length: must be more than the prompt's {P} tokens .*got {P}$"):
        tiny_engine.generate(prompt_ids, [SamplingParams(max_length=P)])
    with pytest.raises(ParamError, match=rf"^min_length: must be <= {P + 64} .*got {P + 65}$"):
        tiny_engine.generate(prompt_ids, [SamplingParams(min_length=P + 65)])
    with pytest.raises(ParamError, match=r"^max_time: must be 0 or a number in \(0, 86400\], got -1"):
        SamplingParams(max_time=-1)
    with pytest.raises(ParamError, match=r"^max_time: must be 0 with num_beams > 1"):
        SamplingParams(max_time=1.0, num_beams=2)


@pytest.mark.parametrize("changes, message", [
    (dict(forced_bos_token_id=49152), r"^forced_bos_token_id: must be -1 \(off\) or a token id in \[0, 49151\], got 49152$"),
    (dict(forced_eos_token_id=10**6), r"^forced_eos_token_id: must be a whole number in \[-1, 999999\], got 1000000$"),
    (dict(suppress_tokens=[5, 49152]), r"^suppress_tokens: must be token ids in \[0, 49151\] \(or texts\), got 49152$"),
    (dict(begin_suppress_tokens=["ok", -3]), r"^begin_suppress_tokens: must be a whole number in \[0, 999999\], got -3$"),
    (dict(suppress_tokens=[""]), r"^suppress_tokens: must be a non-empty string, got ''$"),
])
def test_token_ids_outside_the_vocabulary_are_refused_by_name(tiny_engine, prompt_ids, changes, message) -> None:
    with pytest.raises(ParamError, match=message):
        tiny_engine.generate(prompt_ids, [SamplingParams(**changes)])


def test_forced_tokens_take_none_as_off_and_export_only_when_set() -> None:
    assert SamplingParams(forced_bos_token_id=None).forced_bos_token_id == -1
    kwargs = SamplingParams(forced_eos_token_id=5, suppress_tokens=[3, 3, 4], min_length=9, max_time=1.5).generate_kwargs()
    assert kwargs["forced_eos_token_id"] == 5 and "forced_bos_token_id" not in kwargs
    assert kwargs["suppress_tokens"] == [3, 4] and kwargs["min_length"] == 9 and kwargs["max_time"] == 1.5
    assert SamplingParams(max_length=30).generate_kwargs()["max_length"] == 30
    assert "max_new_tokens" not in SamplingParams(max_length=30).generate_kwargs()
    with pytest.raises(ParamError, match="^tokenizer: must be given to convert the texts of suppress_tokens"):
        SamplingParams(suppress_tokens=["the"]).generate_kwargs()


def test_each_new_processor_is_a_stage_of_the_exact_replay(tiny_engine, prompt_ids) -> None:
    """The Distributions view's stages: the replay of step 0 shows each forced / suppressed stage at work."""
    path = greedy_path(tiny_engine, prompt_ids, 3)
    forced = 1234 if path[1] != 1234 else 1235  # not a suppressed token (that would leave nothing to choose)
    params = SamplingParams(temperature=0.0, suppress_tokens=[path[1]], begin_suppress_tokens=[path[0]],
                            forced_eos_token_id=forced, max_new_tokens=3)
    result = tiny_engine.generate(prompt_ids, [params])
    first = tiny_engine.replay(result, 0, 0)
    stage = {name: i for i, name in enumerate(first.stage_names)}
    assert float(first.probs[stage["begin_suppress_tokens"], path[0]]) == 0.0 < float(first.probs[stage["raw"], path[0]])
    assert float(first.probs[stage["suppress_tokens"], path[1]]) == 0.0
    last = tiny_engine.replay(result, 0, 2)
    assert float(last.probs[stage["forced_eos"], forced]) == 1.0 and last.chosen == forced == result.rows[0].token_ids[2]


def test_a_reply_cut_by_max_time_reports_length_to_openai_clients() -> None:
    from playground.openai_api import openai_finish_reason

    assert [openai_finish_reason(r) for r in ("length", "time", "stop", "no_candidates", "cancelled")] == [
        "length", "length", "stop", "stop", "stop"]
