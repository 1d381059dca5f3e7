"""At bf16 on a CPU, one row's linear product equals the same row's inside any batch (engine/batch_invariant.py),
so a row decoded alone equals the same row decoded beside others, and transformers' generate() on the same model
object sees the same products."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from engine.batch_invariant import TwoRowLinear, needs_two_rows, use_two_row_linears
from engine.generate import Engine
from engine.models import load_model
from engine.params import SamplingParams


def two_row_linear(weight: torch.Tensor) -> TwoRowLinear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    layer.weight.data.copy_(weight)
    assert use_two_row_linears(layer) == 1 and type(layer) is TwoRowLinear
    return layer


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(576, 1536), (1536, 576), (192, 576)])  # SmolLM2's down, up and k/v projections
def test_one_row_equals_the_same_row_inside_every_batch_size_at_bf16(shape):
    """200 random inputs per layer shape: a row alone (as [1, 1, in], the decode step's shape) gives the bits it
    gives inside batches of 2 to 300 rows. Plain nn.Linear broke this at M = 1 on an AVX512-BF16 CPU."""
    out_features, in_features = shape
    gen = torch.Generator().manual_seed(sum(shape))
    layer = two_row_linear((torch.randn(out_features, in_features, generator=gen) * 0.05).bfloat16())
    with torch.inference_mode():
        for trial in range(200):
            x = torch.randn(300, 1, in_features, generator=gen).bfloat16()  # [rows, 1, in]
            full = layer(x)  # [300, 1, out]
            for rows in (1, 2, 3, 36) if trial % 10 else (1, 2, 3, 4, 7, 16, 36, 64, 255):
                part = layer(x[:rows])
                assert torch.equal(part, full[:rows]), (trial, rows)
            row = trial % 300
            assert torch.equal(layer(x[row:row + 1]), full[row:row + 1]), (trial, row)


@settings(max_examples=30)
@given(st.integers(1, 40), st.integers(1, 96), st.integers(1, 96), st.booleans(), st.integers(0, 2**31))
def test_two_row_linear_is_the_plain_product_for_any_shape(rows, in_features, out_features, bias, seed):
    """Any batch, shape, bias and leading dims: the same shape out and, for two rows or more, the plain bits; for
    one row, the first row of the plain product of that row twice."""
    gen = torch.Generator().manual_seed(seed)
    plain = torch.nn.Linear(in_features, out_features, bias=bias, dtype=torch.bfloat16)
    with torch.no_grad():
        for p in plain.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    ours = two_row_linear(plain.weight.data) if not bias else None
    if ours is None:
        ours = torch.nn.Linear(in_features, out_features, bias=True, dtype=torch.bfloat16)
        ours.load_state_dict(plain.state_dict())
        use_two_row_linears(ours)
    x = torch.randn(rows, 1, in_features, generator=gen).bfloat16()
    before = x.clone()
    with torch.inference_mode():
        got = ours(x)
        want = plain(x) if rows > 1 else plain(torch.cat([x, x]))[:1]
    assert got.shape == (rows, 1, out_features) and torch.equal(got, want)
    assert torch.equal(x, before)  # the input is not changed


@pytest.mark.model
def test_half_dtype_cpu_models_get_two_row_linears_and_fp32_ones_do_not(tiny):
    cpu = torch.device("cpu")
    assert needs_two_rows(cpu, torch.bfloat16) and needs_two_rows(cpu, torch.float16)
    assert not needs_two_rows(cpu, torch.float32)
    assert not needs_two_rows(torch.device("cuda"), torch.bfloat16)  # GPU kernels: not measured here
    bf16 = load_model(dtype="bfloat16")
    linears = [m for m in bf16.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is TwoRowLinear for m in linears)
    assert not any(type(m) is TwoRowLinear for m in tiny.model.modules())  # fp32


@pytest.mark.model
def test_at_bf16_a_greedy_row_alone_equals_it_beside_sampled_rows_and_equals_transformers():
    """The case that broke at bf16 without TwoRowLinear (its third token): a greedy row beside three sampled rows,
    alone, and transformers' generate() alone on the same model object."""
    engine = Engine(load_model(dtype="bfloat16"))
    prompt = engine.encode("Explain how blockchain works in simple terms.")
    greedy = SamplingParams(temperature=0.0, max_new_tokens=24)
    neighbours = [SamplingParams(temperature=0.9, top_p=0.8, max_new_tokens=24, seed=s) for s in range(3)]
    alone = engine.generate(prompt, [greedy]).rows[0].token_ids
    beside = engine.generate(prompt, [neighbours[0], greedy, *neighbours[1:]]).rows[1].token_ids
    out = engine.loaded.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24,
                                       pad_token_id=engine.loaded.eos_token_ids[0])
    assert beside == alone == out[0, len(prompt):].tolist()
