"""End-to-end engine checks on the bundled model: transformers as the oracle for greedy decoding, seeds that
do not depend on the batch, stop/length handling, budgets, the trace and its exact replay."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from engine.generate import Engine, EngineLimits
from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import SamplingParams
from engine.sweepspec import Axis, SweepSpec
from engine.sweep import run_sweep

from assertions import assert_logprobs

PROMPT = "Explain how blockchain works in simple terms."


@pytest.fixture(scope="module")
def prompt_ids(engine) -> list[int]:
    return engine.encode(PROMPT)


def hf_generate(engine: Engine, prompt_ids: list[int], params: SamplingParams) -> list[int]:
    model, tok = engine.loaded.model, engine.loaded.tokenizer
    out = model.generate(torch.tensor([prompt_ids]), **params.generate_kwargs(tok), pad_token_id=engine.loaded.eos_token_ids[0])
    return out[0, len(prompt_ids):].tolist()


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0.0, max_new_tokens=24),
    SamplingParams(do_sample=False, repetition_penalty=1.3, no_repeat_ngram_size=3, max_new_tokens=24),
    SamplingParams(temperature=0.0, bad_words=["blockchain", "Imagine"], sequence_bias={"ledger": 4.0}, max_new_tokens=20),
    SamplingParams(temperature=0.0, min_new_tokens=10, max_new_tokens=12),
])
def test_greedy_rows_equal_transformers_generate(engine, prompt_ids, params) -> None:
    # the greedy row decodes inside a batch with sampled neighbours, and still equals transformers alone
    neighbours = [SamplingParams(temperature=0.9, top_p=0.8, max_new_tokens=params.max_new_tokens, seed=s) for s in range(3)]
    result = engine.generate(prompt_ids, [neighbours[0], params, *neighbours[1:]])
    assert result.rows[1].token_ids == hf_generate(engine, prompt_ids, params)


def test_raw_mode_greedy_equals_transformers(engine) -> None:
    ids = engine.encode("The capital of France is", raw=True)
    assert ids != engine.encode("The capital of France is")
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    assert engine.generate(ids, [params]).rows[0].token_ids == hf_generate(engine, ids, params)


def test_a_cell_alone_equals_the_same_cell_inside_a_36_row_sweep(engine, prompt_ids) -> None:
    grid = [SamplingParams(temperature=t, top_p=p, max_new_tokens=16, seed=7) for t in (0.3, 0.7, 1.0) for p in (0.5, 0.9, 1.0)]
    grid[4] = SamplingParams(temperature=0.0, max_new_tokens=16)  # a greedy cell in the middle
    params = [p for p in grid for _ in range(4)]
    samples = [s for _ in grid for s in range(4)]
    together = engine.generate(prompt_ids, params, samples)
    for cell in (4, 5, 8):  # greedy, sampled, and the last cell
        alone = engine.generate(prompt_ids, [grid[cell]] * 4, list(range(4)))
        for s in range(4):
            assert together.rows[cell * 4 + s].token_ids == alone.rows[s].token_ids


def test_same_seed_repeats_and_sample_indices_differ(engine, prompt_ids) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=16, seed=123)
    first = engine.generate(prompt_ids, [params] * 3, [0, 1, 2])
    again = engine.generate(prompt_ids, [params] * 3, [0, 1, 2])
    assert [r.token_ids for r in first.rows] == [r.token_ids for r in again.rows]
    assert len({tuple(r.token_ids) for r in first.rows}) == 3
    other_seed = engine.generate(prompt_ids, [params.replace(seed=124)], [0])
    assert other_seed.rows[0].token_ids != first.rows[0].token_ids


def test_stop_strings_cut_the_text_and_finish_with_stop(engine, prompt_ids) -> None:
    free = engine.generate(prompt_ids, [SamplingParams(temperature=0.0, max_new_tokens=40)]).rows[0]
    word = free.text.split()[3]
    row = engine.generate(prompt_ids, [SamplingParams(temperature=0.0, max_new_tokens=40, stop=[word])]).rows[0]
    assert row.finish_reason == "stop"
    assert word not in row.text and free.text.startswith(row.text)
    assert len(row.token_ids) < len(free.token_ids)


def test_eos_ends_a_row_and_min_new_tokens_holds_it_back(engine) -> None:
    ids = engine.encode("Reply with one word: yes or no?")
    short = engine.generate(ids, [SamplingParams(temperature=0.0, max_new_tokens=30)]).rows[0]
    assert short.finish_reason == "stop" and short.token_ids[-1] in engine.loaded.eos_token_ids
    held = engine.generate(ids, [SamplingParams(temperature=0.0, min_new_tokens=30, max_new_tokens=30)]).rows[0]
    assert len(held.token_ids) == 30 and held.finish_reason == "length"
    assert not set(held.token_ids) & set(engine.loaded.eos_token_ids)


def test_rows_of_different_lengths_finish_independently(engine, prompt_ids) -> None:
    result = engine.generate(prompt_ids, [SamplingParams(max_new_tokens=n, min_new_tokens=n, seed=1) for n in (3, 9, 5)])
    assert [len(r.token_ids) for r in result.rows] == [3, 9, 5]
    assert all(r.finish_reason == "length" for r in result.rows)


def test_bad_input_is_refused_before_any_work(engine, prompt_ids) -> None:
    small = Engine(engine.loaded, EngineLimits(max_rows=4, max_total_tokens=100))
    with pytest.raises(ParamError, match=r"rows: must be at most 4 rows.*got 5"):
        small.generate(prompt_ids, [SamplingParams()] * 5)
    with pytest.raises(ParamError, match=r"max_new_tokens: .*100 new tokens.*got 120"):
        small.generate(prompt_ids, [SamplingParams(max_new_tokens=40)] * 3)
    with pytest.raises(ParamError, match=r"prompt: .*8192"):
        engine.generate(list(range(100, 8290)), [SamplingParams(max_new_tokens=10)])
    with pytest.raises(ValueError, match="prompt"):
        engine.encode("   ")
    with pytest.raises(ParamError, match=r"axes: must be at most 3 axes"):
        SweepSpec(PROMPT, axes=tuple(Axis(n, (1.0,)) for n in ("temperature", "top_p", "min_p", "typical_p")))


def test_extreme_values_never_give_nan(engine, prompt_ids) -> None:
    params = [SamplingParams(temperature=1e-4, max_new_tokens=8), SamplingParams(top_p=1e-9, max_new_tokens=8),
              SamplingParams(repetition_penalty=100.0, max_new_tokens=8), SamplingParams(temperature=100.0, max_new_tokens=8),
              SamplingParams(repetition_penalty=0.01, presence_penalty=-2, frequency_penalty=-2, max_new_tokens=8)]
    result = engine.generate(prompt_ids, params, trace_top_n=5)
    for row in result.rows:
        assert all(math.isfinite(x) for x in row.raw_logprobs + row.final_logprobs + row.raw_entropies)
    assert torch.isfinite(result.trace.entropy).all() and torch.isfinite(result.trace.top_probs).all()


# the switch that makes a knob matter (its own value alone may be a no-op)
SWITCHES = {"dry_base": {"dry_multiplier": 1.0}, "dry_allowed_length": {"dry_multiplier": 1.0},
            "xtc_threshold": {"xtc_probability": 1.0}, "mirostat_tau": {"mirostat": 2}, "mirostat_eta": {"mirostat": 2},
            "dynatemp_exponent": {"dynatemp_low": 0.5, "dynatemp_high": 1.5}}


def test_every_admitted_edge_value_gives_finite_logprobs(engine) -> None:
    """Every float knob at the edges its range admits (the bounds, the smallest float above an open bound, and
    tiny positive values such as 1e-38 or 5e-324 wherever the range lets them in) decodes without NaN or inf:
    a value that would overflow float32 (a temperature of 1e-38, a repetition penalty of 5e-324) is refused,
    not decoded into `<|endoftext|>` with null log-probs."""
    from engine.params import NUMERIC_FIELDS

    rows, labels = [], []
    for name, (kind, allowed) in NUMERIC_FIELDS.items():
        if kind is int or name in ("diversity_penalty", "length_penalty"):  # beams: tests/test_beams.py
            continue
        if name == "penalty_alpha":  # contrastive search's own loop: tests/test_contrastive.py
            continue
        for value in sorted({allowed.low, allowed.high, math.nextafter(allowed.low, math.inf), 5e-324, 1e-38, 1e-10}):
            if allowed.contains(value):
                rows.append(SamplingParams(**{**SWITCHES.get(name, {}), name: value, "max_new_tokens": 3, "seed": 1}))
                labels.append((name, value))
            else:
                with pytest.raises(ParamError, match=f"^{name}: must be"):
                    SamplingParams(**{**SWITCHES.get(name, {}), name: value})
    result = engine.generate(engine.encode("The capital of France is", raw=True), rows)
    for (name, value), row in zip(labels, result.rows):
        assert_logprobs(row.raw_logprobs + row.final_logprobs, (name, value, row.text))
    # the smallest temperature admitted is still a temperature (transformers' division), and near 0 it is greedy
    greedy = engine.generate(engine.encode("The capital of France is", raw=True),
                             [SamplingParams(temperature=0, max_new_tokens=3),
                              SamplingParams(temperature=1e-4, max_new_tokens=3, seed=1)])
    assert greedy.rows[0].token_ids == greedy.rows[1].token_ids


@pytest.mark.parametrize("changes, field", [
    ({"top_k": 2**64}, "top_k"), ({"top_k": 2**63}, "top_k"), ({"top_k": 1e20}, "top_k"), ({"seed": 2**63}, "seed"),
    ({"no_repeat_ngram_size": 10**30}, "no_repeat_ngram_size"), ({"max_new_tokens": 2**70}, "max_new_tokens"),
    ({"sequence_bias": {"the": -1e308}}, "sequence_bias"), ({"sequence_bias": {"the": 3.5e38}}, "sequence_bias"),
    ({"sequence_bias": {"the": 10**400}}, "sequence_bias"), ({"sequence_bias": {"the": math.nan}}, "sequence_bias"),
    ({"repetition_penalty": 1e39}, "repetition_penalty"), ({"temperature": 1e39}, "temperature"),
    ({"temperature": 1e-38}, "temperature"), ({"dynatemp_low": 1e-38, "dynatemp_high": 1e-38}, "dynatemp_low"),
    ({"repetition_penalty": 5e-324}, "repetition_penalty"),
    ({"bad_words": ["a\ud800b"]}, "bad_words"), ({"stop": ["\udc00"]}, "stop"),
    ({"dry_sequence_breakers": ["\ud800"]}, "dry_sequence_breakers"), ({"sequence_bias": {"\ud800": 1}}, "sequence_bias"),
    ({"logit_bias": {"\u00b2": 1}}, "logit_bias"), ({"logit_bias": {"--5": 1}}, "logit_bias"),
    ({"logit_bias": {"5": math.inf}}, "logit_bias"), ({"early_stopping": 1}, "early_stopping"),
])
def test_values_beyond_int64_float32_or_unicode_are_refused_by_name(changes, field) -> None:
    with pytest.raises(ParamError, match=f"^{field}: must be .*, got ") as info:
        SamplingParams(**changes)
    assert len(str(info.value)) < 600  # the value is quoted, cut when long


def test_text_that_is_not_unicode_is_refused_by_name(engine) -> None:
    with pytest.raises(ParamError, match="^prompt: must be valid Unicode text"):
        engine.encode("hi \ud800 there", raw=True)
    with pytest.raises(ParamError, match="^system_prompt: must be valid Unicode text"):
        engine.encode("hi", system_prompt="\udfff")
    for system_prompt in (1, True, ["a"], {"a": 1}):
        with pytest.raises(ParamError, match="^system_prompt: must be a string"):
            SweepSpec("hi", system_prompt=system_prompt)


def test_token_ids_outside_the_vocabulary_are_refused(engine, prompt_ids) -> None:
    with pytest.raises(ParamError, match=r"^logit_bias: must be token ids in \[0, 49151\], got 49152"):
        engine.generate(prompt_ids, [SamplingParams(logit_bias={"49152": 1})])
    # a top_k beyond the vocabulary keeps every token, as in transformers
    both = engine.generate(prompt_ids, [SamplingParams(max_new_tokens=4, seed=3),
                                        SamplingParams(max_new_tokens=4, seed=3, top_k=1_000_000)])
    assert both.rows[0].token_ids == both.rows[1].token_ids


def test_a_finished_runs_trace_keeps_only_the_steps_it_took(engine, prompt_ids) -> None:
    result = engine.generate(prompt_ids, [SamplingParams(max_new_tokens=2000, stop=["."], seed=1)] * 2, [0, 1],
                             trace_top_n=5)
    steps = max(len(r.token_ids) for r in result.rows)
    assert steps < 2000 and result.trace.entropy.shape[0] == steps
    stages = 1 + len(DEFAULT_ORDER)  # the raw logits, then each processor
    assert result.trace.nbytes == steps * stages * 2 * (4 * 4 + 5 * 4 * 2)


def test_cancel_stops_between_steps(engine, prompt_ids) -> None:
    cancel = threading.Event()
    updates = []
    for update in engine.stream(prompt_ids, [SamplingParams(max_new_tokens=50)] * 2, [0, 1], cancel=cancel):
        updates.append(update)
        if update.step == 2:
            cancel.set()
    result = updates[-1].result
    assert [len(r.token_ids) for r in result.rows] == [4, 4]
    assert {r.finish_reason for r in result.rows} == {"cancelled"}


def test_stream_yields_every_step_for_every_running_row(engine, prompt_ids) -> None:
    params = [SamplingParams(max_new_tokens=4, min_new_tokens=4), SamplingParams(max_new_tokens=6, min_new_tokens=6)]
    updates = list(engine.stream(prompt_ids, params, [0, 0]))
    streamed = {0: [], 1: []}
    for u in updates:
        for r, t in zip(u.rows, u.tokens):
            streamed[r].append(t)
    assert [streamed[0], streamed[1]] == [r.token_ids for r in updates[-1].result.rows]


def test_trace_summaries_match_the_exact_replay(engine, prompt_ids) -> None:
    params = [SamplingParams(temperature=0.7, top_k=40, top_p=0.9, repetition_penalty=1.2, max_new_tokens=10, seed=3),
              SamplingParams(temperature=1.5, min_p=0.1, order=["min_p", "temperature"], max_new_tokens=10, seed=3)]
    result = engine.generate(prompt_ids, params, [0, 1], trace_top_n=8)
    trace = result.trace
    for row in (0, 1):
        for step in (0, 4, 9):
            replay = engine.replay(result, row, step)
            assert replay.stage_names == ["raw", *params[row].order]
            assert replay.chosen == result.rows[row].token_ids[step]
            for stage in range(len(replay.stage_names)):
                probs = replay.probs[stage]
                torch.testing.assert_close(probs[trace.top_ids[step, stage, row].long()], trace.top_probs[step, stage, row],
                                           atol=1e-4, rtol=0)
                assert trace.support[step, stage, row] == int((probs > 0).sum())
                torch.testing.assert_close(probs[replay.chosen], trace.chosen_prob[step, stage, row], atol=1e-4, rtol=0)
            # the last stage is the distribution that was sampled from
            assert math.isclose(math.log(replay.probs[-1][replay.chosen]), result.rows[row].final_logprobs[step], abs_tol=1e-3)
            assert math.isclose(math.log(replay.probs[0][replay.chosen]), result.rows[row].raw_logprobs[step], abs_tol=1e-3)
    # top-k then top-p shrink the support; the stage with min_p (row 1) is where it shrinks
    names = params[0].order
    assert trace.support[0, 1 + names.index("top_k"), 0] == 40
    assert trace.support[0, 1 + names.index("top_p"), 0] <= 40


def test_sweep_runs_every_cell_and_sample_as_one_batch(engine) -> None:
    spec = SweepSpec(PROMPT, base=SamplingParams(max_new_tokens=6, seed=5),
                     axes=(Axis("temperature", (0.5, 1.0)), Axis("top_p", (0.8, 1.0))), samples=2)
    result = run_sweep(engine, spec)
    frame = result.dataframe()
    assert len(frame) == 8 and set(frame["cell"]) == {0, 1, 2, 3}
    assert list(frame.loc[frame["cell"] == 2, "temperature"]) == [1.0, 1.0]
    assert list(frame.loc[frame["cell"] == 2, "top_p"]) == [0.8, 0.8]
    assert frame["text"].map(len).gt(0).all()


def test_rows_with_different_prompts_in_one_batch_equal_each_alone(engine) -> None:
    """Per-row prompts: each distinct prompt prefilled alone, caches left-padded; tokens equal the solo runs."""
    prompts = [engine.encode(t) for t in ("What is deep learning?", "Name three rivers in Europe, please.", "Hi")]
    params = [SamplingParams(temperature=0, max_new_tokens=16),
              SamplingParams(temperature=0.9, seed=3, max_new_tokens=16, repetition_penalty=1.3, no_repeat_ngram_size=3),
              SamplingParams(temperature=1.0, seed=5, max_new_tokens=16, top_p=0.9, stop=("!",))]
    rows = [prompts[i % 3] for i in range(6)]
    row_params = [params[i % 3] for i in range(6)]
    mixed = engine.generate(rows, row_params, list(range(6)), trace_top_n=4)
    assert mixed.row_prompt_ids == rows
    for i, (prompt, p) in enumerate(zip(rows, row_params)):
        alone = engine.generate(prompt, [p], [i]).rows[0]
        assert mixed.rows[i].token_ids == alone.token_ids and mixed.rows[i].text == alone.text
        assert mixed.rows[i].finish_reason == alone.finish_reason
        # the padded attention differs from the solo run by float rounding only
        assert max(abs(a - b) for a, b in zip(mixed.rows[i].raw_logprobs, alone.raw_logprobs)) < 1e-4
    replay = engine.replay(mixed, 4, 3)  # a replay of a mixed-prompt row uses that row's own prompt
    assert replay.chosen == mixed.rows[4].token_ids[3]
    assert abs(float(replay.probs[0, replay.chosen].log()) - mixed.rows[4].raw_logprobs[3]) < 1e-4


def test_per_row_prompts_must_match_the_rows(engine) -> None:
    prompt = engine.encode("Hello")
    with pytest.raises(ParamError, match="prompt_ids"):
        engine.generate([prompt, prompt], [SamplingParams(max_new_tokens=2)] * 3)


def test_each_prompt_is_checked_against_its_own_rows_lengths(tiny) -> None:
    """Rows with different prompts keep their own positions, so a long prompt with few new tokens and a short one
    with many fit together when each fits alone; one that does not fit alone is still refused."""
    engine = Engine(tiny)
    context = engine.loaded.context_length
    long_prompt, short_prompt = list(range(100, 100 + context - 20)), list(range(100, 110))
    fits = [SamplingParams(max_new_tokens=10), SamplingParams(max_new_tokens=context - 20)]
    cancel = threading.Event()
    cancel.set()  # the check is the point: one step, then every row ends
    updates = list(engine.stream([long_prompt, short_prompt], fits, cancel=cancel))
    assert {r.finish_reason for r in updates[-1].result.rows} == {"cancelled"}
    with pytest.raises(ParamError, match=r"^prompt: "):
        list(engine.stream([long_prompt, short_prompt], [fits[1], fits[0]]))


def test_a_row_whose_processors_remove_every_token_ends_without_a_token(engine, prompt_ids) -> None:
    """top_k = 1 keeps one (heavily biased) word, then bad_words bans it: nothing is left to sample. The row ends
    there with finish_reason "no_candidates" and no token (before, it fell back to the raw model silently);
    its neighbour decodes as it would alone."""
    nothing_left = SamplingParams(sequence_bias=(("the", 100.0),), bad_words=("the",), top_k=1,
                                  order=("top_k", "bad_words"), max_new_tokens=6, seed=3)
    other = SamplingParams(temperature=0.7, max_new_tokens=6, seed=3)
    result = engine.generate(prompt_ids, [nothing_left, other], [0, 1], trace_top_n=4)
    assert result.rows[0].token_ids == [] and result.rows[0].finish_reason == "no_candidates"
    assert result.rows[1].token_ids == engine.generate(prompt_ids, [other], [1]).rows[0].token_ids
    streamed = [(i, t) for update in engine.stream(prompt_ids, [nothing_left, other], [0, 1])
                for i, t in zip(update.rows, update.tokens)]
    assert all(i == 1 for i, _ in streamed)  # nothing is streamed for the row with no candidates
