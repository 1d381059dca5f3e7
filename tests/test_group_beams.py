"""Diverse (group) beam search against transformers 4.x's generate(), and its diversity_penalty processor.

transformers 5 no longer has group beam search in the library, so the oracle is the output of transformers
4.55.4's `generate()` on the bundled model, recorded by tests/data/make_group_beam_oracle.py (which says how to
run it again) in tests/data/group_beam_oracle.json: sequences and sequence scores per configuration.
"""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch

from engine.beams import beam_search, beam_search_steps
from engine.errors import ParamError
from engine.params import SamplingParams, from_dict
from engine.processors import apply_pipeline
from engine.rowstate import DecodeState, RowParams
from assertions import assert_same_beams
from synthetic import random_logits

ORACLE = json.loads((Path(__file__).parent / "data" / "group_beam_oracle.json").read_text())
CASES = ORACLE["cases"]


def case_id(case: dict) -> str:
    p = case["params"]
    return f"W{p['num_beams']}-G{p['num_beam_groups']}-d{p['diversity_penalty']}-{p['early_stopping']}-{case['prompt'][:12]}"


def assert_same(result, case: dict) -> None:
    assert_same_beams(result, case["sequences"], case["scores"])


def test_the_oracle_prompts_are_what_the_engine_encodes(engine):
    for case in CASES:
        assert engine.encode(case["prompt"], raw=case["raw"]) == case["prompt_ids"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_group_beam_search_equals_transformers_4(engine, case):
    (result,) = beam_search(engine, case["prompt_ids"], [from_dict(case["params"])])
    assert_same(result, case)
    # what each token added to the score: the processed log-probs sum to the raw sequence score
    for seq in result.sequences:
        assert len(seq.raw_logprobs) == len(seq.final_logprobs) == len(seq.raw_entropies) == len(seq.token_ids)
        assert seq.text == engine.loaded.decode(seq.token_ids)
        assert sum(seq.final_logprobs) / len(seq.token_ids) ** from_dict(case["params"]).length_penalty == \
            pytest.approx(seq.score, rel=1e-4, abs=1e-3)


def test_configs_of_one_shape_batched_together_equal_each_alone(engine):
    """Every oracle case sharing (num_beams, num_beam_groups, max_new_tokens) and prompt runs as one batch."""
    batches: dict[tuple, list[dict]] = {}
    for case in CASES:
        p = case["params"]
        batches.setdefault((tuple(case["prompt_ids"]), p["num_beams"], p["num_beam_groups"], p["max_new_tokens"]),
                           []).append(case)
    batched = [cases for cases in batches.values() if len(cases) > 1]
    assert batched, "the oracle should hold configurations that batch together"
    for cases in batched:
        results = beam_search(engine, cases[0]["prompt_ids"], [from_dict(c["params"]) for c in cases])
        for result, case in zip(results, cases):
            assert_same(result, case)


def test_a_sweep_over_diversity_penalty_runs_group_beams(engine):
    from engine.sweep import run_sweep
    from engine.sweepspec import Axis, SweepSpec

    case = next(c for c in CASES if c["params"]["diversity_penalty"] == 1.5)
    base = from_dict(case["params"])
    spec = SweepSpec(case["prompt"], base, (Axis("diversity_penalty", (1.5, 0.3)),), samples=1)
    df = run_sweep(engine, spec).dataframe()
    first = df[df["axis_diversity_penalty"] == 1.5]
    assert list(first["token_ids"]) == case["sequences"][:base.num_return_sequences]
    assert set(first["beam_group"]) == {0, 1}  # the group each returned beam grew in: both groups return beams
    assert list(first["beam_score"]) == pytest.approx(case["scores"][:base.num_return_sequences], rel=1e-4, abs=1e-4)


def reference_hamming(scores: torch.Tensor, chosen_by_earlier: list[int], penalty: float) -> torch.Tensor:
    """The definition, for one row: minus penalty for each earlier-group beam that chose the token this step."""
    out = scores.clone()
    for token in chosen_by_earlier:
        out[token] -= penalty
    return out


def test_diversity_penalty_processor_matches_its_definition():
    scores = random_logits(seed=3)  # [8, 500] with ties, -inf entries, peaked and flat rows
    before = scores.clone()
    chosen = [[], [7], [7, 7, 9], [499, 0], [12], [12, 12, 12, 12], [3, 4, 5], [15]]  # row 1: 15 is already -inf
    counts = torch.zeros_like(scores)
    for row, tokens in enumerate(chosen):
        for token in tokens:
            counts[row, token] += 1
    penalties = [0.5, 1.5, 2.0, 0.25, 3.0, 0.1, 1.0, 4.0]
    params = [SamplingParams(do_sample=False, num_beams=4, num_beam_groups=2, diversity_penalty=d) for d in penalties]
    rows = RowParams.build(params, eos_token_ids=[0], vocab_size=scores.shape[1])
    state = DecodeState.start(torch.tensor([[1, 2]]).expand(len(params), -1), vocab_size=scores.shape[1])
    state.peer_counts = counts
    out = apply_pipeline(scores, state, rows)
    for row, penalty in enumerate(penalties):
        torch.testing.assert_close(out[row], reference_hamming(scores[row], chosen[row], penalty))
    assert torch.equal(scores, before)  # nothing changed in place
    state.peer_counts = None  # outside a group step the processor changes nothing
    assert torch.equal(apply_pipeline(scores, state, rows), scores)


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_beams=4, num_beam_groups=3, diversity_penalty=1.0, do_sample=False), "num_beams"),
    (dict(num_beams=2, num_beam_groups=4, diversity_penalty=1.0, do_sample=False), "num_beam_groups"),
    (dict(num_beams=4, num_beam_groups=2, do_sample=False), "diversity_penalty"),
    (dict(num_beams=4, diversity_penalty=1.0, do_sample=False), "diversity_penalty"),
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, do_sample=True, temperature=0.7), "do_sample"),
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=-1.0, do_sample=False), "diversity_penalty"),
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, do_sample=False, stop=("\n",)), "stop"),
])
def test_bad_group_settings_name_the_field(kwargs, field):
    with pytest.raises(ParamError, match=f"^{field}: "):
        SamplingParams(**kwargs)


