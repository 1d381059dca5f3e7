"""Continuous batching: rows that join a running batch between steps (engine/joining.py, engine/scheduler.py).

A seeded row returns exactly the tokens it returns alone, whichever step it joins at, and the running rows are
unchanged by the join; the scheduler hands a job that arrives while a batch decodes to that batch, within the
engine's limits, and a joined job can be cancelled like any other."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import pytest
from hypothesis import given, strategies as st

from engine.generate import Engine, EngineLimits
from engine.joining import Joining
from engine.models import tiny_random_model
from engine.params import SamplingParams
from engine.scheduler import BatchScheduler, ChoiceDone, JobDone, TokenEvent


def run_with_joins(engine: Engine, prompt: list[int], params: list[SamplingParams], indices: list[int],
                   joins: dict[int, list[Joining]]) -> list[list[int]]:
    """Stream one batch; before step k + 1 the rows of joins[k] join it -> every row's tokens, in row order."""
    boundaries = iter(range(10**9))

    def admit() -> list[Joining]:
        return joins.get(next(boundaries), [])

    tokens: dict[int, list[int]] = {}
    result = None
    for update in engine.stream(prompt, params, indices, admit=admit):
        for row, token in zip(update.rows, update.tokens):
            tokens.setdefault(row, []).append(token)
        result = update.result
    assert result is not None
    assert [r.token_ids for r in result.rows] == [tokens.get(i, []) for i in range(len(result.rows))]
    return [r.token_ids for r in result.rows]


def alone(engine: Engine, prompt: list[int], params: list[SamplingParams], indices: list[int]) -> list[list[int]]:
    return [r.token_ids for r in engine.generate(prompt, params, indices).rows]


# -- the engine, on the bundled model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(bundled) -> Engine:
    return Engine(bundled)


RUNNING = [SamplingParams(temperature=0.8, top_p=0.9, seed=11, max_new_tokens=24, min_new_tokens=24),
           SamplingParams(temperature=0, max_new_tokens=10)]
JOINERS = {
    "sampled, penalties, stop": [SamplingParams(temperature=0.9, top_k=40, seed=7, max_new_tokens=14,
                                                min_new_tokens=6, repetition_penalty=1.3, presence_penalty=0.4,
                                                frequency_penalty=0.3, no_repeat_ngram_size=2, stop=(" the end",))],
    "two samples, min_p, XTC": [SamplingParams(temperature=1.1, min_p=0.05, xtc_probability=0.5, xtc_threshold=0.05,
                                               seed=3, max_new_tokens=12, min_new_tokens=12)] * 2,
    "greedy, begin_suppress, forced_eos": [SamplingParams(temperature=0, max_new_tokens=9, begin_suppress_tokens=(" I",),
                                                          forced_eos_token_id=2, exponential_decay_factor=1.3,
                                                          exponential_decay_start=3)],
    "mirostat": [SamplingParams(temperature=1.0, mirostat=2, mirostat_tau=3.0, seed=5, max_new_tokens=12)],
}


SHORT, LONG = "Hi", "Write a long and careful explanation of why the sky is blue, for a child."
CASES = [(0, "sampled, penalties, stop", SHORT), (4, "sampled, penalties, stop", LONG),
         (15, "two samples, min_p, XTC", LONG), (4, "two samples, min_p, XTC", SHORT),
         (0, "greedy, begin_suppress, forced_eos", LONG), (9, "greedy, begin_suppress, forced_eos", SHORT),
         (2, "mirostat", SHORT), (15, "mirostat", LONG)]
_alone: dict[tuple, list[list[int]]] = {}


def alone_once(engine: Engine, prompt: list[int], params: list[SamplingParams], indices: list[int]) -> list[list[int]]:
    key = (tuple(prompt), tuple(params), tuple(indices))
    if key not in _alone:
        _alone[key] = alone(engine, prompt, params, indices)
    return _alone[key]


@pytest.mark.parametrize("k, joiner, text", CASES)
def test_a_row_joining_at_step_k_returns_its_alone_tokens(engine, k, joiner, text):
    """Joiners with a prompt shorter and longer than the running batch's, at several steps; the running rows
    are unchanged by the join."""
    running_prompt = engine.encode("Tell me a story about a cat.")
    prompt, params = engine.encode(text), JOINERS[joiner]
    indices = list(range(4, 4 + len(params)))
    joined = run_with_joins(engine, running_prompt, RUNNING, [0, 1], {k: [Joining(prompt, params, indices)]})
    assert joined[:2] == alone_once(engine, running_prompt, RUNNING, [0, 1])  # the running rows, unchanged
    assert joined[2:] == alone_once(engine, prompt, params, indices)


