"""Comparing two configurations on one context (the order study in the Distributions view)."""
import pytest
import torch

from engine.generate import Engine
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweepspec import Axis, SweepSpec
from playground.runs import RunStore
from playground.comparing import compare
from playground.views import stream_run

# runs and full-vocabulary replays on the tiny model (49,152 tokens, every stage): ~15 s of CPU in all
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def order_run(tiny):
    engine = Engine(tiny)
    store = RunStore(engine)
    base = SamplingParams(temperature=1.5, min_p=0.05, max_new_tokens=6, seed=3)
    spec = SweepSpec("one two three", base, (Axis("order", ("temperature>min_p", "min_p>temperature")),), raw=True)
    run = None
    for frame in stream_run(engine, store, spec, "sweep"):
        run = frame.run or run
    return engine, store, run


def test_orders_agree_until_the_first_moved_processor(order_run):
    engine, store, run = order_run
    shown = compare(store, run, 0, 2, 1)
    stages = shown.data["stages"]
    moved = next(k for k, s in enumerate(stages) if s["output 0"] != s["output 1"])
    assert all(s["distance (TV)"] < 1e-6 for s in stages[:moved])
    assert shown.data["parted_after"] is None or shown.data["parted_after"] >= moved
    # the last stage is each configuration's final distribution on output 0's context
    own = engine.replay(run.generation, 0, 2)
    theirs = engine.replay(run.generation, 0, 2, run.generation.params[1])
    assert stages[-1]["distance (TV)"] == pytest.approx(float(0.5 * (own.probs[-1] - theirs.probs[-1]).abs().sum()), abs=1e-6)
    # replaying output 1's own context with its own settings is what the batch saw
    assert torch.allclose(engine.replay(run.generation, 1, 2, run.generation.params[1]).probs,
                          engine.replay(run.generation, 1, 2).probs)


def test_compare_refuses_an_unknown_output(order_run):
    _, store, run = order_run
    with pytest.raises(ParamError, match="^compare with: "):
        compare(store, run, 0, 1, 7)


def test_distribution_caption_tracks_mirostat_mu(tiny):
    import math

    from playground.views import distribution

    engine = Engine(tiny)
    store = RunStore(engine)
    params = SamplingParams(mirostat=2, mirostat_tau=4.0, mirostat_eta=0.2, max_new_tokens=5, seed=1)
    run = None
    for frame in stream_run(engine, store, SweepSpec("one two", params, raw=True), "generate"):
        run = frame.run or run
    out = run.generation.rows[0]
    surprise = sum(-lp / math.log(2) for lp in out.final_logprobs[:2])
    expected = 2 * 4.0 - 0.2 * (surprise - 2 * 4.0)
    assert f"mirostat mu {expected:.2f} bits" in distribution(store, run, 0, 2).caption
    assert "mirostat mu 8.00 bits" in distribution(store, run, 0, 0).caption  # mu starts at 2 tau


# -- Where two outputs part: per-step divergence on the shared prefix ------------------------------------------

def _run(engine, store, spec):
    run = None
    for frame in stream_run(engine, store, spec, "sweep"):
        run = frame.run or run
    return run


@pytest.fixture(scope="module")
def temperature_run(tiny):
    """Three settings x 2 samples on one prompt, seed shared across cells: outputs 0/1 share settings."""
    engine = Engine(tiny)
    store = RunStore(engine)
    base = SamplingParams(top_k=50, repetition_penalty=1.3, max_new_tokens=12, seed=11)
    spec = SweepSpec("one two three", base, (Axis("temperature", (0.7, 1.0, 1.4)),), samples=2, raw=True)
    return engine, store, _run(engine, store, spec)


def test_final_distributions_equal_the_replays_final_stage_at_every_step(temperature_run):
    engine, _, run = temperature_run
    for row in range(run.row_count):
        tokens = run.generation.rows[row].token_ids
        finals = engine.final_distributions(run.generation, row, len(tokens))  # [T, V]
        for step, token in enumerate(tokens):
            replayed = engine.replay(run.generation, row, step).probs[-1]
            assert torch.equal(finals[step] > 0, replayed > 0), f"row {row} step {step}: another support"
            assert torch.allclose(finals[step], replayed, atol=1e-5)
            assert finals[step, token] > 0  # the chosen token was kept


def test_outputs_with_the_same_settings_agree_until_and_at_their_fork(temperature_run):
    from playground.comparing import divergence
    _, store, run = temperature_run
    shown = divergence(store, run, 0, 1)  # two samples of one cell: the same distribution until they part
    steps, fork = shown.data["steps"], shown.data["first_fork"]
    a, b = (run.generation.rows[i].token_ids for i in (0, 1))
    assert fork == next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), None)
    assert len(steps) == (fork + 1 if fork is not None else min(len(a), len(b)))
    for s in steps:
        assert s["TV"] < 1e-6 and s["KL(0‖1)"] < 1e-6 and s["KL(1‖0)"] < 1e-6
    if fork is not None:
        assert f"at step {fork}" in shown.caption


def test_divergence_equals_replays_of_both_outputs_at_every_shared_step(temperature_run):
    from playground.comparing import divergence
    engine, store, run = temperature_run
    shown = divergence(store, run, 0, 4)  # temperature 0.7 vs 1.4, sample 0 of each: same seed and sample
    for s in shown.data["steps"]:
        p = engine.replay(run.generation, 0, s["step"]).probs[-1]
        q = engine.replay(run.generation, 4, s["step"]).probs[-1]
        assert s["TV"] == pytest.approx(float(0.5 * (p - q).abs().sum()), abs=1e-5)
        kept = p > 0
        expected = float((p[kept] * (p[kept].log() - q[kept].log())).sum())
        assert s["KL(0‖4)"] == pytest.approx(expected, rel=1e-3, abs=1e-5)
        assert s["TV"] > 0  # another temperature: another distribution at every step


def test_a_token_kept_by_one_output_and_removed_by_the_other_makes_kl_infinite(tiny):
    from playground.comparing import divergence
    engine = Engine(tiny)
    store = RunStore(engine)
    spec = SweepSpec("one two", SamplingParams(max_new_tokens=4, seed=2), (Axis("top_k", (50, 1)),), raw=True)
    run = _run(engine, store, spec)
    shown = divergence(store, run, 0, 1)
    first = shown.data["steps"][0]
    assert first["KL(0‖1)"] is None  # infinite: JSON-safe null
    assert first["KL(1‖0)"] is not None and first["KL(1‖0)"] >= 0
    assert shown.table.iloc[0]["KL(0‖1)"] == "∞"


def test_divergence_refuses_outputs_with_other_prompts_and_unknown_outputs(tiny):
    from playground.comparing import divergence
    engine = Engine(tiny)
    store = RunStore(engine)
    spec = SweepSpec("", SamplingParams(max_new_tokens=3, seed=2), (Axis("prompt", ("one two", "three four")),))
    run = _run(engine, store, spec)
    with pytest.raises(ParamError, match="^compare with: .*same prompt"):
        divergence(store, run, 0, 1)
    with pytest.raises(ParamError, match="^compare with: "):
        divergence(store, run, 0, 9)
