"""The per-step shortcuts that cut the work outside the model forward give exactly (bit for bit) what the plain
computations give: the noise from split hashing, the trace's per-row re-summaries, the whole-batch temperature,
min_new_tokens on the end-of-text columns, and the sampler's NaN handling."""
from __future__ import annotations

import torch

from engine.params import SamplingParams
from engine.processors import REGISTRY, apply_pipeline, plan_stages
from engine.rowstate import DecodeState, RowParams
from engine.sampling import _as_int32, _token_hashes, bits_to_uniform, choose_next, hash32, row_keys, uniform_noise
from engine.trace import summarize, summarize_rows
from synthetic import EOS, PROMPT_LEN, V, random_logits, random_tokens


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
