"""The per-step shortcuts that cut the work outside the model forward give exactly (bit for bit) what the plain
computations give: the noise from split hashing, the trace's per-row re-summaries, the whole-batch temperature,
min_new_tokens on the end-of-text columns, the sampler's NaN handling, the sampler's noise for the tokens left only
(rows with few left), and the KV cache with room reserved ahead (engine/kv_cache.py) against DynamicCache."""
from __future__ import annotations

import torch

from engine.params import SamplingParams
from engine.processors import REGISTRY, apply_pipeline, plan_stages
from engine.rowstate import DecodeState, RowParams
from engine.sampling import _as_int32, _token_hashes, bits_to_uniform, choose_next, hash32, row_keys, uniform_noise
from engine.trace import summarize, summarize_rows
from synthetic import B, EOS, PROMPT_LEN, V, random_logits, random_tokens


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits (so -0.0 != 0.0 and NaN == NaN of the same payload)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point:
        return torch.equal(a.view(torch.int32 if a.element_size() == 4 else torch.int64),
                           b.view(torch.int32 if b.element_size() == 4 else torch.int64))
    return torch.equal(a, b)


def test_uniform_noise_equals_the_reference_hash_of_key_and_token() -> None:
    keys = row_keys(torch.tensor([0, 1, 2**40 + 7, -5]), torch.tensor([0, 3, 1, 2]), 11)  # [4] int32
    tokens = _token_hashes(V, keys.device).to(torch.long) & 0xFFFFFFFF  # [V]
    expected = bits_to_uniform(_as_int32(hash32((keys.to(torch.long)[:, None] & 0xFFFFFFFF) ^ tokens[None, :])))
    assert bits_equal(uniform_noise(keys, V), expected)


def test_a_stage_summary_of_the_changed_rows_equals_the_whole_batchs() -> None:
    before = random_logits(0)  # [B, V]
    rows = torch.tensor([0, 2, 3])
    after = before.clone()
    after[rows] = after[rows] / 0.7
    after[2, :100] = float("-inf")
    whole, shortcut = summarize(after, 5), summarize_rows(summarize(before, 5), after, rows, 5)
    for name in ("entropy", "support", "top_ids", "top_probs", "log_probs"):
        assert bits_equal(getattr(shortcut, name), getattr(whole, name)), name


def params_state(params: list[SamplingParams], seed: int = 0) -> tuple[RowParams, DecodeState]:
    tokens = random_tokens(seed, PROMPT_LEN + 2, alphabet=40)
    return RowParams.build(params, EOS, V), DecodeState.start(tokens[:, :PROMPT_LEN], V, generated=tokens[:, PROMPT_LEN:])


def test_temperature_runs_on_the_whole_batch_and_the_plan_names_the_rows_it_changes() -> None:
    params = [SamplingParams(temperature=0.7), SamplingParams(), SamplingParams(temperature=1.3, top_p=0.9),
              SamplingParams(do_sample=False), SamplingParams(top_p=0.5), SamplingParams(temperature=2.0)]
    rows, state = params_state(params)
    stage = {step.processor.name: plan for plan in plan_stages(rows) for step in plan.steps}
    temperature = next(s for s in stage["temperature"].steps if s.processor.name == "temperature")
    assert temperature.rows is None  # one pass over the batch, not a gather and a copy back
    assert stage["temperature"].changed.tolist() == [0, 2, 5]
    assert stage["top_p"].changed.tolist() == [2, 4]
    logits = random_logits(1)[:len(params)]
    together = apply_pipeline(logits, state, rows)
    for row, p in enumerate(params):  # each row equals itself alone, bit for bit
        alone_rows, alone_state = RowParams.build([p], EOS, V), state.select(torch.tensor([row]))
        assert bits_equal(together[row:row + 1], apply_pipeline(logits[row:row + 1], alone_state, alone_rows)), row


