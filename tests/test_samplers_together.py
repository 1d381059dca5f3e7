"""The community samplers together: every one on in a real engine run, greedy rows, their no-op defaults and
place in the order, and their parameters' validation, JSON form and exports (tests/test_samplers.py holds the
one-row references)."""
from __future__ import annotations

import math

import pytest
import torch

from engine.generate import Engine
from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.knobs import DRY_SEQUENCE_BREAKERS
from engine.params import SAMPLING_ONLY, SamplingParams, from_dict
from engine.processors import REGISTRY, apply_pipeline
from engine.rowstate import RowParams
from synthetic import B, EOS, PROMPT_LEN, V, pipeline, random_logits, random_tokens, state_of

NEW_SAMPLERS = ("dry", "dynatemp", "top_n_sigma", "top_a", "tfs", "xtc", "mirostat", "adaptive_p")


# ----------------------------------------------------------------------------------------------------------
# Everything at once, greedy rows, the defaults


ALL_ON = SamplingParams(dry_multiplier=0.8, dry_allowed_length=1, xtc_probability=0.5, xtc_threshold=0.001,
                        mirostat=2, mirostat_tau=4.0, dynatemp_low=0.5, dynatemp_high=1.5, dynatemp_exponent=0.7,
                        top_n_sigma=2.0, top_a=0.2, tfs=0.95, temperature=0.05, max_new_tokens=12, seed=3)


@pytest.mark.slow  # every processor at the full 49,152-token vocabulary, traced and replayed: ~25 s of CPU
def test_every_sampler_on_in_one_engine_run_is_nan_free(tiny) -> None:
    engine = Engine(tiny)
    order = list(reversed(DEFAULT_ORDER))
    params = [ALL_ON, ALL_ON.replace(seed=4, order=order), ALL_ON.replace(temperature=0.0), SamplingParams(max_new_tokens=5)]
    result = engine.generate(engine.encode("Tell me a story"), params, [0, 1, 0, 0], trace_top_n=5)
    for row in result.rows:
        assert row.token_ids and all(math.isfinite(x) for x in row.raw_logprobs + row.final_logprobs)
    assert torch.isfinite(result.trace.entropy).all() and torch.isfinite(result.trace.top_probs).all()
    assert result.trace.entropy.shape[1] == 1 + len(DEFAULT_ORDER)
    replay = engine.replay(result, 1, 5)
    assert replay.stage_names == ["raw", *order] and torch.isfinite(replay.probs).all()


def test_greedy_rows_skip_the_sampling_only_samplers() -> None:
    logits = random_logits(7, few_left_row=True)
    tokens = random_tokens(7, PROMPT_LEN + 6, alphabet=12)
    greedy = ALL_ON.replace(temperature=0.0, dry_multiplier=0.0)
    assert torch.equal(pipeline([greedy] * B, logits, state_of(tokens)), logits)
    assert set(NEW_SAMPLERS) - {"dry"} <= SAMPLING_ONLY and "dry" not in SAMPLING_ONLY


def test_new_samplers_are_no_ops_at_their_defaults() -> None:
    logits = random_logits(2, few_left_row=True)
    tokens = random_tokens(2, PROMPT_LEN + 9, alphabet=12)
    rows = RowParams.build([SamplingParams()] * B, EOS, V)
    for name in NEW_SAMPLERS:
        assert not REGISTRY[name].active(rows).any(), name
    assert torch.equal(apply_pipeline(logits, state_of(tokens), rows), logits)


def test_default_order_places_the_new_samplers() -> None:
    order = list(DEFAULT_ORDER)
    assert order.index("dry") == order.index("frequency_penalty") + 1
    assert order.index("dynatemp") == order.index("temperature") + 1
    assert order.index("typical_p") < order.index("top_n_sigma") < order.index("top_a") < order.index("tfs")
    assert max(order.index(n) for n in ("top_k", "top_p", "min_p", "tfs", "eta_cutoff")) < order.index("xtc")
    # mirostat, then adaptive-P (it picks the token in its sources), then the watermarks (transformers applies its
    # watermarking processor after every other one), then LogitNormalization last
    assert order[-5:] == ["mirostat", "adaptive_p", "watermark", "synthid", "renormalize"]
    assert tuple(REGISTRY) == DEFAULT_ORDER


# ----------------------------------------------------------------------------------------------------------
# Parameters: validation, JSON, transformers

NON_DEFAULT = SamplingParams(dry_multiplier=0.8, dry_base=2.0, dry_allowed_length=3, dry_sequence_breakers=["\n\n", ",", " "],
                             xtc_threshold=0.2, xtc_probability=0.5, mirostat=2, mirostat_tau=4.5, mirostat_eta=0.2,
                             dynatemp_low=0.5, dynatemp_high=1.5, dynatemp_exponent=2.0, top_n_sigma=1.5, top_a=0.1, tfs=0.9)