def test_several_jobs_joining_at_different_steps(engine):
    running_prompt = engine.encode("Name three rivers.")
    a = Joining(engine.encode("What is a prime number?"), [SamplingParams(temperature=0.7, seed=1, max_new_tokens=8)], [0])
    b = Joining(engine.encode("Why?"), [SamplingParams(temperature=1.0, seed=2, max_new_tokens=20)] * 2, [0, 1])
    c = Joining(engine.encode("Say yes."), [SamplingParams(temperature=0, max_new_tokens=5)], [0])
    joined = run_with_joins(engine, running_prompt, RUNNING, [0, 1], {2: [a], 6: [b, c]})
    assert joined == (alone_once(engine, running_prompt, RUNNING, [0, 1]) + alone(engine, a.prompt_ids, a.params, [0])
                      + alone(engine, b.prompt_ids, b.params, [0, 1]) + alone(engine, c.prompt_ids, c.params, [0]))


def test_a_batch_with_forced_tokens_or_other_modes_takes_no_joining_rows(engine):
    """(A batch with a trace takes joining rows asking for the same trace: tests/test_joining_trace.py.)"""
    prompt = engine.encode("Hi")
    with pytest.raises(ValueError, match="joinable"):
        next(iter(engine.stream(prompt, RUNNING, [0, 1], forced=[[5], []], admit=lambda: [])))
    with pytest.raises(ValueError, match="joinable"):
        next(iter(engine.stream(prompt, [SamplingParams(encoder_repetition_penalty=1.2)], admit=lambda: [])))


# -- a property over random arrival steps and settings, on a tiny model -----------------------------------------

WORDS = ["a", "b c", "d e f g", "hello there friend", "x y z w v u t s"]
KNOBS = st.fixed_dictionaries({"seed": st.integers(0, 2**31), "max_new_tokens": st.integers(1, 12)}, optional={
    "temperature": st.sampled_from([0.0, 0.5, 1.0, 1.5]), "top_k": st.sampled_from([0, 5, 50]),
    "top_p": st.sampled_from([1.0, 0.7]), "min_new_tokens": st.integers(0, 12),
    "repetition_penalty": st.sampled_from([1.0, 1.4]), "frequency_penalty": st.sampled_from([0.0, 0.5]),
    "no_repeat_ngram_size": st.sampled_from([0, 2]), "xtc_probability": st.sampled_from([0.0, 0.7]),
    "mirostat": st.sampled_from([0, 2]), "dry_multiplier": st.sampled_from([0.0, 0.8])})
JOB = st.tuples(st.sampled_from(WORDS), st.lists(KNOBS, min_size=1, max_size=3))


@pytest.fixture(scope="module")
def spread() -> Engine:
    """A tiny random model whose logits spread like a trained model's (no near-ties decided by rounding)."""
    return Engine(tiny_random_model(init_std=1.0))


def as_params(knobs: list[dict]) -> list[SamplingParams]:
    return [SamplingParams(**{**k, "min_new_tokens": min(k.get("min_new_tokens", 0), k["max_new_tokens"])})
            for k in knobs]


@given(first=JOB, arrivals=st.lists(st.tuples(st.integers(0, 14), JOB), min_size=1, max_size=3))
def test_property_joined_rows_equal_each_job_alone(spread, first, arrivals):
    engine = spread
    (prompt, params), later = _job(engine, first), [(step, _job(engine, job)) for step, job in arrivals]
    joins: dict[int, list[Joining]] = {}
    for step, (p, ps) in later:
        joins.setdefault(step, []).append(Joining(p, ps, list(range(len(ps)))))
    joined = run_with_joins(engine, prompt, params, list(range(len(params))), joins)
    assert joined[:len(params)] == alone(engine, prompt, params, list(range(len(params))))
    at = len(params)
    for _, (p, ps) in sorted(later, key=lambda pair: pair[0]):  # stable: the order the loop admits them
        if at == len(joined):  # the batch had ended before this job's step: it never joined
            break
        assert joined[at:at + len(ps)] == alone(engine, p, ps, list(range(len(ps))))
        at += len(ps)
    assert at == len(joined)


def _job(engine: Engine, job: tuple[str, list[dict]]) -> tuple[list[int], list[SamplingParams]]:
    return engine.encode(job[0], raw=True), as_params(job[1])


# -- the scheduler: a job arriving while a batch decodes joins it -----------------------------------------------

def collect(job, seen=()):
    """Every event of a job -> (its choices in order, JobDone); the streamed tokens add up to each choice's."""
    events = [*seen, *job.events(timeout=120)]
    assert isinstance(events[-1], JobDone), events[-1]
    done = {e.choice: e for e in events if isinstance(e, ChoiceDone)}
    for choice, finished in done.items():
        assert [e.token_id for e in events if isinstance(e, TokenEvent) and e.choice == choice] == finished.token_ids
    return [done[c] for c in sorted(done)], events[-1]


def started(job):
    """The job's first event, once its batch decodes."""
    first = next(job.events(timeout=120))
    assert isinstance(first, TokenEvent)
    return first


LONG_ROW = [SamplingParams(temperature=1.0, seed=4, max_new_tokens=300, min_new_tokens=300)]
SHORT_ROWS = [SamplingParams(temperature=0.9, top_k=20, seed=5, max_new_tokens=8, min_new_tokens=8)] * 2