def test_min_new_tokens_changes_only_the_end_of_text_columns_of_short_rows() -> None:
    params = [SamplingParams(min_new_tokens=5), SamplingParams(min_new_tokens=1), SamplingParams()]
    rows, state = params_state(params)  # two tokens generated: row 0 is short, rows 1 and 2 are not
    logits = random_logits(2)[:3]
    out = REGISTRY["min_new_tokens"].apply(logits, state, rows)
    expected = logits.clone()
    expected[0, EOS] = float("-inf")
    assert bits_equal(out, expected)
    assert out.data_ptr() != logits.data_ptr()  # a new tensor: the input is never changed in place


def test_sampling_never_picks_a_removed_or_nan_token_and_greedy_rows_take_the_argmax() -> None:
    scores = torch.full((3, V), float("-inf"))
    scores[:, :4] = torch.tensor([float("nan"), 1.0, 0.5, float("nan")])
    keys = row_keys(torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.long), 0)
    for greedy in ([False] * 3, [True, False, True], [True] * 3):
        for step in range(20):
            keys = row_keys(torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.long), step)
            chosen = choose_next(scores, torch.tensor(greedy), keys).tolist()
            assert all(c in (1, 2) for c in chosen), (greedy, chosen)
            assert all(c == 1 for c, g in zip(chosen, greedy) if g)


# -- the same promises over random inputs (hypothesis): a rare input where a shortcut's bits differ fails here --

from hypothesis import given, settings, strategies as st  # noqa: E402
from transformers import TopPLogitsWarper  # noqa: E402

MODEL_V = 49_152  # the bundled model's vocabulary: top_p's 32 / 256 candidates against a full-size sort


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), spread=st.sampled_from([0.3, 1.0, 3.0, 8.0, 30.0]),
       top_p=st.lists(st.sampled_from([1e-9, 0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999]), min_size=1, max_size=4),
       ties=st.booleans())
def test_top_p_with_its_candidate_shortcut_equals_transformers_bit_for_bit(seed, spread, top_p, ties) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(top_p), MODEL_V, generator=g) * spread  # flat to peaked: the cut at any depth
    if ties:  # equal probabilities around the top, where the full sort's tie order decides
        logits[:, 1:40] = logits[:, :1]
    params = [SamplingParams(top_p=p) for p in top_p]
    rows = RowParams.build(params, EOS, MODEL_V)
    state = DecodeState.start(torch.zeros(len(top_p), 1, dtype=torch.long), MODEL_V)
    before = logits.clone()
    ours = REGISTRY["top_p"].apply(logits, state, rows)
    assert torch.equal(logits, before)  # never in place
    for row, p in enumerate(top_p):
        expected = TopPLogitsWarper(p)(None, logits[row:row + 1].clone())
        assert bits_equal(ours[row:row + 1], expected), (row, p)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), changed=st.sets(st.integers(0, 7), min_size=1, max_size=8),
       top_n=st.integers(1, 20), removed=st.integers(0, 499))
def test_a_summary_of_random_changed_rows_equals_the_whole_batchs(seed, changed, top_n, removed) -> None:
    before = random_logits(seed % 1000)  # [B, V]
    rows = torch.tensor(sorted(changed))
    g = torch.Generator().manual_seed(seed)
    after = before.clone()
    after[rows] = after[rows] / torch.empty(len(rows), 1).uniform_(0.2, 3.0, generator=g)
    after[rows, :removed] = float("-inf")
    whole, shortcut = summarize(after, top_n), summarize_rows(summarize(before, top_n), after, rows, top_n)
    for name in ("entropy", "support", "top_ids", "top_probs", "log_probs"):
        assert bits_equal(getattr(shortcut, name), getattr(whole, name)), name


@settings(max_examples=60, deadline=None)
@given(seeds=st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=6), step=st.integers(0, 2**20),
       index=st.integers(0, 1000))
