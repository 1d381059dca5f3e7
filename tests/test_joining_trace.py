"""Continuous batching with a trace: rows that join a run recording top-N summaries (the page's Generate, /v1
requests with top_logprobs) get trace rows of their own, indexed by their own steps (engine/trace.py).

A seeded traced row joining at any step returns its alone tokens, its alone trace and its alone streamed top-N
logprobs; the running rows' tokens and trace are unchanged by the join. Tokens and top-N ids are compared
exactly; probabilities and entropies to float rounding (a joined row's attention is left-padded in the batch,
which changes logits by float rounding only, as for mixed-prompt batches)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from engine.generate import Engine, GenerationResult
from engine.joining import Joining
from engine.params import SamplingParams
from engine.scheduler import ChoiceDone, JobDone, TokenEvent
from engine.trace import Trace
from test_joining import (KNOBS, SHORT_ROWS, WORDS, as_params, collect, long_batch,  # noqa: F401
                          spread, started)  # (spread: a fixture)

TOP_N = 5
TOL = 2e-4  # float rounding of the padded attention, on probabilities and entropies (nats)


def traced_with_joins(engine: Engine, prompt: list[int], params: list[SamplingParams], indices: list[int],
                      joins: dict[int, list[Joining]], top_n: int = TOP_N
                      ) -> tuple[GenerationResult, dict[int, list[list[tuple[int, float]]]]]:
    """Stream one traced batch; before step k + 1 the rows of joins[k] join it -> (the result, each row's streamed
    raw top-N per step)."""
    boundaries = iter(range(10**9))
    streamed: dict[int, list[list[tuple[int, float]]]] = {}
    result = None
    for update in engine.stream(prompt, params, indices, top_n, admit=lambda: joins.get(next(boundaries), [])):
        for row, top in zip(update.rows, update.raw_top):
            streamed.setdefault(row, []).append(top)
        result = update.result
    assert result is not None
    return result, streamed


def traced_alone(engine: Engine, prompt: list[int], params: list[SamplingParams], indices: list[int],
                 top_n: int = TOP_N) -> tuple[GenerationResult, dict[int, list[list[tuple[int, float]]]]]:
    return traced_with_joins(engine, prompt, params, indices, {}, top_n)


def assert_rows_equal(joined: GenerationResult, joined_top: dict, rows: range, alone: GenerationResult,
                      alone_top: dict) -> None:
    """Rows `rows` of the joined run are rows 0.. of the run alone: tokens, log-probs, trace and streamed top-N."""
    assert joined.trace is not None and alone.trace is not None
    for mine, theirs in zip(rows, range(len(alone.rows))):
        a, b = joined.rows[mine], alone.rows[theirs]
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        assert a.raw_logprobs == pytest.approx(b.raw_logprobs, abs=TOL)
        assert a.final_logprobs == pytest.approx(b.final_logprobs, abs=TOL)
        length = len(b.token_ids)
        assert_trace_rows_equal(joined.trace, mine, alone.trace, theirs, length)
        # nothing is recorded for a row past its own length
        assert not joined.trace.top_ids[length:, :, mine].any() and not joined.trace.entropy[length:, :, mine].any()
        ids = [[i for i, _ in step] for step in joined_top.get(mine, [])]
        assert ids == [[i for i, _ in step] for step in alone_top.get(theirs, [])]
        assert [lp for step in joined_top.get(mine, []) for _, lp in step] == pytest.approx(
            [lp for step in alone_top.get(theirs, []) for _, lp in step], abs=TOL)


def assert_trace_rows_equal(joined: Trace, row: int, alone: Trace, alone_row: int, length: int) -> None:
    a, b = joined.row(row, length), alone.row(alone_row, length)
    assert len(a["top_ids"]) == length
    for name in ("top_ids", "chosen_rank", "support"):
        assert a[name] == b[name], name
    for name in ("entropy", "chosen_prob", "top_probs"):
        assert torch.tensor(a[name]) == pytest.approx(torch.tensor(b[name]), abs=TOL), name


# -- the engine, on the bundled model ---------------------------------------------------------------------------

RUNNING = [SamplingParams(temperature=0.8, top_p=0.9, seed=11, max_new_tokens=20, min_new_tokens=20),
           SamplingParams(temperature=0, max_new_tokens=8)]
JOINER = [SamplingParams(temperature=0.9, top_k=40, seed=7, max_new_tokens=12, min_new_tokens=6,
                         repetition_penalty=1.3, presence_penalty=0.4, stop=(" the end",)),
          SamplingParams(temperature=1.1, min_p=0.05, seed=3, max_new_tokens=26, min_new_tokens=26)]


@pytest.fixture(scope="module")
def engine(bundled) -> Engine:
    return Engine(bundled)


@pytest.fixture(scope="module")
def running_alone(engine):
    prompt = engine.encode("Tell me a story about a cat.")
    return prompt, traced_alone(engine, prompt, RUNNING, [0, 1])


@pytest.fixture(scope="module")
def joiner_alone(engine):
    prompt = engine.encode("Write a long and careful explanation of why the sky is blue, for a child.")
    return prompt, traced_alone(engine, prompt, JOINER, [4, 5])


@pytest.mark.parametrize("k", [0, 5, 15])
def test_a_traced_row_joining_at_step_k_has_its_alone_tokens_and_trace(engine, running_alone, joiner_alone, k):
    """Joining at the first step, mid-run, and late (the joiner's 26 steps then run past the batch's 20: the
    trace grows in steps too); the running rows' tokens and trace are unchanged."""
    prompt, (run_result, run_top) = running_alone
    joiner_prompt, (join_result, join_top) = joiner_alone
    result, streamed = traced_with_joins(engine, prompt, RUNNING, [0, 1],
                                         {k: [Joining(joiner_prompt, JOINER, [4, 5], TOP_N)]})
    assert len(result.rows) == 4 and result.trace.rows == 4
    assert_rows_equal(result, streamed, range(2), run_result, run_top)
    assert_rows_equal(result, streamed, range(2, 4), join_result, join_top)
    # trimmed to the longest row's own trace (26 steps), not to the loop's step count (k + 1 + 26)
    assert result.trace.steps == max(len(r.token_ids) for r in result.rows)