def test_json_round_trip() -> None:
    assert SamplingParams.from_json(NON_DEFAULT.to_json()) == NON_DEFAULT
    data = NON_DEFAULT.to_dict()
    assert data["dry_sequence_breakers"] == ["\n\n", ",", " "] and data["mirostat"] == 2
    assert from_dict(SamplingParams().to_dict()).dry_sequence_breakers == ("\n", ":", '"', "*")


def test_sequence_breakers_take_text_generation_webuis_text_form() -> None:
    """text-generation-webui sends the breakers as one string of JSON strings; that string carries over."""
    assert SamplingParams(dry_sequence_breakers='"\\n", ":", "\\"", "*"').dry_sequence_breakers == DRY_SEQUENCE_BREAKERS
    assert SamplingParams(dry_sequence_breakers='["a", "b c"]').dry_sequence_breakers == ("a", "b c")
    for single in (":", "1", '"', "[x"):  # anything else is one breaker
        assert SamplingParams(dry_sequence_breakers=single).dry_sequence_breakers == (single,)


@pytest.mark.parametrize("field, value, allowed", [
    ("dry_multiplier", -0.1, "[0, 100]"), ("dry_base", 0.5, "[1, 100]"), ("dry_allowed_length", 0, "[1, 64]"),
    ("dry_allowed_length", 1.5, "[1, 64]"), ("xtc_threshold", 1.5, "[0, 1]"), ("xtc_probability", -1, "[0, 1]"),
    ("mirostat", 3, "[0, 2]"), ("mirostat_tau", -1, "[0, 100]"), ("mirostat_eta", 2, "[0, 1]"),
    ("dynatemp_low", 0, "[0.0001, 100]"), ("dynatemp_high", 101, "[0.0001, 100]"), ("dynatemp_exponent", -1, "[0, 100]"),
    ("top_n_sigma", -0.5, "[0, 100]"), ("top_a", 1.5, "[0, 1]"), ("tfs", -0.1, "[0, 1]"), ("tfs", "x", "[0, 1]"),
])
def test_out_of_range_values_name_field_range_and_value(field: str, value, allowed: str) -> None:
    with pytest.raises(ParamError) as info:
        SamplingParams(**{field: value})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: must be ") and allowed in str(info.value)
    assert str(info.value).endswith(f"got {value!r}")


def test_mirostat_v1_is_refused_clearly() -> None:
    with pytest.raises(ParamError, match=r"^mirostat: must be 0 \(off\) or 2 \(mirostat v2; mirostat v1 is not supported\), got 1$"):
        SamplingParams(mirostat=1)
    assert SamplingParams(mirostat=2.0).mirostat == 2


@pytest.mark.parametrize("breakers", [[""], ["a", 3], 5])
def test_bad_sequence_breakers_name_the_field(breakers) -> None:
    with pytest.raises(ParamError, match="^dry_sequence_breakers: must be a list of non-empty strings"):
        SamplingParams(dry_sequence_breakers=breakers)


@pytest.mark.parametrize("field, value", [("dry_multiplier", 0.5), ("xtc_probability", 0.5), ("mirostat", 2),
                                          ("dynatemp_low", 0.5), ("dynatemp_high", 2.0), ("top_n_sigma", 1.0),
                                          ("top_a", 0.1), ("tfs", 0.9)])
def test_generate_kwargs_refuses_samplers_transformers_lacks(field: str, value) -> None:
    with pytest.raises(ParamError, match=f"^{field}: must be .* to convert to transformers"):
        SamplingParams(**{field: value}).generate_kwargs()
    # a sampler's other fields alone change nothing, and greedy rows skip the sampling-only samplers
    SamplingParams(dry_base=3.0, mirostat_tau=2.0, xtc_threshold=0.3, dynatemp_exponent=2.0).generate_kwargs()
    if field != "dry_multiplier":
        SamplingParams(**{field: value}, temperature=0.0).generate_kwargs()


def test_exports_list_the_samplers_transformers_lacks() -> None:
    import json

    from transformers import GenerationConfig

    from playground.config import PlaygroundConfig
    from playground.exports import export_notes, generate_snippet, generation_config_json, transformers_settings

    config = PlaygroundConfig("hi", params=NON_DEFAULT.replace(top_k=40))
    left_out = transformers_settings(config).left_out
    assert set(left_out) == {"dry_multiplier", "dry_base", "dry_allowed_length", "dry_sequence_breakers",
                             "xtc_probability", "xtc_threshold", "mirostat", "mirostat_tau", "mirostat_eta",
                             "dynatemp_low", "dynatemp_high", "dynatemp_exponent", "top_n_sigma", "top_a", "tfs"}
    data = json.loads(generation_config_json(config))
    assert export_notes(config)["not_expressible"]["dry_multiplier"]["reason"] == "transformers has no DRY sampler"
    assert data["top_k"] == 40 and "mirostat" not in data
    GenerationConfig(**data).validate(strict=True)
    compile(generate_snippet(config, "m"), "<snippet>", "exec")
