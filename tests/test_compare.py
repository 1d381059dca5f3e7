"""Comparing two configurations on one context (the order study in the Distributions view)."""
import pytest
import torch

from engine.generate import Engine
from engine.params import ParamError, SamplingParams
from engine.sweepspec import Axis, SweepSpec
from playground.runs import RunStore
from playground.views import compare, stream_run

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