@dataclass
class LongBatch:
    """A scheduler with LONG_ROW decoding on `prompt`: a batch other jobs can join."""

    scheduler: BatchScheduler
    prompt: list[int]
    running: object  # the long job
    first: TokenEvent  # its first event (already read)

    def cancelled(self) -> list[ChoiceDone]:
        """Cancel the long job and read the rest of it: its choices."""
        self.running.cancel()
        return collect(self.running, [self.first])[0]


@contextlib.contextmanager
def long_batch(engine: Engine, top_logprobs: int = 0) -> Iterator[LongBatch]:
    """A LongBatch; afterwards the long job is cancelled (unless the test did) and the scheduler closed."""
    scheduler = BatchScheduler(engine, window_seconds=0.01, max_wait_seconds=0.01)
    prompt = engine.encode("a b c", raw=True)
    running = scheduler.submit(prompt, LONG_ROW, top_logprobs=top_logprobs)
    batch = LongBatch(scheduler, prompt, running, started(running))
    try:
        yield batch
    finally:
        if not running.cancelled:
            batch.cancelled()
        scheduler.close()


def test_a_job_arriving_while_a_batch_decodes_joins_it_and_returns_its_alone_tokens(tiny):
    engine = Engine(tiny)
    other = engine.encode("one two three four five", raw=True)
    with long_batch(engine) as batch:
        choices, done = collect(batch.scheduler.submit(other, SHORT_ROWS))
        assert done.batch_rows == 3  # it joined the running batch: 1 row there + its own 2
        assert [c.token_ids for c in choices] == alone(engine, other, SHORT_ROWS, [0, 1])
        long_choices = batch.cancelled()
    assert long_choices[0].finish_reason == "cancelled"
    # the running row's tokens so far are its alone tokens: the join changed nothing for it
    assert long_choices[0].token_ids == alone(engine, batch.prompt, LONG_ROW, [0])[0][:len(long_choices[0].token_ids)]


@pytest.mark.parametrize("top_logprobs", [0, 2])  # 2: the jobs carry a trace
def test_a_joined_job_can_be_cancelled_and_the_batch_goes_on(tiny, top_logprobs):
    engine = Engine(tiny)
    scheduler = BatchScheduler(engine, window_seconds=0.01, max_wait_seconds=0.01)
    prompt = engine.encode("a b c", raw=True)
    keep = [SamplingParams(temperature=1.0, seed=9, max_new_tokens=60, min_new_tokens=60)]
    kept = scheduler.submit(prompt, keep, top_logprobs=top_logprobs)
    first = started(kept)
    joined = scheduler.submit(prompt, LONG_ROW, top_logprobs=top_logprobs)
    joined_first = started(joined)
    assert joined.batch_rows == 2
    joined.cancel()
    choices, _ = collect(joined, [joined_first])
    assert choices[0].finish_reason == "cancelled" and len(choices[0].token_ids) < 300
    kept_choices, _ = collect(kept, [first])
    assert kept_choices[0].token_ids == alone(engine, prompt, keep, [0])[0]
    scheduler.close()


@pytest.mark.parametrize("limits", [EngineLimits(max_rows=2), EngineLimits(max_total_tokens=305)])
def test_a_job_that_does_not_fit_the_running_batch_starts_its_own(tiny, limits):
    """EngineLimits bound the rows (and new tokens) decoding together: a job over what the running batch has left
    does not join it."""
    engine = Engine(tiny, limits)
    with long_batch(engine) as batch:
        choices, done = collect(batch.scheduler.submit(batch.prompt, SHORT_ROWS))
        assert done.batch_rows == 2  # a batch of its own
        assert [c.token_ids for c in choices] == alone(engine, batch.prompt, SHORT_ROWS, [0, 1])
        one = [SamplingParams(temperature=0, max_new_tokens=4)]
        _, done = collect(batch.scheduler.submit(batch.prompt, one))  # fits: 1 + 1 rows, 300 + 4 tokens
        assert done.batch_rows == 2


def test_jobs_with_other_top_logprobs_or_other_modes_start_beside_the_running_batch(tiny):
    """(Jobs with the running batch's top_logprobs join it: tests/test_joining_trace.py.)"""
    engine = Engine(tiny)
    with long_batch(engine) as batch:
        _, done = collect(batch.scheduler.submit(batch.prompt, SHORT_ROWS, top_logprobs=2))
        assert done.batch_rows == 2
        for other_mode in ({"prompt_lookup_num_tokens": 3}, {"guidance_scale": 1.5},
                           {"encoder_repetition_penalty": 1.3}):
            mode_rows = [SamplingParams(seed=2, max_new_tokens=4, **other_mode)]
            choices, done = collect(batch.scheduler.submit(batch.prompt, mode_rows))
            assert done.batch_rows == 1
            assert choices[0].token_ids == alone(engine, batch.prompt, mode_rows, [0])[0]
