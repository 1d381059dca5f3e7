"""The run history (playground/history.py) and comparing an output with an earlier run's output
(playground/comparing.py), on the tiny random model."""
from __future__ import annotations

import dataclasses

import pytest

from engine.errors import ParamError
from engine.generate import Engine
from engine.params import SamplingParams
from engine.sweepspec import Axis, SweepSpec
from playground import history
from playground.comparing import compare, divergence
from playground.runs import RunStore
from playground.views import stream_run

BASE = SamplingParams(temperature=1.2, max_new_tokens=5, seed=3)


def finished(engine: Engine, store: RunStore, spec: SweepSpec, kind: str = "generate"):
    run = None
    for frame in stream_run(engine, store, spec, kind):
        run = frame.run or run
    return run


@pytest.fixture(scope="module")
def runs(tiny):
    engine = Engine(tiny)
    store = RunStore(engine, capacity=4)
    first = finished(engine, store, SweepSpec("one two three", BASE, raw=True, samples=2))
    again = finished(engine, store, SweepSpec("one two three", BASE, raw=True, samples=2))  # same seed, same run
    hotter = finished(engine, store, SweepSpec("one two three", dataclasses.replace(BASE, temperature=3.0),
                                               (Axis("top_k", (0, 50)),), raw=True), "sweep")
    return engine, store, first, again, hotter


def test_each_run_is_listed_once_newest_last_and_at_most_20(runs):
    _, store, first, again, hotter = runs
    entries = history.remember([], first)
    entries = history.remember(entries, again)
    entries = history.remember(entries, first)  # reopened: not listed twice
    assert [e["run_id"] for e in entries] == [first.run_id, again.run_id]
    entry = history.entry(hotter)
    assert entry["kind"] == "sweep" and entry["outputs"] == 2 and entry["prompt"] == "one two three"
    assert entry["settings"] == "top_k × 2, temperature=3.0, max_new_tokens=5, seed=3"
    assert entry["tokens_per_s"] > 0 and entry["tokens"] == hotter.generation.generated_tokens
    many = []
    for number in range(25):  # summaries of 25 runs: the oldest 5 go
        many = history.remember(many, dataclasses.replace(first, run_id=f"r{number}", number=number))
    assert len(many) == history.HISTORY_SIZE and many[0]["run_id"] == "r5" and many[-1]["run_id"] == "r24"


def test_the_table_is_newest_first_and_says_which_run_is_shown_and_which_the_server_dropped(runs):
    _, store, first, again, _ = runs
    entries = history.remember(history.remember([], first), again)
    gone = dataclasses.replace(first, run_id="dropped0000", number=99)
    entries = [history.entry(gone)] + entries
    table = history.table(entries, store, current=again.run_id)
    assert list(table["run"]) == [again.number, first.number, 99]
    assert list(table["now"]) == ["shown", "", "dropped by the server"]
    assert [value for _, value in history.choices(entries)] == [again.run_id, first.run_id, "dropped0000"]
    with pytest.raises(ParamError, match=r"^earlier run: must be a run the server still keeps \(it keeps the last 4"):
        history.kept_run(store, entries, "dropped0000")
    with pytest.raises(ParamError, match=r"^earlier run: must be a run from this tab's history"):
        history.kept_run(store, entries, "someone-elses")
    assert history.kept_run(store, entries, first.run_id) is first


def test_an_output_compares_with_an_earlier_runs_output(runs):
    engine, store, first, again, hotter = runs
    # the same settings, seed and sample: the same tokens and distributions
    same = divergence(store, again, 1, 1, other_run=first)
    assert same.data["first_fork"] is None and all(step["TV"] < 1e-6 for step in same.data["steps"])
    assert same.data["other_run_id"] == first.run_id
    assert f"run {first.number} · " in same.caption
    # temperature 3 vs 1.2 on the same context: apart at step 0 already; the numbers are the engine's own
    hot = divergence(store, hotter, 0, 0, other_run=first)
    p = engine.final_distributions(hotter.generation, 0, 1)[0]
    q = engine.final_distributions(first.generation, 0, 1)[0]
    assert hot.data["steps"][0]["TV"] == pytest.approx(float(0.5 * (p - q).abs().sum()), abs=1e-6)
    assert hot.data["steps"][0]["TV"] > 0.01
    # stage by stage: the earlier output's settings (temperature 1.2) on the current output's context
    stages = compare(store, hotter, 0, 1, 0, other_run=first)
    theirs = engine.replay(hotter.generation, 0, 1, first.generation.params[0])
    own = engine.replay(hotter.generation, 0, 1)
    assert stages.data["stages"][-1]["distance (TV)"] == pytest.approx(
        float(0.5 * (own.probs[-1] - theirs.probs[-1]).abs().sum()), abs=1e-6)
    with pytest.raises(ParamError, match=r"^compare with: must be an output index in \[0, 1\], got 2"):
        divergence(store, hotter, 0, 2, other_run=first)


def test_outputs_of_different_prompts_are_not_compared(runs):
    engine, store, first, _, _ = runs
    other = finished(engine, store, SweepSpec("four five six", BASE, raw=True))
    with pytest.raises(ParamError, match=r"^compare with: must be an output with the same prompt as output 0"):
        divergence(store, other, 0, 0, other_run=first)
