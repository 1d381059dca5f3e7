"""The page's runs join each other's batches (engine/shared_batches.py, engine/row_groups.py): a run arriving while
another decodes joins its batch, and each still streams its own updates (its own rows and steps) and ends with its
own result, equal to the run alone: tokens exactly, log-probs, entropies and the trace to float rounding (the
padded attention). Stopping one run ends only its rows; with joining off each run decodes in a batch of its own."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings, strategies as st

from engine.events import StepUpdate
from engine.generate import Engine, GenerationResult
from engine.params import SamplingParams
from engine.sweep import stream_sweep
from engine.sweepspec import SweepSpec
from test_joining import KNOBS, WORDS, as_params, spread  # noqa: F401 (spread: a fixture)
from test_joining_trace import TOL, assert_trace_rows_equal

TOP_N = 5  # the page's (playground/views.py TRACE_TOP_N)


def collect(updates) -> tuple[list[StepUpdate], GenerationResult]:
    """Every update of one run, checked to be a run's own: steps 0, 1, ...; rows numbered from 0; the streamed
    tokens add up to the result's; the result on the last update only."""
    seen = list(updates)
    result = seen[-1].result
    assert result is not None and all(u.result is None for u in seen[:-1])
    assert [u.step for u in seen] == list(range(len(seen)))
    tokens: dict[int, list[int]] = {}
    for update in seen:
        for row, token in zip(update.rows, update.tokens):
            tokens.setdefault(row, []).append(token)
    assert [tokens.get(i, []) for i in range(len(result.rows))] == [r.token_ids for r in result.rows]
    return seen, result


def assert_same_run(shared: GenerationResult, alone: GenerationResult, streamed: list[StepUpdate] | None = None,
                    alone_streamed: list[StepUpdate] | None = None) -> None:
    """The shared batch's result for a run is the run alone's (what the page stores and replays from)."""
    assert (shared.prompt_ids, shared.row_prompt_ids, shared.params, shared.sample_indices) == (
        alone.prompt_ids, alone.row_prompt_ids, alone.params, alone.sample_indices)
    assert len(shared.rows) == len(alone.rows)
    for a, b in zip(shared.rows, alone.rows):
        assert (a.token_ids, a.text, a.finish_reason, a.adaptive_probs) == (b.token_ids, b.text, b.finish_reason,
                                                                             b.adaptive_probs)
        for name in ("raw_logprobs", "final_logprobs", "raw_entropies"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=TOL), name
    if alone.trace is None:
        assert shared.trace is None
        return
    assert shared.trace is not None and shared.trace.top_ids.shape == alone.trace.top_ids.shape
    for row, r in enumerate(alone.rows):
        assert_trace_rows_equal(shared.trace, row, alone.trace, row, len(r.token_ids))
    if streamed is not None and alone_streamed is not None:
        assert [(u.rows, u.finished, u.finish_reasons) for u in streamed] == [
            (u.rows, u.finished, u.finish_reasons) for u in alone_streamed]
        assert [[i for i, _ in top] for u in streamed for top in u.raw_top] == [
            [i for i, _ in top] for u in alone_streamed for top in u.raw_top]


def alone(engine: Engine, prompt, params, indices, top_n=TOP_N) -> tuple[list[StepUpdate], GenerationResult]:
    return collect(engine.stream(prompt, params, indices, top_n))


# -- on the bundled model ---------------------------------------------------------------------------------------

FIRST = [SamplingParams(temperature=0.8, top_p=0.9, seed=11, max_new_tokens=60, min_new_tokens=60)] * 2
SECOND = [SamplingParams(temperature=0.9, top_k=40, seed=7, max_new_tokens=14, repetition_penalty=1.3,
                         stop=(" the end",)), SamplingParams(temperature=0, max_new_tokens=9)]


@pytest.fixture(scope="module")
def engine(bundled) -> Engine:
    return Engine(bundled)


@pytest.fixture(scope="module")
def prompts(engine) -> tuple[list[int], list[int]]:
    return engine.encode("Tell me a story about a cat."), engine.encode("Why is the sky blue?")


@pytest.fixture(scope="module")
def alone_runs(engine, prompts):
    return alone(engine, prompts[0], FIRST, [0, 1]), alone(engine, prompts[1], SECOND, [0, 1])