def test_split_hash_noise_equals_the_reference_for_random_keys(seeds, step, index) -> None:
    keys = row_keys(torch.tensor(seeds), torch.full((len(seeds),), index), step)  # [b] int32
    tokens = _token_hashes(MODEL_V, keys.device).to(torch.long) & 0xFFFFFFFF  # [V]
    expected = bits_to_uniform(_as_int32(hash32((keys.to(torch.long)[:, None] & 0xFFFFFFFF) ^ tokens[None, :])))
    assert bits_equal(uniform_noise(keys, MODEL_V), expected)


@settings(max_examples=40, deadline=None)
@given(minimums=st.lists(st.integers(0, 6), min_size=B, max_size=B), generated=st.integers(0, 5),
       seed=st.integers(0, 999))
def test_min_new_tokens_equals_the_whole_vocabulary_mask_for_random_rows(minimums, generated, seed) -> None:
    params = [SamplingParams(min_new_tokens=m) for m in minimums]
    tokens = random_tokens(seed, PROMPT_LEN + generated, alphabet=40)
    rows = RowParams.build(params, EOS, V)
    state = DecodeState.start(tokens[:, :PROMPT_LEN], V, generated=tokens[:, PROMPT_LEN:])
    logits = random_logits(seed)
    eos_mask = torch.zeros(V, dtype=torch.bool)
    eos_mask[EOS] = True
    too_short = torch.tensor([generated < m for m in minimums])[:, None]
    expected = torch.where(too_short & eos_mask[None, :], float("-inf"), logits)  # the plain [B, V] computation
    assert bits_equal(REGISTRY["min_new_tokens"].apply(logits, state, rows), expected)


# -- the trace's summaries: fewer passes, the same numbers as the plain computations ------------------------------

from engine.trace import Normalized, Trace, chosen_log_probs, chosen_stats  # noqa: E402


def awkward_scores(seed: int, rows: int, vocab: int) -> torch.Tensor:
    """[rows, V] scores with what a stage can leave: ties at the top, removed tokens, a row with one token left,
    a row with nothing left, a +inf token, a NaN row, underflowing tails."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, vocab, generator=g) * torch.empty(rows, 1).uniform_(0.1, 60.0, generator=g)
    scores[:, torch.randperm(vocab, generator=g)[:vocab // 3]] = float("-inf")
    kinds = torch.randint(0, 7, (rows,), generator=g).tolist()
    for row, kind in enumerate(kinds):
        if kind == 1:
            scores[row, :12] = 5.0  # ties at the top
        elif kind == 2:
            scores[row] = float("-inf")
            scores[row, vocab // 2] = 0.3  # one token left
        elif kind == 3:
            scores[row] = float("-inf")  # nothing left
        elif kind == 4:
            scores[row, 7] = float("inf")
        elif kind == 5:
            scores[row, 3] = float("nan")
    return scores


def plain_summary(scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The plain computation: entropy over p > 0 by masking, support, log-probs and probs."""
    log_probs, probs = torch.log_softmax(scores, dim=-1), torch.softmax(scores, dim=-1)
    alive = probs > 0
    entropy = -torch.where(alive, probs * log_probs, 0.0).sum(-1)
    return entropy, alive.sum(-1), log_probs, probs


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 9), vocab=st.sampled_from([20, 500, MODEL_V]),
       top_n=st.integers(1, 20))
def test_a_summary_equals_the_plain_computation(seed, rows, vocab, top_n) -> None:
    scores = awkward_scores(seed, rows, vocab)
    before = scores.clone()
    got = summarize(scores, top_n)
    entropy, support, log_probs, probs = plain_summary(scores)
    assert bits_equal(got.entropy, entropy) and bits_equal(got.support, support) and bits_equal(got.log_probs, log_probs)
    assert bits_equal(got.top_log_probs, torch.topk(log_probs, top_n, dim=-1).values)  # the N largest, in order
    assert bits_equal(got.top_log_probs, log_probs.gather(1, got.top_ids))
    assert bits_equal(got.top_probs, probs.gather(1, got.top_ids))
    assert bits_equal(scores, before)  # never in place


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 9), vocab=st.sampled_from([20, 500, MODEL_V]),
       top_n=st.integers(1, 20), picks=st.lists(st.sampled_from(["top", "any", "removed", "tie"]), min_size=9,
                                                max_size=9))
