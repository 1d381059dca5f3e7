"""The batch scheduler: jobs that arrive together decode together, and each gets exactly its own-run result."""

import pytest

from engine.generate import Engine
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.scheduler import BatchScheduler, ChoiceDone, JobDone, TokenEvent


def collect(job, seen=()):
    events = [*seen, *job.events(timeout=120)]
    done = {e.choice: e for e in events if isinstance(e, ChoiceDone)}
    streamed: dict[int, list[int]] = {}
    for e in events:
        if isinstance(e, TokenEvent):
            streamed.setdefault(e.choice, []).append(e.token_id)
    assert isinstance(events[-1], JobDone)
    for choice, finished in done.items():
        assert streamed[choice] == finished.token_ids  # the stream adds up to the final tokens
    return [done[c] for c in sorted(done)], events[-1]


@pytest.fixture
def scheduler(tiny):
    s = BatchScheduler(Engine(tiny), window_seconds=0.5, max_wait_seconds=1.0)  # a window the tests can rely on
    yield s
    s.close()


def test_jobs_arriving_together_share_a_batch_and_match_alone(tiny, scheduler):
    engine = scheduler.engine
    prompt = engine.encode("hello there", raw=True)
    configs = [[SamplingParams(temperature=0.9, top_k=20, seed=s, max_new_tokens=12)] * 2 for s in (1, 2, 3)]
    jobs = [scheduler.submit(prompt, c) for c in configs]
    for config, job in zip(configs, jobs):
        choices, done = collect(job)
        alone = engine.generate(prompt, config, [0, 1])
        assert [c.token_ids for c in choices] == [r.token_ids for r in alone.rows]
        assert done.batch_rows == 6 and done.completion_tokens == sum(len(c.token_ids) for c in choices)


def test_different_prompts_share_a_batch_and_each_match_alone(tiny, scheduler):
    engine = scheduler.engine
    prompts = [engine.encode(t, raw=True) for t in ("one two", "three four five six", "seven")]
    params = [SamplingParams(temperature=0.7, seed=9, max_new_tokens=8, repetition_penalty=1.2, no_repeat_ngram_size=2)]
    jobs = [scheduler.submit(p, params) for p in prompts]
    for prompt, job in zip(prompts, jobs):
        choices, done = collect(job)
        assert done.batch_rows == 3
        assert choices[0].token_ids == engine.generate(prompt, params, [0]).rows[0].token_ids


def test_cancelled_job_leaves_and_neighbour_is_unaffected(tiny, scheduler):
    engine = scheduler.engine
    prompt = engine.encode("a b c", raw=True)
    long = [SamplingParams(temperature=1.0, seed=4, max_new_tokens=200, min_new_tokens=200)]
    keep = [SamplingParams(temperature=1.0, seed=5, max_new_tokens=40, min_new_tokens=40)]
    doomed, kept = scheduler.submit(prompt, long), scheduler.submit(prompt, keep)
    first = next(doomed.events(timeout=120))
    assert isinstance(first, TokenEvent)
    doomed.cancel()
    choices, _ = collect(doomed, [first])
    assert choices[0].finish_reason == "cancelled" and len(choices[0].token_ids) < 200
    kept_choices, _ = collect(kept)
    assert kept_choices[0].token_ids == engine.generate(prompt, keep, [0]).rows[0].token_ids


def test_a_request_arriving_during_a_long_batch_starts_beside_it(tiny):
    """Without joining (join=False; with it, tests/test_joining.py), a job that misses a running batch's window
    forms the next batch, which decodes beside the running one (their steps alternate): it ends long before the
    long batch and returns its solo-run tokens."""
    scheduler = BatchScheduler(Engine(tiny), window_seconds=0.5, max_wait_seconds=1.0, join=False)
    engine = scheduler.engine
    prompt = engine.encode("a b c", raw=True)
    long = [SamplingParams(temperature=1.0, seed=4, max_new_tokens=400, min_new_tokens=400)]
    short = [SamplingParams(temperature=1.0, seed=5, max_new_tokens=6, min_new_tokens=6)]
    running = scheduler.submit(prompt, long)
    first = next(running.events(timeout=120))  # the long batch is decoding
    assert isinstance(first, TokenEvent)
    choices, done = collect(scheduler.submit(prompt, short))
    assert done.batch_rows == 1  # a batch of its own, not merged into the running one
    assert choices[0].token_ids == engine.generate(prompt, short, [0]).rows[0].token_ids
    streamed = [first, *running.next_events(timeout=60)]
    assert not any(isinstance(e, JobDone) for e in streamed)  # the long one is still going
    assert sum(isinstance(e, TokenEvent) for e in streamed) < 400
    running.cancel()
    collect(running, streamed)
    scheduler.close()


def test_bad_request_is_refused_at_submit(tiny, scheduler):
    prompt = scheduler.engine.encode("x", raw=True)
    with pytest.raises(ParamError, match="logit_bias"):
        scheduler.submit(prompt, [SamplingParams(logit_bias={10**9: 1.0})])
    with pytest.raises(ParamError, match="rows"):
        scheduler.submit(prompt, [SamplingParams()] * 10_000)


def test_logit_bias_matches_transformers_sequence_bias(tiny):
    engine = Engine(tiny)
    prompt = engine.encode("hello", raw=True)
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    plain = engine.generate(prompt, [greedy]).rows[0].token_ids
    banned = greedy.replace(logit_bias={str(plain[0]): -100})
    out = engine.generate(prompt, [banned]).rows[0].token_ids
    assert out[0] != plain[0]
    import torch
    ref = tiny.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              **banned.generate_kwargs(tiny.tokenizer), pad_token_id=tiny.eos_token_ids[0])
    assert ref[0, len(prompt):].tolist() == out
