"""DoLa (dola_layers) against transformers 4.x's generate().

transformers 5 no longer has DoLa in the library, so the oracle is the output of transformers 4.55.4's
`generate(dola_layers=...)` on the bundled model, recorded by tests/data/make_dola_oracle.py (which says how to
run it again) in tests/data/dola_oracle.json: tokens, the chosen tokens' processed and raw log-probabilities and
the premature layer 4.55 chose at each step. Greedy cases only: a sampled row draws with the engine's own noise.
"""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch

from engine.dola import dola_decode, dola_steps
from engine.dola_contrast import contrast, relative_top_contrast
from engine.dola_rules import candidate_layers
from engine.errors import ParamError
from engine.params import SamplingParams, from_dict

ORACLE = json.loads((Path(__file__).parent / "data" / "dola_oracle.json").read_text())
CASES = ORACLE["cases"]


def case_id(case: dict) -> str:
    p = case["params"]
    return f"{p['dola_layers']}-rp{p['repetition_penalty']}-{case['prompt'][:12]}".replace(" ", "")


def emptied_at(case: dict) -> int | None:
    """The first step at which 4.55's processors left no token (every score -inf: its log-softmax is NaN and its
    argmax takes token 0); None if none. The engine ends the row there instead ("no_candidates")."""
    return next((k for k, lp in enumerate(case["final_logprobs"]) if math.isnan(lp)), None)


def assert_same(row, case: dict) -> None:
    k = emptied_at(case)
    n = len(case["tokens"]) if k is None else k
    assert row.token_ids == case["tokens"][:n]
    assert row.final_logprobs == pytest.approx(case["final_logprobs"][:n], rel=1e-4, abs=1e-4)
    assert row.raw_logprobs == pytest.approx(case["raw_logprobs"][:n], rel=1e-4, abs=1e-4)
    assert row.premature_layers == case["premature_layers"][:n]
    expected = ("no_candidates" if k is not None else
                "stop" if len(case["tokens"]) < case["params"]["max_new_tokens"] else "length")
    assert row.finish_reason == expected


def test_the_oracle_prompts_are_what_the_engine_encodes(engine):
    for case in CASES:
        assert engine.encode(case["prompt"], raw=case["raw"]) == case["prompt_ids"]


def test_the_oracle_covers_low_high_lists_and_the_recommended_penalty():
    kinds = {c["params"]["dola_layers"] if isinstance(c["params"]["dola_layers"], str) else "list" for c in CASES}
    assert kinds == {"low", "high", "list"}
    assert any(c["params"]["repetition_penalty"] == pytest.approx(1.2) for c in CASES)
    assert any(len(set(c["premature_layers"])) > 1 for c in CASES)  # the choice changes from step to step
    # one case where the contrast's few tokens are all banned (no_repeat_ngram_size): 4.55 then takes token 0
    assert sum(emptied_at(c) is not None for c in CASES) == 1


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_dola_equals_transformers_4(engine, case):
    (row,) = dola_decode(engine, case["prompt_ids"], [from_dict(case["params"])])
    assert_same(row, case)
    assert row.text == engine.loaded.decode(row.token_ids)


def test_rows_of_different_settings_batched_together_equal_each_alone(engine):
    """Every oracle case of one prompt in one batch (low, high, lists, penalties, another length), with a sampled
    row among them that equals itself run alone."""
    by_prompt: dict[tuple, list[dict]] = {}
    for case in CASES:
        by_prompt.setdefault(tuple(case["prompt_ids"]), []).append(case)
    cases = max(by_prompt.values(), key=len)
    assert len({json.dumps(c["params"]) for c in cases}) >= 3
    sampled = SamplingParams(dola_layers="high", temperature=0.8, top_k=40, seed=7, max_new_tokens=6)
    rows = dola_decode(engine, cases[0]["prompt_ids"], [from_dict(c["params"]) for c in cases] + [sampled],
                       [0] * len(cases) + [3])
    for row, case in zip(rows, cases):
        assert_same(row, case)
    (alone,) = dola_decode(engine, cases[0]["prompt_ids"], [sampled], [3])
    assert rows[-1].token_ids == alone.token_ids and rows[-1].premature_layers == alone.premature_layers
    assert rows[-1].final_logprobs == pytest.approx(alone.final_logprobs, abs=1e-5)