def test_a_chosen_tokens_rank_equals_the_count_over_the_whole_vocabulary(seed, rows, vocab, top_n, picks) -> None:
    scores = awkward_scores(seed, rows, vocab)
    summary = summarize(scores, top_n)
    g = torch.Generator().manual_seed(seed + 1)
    chosen = []
    for row in range(rows):  # a top token, any token, a removed one, or the first of the tied top
        pick, ids = picks[row], torch.arange(vocab)
        pool = {"top": summary.top_ids[row], "removed": ids[scores[row] == float("-inf")], "tie": ids[:1]}.get(pick, ids)
        pool = pool if len(pool) else ids
        chosen.append(int(pool[torch.randint(0, len(pool), (1,), generator=g)]))
    chosen_t = torch.tensor(chosen)
    prob, rank = chosen_stats(summary, chosen_t)
    chosen_logp = summary.log_probs.gather(1, chosen_t[:, None])
    assert bits_equal(rank, (summary.log_probs > chosen_logp).sum(-1) + 1)
    assert bits_equal(prob, chosen_logp[:, 0].exp())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(2, 9), vocab=st.sampled_from([20, 500, MODEL_V]),
       top_n=st.integers(1, 20))
def test_a_rows_distribution_numbers_do_not_depend_on_the_rows_beside_it(seed, rows, vocab, top_n) -> None:
    """Batch invariance of the step's softmaxes: each row's log-probs, probabilities, final log-prob and stage
    summary equal those of the row alone, bit for bit; its entropy to float rounding (a sum over the vocabulary,
    which torch splits between threads when the batch has one row, so its order depends on the batch size)."""
    scores = awkward_scores(seed, rows, vocab)
    chosen = torch.randint(0, vocab, (rows,), generator=torch.Generator().manual_seed(seed))
    whole, summary, final = Normalized.of(scores), summarize(scores, top_n), chosen_log_probs(scores, chosen)
    for r in range(rows):
        alone = Normalized.of(scores[r:r + 1])
        for name in ("log_probs", "probs"):
            assert bits_equal(getattr(whole, name)[r:r + 1], getattr(alone, name)), (r, name)
        torch.testing.assert_close(whole.entropy[r:r + 1], alone.entropy, rtol=1e-5, atol=1e-6, equal_nan=True)
        alone_summary = summarize(scores[r:r + 1], top_n)
        for name in ("support", "top_ids", "top_probs", "top_log_probs"):
            assert bits_equal(getattr(summary, name)[r:r + 1], getattr(alone_summary, name)), (r, name)
        assert bits_equal(final[r:r + 1], chosen_log_probs(scores[r:r + 1], chosen[r:r + 1])), r


def plain_record(trace: Trace, step, rows: torch.Tensor, stages: list, chosen: torch.Tensor) -> None:
    """The plain computation: stage by stage, field by field."""
    for s, summary in enumerate(stages):
        logp = summary.log_probs.gather(1, chosen[:, None])
        trace.entropy[step, s, rows] = summary.entropy.float()
        trace.support[step, s, rows] = summary.support.to(torch.int32)
        trace.top_ids[step, s, rows] = summary.top_ids.to(torch.int32)
        trace.top_probs[step, s, rows] = summary.top_probs.float()
        trace.chosen_prob[step, s, rows] = logp[:, 0].exp().float()
        trace.chosen_rank[step, s, rows] = ((summary.log_probs > logp).sum(-1) + 1).to(torch.int32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), stages=st.lists(st.integers(0, 2), min_size=1, max_size=8),
       per_row_steps=st.booleans())