def test_a_joiner_asking_for_another_trace_is_refused(engine):
    prompt = engine.encode("Hi")
    joins = {1: [Joining(prompt, [SamplingParams(max_new_tokens=3)], [0], trace_top_n=2)]}
    with pytest.raises(ValueError, match="same trace"):
        traced_with_joins(engine, prompt, RUNNING, [0, 1], joins)
    with pytest.raises(ValueError, match="same trace"):  # a traced joiner into a run without a trace
        traced_with_joins(engine, prompt, RUNNING, [0, 1], joins, top_n=0)


# -- a property over random arrival steps and settings, on a tiny model -----------------------------------------

JOB = st.tuples(st.sampled_from(WORDS), st.lists(KNOBS, min_size=1, max_size=3))


@given(first=JOB, arrivals=st.lists(st.tuples(st.integers(0, 14), JOB), min_size=1, max_size=3),
       top_n=st.sampled_from([1, 3, 7]))
def test_property_traced_joined_rows_equal_each_job_alone(spread, first, arrivals, top_n):  # noqa: F811
    engine = spread
    prompt, params = engine.encode(first[0], raw=True), as_params(first[1])
    later = [(step, engine.encode(words, raw=True), as_params(knobs)) for step, (words, knobs) in arrivals]
    joins: dict[int, list[Joining]] = {}
    for step, p, ps in later:
        joins.setdefault(step, []).append(Joining(p, ps, list(range(len(ps))), top_n))
    result, streamed = traced_with_joins(engine, prompt, params, list(range(len(params))), joins, top_n)
    assert_rows_equal(result, streamed, range(len(params)),
                      *traced_alone(engine, prompt, params, list(range(len(params))), top_n))
    at = len(params)
    for _, p, ps in sorted(later, key=lambda job: job[0]):  # stable: the order the loop admits them
        if at == len(result.rows):  # the batch had ended before this job's step: it never joined
            break
        assert_rows_equal(result, streamed, range(at, at + len(ps)), *traced_alone(engine, p, ps, list(range(len(ps))), top_n))
        at += len(ps)
    assert at == len(result.rows) == result.trace.rows


# -- the scheduler: jobs with top_logprobs join batches with the same top-N --------------------------------------

def test_a_job_with_top_logprobs_joins_a_batch_with_the_same_top_n(tiny):
    engine = Engine(tiny)
    other = engine.encode("one two three four five", raw=True)
    with long_batch(engine, top_logprobs=3) as batch:
        joined = batch.scheduler.submit(other, SHORT_ROWS, top_logprobs=3)
        events = list(joined.events(timeout=120))
        done, choices = events[-1], sorted((e for e in events if isinstance(e, ChoiceDone)), key=lambda e: e.choice)
        assert isinstance(done, JobDone)
        assert done.batch_rows == 3  # it joined: 1 row running + its own 2
        alone, alone_top = traced_alone(engine, other, SHORT_ROWS, [0, 1], 3)
        assert [c.token_ids for c in choices] == [r.token_ids for r in alone.rows]
        for choice in range(2):
            mine = [e for e in events if isinstance(e, TokenEvent) and e.choice == choice]
            assert [e.raw_logprob for e in mine] == pytest.approx(alone.rows[choice].raw_logprobs, abs=TOL)
            assert [[i for i, _ in e.raw_top] for e in mine] == [[i for i, _ in top] for top in alone_top[choice]]
            assert [lp for e in mine for _, lp in e.raw_top] == pytest.approx(
                [lp for top in alone_top[choice] for _, lp in top], abs=TOL)
        # another top-N (or none) does not join it: a batch of its own
        for top_logprobs in (0, 2):
            _, done = collect(batch.scheduler.submit(other, SHORT_ROWS, top_logprobs=top_logprobs))
            assert done.batch_rows == 2