@pytest.mark.parametrize("after", [0, 20])
def test_a_run_arriving_while_another_decodes_joins_it_and_both_equal_alone(engine, prompts, alone_runs, after):
    """The second run arrives after the first has streamed `after` updates: it joins the first's batch (one batch
    started for both), and each run's updates and result are its own alone, trace included."""
    started = engine.shared.started
    first = engine.shared.stream(prompts[0], FIRST, [0, 1], TOP_N)
    head = [next(first) for _ in range(after + 1)]
    second, second_result = collect(engine.shared.stream(prompts[1], SECOND, [0, 1], TOP_N))
    first_updates, first_result = collect([*head, *first])
    assert engine.shared.started == started + 1  # the second joined the first's batch
    (first_alone, first_alone_result), (second_alone, second_alone_result) = alone_runs
    assert_same_run(first_result, first_alone_result, first_updates, first_alone)
    assert_same_run(second_result, second_alone_result, second, second_alone)


def test_stopping_one_run_ends_only_its_rows(engine, prompts, alone_runs):
    """The run that started the batch is stopped (the page's Stop): its rows end "cancelled", the joined run goes
    on to its alone result; then a joined run's consumer going away ends its rows, the batch goes on."""
    (_, first_alone), (_, second_alone) = alone_runs
    stop = threading.Event()
    first = engine.shared.stream(prompts[0], FIRST, [0, 1], TOP_N, stop)
    head = [next(first)]
    second = engine.shared.stream(prompts[1], SECOND, [0, 1], TOP_N)
    second_head = [next(second)]
    stop.set()
    _, first_result = collect([*head, *first])
    assert [r.finish_reason for r in first_result.rows] == ["cancelled"] * 2
    for row, full in zip(first_result.rows, first_alone.rows):
        assert 0 < len(row.token_ids) < 60 and row.token_ids == full.token_ids[:len(row.token_ids)]
    _, second_result = collect([*second_head, *second])
    assert_same_run(second_result, second_alone)

    kept = engine.shared.stream(prompts[0], FIRST, [0, 1], TOP_N)
    kept_head = [next(kept)]
    leaving = engine.shared.stream(prompts[1], [SamplingParams(temperature=1.0, seed=1, max_new_tokens=500)], [0], TOP_N)
    next(leaving)
    leaving.close()  # the page went away mid-run
    _, kept_result = collect([*kept_head, *kept])
    assert_same_run(kept_result, first_alone)


def test_page_runs_through_stream_sweep_join_unless_joining_is_off(engine, prompts, alone_runs):
    """stream_sweep (what the page's Generate runs) routes plain sampling runs through the shared batches; with
    engine.shared.join off (app.py --no-join) each runs in a batch of its own, with the same results."""
    (_, first_alone), (_, second_alone) = alone_runs
    first_spec = SweepSpec(prompt="Tell me a story about a cat.", base=FIRST[0], samples=2)
    second_spec = SweepSpec(prompt="Why is the sky blue?", base=SECOND[0], samples=2)
    for join in (True, False):
        engine.shared.join = join
        try:
            started = engine.shared.started
            first = stream_sweep(engine, first_spec, TOP_N)
            head = [next(first)]
            second = list(stream_sweep(engine, second_spec, TOP_N))
            rest = [*head, *first]
        finally:
            engine.shared.join = True
        assert engine.shared.started == started + (1 if join else 0)
        first_result, second_result = rest[-1][1].generation, second[-1][1].generation
        assert [r.token_ids for r in first_result.rows] == [r.token_ids for r in first_alone.rows]
        alone_second = engine.generate(prompts[1], [SECOND[0]] * 2, [0, 1], TOP_N)
        assert_same_run(second_result, alone_second)


# -- a property on a tiny model: several runs arriving at random points --------------------------------------------

RUN = st.tuples(st.sampled_from(WORDS), st.lists(KNOBS, min_size=1, max_size=3))