def test_a_recorded_step_equals_the_stage_by_stage_writes(seed, stages, per_row_steps) -> None:
    summaries = [summarize(awkward_scores(seed + k, 4, 500), 5) for k in range(3)]
    stage_list = [summaries[k] for k in stages]  # a stage that changed nothing repeats a summary
    rows = torch.tensor([5, 1, 3, 0])
    step = torch.tensor([2, 0, 3, 1]) if per_row_steps else 2
    chosen = torch.randint(0, 500, (4,), generator=torch.Generator().manual_seed(seed))
    fast, plain = Trace(6, 4, len(stage_list), 5), Trace(6, 4, len(stage_list), 5)
    fast.record(step, rows, stage_list, chosen)
    plain_record(plain, step, rows, stage_list, chosen)
    for name in Trace.FIELDS:
        assert bits_equal(getattr(fast, name), getattr(plain, name)), name


# -- the sampler's sparse noise: rows with few tokens left draw noise for those only ----------------------------

import contextlib  # noqa: E402
from typing import Iterator  # noqa: E402
from unittest import mock  # noqa: E402

from engine import generate as generate_module, sampling  # noqa: E402
from engine.generate import Engine  # noqa: E402
from engine.joining import Joining  # noqa: E402
from engine.kv_cache import ReservedLayer, reserve  # noqa: E402
from engine.models import load_model, tiny_random_model  # noqa: E402
from engine.prefill import decode_one_token, prefill  # noqa: E402


def whole_row_choice(scores: torch.Tensor, greedy: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The plain computation: every token's noise, NaN made -inf, argmax; greedy rows the argmax of the scores."""
    noise = -torch.log(-torch.log(uniform_noise(keys, scores.shape[1])))  # [B, V]
    sampled = (scores + noise).nan_to_num(nan=float("-inf"), posinf=float("inf")).argmax(-1)
    return torch.where(greedy, scores.nan_to_num(nan=float("-inf"), posinf=float("inf")).argmax(-1), sampled)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), left=st.lists(st.sampled_from([0, 1, 2, 7, 100, 1024, 1025, 5000, MODEL_V]),
                                                      min_size=1, max_size=6),
       nan=st.booleans(), inf=st.booleans(), ties=st.booleans(), greedy=st.lists(st.booleans(), min_size=6, max_size=6),
       step=st.integers(0, 2**20))
def test_sparse_noise_choice_equals_the_whole_row_choice(seed, left, nan, inf, ties, greedy, step) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(len(left), MODEL_V, generator=g) * 4  # [b, V]
    for row, n in enumerate(left):  # n tokens left at random places, the rest removed
        scores[row, torch.randperm(MODEL_V, generator=g)[n:]] = float("-inf")
    if ties:  # equal scores among the tokens left: equal perturbed scores then go to the lowest token id
        scores[:, 5:50] = torch.where(scores[:, 5:50] > float("-inf"), 1.0, float("-inf"))
    if nan:
        scores[0, torch.randint(0, MODEL_V, (30,), generator=g)] = float("nan")
    if inf:  # +inf tokens: their perturbed scores tie at +inf, and argmax takes the first of them
        scores[-1, [4000, 17, 30000]] = float("inf")
    keys = row_keys(torch.randint(-2**40, 2**40, (len(left),), generator=g), torch.arange(len(left)), step)
    greedy_rows = torch.tensor(greedy[:len(left)])
    before = scores.clone()
    assert torch.equal(choose_next(scores, greedy_rows, keys), whole_row_choice(scores, greedy_rows, keys))
    assert bits_equal(scores, before)  # never in place


# -- the KV cache with room reserved ahead: the same logits as transformers' DynamicCache, bit for bit -----------

def tiny_bf16() -> object:
    loaded = tiny_random_model(seed=3, init_std=1.0)
    loaded.model.to(torch.bfloat16)
    return loaded


TINY = {"float32": tiny_random_model(seed=2, init_std=1.0), "bfloat16": tiny_bf16()}


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from(sorted(TINY)), rows=st.integers(1, 6), steps=st.integers(1, 14), room=st.integers(1, 8),
       events=st.lists(st.sampled_from(["leave", "crop", "join", None]), min_size=14, max_size=14),
       seed=st.integers(0, 10**6), two_prompts=st.booleans())