def test_a_beam_batch_needs_one_group_count(engine):
    prompt = CASES[0]["prompt_ids"]
    a = SamplingParams(do_sample=False, num_beams=4, num_beam_groups=2, diversity_penalty=1.0)
    with pytest.raises(ParamError, match="^num_beams: "):
        beam_search(engine, prompt, [a, a.replace(num_beam_groups=4)])


def test_distributions_replay_of_a_group_beam_row_sees_the_earlier_groups_choices(engine):
    """A beam of group g > 0: its diversity_penalty stage, replayed, lowers exactly the tokens that the beams of
    earlier groups chose at that step (recorded per step as peer_tokens)."""
    from engine.sweep import run_sweep
    from engine.sweepspec import SweepSpec

    case = CASES[0]
    params = from_dict(case["params"])
    result = run_sweep(engine, SweepSpec(case["prompt"], params, (), samples=1)).generation
    rows = [r for r in range(len(result.rows)) if any(result.rows[r].peer_tokens)]
    assert rows, "some returned beam should come from a later group"
    assert all((result.rows[r].beam_group > 0) == (r in rows) for r in range(len(result.rows)))
    stage = 1 + list(params.order).index("diversity_penalty")
    for row in rows:
        out = result.rows[row]
        assert len(out.peer_tokens) == len(out.token_ids)
        for step in (0, len(out.token_ids) // 2, len(out.token_ids) - 1):
            replay = engine.replay(result, row, step)
            assert replay.chosen == out.token_ids[step]
            assert math.isclose(math.log(replay.probs[0][replay.chosen]), out.raw_logprobs[step], abs_tol=1e-4)
            counts = torch.bincount(torch.tensor(out.peer_tokens[step]), minlength=replay.probs.shape[1]).float()
            expected = torch.softmax(replay.probs[0].log() - params.diversity_penalty * counts, dim=-1)
            torch.testing.assert_close(replay.probs[stage], expected, atol=1e-6, rtol=1e-4)
            assert not torch.equal(replay.probs[stage], replay.probs[0])


@pytest.mark.parametrize("groups", [1, 2])
def test_stop_ends_a_beam_batch_after_the_next_step_with_its_best_beams(engine, groups):
    """Stop (the page's button) during a beam batch: the step after it is the last, as if at max_new_tokens."""
    params = SamplingParams(do_sample=False, num_beams=4, num_return_sequences=3, max_new_tokens=16,
                            num_beam_groups=groups, diversity_penalty=1.0 if groups > 1 else 0.0)
    cancel = threading.Event()
    steps = beam_search_steps(engine, CASES[0]["prompt_ids"], [params], cancel)
    first, second = next(steps), next(steps)
    assert (first.step, second.step) == (1, 2)
    assert second.tokens.shape == (1, 4, 2) and second.logprobs.shape == (1, 4, 2, 2)  # the running beams so far
    cancel.set()
    assert next(steps).step == 3
    with pytest.raises(StopIteration) as end:
        next(steps)
    (result,) = end.value.value
    assert len(result.sequences) == 3
    assert all(len(seq.token_ids) == 3 and math.isfinite(seq.score) for seq in result.sequences)
    scores = [seq.score for seq in result.sequences]
    assert scores == sorted(scores, reverse=True)


def test_a_stopped_sweep_marks_unfinished_beams_cancelled(engine):
    from engine.events import BeamProgress
    from engine.sweep import progress_steps, stream_sweep
    from engine.sweepspec import Axis, SweepSpec

    base = SamplingParams(do_sample=False, num_beams=4, num_beam_groups=2, diversity_penalty=1.0,
                          num_return_sequences=2, max_new_tokens=24)
    spec = SweepSpec("Write a short poem about the sea.", base, (Axis("diversity_penalty", (0.5, 2.0)),))
    assert progress_steps(spec.rows()) == 24  # one beam batch
    cancel = threading.Event()
    updates = 0
    for update, result in stream_sweep(engine, spec, cancel=cancel):
        if result is None:
            updates += 1
            assert isinstance(update, BeamProgress)  # no tokens: the running beams instead
            assert sorted(update.beams) == [0, 1, 2, 3]
            assert all(len(beam.token_ids) == len(beam.raw_logprobs) == update.step + 1
                       for beam in update.beams.values())
            if updates == 4:
                cancel.set()
    assert updates == 5
    reasons = [row.finish_reason for row in result.generation.rows]
    assert len(reasons) == 4 and all(reason in ("cancelled", "stop") for reason in reasons) and "cancelled" in reasons