@settings(max_examples=15)
@given(first=RUN, later=st.lists(st.tuples(st.integers(0, 10), RUN), min_size=1, max_size=3))
def test_property_runs_sharing_a_batch_each_equal_alone(spread, first, later):  # noqa: F811
    engine = spread
    runs = [(engine.encode(words, raw=True), as_params(knobs)) for words, knobs in [first, *(r for _, r in later)]]
    streams = [engine.shared.stream(runs[0][0], runs[0][1], list(range(len(runs[0][1]))), 3)]
    heads: list[list[StepUpdate]] = [[]]
    for (after, _), (prompt, params) in zip(later, runs[1:]):
        for _ in range(after):  # the first run's updates so far (its batch may have ended)
            update = next(streams[0], None)
            if update is None:
                break
            heads[0].append(update)
        streams.append(engine.shared.stream(prompt, params, list(range(len(params))), 3))
        heads.append([])
    for stream, head, (prompt, params) in zip(streams, heads, runs):
        _, result = collect([*head, *stream])
        assert_same_run(result, alone(engine, prompt, params, list(range(len(params))), 3)[1])


# -- the page: runs stored from a shared batch look like the runs alone ------------------------------------------

def test_page_runs_that_shared_a_batch_are_stored_as_alone_and_replay_and_branch_as_alone(engine):
    """Two Generate runs through playground.views.stream_run (what the page's Generate button runs), the second
    started while the first streams: the stored runs (tokens, texts, pieces, trace) and their Distributions
    replays and branches are those of each run alone (joining off)."""
    from playground.branching import branch_run
    from playground.runs import RunStore
    from playground.views import distribution_json, stream_run

    first_spec = SweepSpec(prompt="Tell me a story about a cat.", base=FIRST[0], samples=2)
    second_spec = SweepSpec(prompt="Why is the sky blue?", base=SECOND[0], samples=2)
    store = RunStore(engine)
    started = engine.shared.started
    first = stream_run(engine, store, first_spec, "generate")
    head = next(first)
    assert head.run is None  # still streaming when the second arrives
    second = [frame.run for frame in stream_run(engine, store, second_spec, "generate")][-1]
    first_run = [frame.run for frame in first][-1]
    assert engine.shared.started == started + 1  # one batch for both
    engine.shared.join = False
    try:
        alone_runs = [[frame.run for frame in stream_run(engine, store, spec, "generate")][-1]
                      for spec in (first_spec, second_spec)]
    finally:
        engine.shared.join = True
    assert engine.shared.started == started + 1  # joining off: neither went through a shared batch
    for joined, by_itself in zip((first_run, second), alone_runs):
        assert joined is not None and by_itself is not None
        assert (joined.kind, joined.prompt, joined.labels, joined.pieces) == (
            by_itself.kind, by_itself.prompt, by_itself.labels, by_itself.pieces)
        assert_same_run(joined.generation, by_itself.generation)
        for row, step in ((0, 0), (1, 5)):  # the Distributions view's replay: exact, from the tokens
            assert distribution_json(store, joined, row, step) == {
                **distribution_json(store, by_itself, row, step), "run_id": joined.run_id}
    spec, link = branch_run(store, second, 0, 3, second.generation.rows[0].token_ids[3])
    branch = [frame.run for frame in stream_run(engine, store, spec, "generate", parent=link)][-1]
    assert branch.generation.rows[0].token_ids == second.generation.rows[0].token_ids  # the same token taken again


def test_a_run_stopped_before_it_joins_ends_as_a_stopped_run_alone(spread):  # noqa: F811
    """Stop pressed before the batch admits the run: it still ends with a result, its rows "cancelled" after their
    first token, as engine.stream gives a run whose cancel is set before it starts."""
    engine = spread
    prompt = engine.encode("a b c", raw=True)
    started = engine.shared.started
    running = engine.shared.stream(prompt, [SamplingParams(seed=1, max_new_tokens=2000, min_new_tokens=2000)], [0], 3)
    head = [next(running)]
    stop = threading.Event()
    stop.set()
    params = [SamplingParams(seed=2, max_new_tokens=9)] * 2
    _, stopped = collect(engine.shared.stream(prompt, params, [0, 1], 3, stop))
    assert engine.shared.started == started + 1  # it joined the running batch
    _, by_itself = collect(engine.stream(prompt, params, [0, 1], 3, stop))
    assert [r.finish_reason for r in stopped.rows] == ["cancelled"] * 2
    assert_same_run(stopped, by_itself)
    running.close()
    assert len(head) == 1
