"""Constrained beam search (force_words) against transformers 4.x's generate(), and its constraint classes.

transformers 5 no longer has constrained beam search in the library, so the oracle is the output of
transformers 4.55.4's `generate(force_words_ids=...)` on the bundled model, recorded by
tests/data/make_constrained_oracle.py (which says how to run it again) in tests/data/constrained_oracle.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from assertions import assert_same_beams
from engine.beams import beam_search
from engine.constraints import ConstraintListState, DisjunctiveConstraint, PhrasalConstraint, contains
from engine.errors import ParamError
from engine.params import SamplingParams, force_words_ids, from_dict

ORACLE = json.loads((Path(__file__).parent / "data" / "constrained_oracle.json").read_text())
CASES = ORACLE["cases"]


def case_id(case: dict) -> str:
    p = case["params"]
    return f"W{p['num_beams']}-{'+'.join('|'.join(w) for w in p['force_words'])}-{case['prompt'][:10]}"


def test_the_oracle_prompts_and_words_are_what_the_engine_encodes(engine):
    for case in CASES:
        assert engine.encode(case["prompt"], raw=case["raw"]) == case["prompt_ids"]
        assert force_words_ids(engine.loaded.tokenizer, from_dict(case["params"]).force_words) == case["force_words_ids"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_constrained_beam_search_equals_transformers_4(engine, case):
    params = from_dict(case["params"])
    (result,) = beam_search(engine, case["prompt_ids"], [params])
    assert_same_beams(result, case["sequences"], case["scores"])
    for seq in result.sequences:
        assert len(seq.raw_logprobs) == len(seq.final_logprobs) == len(seq.raw_entropies) == len(seq.token_ids)
        assert seq.constraints_met == [contains(seq.token_ids, ids) for ids in case["force_words_ids"]]
        assert sum(seq.final_logprobs) / len(seq.token_ids) ** params.length_penalty == \
            pytest.approx(seq.score, rel=1e-4, abs=1e-3)


def test_the_oracle_outputs_mostly_meet_their_constraints():
    """Most do; the others come from transformers' fallback (fewer beams than returned met them at the end)."""
    met = [contains(seq, ids) for case in CASES for seq in case["sequences"] for ids in case["force_words_ids"]]
    assert len(met) // 2 <= sum(met) < len(met)


def test_configs_of_one_shape_batched_together_equal_each_alone(engine):
    batches: dict[tuple, list[dict]] = {}
    for case in CASES:
        p = case["params"]
        batches.setdefault((tuple(case["prompt_ids"]), p["num_beams"], p["max_new_tokens"]), []).append(case)
    batched = [cases for cases in batches.values() if len(cases) > 1]
    assert batched, "the oracle should hold configurations that batch together"
    for cases in batched:
        results = beam_search(engine, cases[0]["prompt_ids"], [from_dict(c["params"]) for c in cases])
        for result, case in zip(results, cases):
            assert_same_beams(result, case["sequences"], case["scores"])


def test_a_sweep_over_force_words_shows_the_constraints_met(engine):
    from engine.sweep import run_sweep
    from engine.sweepspec import Axis, SweepSpec

    case = next(c for c in CASES if c["params"]["force_words"] == [["Paris"]])
    base = from_dict(case["params"])
    spec = SweepSpec(case["prompt"], base.replace(force_words=[]), (Axis("force_words", ("Paris", "")),))
    df = run_sweep(engine, spec).dataframe()
    forced = df[df["axis_force_words"] == "Paris"]
    assert [list(t) for t in forced["token_ids"]] == case["sequences"][:1]
    assert list(forced["constraints_met"]) == [1]
    assert "constraints_met" in df and df[df["axis_force_words"] == ""]["constraints_met"].isna().all()


def test_phrasal_and_disjunctive_constraints_as_transformers_has_them():
    def fresh() -> ConstraintListState:  # as the search makes them: a new state for every sequence
        return ConstraintListState([PhrasalConstraint([5, 6, 7]), DisjunctiveConstraint([[1, 2], [3]])])

    state = fresh()
    assert sorted(state.advance()) == [1, 3, 5]
    state.reset([9, 5, 6])
    assert state.advance() == [7] and state.get_bank() == 2 and not state.completed
    state = fresh()
    state.reset([5, 6, 7, 3])
    assert state.completed and state.get_bank() == 6
    state = fresh()
    state.reset([5, 9, 3])  # the phrase broke off: back to pending; 3 then meets the disjunction
    assert not state.completed and len(state.complete_constraints) == 1
    state = fresh()
    state.reset([5, 6, 9, 5])  # a phrase that breaks off starts again from its first token
    assert state.inprogress_constraint is not None and state.advance() == [6]
    with pytest.raises(ValueError):
        DisjunctiveConstraint([[1, 2], [1]])  # one alternative is the start of another


@pytest.mark.parametrize("kwargs, field", [
    (dict(force_words=["Paris"], do_sample=False), "num_beams"),
    (dict(force_words=["Paris"], num_beams=4), "do_sample"),  # do_sample defaults to True
    (dict(force_words=["Paris"], num_beams=4, do_sample=False, num_beam_groups=2, diversity_penalty=1.0),
     "num_beam_groups"),
    (dict(force_words=[""], num_beams=4, do_sample=False), "force_words"),
    (dict(force_words=[[]], num_beams=4, do_sample=False), "force_words"),
    (dict(force_words=[3], num_beams=4, do_sample=False), "force_words"),
    (dict(force_words={"a": 1}, num_beams=4, do_sample=False), "force_words"),
])
def test_bad_constrained_settings_name_the_field(kwargs, field):
    with pytest.raises(ParamError, match=f"^{field}: "):
        SamplingParams(**kwargs)


def test_force_words_forms_round_trip():
    p = SamplingParams(do_sample=False, num_beams=4, force_words="Paris")
    assert p.force_words == (("Paris",),)
    q = p.replace(force_words=["Paris", ["London", "Rome"]])
    assert q.force_words == (("Paris",), ("London", "Rome")) and SamplingParams.from_json(q.to_json()) == q
    from playground.controls import CONTROL_FIELDS, params_from_values, values_from_params
    values = values_from_params(q)
    assert values[CONTROL_FIELDS.index("force_words")] == "Paris\nLondon | Rome"
    assert params_from_values(values, None) == q


def test_alternatives_that_start_one_another_are_refused(engine):
    p = SamplingParams(do_sample=False, num_beams=4, force_words=[["Paris", "Paris is"]], max_new_tokens=4)
    with pytest.raises(ParamError, match="^force_words: "):
        beam_search(engine, CASES[0]["prompt_ids"], [p])


def test_the_generate_kwargs_and_exports_hold_the_token_ids(engine):
    from playground.config import PlaygroundConfig
    from playground.exports import export_notes, generate_snippet

    params = from_dict(CASES[1]["params"])
    kw = params.generate_kwargs(engine.loaded.tokenizer)
    assert kw["force_words_ids"] == CASES[1]["force_words_ids"] and kw["num_beams"] == 4
    with pytest.raises(ParamError, match="^tokenizer: "):
        params.generate_kwargs()
    config = PlaygroundConfig(CASES[1]["prompt"], params=params)
    snippet = generate_snippet(config, "some/model")
    compile(snippet, "<snippet>", "exec")
    assert "custom_generate='transformers-community/constrained-beam-search'" in snippet
    assert any("constrained-beam-search" in note for note in export_notes(config)["notes"])