def test_reserved_cache_gives_dynamic_cache_logits(dtype, rows, steps, room, events, seed, two_prompts) -> None:
    """Growth past the room, rows leaving, crops (assisted decoding) and rows joining (a replaced cache adopted)."""
    loaded = TINY[dtype]
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 1000, (n,), generator=g).tolist() for n in (5, 9)]
    with torch.inference_mode():
        start = [prefill(loaded, [prompts[0]] if not two_prompts else [prompts[r % 2] for r in range(rows)], rows)
                 for _ in range(2)]
        plain, fast = start[0].cache, start[1].cache
        reserve(fast.kv, room)
        assert all(isinstance(layer, ReservedLayer) for layer in fast.kv.layers)
        for step, event in zip(range(steps), events):
            b = plain.kv.layers[0].keys.shape[0]
            tokens = torch.randint(0, 1000, (b,), generator=g)
            expected, got = decode_one_token(loaded.model, tokens, plain), decode_one_token(loaded.model, tokens, fast)
            assert bits_equal(got, expected), (step, event)
            if event == "leave" and b > 1:
                keep = torch.randperm(b, generator=g)[:b - 1].sort().values
                plain.keep(keep), fast.keep(keep)
            elif event == "crop" and plain.kv.get_seq_length() > 10:
                for cache in (plain, fast):
                    cache.crop(cache.kv.get_seq_length() - 1)
            elif event == "join":
                new = [prefill(loaded, [prompts[1]], 2).cache for _ in range(2)]
                plain, fast = plain.joined(new[0]), fast.joined(new[1])


# -- both shortcuts inside the engine: a run equals the run without them, tokens and trace, bit for bit ----------

SWEEP = [SamplingParams(temperature=t, top_p=p, seed=5, max_new_tokens=n, min_new_tokens=m)
         for t, p, n, m in [(0.3, 0.5, 12, 12), (0.7, 0.9, 9, 0), (1.0, 1.0, 12, 4), (1.3, 0.95, 5, 0),
                            (0.7, 0.2, 12, 12), (0.0, 1.0, 7, 0), (1.0, 0.99, 12, 0), (0.5, 1.0, 3, 0)]]


@contextlib.contextmanager
def without_shortcuts() -> Iterator[None]:
    """The plain computations: DynamicCache's torch.cat per step, every token's noise for every row."""
    with mock.patch.object(generate_module, "reserve", lambda cache, tokens: None), \
            mock.patch.object(sampling, "_gumbel_max", sampling._gumbel_max_dense):
        yield


def assert_same_runs(a, b) -> None:
    for ra, rb in zip(a.rows, b.rows, strict=True):
        assert ra.token_ids == rb.token_ids and ra.finish_reason == rb.finish_reason
        for name in ("raw_logprobs", "final_logprobs", "raw_entropies"):
            assert bits_equal(torch.tensor(getattr(ra, name)), torch.tensor(getattr(rb, name))), name
    if a.trace is not None:
        for name in a.trace.FIELDS:
            assert bits_equal(getattr(a.trace, name), getattr(b.trace, name)), name


def test_a_run_with_the_shortcuts_equals_the_plain_run_at_fp32_and_bf16(bundled) -> None:
    for loaded in (bundled, load_model(dtype="bfloat16")):
        engine = Engine(loaded)
        prompt = engine.encode("Explain how blockchain works in simple terms.")
        joins = {3: [Joining(engine.encode("Name three colours."), SWEEP[:2], [0, 1])]}

        def run(trace_top_n: int):
            boundaries = iter(range(10**9))
            return engine.generate(prompt, SWEEP, list(range(len(SWEEP))), trace_top_n=trace_top_n) if trace_top_n \
                else [u for u in engine.stream(prompt, SWEEP, list(range(len(SWEEP))),
                                                admit=lambda: joins.get(next(boundaries), []))][-1].result
        for trace_top_n in (0, 4):  # rows joining mid-run without a trace (joining refuses one)
            fast = run(trace_top_n)
            with without_shortcuts():
                plain = run(trace_top_n)
            assert_same_runs(fast, plain)
