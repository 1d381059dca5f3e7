"""Settings that carry over from and to llama.cpp: the order presets, our pipeline in llama.cpp's order against
llama.cpp's own sampler chain (recorded by tests/data/make_llamacpp_oracle.py; no llama.cpp needed here), and the
llama.cpp /completion export and import (names mapped, what has no equivalent listed, bad values named).
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ParamError
from engine.order import (DEFAULT_ORDER, LAST_STAGES, LLAMA_CPP_SAMPLERS, ORDER_PRESETS, WEBUI_SAMPLER_PRIORITY,
                          normalize_order)
from engine.params import SamplingParams
from engine.processors import apply_pipeline
from engine.rowstate import DecodeState, RowParams
from engine.values import changed_params
from playground.config import PlaygroundConfig
from playground.llamacpp import NOT_IN_LLAMA_CPP, read_request, request, request_json

ORACLE = json.loads((Path(__file__).parent / "data" / "llamacpp_oracle.json").read_text())


# -- order presets ---------------------------------------------------------------------------------------------

def test_presets_run_each_library_s_samplers_in_its_order() -> None:
    assert ORDER_PRESETS["transformers"] == DEFAULT_ORDER
    llama = ORDER_PRESETS["llama.cpp"]
    assert [n for n in llama if n in LLAMA_CPP_SAMPLERS] == list(LLAMA_CPP_SAMPLERS)
    penalties = ["repetition_penalty", "presence_penalty", "frequency_penalty", "dry"]
    assert [n for n in llama if n in penalties] == penalties
    assert llama.index("dry") < llama.index("top_n_sigma") and llama[llama.index("temperature") + 1] == "dynatemp"
    webui = ORDER_PRESETS["text-generation-webui"]
    assert [n for n in webui if n in WEBUI_SAMPLER_PRIORITY] == list(WEBUI_SAMPLER_PRIORITY)
    unlisted = [n for n in DEFAULT_ORDER if n not in WEBUI_SAMPLER_PRIORITY and n not in LAST_STAGES]
    assert list(webui[:len(unlisted)]) == unlisted
    for order in ORDER_PRESETS.values():  # the watermarks after every sampler, renormalize last
        assert order[-len(LAST_STAGES):] == LAST_STAGES
    for order in ORDER_PRESETS.values():
        assert sorted(order) == sorted(DEFAULT_ORDER)


@pytest.mark.parametrize("name", list(ORDER_PRESETS))
def test_a_preset_is_named_in_every_form_and_round_trips(name: str) -> None:
    assert normalize_order(name) == normalize_order([name]) == ORDER_PRESETS[name]
    params = SamplingParams(order=name, min_p=0.1)
    assert SamplingParams.from_json(params.to_json()) == params
    if name != "transformers":
        assert changed_params(params)["order"] == name
    config = PlaygroundConfig(prompt="p", params=params, axes=(("order", "llama.cpp, transformers, text-generation-webui"),))
    assert PlaygroundConfig.from_query(config.to_query()) == config
    assert PlaygroundConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    orders = [p.order for _, p in config.sweep_spec().cells()]
    assert orders == [ORDER_PRESETS["llama.cpp"], DEFAULT_ORDER, ORDER_PRESETS["text-generation-webui"]]


def test_a_bad_order_name_lists_the_presets() -> None:
    with pytest.raises(ParamError, match=r"order: must be a preset \(transformers, llama.cpp, text-generation-webui\)"):
        SamplingParams(order="llama")
    with pytest.raises(ParamError, match="order: "):
        SamplingParams(order=["llama.cpp", "top_k"])  # a preset stands alone


# -- our pipeline in llama.cpp's order against llama.cpp's chain ----------------------------------------------

def oracle_logits(seed: int) -> torch.Tensor:
    """The recorded cases' logits: tests/data/make_llamacpp_oracle.py's logits(seed)."""
    rows, vocab = ORACLE["rows"], ORACLE["vocab"]
    return torch.from_numpy((np.random.default_rng(seed).standard_normal((rows, vocab)) * 4.0).astype(np.float32))


def history(seed: int, length: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(40) for _ in range(length)]


@pytest.mark.parametrize("case", range(len(ORACLE["chain"])))
def test_llama_cpp_order_gives_llama_cpp_s_distribution(case: int) -> None:
    """Kept tokens the same; final logits equal to float32 rounding (1e-6 relative)."""
    recorded = ORACLE["chain"][case]
    logits = oracle_logits(recorded["seed"])
    rows, vocab = logits.shape
    params = [SamplingParams(**recorded["params"], order="llama.cpp")] * rows
    generated = torch.tensor([history(recorded["history_seed"] + r, ORACLE["penalty_history"]) for r in range(rows)])
    state = DecodeState.start(generated[:, :0], vocab, generated)
    out = apply_pipeline(logits, state, RowParams.build(params, [vocab - 1], vocab))
    for r, row in enumerate(recorded["rows"]):
        kept = torch.isfinite(out[r]).nonzero()[:, 0].tolist()
        assert kept == row["ids"], f"row {r}: kept sets differ"
        torch.testing.assert_close(out[r, kept], torch.tensor(row["logits"]), rtol=1e-6, atol=1e-6)


def test_the_orders_differ_without_the_preset() -> None:
    """The issue's case (T 1.5, min_p 0.1, top_p 0.9): transformers' order gives another distribution."""
    recorded = ORACLE["chain"][0]
    logits = oracle_logits(recorded["seed"])
    state = DecodeState.start(torch.zeros(logits.shape[0], 1, dtype=torch.long), logits.shape[1])
    ours = apply_pipeline(logits, state, RowParams.build([SamplingParams(**recorded["params"])] * 4, [0], logits.shape[1]))
    assert any(torch.isfinite(ours[r]).nonzero()[:, 0].tolist() != row["ids"] for r, row in enumerate(recorded["rows"]))


# -- export ----------------------------------------------------------------------------------------------------

def config(**params) -> PlaygroundConfig:
    return PlaygroundConfig(prompt="Once upon a time", raw=True, samples=1, params=SamplingParams(**params))


def test_export_carries_every_sampler_and_the_order() -> None:
    body = request(config(temperature=1.5, min_p=0.1, top_p=0.9, top_k=0, repetition_penalty=1.2,
                          dry_multiplier=0.8, dry_mode="llama.cpp", xtc_probability=0.3, seed=5, max_new_tokens=33,
                          logit_bias={"7": -2}, order="llama.cpp"))
    assert body["samplers"] == ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                                "temperature"]
    assert (body["temperature"], body["min_p"], body["top_p"], body["top_k"], body["repeat_penalty"]) == (1.5, 0.1, 0.9, 0, 1.2)
    assert (body["n_predict"], body["seed"], body["repeat_last_n"], body["dry_penalty_last_n"]) == (33, 5, -1, -1)
    assert body["logit_bias"] == [[7, -2.0]] and body["dry_multiplier"] == 0.8
    assert NOT_IN_LLAMA_CPP not in body
    transformers = request(config(temperature=1.5, min_p=0.1, top_p=0.9))["samplers"]
    assert transformers.index("temperature") < transformers.index("top_p")  # the order travels as it is


def test_export_lists_what_llama_cpp_lacks() -> None:
    body = request(config(no_repeat_ngram_size=3, tfs=0.9, bad_words=["very"], dry_multiplier=0.5,
                          num_beams=2, do_sample=False, dynatemp_low=0.5, dynatemp_high=1.5, temperature=0.7))
    left = body[NOT_IN_LLAMA_CPP]
    for field in ("no_repeat_ngram_size", "tfs", "bad_words", "num_beams", "dry_mode"):
        assert field in left and left[field]["reason"], field
    assert body["temperature"] == 0.0  # greedy
    dynamic = request(config(dynatemp_low=0.5, dynatemp_high=1.5))
    assert (dynamic["temperature"], dynamic["dynatemp_range"]) == (1.0, 0.5) and NOT_IN_LLAMA_CPP not in dynamic
    assert "dynatemp_low" in request(config(dynatemp_low=0.5, dynatemp_high=1.5, temperature=0.7))[NOT_IN_LLAMA_CPP]


def test_export_of_a_sweep_is_one_body_per_cell() -> None:
    sweep = PlaygroundConfig(prompt="p", raw=True, params=SamplingParams(min_p=0.1),
                             axes=(("order", "llama.cpp, transformers"),))
    bodies = json.loads(request_json(sweep))
    assert [b["samplers"][-1] for b in bodies] == ["temperature", "xtc"]


# -- import ----------------------------------------------------------------------------------------------------

BASE = PlaygroundConfig(prompt="page prompt")


@pytest.mark.parametrize("seed", range(12))
def test_export_then_import_gives_the_same_settings(seed: int) -> None:
    rng = random.Random(seed)
    samplers = list(LLAMA_CPP_SAMPLERS)
    rng.shuffle(samplers)
    params = SamplingParams(
        temperature=rng.choice([0.0, 0.5, 1.0, 1.3]), top_k=rng.choice([0, 40]), top_p=rng.choice([1.0, 0.9]),
        min_p=rng.choice([0.0, 0.05]), typical_p=rng.choice([1.0, 0.8]), top_n_sigma=rng.choice([0.0, 1.5]),
        xtc_probability=rng.choice([0.0, 0.5]), xtc_threshold=rng.choice([0.1, 0.2]),
        repetition_penalty=rng.choice([1.0, 1.15]), presence_penalty=rng.choice([0.0, 0.4]),
        frequency_penalty=rng.choice([0.0, -0.3]), dry_multiplier=rng.choice([0.0, 0.8]),
        dry_allowed_length=rng.choice([2, 3]), dry_sequence_breakers=rng.choice([["\n"], ["\n", ":"]]),
        mirostat=rng.choice([0, 2]), mirostat_tau=rng.choice([5.0, 3.0]), seed=rng.randrange(1000),
        max_new_tokens=rng.choice([16, 64]), stop=rng.choice([[], ["\n\n"]]), logit_bias=rng.choice([{}, {"3": 5}]),
        dry_mode="llama.cpp", order=[n for n in samplers])
    if params.temperature == 1.0 and rng.random() < 0.5:
        params = params.replace(dynatemp_low=0.6, dynatemp_high=1.4)
    cfg = PlaygroundConfig(prompt="text", raw=True, params=params)
    body = request(cfg)
    apart = params.dynatemp_low != 1.0 and params.order.index("dynatemp") != params.order.index("temperature") + 1
    assert ("order" in body.get(NOT_IN_LLAMA_CPP, {})) == apart  # llama.cpp's temperature runs dynatemp in it
    back, notes = read_request(json.loads(json.dumps(body)), BASE)
    # llama.cpp's dynamic temperature is a centre and a half-range: low and high come back within float rounding
    assert math.isclose(back.params.dynatemp_low, params.dynatemp_low, rel_tol=1e-12)
    assert math.isclose(back.params.dynatemp_high, params.dynatemp_high, rel_tol=1e-12)
    assert back.params.replace(dynatemp_low=params.dynatemp_low, dynatemp_high=params.dynatemp_high) == \
        params.replace(order=back.params.order)
    if not apart:
        assert [n for n in back.params.order if n in samplers] == [n for n in params.order if n in samplers]
    assert back.prompt == "text" and back.raw
    assert not [n for n in notes if not n.startswith(NOT_IN_LLAMA_CPP)], notes


def test_import_lists_what_has_no_equivalent_and_takes_llama_cpp_s_defaults() -> None:
    body = {"temperature": 0.7, "samplers": ["top_k", "temp", "infill"], "min_p": 0.2, "grammar": "root ::= x",
            "mirostat": 1, "repeat_penalty": 1.1, "n_predict": 20, "stream": True, "logit_bias": [[5, False], ["hi", 1]]}
    cfg, notes = read_request(body, BASE)
    text = "\n".join(notes)
    for key in ("grammar", "'infill'", "mirostat: 1", "min_p: 0.2", "repeat_last_n: 64", "logit_bias", "seed"):
        assert key in text, key
    assert "stream" not in text  # transport only
    p = cfg.params
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.max_new_tokens, p.dry_mode) == (0.7, 40, 1.0, 0.0, 20, "llama.cpp")
    assert p.repetition_penalty == 1.0  # "penalties" is not in samplers: llama.cpp does not run it
    assert p.suppress_tokens == (5,) and cfg.prompt == "page prompt"


def test_import_reads_props_settings() -> None:
    props = {"default_generation_settings": {"params": {"temperature": 0.5, "top_k": 10, "samplers": ["top_k", "temperature"]}}}
    cfg, _ = read_request(json.dumps(props), BASE)
    assert (cfg.params.temperature, cfg.params.top_k) == (0.5, 10)


@pytest.mark.parametrize("body, field", [
    ({"top_p": 2}, "top_p"), ({"top_k": float("nan")}, "top_k"), ({"repeat_penalty": -1}, "repeat_penalty"),
    ({"dry_allowed_length": 0}, "dry_allowed_length"), ({"temperature": "hot"}, "temperature"),
    ({"samplers": 5}, "samplers"), ({"logit_bias": 3}, "logit_bias"), ("[1, 2]", "llama.cpp request"),
    ("{not json", "llama.cpp request"), ({"n_predict": 0}, "n_predict")])
def test_import_names_llama_cpp_s_field_for_a_bad_value(body, field: str) -> None:
    with pytest.raises(ParamError) as info:
        read_request(body, BASE)
    assert str(info.value).startswith(field), str(info.value)
    assert "nan" not in str(info.value).lower() or "got nan" in str(info.value)
