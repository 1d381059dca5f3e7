"""playground.shown_cache: the Distributions view built ahead for the next step is the one a move builds (tiny
random model)."""
from __future__ import annotations

import time

import pandas as pd

from engine.generate import Engine
from engine.params import SamplingParams
from engine.sweepspec import SweepSpec
from playground import views
from playground.runs import RunStore
from playground.shown_cache import ShownDistributions


def finished_run(store: RunStore, engine: Engine):
    run = None
    spec = SweepSpec("one two three", SamplingParams(temperature=1.1, top_p=0.9, max_new_tokens=6, min_new_tokens=6,
                                                     seed=5), raw=True, samples=2)
    for frame in views.stream_run(engine, store, spec, "generate"):
        run = frame.run or run
    return run


def wait_kept(shown: ShownDistributions, run, row: int, step: int, top: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if shown.is_kept(run, row, step, top):
            return True
        time.sleep(0.01)  # polling interval while the background build runs
    return False


def shown_of_a_finished_run(tiny) -> tuple[Engine, object, ShownDistributions]:
    """(the engine, a finished run in a fresh store, the views of that store)."""
    engine = Engine(tiny)
    store = RunStore(engine)
    return engine, finished_run(store, engine), ShownDistributions(store)


def test_a_view_built_ahead_equals_the_one_built_on_request(tiny) -> None:
    engine, run, shown = shown_of_a_finished_run(tiny)
    shown.prefetch(run, 1, 3, 7)
    assert wait_kept(shown, run, 1, 3, 7)
    ahead = shown.get(run, 1, 3, 7)
    fresh = views.distribution(RunStore(engine), run, 1, 3, 7)  # another store: replayed and drawn now
    assert ahead.caption == fresh.caption
    assert ahead.figure.to_json() == fresh.figure.to_json() and ahead.steps.to_json() == fresh.steps.to_json()
    pd.testing.assert_frame_equal(ahead.table, fresh.table)
    assert not shown.is_kept(run, 1, 3, 8)  # another "tokens shown" is another view


def test_nothing_is_built_outside_the_output_and_at_most_size_views_are_kept(tiny) -> None:
    engine, run, shown = shown_of_a_finished_run(tiny)
    last = len(run.generation.rows[0].token_ids) - 1
    shown.prefetch(run, 0, last + 1, 20)  # past the last step (the slider at its end)
    shown.prefetch(run, 5, 0, 20)  # no such output
    assert not shown._building.locked() and not shown._kept
    shown.SIZE = 3
    for step in range(5):
        shown.get(run, 0, step, 20)
    assert [shown.is_kept(run, 0, step, 20) for step in range(5)] == [False, False, True, True, True]


def test_a_move_to_the_step_being_built_ahead_waits_for_it_and_gets_the_same_view(tiny) -> None:
    engine, run, shown = shown_of_a_finished_run(tiny)
    shown.prefetch(run, 0, 2, 20)
    during = shown.get(run, 0, 2, 20)  # at once: the build ahead is (most likely) still under way
    assert shown.get(run, 0, 2, 20) is during  # one view: built once, not twice
    assert wait_kept(shown, run, 0, 2, 20) and not shown._building.locked()
