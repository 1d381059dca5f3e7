"""The exports of a playground state: a model.generate snippet (run here on a tiny model), GenerationConfig JSON
and an OpenAI-style request; what they cannot express is left out and said."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from transformers import GenerationConfig

from configs import TRICKY
from engine.models import LoadedModel
from engine.params import SamplingParams
from engine.tokens import token_ids, word_variants
from playground.config import PlaygroundConfig
from playground.exports import (export_notes, generate_snippet, generation_config_json, openai_endpoint, openai_request_json,
                                transformers_settings)

# -- exports ----------------------------------------------------------------------------------------------

INEXPRESSIBLE = PlaygroundConfig(
    "Name a colour.", samples=2,
    params=SamplingParams(temperature=0.9, top_k=50, min_p=0.05, repetition_penalty=1.2, presence_penalty=0.5,
                          frequency_penalty=0.3, order="min_p>temperature", stop=["\n"], bad_words=["red"],
                          sequence_bias={"blue": 2.0, "green": float("-inf")}, max_new_tokens=6, seed=7))
EXPORTED = [*TRICKY, INEXPRESSIBLE]


def _not_comments(snippet: str) -> str:
    return "\n".join(line for line in snippet.splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("config", EXPORTED, ids=range(len(EXPORTED)))
def test_exports_are_valid(config: PlaygroundConfig) -> None:
    snippet = generate_snippet(config, "HuggingFaceTB/SmolLM2-135M-Instruct")
    compile(snippet, "<snippet>", "exec")
    data = json.loads(generation_config_json(config), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    for cell in data if config.axes else [data]:  # a sweep: one per cell
        GenerationConfig(**cell).validate(strict=True)  # as it is: nothing but GenerationConfig's own keys
    body = json.loads(openai_request_json(config, "smollm"), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    for cell in body if config.axes else [body]:
        assert cell["model"] == "smollm" and cell["max_tokens"] == config.params.max_new_tokens
        assert cell["n"] == config.samples


def test_inexpressible_knobs_are_left_out_and_said() -> None:
    snippet = generate_snippet(INEXPRESSIBLE, "some/model")
    comments = "\n".join(line for line in snippet.splitlines() if line.startswith("#"))
    for name in ("presence_penalty", "frequency_penalty", "order"):
        assert name in comments and name not in _not_comments(snippet)
    assert "stop_strings" in snippet and "tokenizer=tokenizer)" in snippet
    assert "num_return_sequences=2" in snippet and "torch.manual_seed(7)" in snippet
    assert "banned_words = ['red', 'green']" in snippet and "biases = [['blue', 2.0]]" in snippet
    data = json.loads(generation_config_json(INEXPRESSIBLE))
    left_out = export_notes(INEXPRESSIBLE)["not_expressible"]
    assert set(left_out) == {"presence_penalty", "frequency_penalty", "order", "bad_words", "sequence_bias"}
    assert left_out["order"]["value"] == "min_p>temperature"
    assert left_out["bad_words"]["value"] == ["red", "green"]  # a -inf bias is a ban
    assert data["min_p"] == 0.05 and data["top_k"] == 50 and data["num_return_sequences"] == 2
    assert "presence_penalty" not in data and "frequency_penalty" not in data


def test_greedy_exports_one_sequence() -> None:
    config = PlaygroundConfig("hi", params=SamplingParams(temperature=0.0), samples=3)
    assert json.loads(generation_config_json(config))["num_return_sequences"] == 1
    assert "num_return_sequences=1" in generate_snippet(config, "m")
    assert transformers_settings(config).kwargs["do_sample"] is False
    assert json.loads(openai_request_json(config, "m"))["temperature"] == 0.0


def test_generation_config_with_tokenizer(tiny: LoadedModel) -> None:
    tokenizer = tiny.tokenizer
    data = json.loads(generation_config_json(INEXPRESSIBLE, tokenizer))
    assert set(export_notes(INEXPRESSIBLE, tokenizer)["not_expressible"]) == {"presence_penalty", "frequency_penalty",
                                                                              "order"}
    assert data["bad_words_ids"] == word_variants(tokenizer, "red") + word_variants(tokenizer, "green")
    assert data["sequence_bias"] == [[ids, 2.0] for ids in word_variants(tokenizer, "blue")]
    GenerationConfig(**data).validate(strict=True)
    plain = SamplingParams(bad_words=["red"], sequence_bias={"blue": 2.0})
    expected = plain.generate_kwargs(tokenizer)
    data = json.loads(generation_config_json(PlaygroundConfig("x", params=plain), tokenizer))
    assert data["bad_words_ids"] == expected["bad_words_ids"]
    assert {tuple(ids): bias for ids, bias in data["sequence_bias"]} == expected["sequence_bias"]


@pytest.mark.slow  # four snippets, each loading the saved model: ~7 s of CPU
def test_snippet_runs(tiny: LoadedModel, tmp_path: Path) -> None:
    """The snippet is a working script: run it on a tiny model saved to a folder."""
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    beams = SamplingParams(do_sample=False, num_beams=3, num_return_sequences=2, max_new_tokens=3)
    for config in (INEXPRESSIBLE, INEXPRESSIBLE.replace(raw=True, system_prompt=""),
                   PlaygroundConfig("hi", params=SamplingParams(temperature=0, max_new_tokens=3), samples=3),
                   PlaygroundConfig("hi", params=beams, samples=4)):  # a beam config returns its best beams
        namespace: dict = {}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(generate_snippet(config, str(tmp_path)), "<snippet>", "exec"), namespace)
        sequences = transformers_settings(config).num_return_sequences
        assert printed.getvalue().count("--- sample ") == sequences == len(namespace["outputs"])
        if config.params.bad_words:
            expected = SamplingParams(bad_words=["red", "green"], sequence_bias={"blue": 2.0}) \
                .generate_kwargs(tiny.tokenizer)
            assert namespace["kwargs"]["bad_words_ids"] == expected["bad_words_ids"]
            assert namespace["kwargs"]["sequence_bias"] == expected["sequence_bias"]


def test_openai_request() -> None:
    body = json.loads(openai_request_json(INEXPRESSIBLE.replace(system_prompt="Be brief."), "smollm"))
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Name a colour."}]
    assert body["temperature"] == 0.9 and body["top_p"] == 1.0 and body["seed"] == 7 and body["stop"] == ["\n"]
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == 0.3
    assert body["top_k"] == 50 and body["min_p"] == 0.05 and body["repetition_penalty"] == 1.2
    assert body["order"] == ["min_p", "temperature"]
    assert body["bad_words"] == ["red", "green"] and body["sequence_bias"] == {"blue": 2.0}
    for default_knob in ("typical_p", "no_repeat_ngram_size", "min_new_tokens", "do_sample", "max_new_tokens"):
        assert default_knob not in body
    assert openai_endpoint(INEXPRESSIBLE) == "/v1/chat/completions"
    raw = INEXPRESSIBLE.replace(raw=True)
    body = json.loads(openai_request_json(raw, "smollm"))
    assert body["prompt"] == "Name a colour." and "messages" not in body
    assert openai_endpoint(raw) == "/v1/completions"
    ngram = json.loads(openai_request_json(PlaygroundConfig("x", params=SamplingParams(no_repeat_ngram_size=2)), "m"))
    assert ngram["no_repeat_ngram_size"] == 2 and "stop" not in ngram


def test_diverse_beam_exports_say_where_transformers_5_keeps_group_beam_search() -> None:
    params = SamplingParams(do_sample=False, num_beams=4, num_beam_groups=2, diversity_penalty=1.5,
                            num_return_sequences=3, max_new_tokens=10)
    config = PlaygroundConfig("Name a colour.", params=params)
    snippet = generate_snippet(config, "some/model")
    compile(snippet, "<snippet>", "exec")
    assert "custom_generate='transformers-community/group-beam-search', trust_remote_code=True" in snippet
    data = json.loads(generation_config_json(config))
    assert data["num_beam_groups"] == 2 and data["diversity_penalty"] == 1.5 and data["num_beams"] == 4
    assert data["num_return_sequences"] == 3 and "num_return_sequences=3" in snippet
    assert any("group-beam-search" in note for note in export_notes(config)["notes"])
    GenerationConfig(**data).validate(strict=True)
    assert PlaygroundConfig.from_query(config.to_query()) == config  # the share link keeps the groups


SWEEP = PlaygroundConfig("Name a colour.", samples=2, axes=(("temperature", "0.3, 0.9"), ("top_k", "5, 50")),
                         params=SamplingParams(presence_penalty=0.5, max_new_tokens=3, seed=7))


def test_exports_carry_the_sweep_one_cell_each() -> None:
    configs = json.loads(generation_config_json(SWEEP))
    assert [(c["temperature"], c["top_k"]) for c in configs] == [(0.3, 5), (0.3, 50), (0.9, 5), (0.9, 50)]
    for data in configs:
        GenerationConfig(**data).validate(strict=True)
    bodies = json.loads(openai_request_json(SWEEP, "m"))
    assert [(b["temperature"], b["top_k"], b["seed"], b["n"]) for b in bodies] == [
        (0.3, 5, 7, 2), (0.3, 50, 7, 2), (0.9, 5, 7, 2), (0.9, 50, 7, 2)]
    notes = export_notes(SWEEP)
    assert set(notes["not_expressible"]) == {"presence_penalty"}
    assert notes["cells"] == [{"temperature": 0.3, "top_k": 5}, {"temperature": 0.3, "top_k": 50},
                              {"temperature": 0.9, "top_k": 5}, {"temperature": 0.9, "top_k": 50}]
    own = json.loads(openai_request_json(SWEEP.replace(independent_seeds=True), "m"))
    assert len({b["seed"] for b in own}) == 4  # the cells' own seeds, as the engine runs them
    assert "cells = [" in generate_snippet(SWEEP.replace(independent_seeds=True), "m")


def test_sweep_snippet_runs_every_cell(tiny: LoadedModel, tmp_path: Path) -> None:
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    snippet = generate_snippet(SWEEP, str(tmp_path))
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "<snippet>", "exec"), namespace)
    assert namespace["cells"] == [{"temperature": 0.3, "top_k": 5}, {"temperature": 0.3, "top_k": 50},
                                  {"temperature": 0.9, "top_k": 5}, {"temperature": 0.9, "top_k": 50}]
    assert printed.getvalue().count("--- cell ") == 4 * 2


GENERATE_KNOBS = PlaygroundConfig("hi", samples=1, params=SamplingParams(
    temperature=0, suppress_tokens=["red", 5], begin_suppress_tokens=[7], forced_eos_token_id=9,
    forced_bos_token_id=11, min_length=3, max_length=40, max_time=60.0))


def test_the_generate_knobs_export_to_transformers(tiny: LoadedModel) -> None:
    """suppress_tokens texts become token ids with a tokenizer (as the engine makes them), ids go as they are; the
    forced tokens and the lengths go by transformers' names; the GenerationConfig loads."""
    tokenizer, config, params = tiny.tokenizer, GENERATE_KNOBS, GENERATE_KNOBS.params
    data = json.loads(generation_config_json(config, tokenizer))
    assert data["suppress_tokens"] == token_ids(tokenizer, ("red", 5)) == params.generate_kwargs(tokenizer)["suppress_tokens"]
    assert data["begin_suppress_tokens"] == [7] and data["forced_eos_token_id"] == 9 and data["forced_bos_token_id"] == 11
    assert data["min_length"] == 3 and data["max_length"] == 40 and data["max_time"] == 60.0
    assert "max_new_tokens" not in data
    GenerationConfig(**data).validate(strict=True)
    notes = export_notes(config)
    assert notes["not_expressible"] == {"suppress_tokens": {"value": ["red", 5], "reason": "needs a tokenizer to become token ids"}}
    assert any("forced_bos_token_id only when its input is one token long" in note for note in notes["notes"])


@pytest.mark.slow  # saves and loads the model: several seconds of CPU
def test_the_generate_knobs_snippet_runs(tiny: LoadedModel, tmp_path: Path) -> None:
    tokenizer, config = tiny.tokenizer, GENERATE_KNOBS
    data = json.loads(generation_config_json(config, tokenizer))
    tiny.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(generate_snippet(config, str(tmp_path)), "<snippet>", "exec"), namespace)
    assert namespace["kwargs"]["suppress_tokens"] == data["suppress_tokens"]