def test_sampled_rows_follow_seed_and_sample_index(engine):
    """A sampled DoLa row draws from the contrast with the engine's noise: the same (seed, sample) gives the same
    text, another sample index another draw, and every drawn token was possible (finite processed log p)."""
    ids = next(c for c in CASES if c["raw"])["prompt_ids"]  # an open-ended story: room for different draws
    p = SamplingParams(dola_layers="low", repetition_penalty=1.2, temperature=2.0, seed=1, max_new_tokens=8)
    rows = dola_decode(engine, ids, [p] * 5, [0, 0, 1, 2, 3])
    assert rows[0].token_ids == rows[1].token_ids
    assert len({tuple(r.token_ids) for r in rows[1:]}) > 1
    assert all(lp > float("-inf") for r in rows for lp in r.final_logprobs)
    assert all(layer in candidate_layers("low", 30, True) for r in rows for layer in r.premature_layers)


def test_the_contrast_keeps_tokens_near_the_top_and_subtracts_the_premature_layer():
    final = torch.tensor([[2.0, 1.9, -1.0, -5.0]])  # e^-3 < 0.1: the last two go
    base = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    scores = relative_top_contrast(final, base)
    lf, lb = final.log_softmax(-1), base.log_softmax(-1)
    assert scores[0, :2].tolist() == pytest.approx((lf - lb)[0, :2].tolist())
    assert scores[0, 2:].tolist() == [float("-inf")] * 2  # p < 0.1 x the top p
    # the premature layer is the candidate furthest from the final one, among the row's own candidates
    premature = torch.stack([final * 0.9, base, final])  # [U=3, n=1, V]
    _, picked = contrast(final, premature, torch.tensor([[True, True, True]]))
    assert picked.tolist() == [1]
    _, picked = contrast(final, premature, torch.tensor([[True, False, True]]))
    assert picked.tolist() == [0]


@pytest.mark.parametrize("layers, final_layer, tied, expected", [
    ("low", 30, True, [2, 4, 6, 8, 10, 12, 14]),  # the bundled model: tied embeddings skip the embeddings
    ("high", 30, True, list(range(15, 30, 2))),
    ("low", 30, False, list(range(0, 15, 2))),
    ("low", 2, True, [1]),  # start == N // 2: that one layer
    ("low", 1, True, [0]),
    ("low", 50, True, list(range(2, 20, 2))),  # N > 40: the first 20 and the last 20
    ("high", 50, False, list(range(30, 50, 2))),
    ((16, 0, 8), 30, True, [16, 0, 8]),
])
def test_candidate_layers_follow_transformers_4_55(layers, final_layer, tied, expected):
    assert candidate_layers(layers, final_layer, tied) == expected


@pytest.mark.parametrize("value, expected", [
    ("high", "high"), ("", ""), (None, ""), ("16, 18", (16, 18)), ("[16,18]", (16, 18)), ([4, 4, 2], (4, 2)),
    (12, (12,)),
])
def test_dola_layers_are_read_from_text_lists_and_numbers(value, expected):
    p = SamplingParams(dola_layers=value)
    assert p.dola_layers == expected
    assert from_dict(json.loads(p.to_json())) == p


@pytest.mark.parametrize("kwargs, field", [
    (dict(dola_layers="middle"), "dola_layers"),
    (dict(dola_layers=[]), "dola_layers"),
    (dict(dola_layers=[-1]), "dola_layers"),
    (dict(dola_layers=[2.5]), "dola_layers"),
    (dict(dola_layers="high", num_beams=2, do_sample=False), "num_beams"),
    (dict(dola_layers="high", penalty_alpha=0.6, top_k=4, do_sample=False), "penalty_alpha"),
    (dict(dola_layers="high", prompt_lookup_num_tokens=3), "prompt_lookup_num_tokens"),
    (dict(dola_layers="high", guidance_scale=1.5), "guidance_scale"),
    (dict(dola_layers="high", token_healing=True), "token_healing"),
])
def test_bad_dola_settings_name_the_field(kwargs, field):
    with pytest.raises(ParamError, match=f"^{field}: "):
        SamplingParams(**kwargs)


