"""Runs take turns on the engine (engine/turns.py): concurrent runs alternate steps, first come first served, so a
short run ends while a long one still goes, with exactly the tokens it has alone."""
from __future__ import annotations

import threading
import time

import pytest

from engine.generate import Engine
from engine.params import SamplingParams
from engine.scheduler import BatchScheduler, ChoiceDone, JobDone
from engine.turns import Turns

PROMPT = [1, 2, 3, 4]
LONG, SHORT = 40, 4  # steps: enough apart that "the short one ends first" cannot happen by chance


def sampled(tokens: int, seed: int) -> SamplingParams:
    """A seeded sampled row of exactly `tokens` tokens (EOS suppressed until then)."""
    return SamplingParams(temperature=1.0, seed=seed, max_new_tokens=tokens, min_new_tokens=tokens)


def test_turns_are_first_come_first_served_and_alternate():
    turns = Turns()
    order: list[str] = []

    def steps(name: str, count: int):
        for i in range(count):
            order.append(name)
            yield i

    held = threading.Event()
    release = threading.Event()

    def first():
        with turns.turn():
            held.set()
            release.wait(10)

    blocker = threading.Thread(target=first)
    blocker.start()
    held.wait(10)
    # two runs queue behind the holder; from then on each step of one is followed by a step of the other
    runs = [threading.Thread(target=lambda n=n: list(turns.taking_turns(steps(n, 5)))) for n in "ab"]
    runs[0].start()
    time.sleep(0.1)
    runs[1].start()
    time.sleep(0.1)
    assert turns.in_flight == 2
    release.set()
    for t in (blocker, *runs):
        t.join(10)
    assert "".join(order) == "ababababab"
    assert turns.in_flight == 0


def test_a_turn_is_not_reentrant():
    turns = Turns()
    with turns.turn():
        with pytest.raises(RuntimeError, match="already holds"):
            with turns.turn():
                pass
    with turns.turn():  # and the turn was freed
        pass


def test_closing_a_run_early_frees_its_place_and_closes_its_steps():
    turns = Turns()
    closed = []

    def steps():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    run = turns.taking_turns(steps())
    assert next(run) == 0 and turns.in_flight == 1
    run.close()
    assert closed == [True] and turns.in_flight == 0


def test_a_short_run_ends_while_a_long_one_goes_and_matches_its_solo_output(tiny):
    engine = Engine(tiny)
    long_p, short_p = [sampled(LONG, seed=7)], [sampled(SHORT, seed=3)]
    solo_long = engine.generate(PROMPT, long_p, [0])
    solo_short = engine.generate(PROMPT, short_p, [0])

    started, long_steps, long_result = threading.Event(), [], []

    def long_run():
        for update in engine.stream(PROMPT, long_p, [0]):
            long_steps.append(update.step)
            started.set()
            if update.result is not None:
                long_result.append(update.result)

    thread = threading.Thread(target=long_run)
    thread.start()
    assert started.wait(60)
    assert engine.turns.in_flight == 1
    short = engine.generate(PROMPT, short_p, [0])
    steps_by_then = len(long_steps)
    thread.join(120)
    # alternating, the long run does about SHORT steps meanwhile (one more if the short one's prefill came first)
    assert steps_by_then <= 2 * SHORT + 2 < LONG, f"the long run did {steps_by_then} of its {LONG} steps meanwhile"
    assert [r.token_ids for r in short.rows] == [r.token_ids for r in solo_short.rows]
    assert [r.token_ids for r in long_result[0].rows] == [r.token_ids for r in solo_long.rows]
    assert engine.turns.in_flight == 0


def test_a_v1_batch_takes_turns_with_a_long_run(tiny):
    engine = Engine(tiny)
    scheduler = BatchScheduler(engine, window_seconds=0.01, max_wait_seconds=0.02)
    try:
        solo = engine.generate(PROMPT, [sampled(SHORT, seed=5)], [0]).rows[0].token_ids
        started, long_steps = threading.Event(), []

        def long_run():  # each step notes how many runs were in flight: the /v1 batch only counts once it runs
            for _ in engine.stream(PROMPT, [sampled(LONG, seed=1)], [0]):
                long_steps.append(engine.turns.in_flight)
                started.set()

        thread = threading.Thread(target=long_run)
        thread.start()
        assert started.wait(60)
        events = list(scheduler.submit(PROMPT, [sampled(SHORT, seed=5)]).events(timeout=120))
        steps_by_then = len(long_steps)
        thread.join(120)
        done = [e for e in events if isinstance(e, ChoiceDone)]
        assert isinstance(events[-1], JobDone) and done[0].token_ids == solo
        # the scheduler's collection window and a loaded machine's thread hops come before the batch takes turns:
        # count the long run's steps while both were in flight (alternating: about SHORT of them)
        meanwhile = sum(1 for runs in long_steps[:steps_by_then] if runs >= 2)
        assert steps_by_then < LONG, "the long run ended before the /v1 batch did: they never took turns"
        assert meanwhile <= 2 * SHORT + 2, f"the long run did {meanwhile} of {LONG} steps beside the /v1 batch"
    finally:
        scheduler.close()
