"""Contrastive search (penalty_alpha, top_k) against transformers 4.x's generate().

transformers 5 no longer has contrastive search in the library, so the oracle is the output of transformers
4.55.4's `generate()` on the bundled model, recorded by tests/data/make_contrastive_oracle.py (which says how to
run it again) in tests/data/contrastive_oracle.json: tokens and the chosen tokens' processed log-probabilities.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from engine.contrastive import contrastive_search, contrastive_steps, degeneration_penalty
from engine.errors import ParamError
from engine.params import SamplingParams, from_dict

ORACLE = json.loads((Path(__file__).parent / "data" / "contrastive_oracle.json").read_text())
CASES = ORACLE["cases"]


def case_id(case: dict) -> str:
    p = case["params"]
    return f"a{p['penalty_alpha']}-k{p['top_k']}-{case['prompt'][:12]}"


def assert_same(row, case: dict) -> None:
    assert row.token_ids == case["tokens"]
    assert row.final_logprobs == pytest.approx(case["final_logprobs"], rel=1e-4, abs=1e-4)
    assert row.finish_reason == ("stop" if len(case["tokens"]) < case["params"]["max_new_tokens"] else "length")


def test_the_oracle_prompts_are_what_the_engine_encodes(engine):
    for case in CASES:
        assert engine.encode(case["prompt"], raw=case["raw"]) == case["prompt_ids"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_contrastive_search_equals_transformers_4(engine, case):
    (row,) = contrastive_search(engine, case["prompt_ids"], [from_dict(case["params"])])
    assert_same(row, case)
    assert row.text == engine.loaded.decode(row.token_ids)
    assert len(row.raw_logprobs) == len(row.raw_entropies) == len(row.degeneration_penalties) == len(row.token_ids)
    assert all(-1.0 - 1e-5 <= c <= 1.0 + 1e-5 for c in row.degeneration_penalties)


def test_the_oracle_holds_an_early_end():
    assert any(len(c["tokens"]) < c["params"]["max_new_tokens"] for c in CASES)


def test_configs_of_one_shape_batched_together_equal_each_alone(engine):
    """The oracle cases sharing (prompt, top_k, max_new_tokens) run as one batch (one ending early, the others on)."""
    batches: dict[tuple, list[dict]] = {}
    for case in CASES:
        p = case["params"]
        batches.setdefault((tuple(case["prompt_ids"]), p["top_k"], p["max_new_tokens"]), []).append(case)
    batched = [cases for cases in batches.values() if len(cases) > 1]
    assert batched, "the oracle should hold configurations that batch together"
    for cases in batched:
        rows = contrastive_search(engine, cases[0]["prompt_ids"], [from_dict(c["params"]) for c in cases])
        for row, case in zip(rows, cases):
            assert_same(row, case)


def test_a_sweep_over_penalty_alpha_runs_contrastive_search(engine):
    """--axis penalty_alpha=0,0.6: the 0 cell is plain greedy, the 0.6 cell the oracle's; samples repeat it."""
    from engine.sweep import progress_steps, run_sweep
    from engine.sweepspec import Axis, SweepSpec

    case = CASES[0]
    base = from_dict({**case["params"], "penalty_alpha": 0.0})
    spec = SweepSpec(case["prompt"], base, (Axis("penalty_alpha", (0.0, 0.6)),), samples=2)
    assert progress_steps(spec.rows()) == 2 * case["params"]["max_new_tokens"]  # the greedy rows, then the batch
    result = run_sweep(engine, spec)
    df = result.dataframe()
    contrastive = df[df["axis_penalty_alpha"] == 0.6]
    assert [list(t) for t in contrastive["token_ids"]] == [case["tokens"]] * 2
    greedy = df[df["axis_penalty_alpha"] == 0.0]
    assert list(greedy["token_ids"])[0] != case["tokens"]
    assert result.generation.rows[2].degeneration_penalties is not None


def test_degeneration_penalty_is_the_highest_cosine_similarity():
    gen = torch.Generator().manual_seed(0)
    context, candidates = torch.randn(3, 5, 8, generator=gen), torch.randn(3, 1, 8, generator=gen)
    expected = torch.stack([torch.nn.functional.cosine_similarity(context[i], candidates[i], dim=-1).max()
                            for i in range(3)])
    torch.testing.assert_close(degeneration_penalty(context, candidates), expected)
    context[1, 2] = candidates[1, 0] * 3.0  # the same direction: similarity 1
    assert degeneration_penalty(context, candidates)[1] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, field", [
    (dict(penalty_alpha=0.6, top_k=4), "do_sample"),  # do_sample defaults to True
    (dict(penalty_alpha=0.6, top_k=4, do_sample=True, temperature=0.7), "do_sample"),
    (dict(penalty_alpha=0.6, top_k=1, do_sample=False), "top_k"),
    (dict(penalty_alpha=0.6, do_sample=False), "top_k"),
    (dict(penalty_alpha=0.6, top_k=4, do_sample=False, num_beams=2), "num_beams"),
    (dict(penalty_alpha=1.5, top_k=4, do_sample=False), "penalty_alpha"),
    (dict(penalty_alpha=-0.1, top_k=4, do_sample=False), "penalty_alpha"),
    (dict(penalty_alpha=0.6, top_k=4, do_sample=False, stop=("\n",)), "stop"),
])
def test_bad_contrastive_settings_name_the_field(kwargs, field):
    with pytest.raises(ParamError, match=f"^{field}: "):
        SamplingParams(**kwargs)


def test_greedy_at_temperature_0_may_use_contrastive_search():
    assert SamplingParams(temperature=0.0, penalty_alpha=0.5, top_k=3).penalty_alpha == 0.5


def test_a_contrastive_batch_needs_one_top_k(engine):
    a = SamplingParams(do_sample=False, penalty_alpha=0.6, top_k=4, max_new_tokens=4)
    with pytest.raises(ParamError, match="^top_k: "):
        contrastive_search(engine, CASES[0]["prompt_ids"], [a, a.replace(top_k=8)])
    with pytest.raises(ParamError, match="^penalty_alpha: "):  # the sampling loop does not run contrastive rows
        engine.generate(CASES[0]["prompt_ids"], [a])


def test_the_generate_kwargs_run_contrastive_search_in_transformers_4():
    kw = SamplingParams(do_sample=False, penalty_alpha=0.6, top_k=4).generate_kwargs()
    assert (kw["penalty_alpha"], kw["top_k"], kw["do_sample"]) == (0.6, 4, False)


def test_stop_ends_a_contrastive_batch_after_the_next_step(engine):
    params = from_dict(CASES[0]["params"])
    cancel = threading.Event()
    steps = contrastive_steps(engine, CASES[0]["prompt_ids"], [params], cancel)
    assert next(steps)[0] == 1
    cancel.set()
    step, running = next(steps)
    assert step == 2 and running[0].token_ids == CASES[0]["tokens"][:2]
    with pytest.raises(StopIteration) as end:
        next(steps)
    (row,) = end.value.value
    assert row.token_ids == CASES[0]["tokens"][:2] and row.finish_reason == "cancelled"