def test_layers_beyond_the_model_are_refused_before_any_work(engine):
    p = SamplingParams(do_sample=False, dola_layers=[16, 30], max_new_tokens=2)
    with pytest.raises(ParamError, match=r"^dola_layers: .*\[0, 29\].*30 layers"):
        next(dola_steps(engine, CASES[0]["prompt_ids"], [p]))
    with pytest.raises(ParamError, match="^dola_layers: "):  # the sampling loop does not run DoLa rows
        engine.generate(CASES[0]["prompt_ids"], [p.replace(dola_layers="high")])


def test_a_model_without_an_lm_head_is_refused(engine, monkeypatch):
    monkeypatch.setattr(type(engine.loaded.model), "get_output_embeddings", lambda self: None)
    with pytest.raises(ParamError, match="^dola_layers: .*lm_head"):
        next(dola_steps(engine, CASES[0]["prompt_ids"], [SamplingParams(dola_layers="high", max_new_tokens=2)]))


def test_the_generate_kwargs_run_dola_in_transformers_4():
    assert SamplingParams(dola_layers="16, 18").generate_kwargs()["dola_layers"] == [16, 18]
    assert SamplingParams(dola_layers="low").generate_kwargs()["dola_layers"] == "low"
    assert "dola_layers" not in SamplingParams().generate_kwargs()


def test_a_sweep_runs_dola_rows_and_records_their_layers(engine):
    """--axis dola_layers=,high: the off cell decodes in the sampling loop, the high cell as the oracle's."""
    from engine.sweep import progress_steps, run_sweep
    from engine.sweepspec import Axis, SweepSpec
    from engine.values import parse_value

    case = next(c for c in CASES if c["params"]["dola_layers"] == "high")
    assert parse_value("dola_layers", "high") == "high"  # what --set dola_layers=high gives
    base = from_dict({**case["params"], "dola_layers": ""})
    spec = SweepSpec(case["prompt"], base, (Axis("dola_layers", ("", "high")),), samples=2, raw=case["raw"])
    assert progress_steps(spec.rows()) == 2 * case["params"]["max_new_tokens"]
    df = run_sweep(engine, spec).dataframe()
    dola = df[df["axis_dola_layers"] == "high"]
    assert [list(t) for t in dola["token_ids"]] == [case["tokens"]] * 2
    assert [list(x) for x in dola["premature_layers"]] == [case["premature_layers"]] * 2
    plain = df[df["axis_dola_layers"] == ""]
    assert list(plain["token_ids"])[0] != case["tokens"]


def test_replay_shows_the_contrast_as_a_stage_with_its_layer(engine):
    from engine.results import GenerationResult

    case = CASES[2]
    params = from_dict(case["params"])
    (row,) = dola_decode(engine, case["prompt_ids"], [params])
    result = GenerationResult(prompt_ids=case["prompt_ids"], params=[params], sample_indices=[0], rows=[row],
                              trace=None, seconds=0.0, forward_seconds=0.0)
    step = 3
    replay = engine.replay(result, 0, step)
    assert replay.premature_layer == case["premature_layers"][step]
    assert replay.stage_names[:2] == ["raw", f"dola (layer {replay.premature_layer})"]
    assert len(replay.stage_names) == replay.probs.shape[0] == 2 + len(params.order)
    assert float(replay.probs[-1].log()[row.token_ids[step]]) == pytest.approx(case["final_logprobs"][step], abs=1e-4)
    assert float(replay.probs[0].log()[row.token_ids[step]]) == pytest.approx(case["raw_logprobs"][step], abs=1e-4)
    finals = engine.final_distributions(result, 0, step + 1)
    torch.testing.assert_close(finals[step], replay.probs[-1], atol=1e-5, rtol=1e-4)


