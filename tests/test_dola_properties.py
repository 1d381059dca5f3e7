"""DoLa over random settings (hypothesis): every row of a random mixed batch equals itself run alone, and no chosen
token was one the contrast or the processors removed (its final log-prob is finite), at every step."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dola import dola_decode
from engine.generate import Engine
from engine.models import tiny_random_model
from engine.params import SamplingParams

LAYERS = st.one_of(st.sampled_from(["low", "high"]),
                   st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True).map(tuple))
ROW = st.fixed_dictionaries({
    "dola_layers": LAYERS,
    "temperature": st.sampled_from([0.0, 0.7, 1.3]),
    "top_k": st.sampled_from([0, 5, 50]),
    "top_p": st.sampled_from([1.0, 0.8]),
    "repetition_penalty": st.sampled_from([1.0, 1.2]),
    "no_repeat_ngram_size": st.sampled_from([0, 2]),
    "max_new_tokens": st.integers(1, 10),
    "seed": st.integers(0, 2**31),
})


@pytest.fixture(scope="module")
def spread() -> Engine:
    """Six layers, logits spread like a trained model's (no near-ties for the batch to flip)."""
    return Engine(tiny_random_model(num_layers=6, init_std=1.0))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=5), prompt=st.lists(st.integers(3, 2000), min_size=1, max_size=12))
def test_random_dola_batches_equal_each_row_alone_and_never_choose_a_removed_token(spread, rows, prompt):
    configs = [SamplingParams(**row) for row in rows]
    samples = list(range(len(configs)))
    batch = dola_decode(spread, prompt, configs, samples)
    for config, sample, got in zip(configs, samples, batch):
        assert all(math.isfinite(lp) for lp in got.final_logprobs), (config, got.final_logprobs)
        assert len(got.premature_layers) == len(got.token_ids)
        (alone,) = dola_decode(spread, prompt, [config], [sample])
        assert got.token_ids == alone.token_ids and got.premature_layers == alone.premature_layers
        assert got.final_logprobs == pytest.approx(alone.final_logprobs, abs=1e-4)
