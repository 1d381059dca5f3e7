"""RunStore.prefetch: the step a slider shows next is replayed in the background, and the cached replay is the
same as one made on request (tiny random model)."""
from __future__ import annotations

import time

import torch

from engine.generate import Engine
from engine.params import SamplingParams
from engine.sweepspec import SweepSpec
from playground.runs import RunStore
from playground.views import stream_run


def finished_run(store: RunStore, engine: Engine):
    run = None
    spec = SweepSpec("one two three", SamplingParams(temperature=1.1, top_p=0.9, max_new_tokens=6, min_new_tokens=6,
                                                     seed=5), raw=True, samples=2)
    for frame in stream_run(engine, store, spec, "generate"):
        run = frame.run or run
    return run


def wait_cached(store: RunStore, key: tuple[str, int, int], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with store._lock:
            if key in store._replays:
                return True
        time.sleep(0.01)  # polling interval while the background replay runs
    return False


def test_prefetched_replay_equals_a_replay_on_request(tiny) -> None:
    engine = Engine(tiny)
    store = RunStore(engine)
    run = finished_run(store, engine)
    store.prefetch(run, 1, 3)
    assert wait_cached(store, (run.run_id, 1, 3))
    prefetched = store.replay(run, 1, 3)
    fresh = RunStore(engine).replay(run, 1, 3)  # another store: replayed now, on request
    assert prefetched.stage_names == fresh.stage_names and prefetched.chosen == fresh.chosen
    assert torch.equal(prefetched.probs, fresh.probs)


def test_prefetch_ignores_steps_outside_the_output_and_cached_steps(tiny) -> None:
    engine = Engine(tiny)
    store = RunStore(engine)
    run = finished_run(store, engine)
    last = len(run.generation.rows[0].token_ids) - 1
    store.prefetch(run, 0, last + 1)  # past the last step (the slider at its end): nothing to do
    store.prefetch(run, 5, 0)  # no such output
    assert not store._prefetching.locked() and not store._replays
    store.replay(run, 0, 2)
    store.prefetch(run, 0, 2)  # cached already: no thread
    assert not store._prefetching.locked()