def test_stop_ends_a_dola_batch_after_the_next_step(engine):
    case = CASES[0]
    cancel = threading.Event()
    steps = dola_steps(engine, case["prompt_ids"], [from_dict(case["params"])], cancel=cancel)
    assert next(steps)[0] == 1
    cancel.set()
    step, running = next(steps)
    assert step == 2 and running[0].token_ids == case["tokens"][:2]
    with pytest.raises(StopIteration) as end:
        next(steps)
    (row,) = end.value.value
    assert row.token_ids == case["tokens"][:2] and row.finish_reason == "cancelled"


@pytest.mark.parametrize("value", ["high", (16, 18)])
def test_share_links_and_the_page_box_carry_dola_layers(value):
    from playground.config import PlaygroundConfig
    from playground.controls import params_from_values, values_from_params

    params = SamplingParams(do_sample=False, repetition_penalty=1.2, dola_layers=value)
    config = PlaygroundConfig(prompt="Hi", params=params)
    assert PlaygroundConfig.from_query(config.to_query()).params == params
    assert params_from_values(values_from_params(params), list(params.order)) == params


def test_the_distributions_view_names_each_steps_premature_layer(tiny):
    """On a tiny random model (2 layers, tied embeddings): a DoLa row through the page's run, its Distributions
    view (caption, stages) and the /distribution JSON say which layer the step contrasted with."""
    from engine.generate import Engine
    from engine.sweepspec import SweepSpec
    from playground.runs import RunStore
    from playground.views import distribution, distribution_json, stream_run

    engine = Engine(tiny)
    store = RunStore(engine)
    params = SamplingParams(dola_layers=[0, 1], repetition_penalty=1.2, temperature=0.7, seed=2, max_new_tokens=4)
    run = None
    for frame in stream_run(engine, store, SweepSpec("one two", params, raw=True), "generate"):
        run = frame.run or run
    layers = run.generation.rows[0].premature_layers
    assert len(layers) == len(run.generation.rows[0].token_ids) and set(layers) <= {0, 1}
    view = distribution(store, run, 0, 1)
    assert f"final layer - layer {layers[1]}" in view.caption
    assert list(view.table["stage"])[:2] == ["raw", f"dola (layer {layers[1]})"]
    data = distribution_json(store, run, 0, 1)
    assert data["premature_layer"] == layers[1]
    assert [s["stage"] for s in data["stages"]][:2] == ["raw", f"dola (layer {layers[1]})"]
    with pytest.raises(ParamError, match=r"^dola_layers: .*\[0, 1\]"):  # this model has 2 layers
        next(dola_steps(engine, engine.encode("one", raw=True), [params.replace(dola_layers=[2])]))


def test_the_transformers_snippet_runs_dola_from_its_hub_repository():
    from playground.config import PlaygroundConfig
    from playground.exports import DOLA_REPO, generate_snippet

    params = SamplingParams(do_sample=False, repetition_penalty=1.2, dola_layers=(16, 18))
    code = generate_snippet(PlaygroundConfig(prompt="Hi", params=params), "some/model")
    assert f"custom_generate={DOLA_REPO!r}, trust_remote_code=True" in code
    assert "dola_layers=[16, 18]," in code


def test_a_sweep_refuses_bad_dola_rows_before_any_work(engine):
    from engine.sweep import run_sweep
    from engine.sweepspec import Axis, SweepSpec

    base = SamplingParams(do_sample=False, max_new_tokens=2)
    with pytest.raises(ParamError, match=r"^dola_layers: .*\[0, 29\]"):  # the high cell is fine, [40] is not
        run_sweep(engine, SweepSpec("Hi", base, (Axis("dola_layers", ("high", (40,))),)))
    with pytest.raises(ParamError, match="^prefix: "):
        run_sweep(engine, SweepSpec("Hi", base.replace(dola_layers="high"), prefix=("The",)))
