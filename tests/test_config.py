"""Axis value parsing, the playground's state (validation, share links, preset dicts) and its exports."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from transformers import GenerationConfig

from engine.models import LoadedModel
from engine.params import DEFAULT_ORDER, ParamError, SamplingParams, from_dict
from engine.tokens import token_ids, word_variants
from engine.values import changed_params, order_text, parse_axis_values
from playground.config import PlaygroundConfig
from playground.exports import (export_notes, generate_snippet, generation_config_json, openai_endpoint, openai_request_json,
                                transformers_settings)

XSS = "<img src=x onerror=alert(1)>"

# -- parse_axis_values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, text, expected", [
    ("temperature", "0.2, 0.9", (0.2, 0.9)),
    ("temperature", "0.2,0.9,1", (0.2, 0.9, 1)),
    ("temperature", "0.1:0.9:0.2", (0.1, 0.3, 0.5, 0.7, 0.9)),
    ("temperature", "0.1:0.3:0.1", (0.1, 0.2, 0.3)),  # 0.1 + 2 * 0.1 rounds to 0.3, and 0.3 is included
    ("temperature", "0:1:0.3", (0.0, 0.3, 0.6, 0.9)),  # the stop is left out when the steps miss it
    ("temperature", " 0 : 1 : 0.25 ", (0.0, 0.25, 0.5, 0.75, 1.0)),
    ("temperature", "0.1, 0.5:1.0:0.25", (0.1, 0.5, 0.75, 1.0)),
    ("top_k", "1:5:2", (1, 3, 5)),
    ("top_k", "0, 10:30:10, 50", (0, 10, 20, 30, 50)),
    ("top_k", "5:5:1", (5,)),
    ("stop", '["\\n"], ["."]', (["\n"], ["."])),
    ("stop", "END, ###", ("END", "###")),
    ("stop", '"a,b", c', ("a,b", "c")),
    ("stop", "1:2:3", ("1:2:3",)),  # ranges are read only for numeric fields
    ("bad_words", "true", ("true",)),
    ("sequence_bias", '{"the": -5}, {}', ({"the": -5}, {})),
    ("do_sample", "true, false", (True, False)),
    ("order", "temperature>min_p, min_p>temperature", ("temperature>min_p", "min_p>temperature")),
    ("order", '["min_p", "temperature"], []', (["min_p", "temperature"], [])),
])
def test_parse_axis_values(name: str, text: str, expected: tuple) -> None:
    values = parse_axis_values(name, text)
    assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]  # 1:5:2 gives ints, 0:1:0.25 floats


def test_order_axis_gives_two_orders() -> None:
    spec = PlaygroundConfig("hi", axes=(("order", "temperature>min_p, min_p>temperature"),)).sweep_spec()
    orders = [params.order for _, params in spec.cells()]
    assert orders[0] == DEFAULT_ORDER  # temperature already runs before min_p
    assert orders[1].index("min_p") < orders[1].index("temperature")
    assert sorted(orders[1]) == sorted(DEFAULT_ORDER)


@pytest.mark.parametrize("text, fragment", [
    ("", "a comma-separated list"),
    ("   ", "a comma-separated list"),
    ("0.2,,0.9", "value 2 is empty"),
    ("0.2, 0.9,", "value 3 is empty"),
    ("0.9:0.1:0.1", "start <= stop"),
    ("0:1:0", "step > 0"),
    ("0:1:-0.1", "step > 0"),
    ("0:100:1", "at most 64 values"),
    ("0:63:1, 2", "at most 64 values"),
    (", ".join(["0.5"] * 65), "at most 64 values"),
    ("0.1:0.9", "start:stop:step"),
    ("0:1:x", "start:stop:step"),
    ("1e999:1e999:1", "start <= stop"),
    ("0:1e308:1e-308", "at most 64 values"),
])
def test_parse_axis_values_errors_name_the_axis(text: str, fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_axis_values("temperature", text)
    assert info.value.field == "axis temperature"
    assert str(info.value).startswith("axis temperature: must be ") and fragment in str(info.value)


def test_range_of_64_values_is_allowed() -> None:
    assert parse_axis_values("top_k", "1:64:1") == tuple(range(1, 65))


def test_parse_axis_values_raises_only_param_errors() -> None:
    """Random junk typed into an axis box: a tuple or a ParamError, never another exception."""
    rng = random.Random(0)
    alphabet = ':,[]{}"\\0123456789.-+eE>a n'
    texts = ["[" * 50_000, "{" * 50_000 + "}", '"unterminated', "nan, inf", "1e999", "-0:0:1e-320"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(3000)]
    for name in ("temperature", "top_k", "stop", "order", "sequence_bias", "no_such_field"):
        for text in texts:
            try:
                values = parse_axis_values(name, text)
            except ParamError as exc:
                assert exc.field == f"axis {name}"
            else:
                assert isinstance(values, tuple) and 1 <= len(values) <= 64


def test_values_are_checked_by_the_config_not_the_parser() -> None:
    assert parse_axis_values("temperature", "500, abc") == (500, "abc")
    with pytest.raises(ParamError) as info:
        PlaygroundConfig("hi", axes=(("temperature", "0.5, 500"),))
    assert info.value.field == "temperature" and "500" in str(info.value)


def test_order_text_is_the_shortest_partial_order() -> None:
    swapped = SamplingParams(order="min_p>temperature").order
    assert order_text(swapped) == "min_p>temperature" and order_text(DEFAULT_ORDER) == ""
    rotated = SamplingParams(order=["top_p", "temperature", "top_k"]).order
    assert SamplingParams(order=order_text(rotated)).order == rotated


# -- the config -------------------------------------------------------------------------------------------


def test_defaults_and_sweep_spec() -> None:
    config = PlaygroundConfig("Tell me a story.", axes=[["temperature", "0.2, 0.9"], ["top_p", "0.5:1:0.5"]])
    assert config.params == SamplingParams(temperature=0.8, max_new_tokens=48)
    assert config.axes == (("temperature", "0.2, 0.9"), ("top_p", "0.5:1:0.5")) and hash(config)
    spec = config.sweep_spec()
    assert [(a.name, a.values) for a in spec.axes] == [("temperature", (0.2, 0.9)), ("top_p", (0.5, 1.0))]
    assert spec.samples == 3 and spec.system_prompt is None and spec.raw is False
    assert len(spec.rows()) == 2 * 2 * 3
    assert [p.temperature for _, p in spec.cells()] == [0.2, 0.2, 0.9, 0.9]
    assert PlaygroundConfig("hi", system_prompt="Be brief.").sweep_spec().system_prompt == "Be brief."
    with pytest.raises(ParamError) as info:
        PlaygroundConfig("").sweep_spec()  # an empty prompt is a valid state, but nothing to run
    assert info.value.field == "prompt"


@pytest.mark.parametrize("changes, field", [
    ({"samples": 0}, "samples"),
    ({"samples": 17}, "samples"),
    ({"samples": True}, "samples"),
    ({"samples": "3"}, "samples"),
    ({"view": "grid"}, "view"),
    ({"color_by": "probability"}, "color_by"),
    ({"sample": -1}, "sample"),
    ({"step": 1.5}, "step"),
    ({"raw": "yes"}, "raw"),
    ({"prompt": None}, "prompt"),
    ({"prompt": "bad \ud800 surrogate"}, "prompt"),
    ({"system_prompt": 3}, "system_prompt"),
    ({"params": {"temperature": 0.5}}, "params"),
    ({"axes": (("temp", "0.5"),)}, "axis"),
    ({"axes": (("top_k", "1"), ("top_p", "0.5"), ("min_p", "0.1"), ("seed", "1"))}, "axes"),
    ({"axes": (("top_k", "1"), ("top_k", "2"))}, "axes"),
    ({"axes": (("top_k", "1", "2"),)}, "axes"),
    ({"axes": "temperature=0.5"}, "axes"),
    ({"axes": (("top_k", ""),)}, "axis top_k"),
    ({"axes": (("top_k", "5, 1.5"),)}, "top_k"),
    ({"axes": (("min_new_tokens", "10, 100"),)}, "min_new_tokens"),  # above max_new_tokens (48)
])
def test_validation_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ParamError) as info:
        PlaygroundConfig(**{"prompt": "hi", **changes})
    assert info.value.field == field and str(info.value).startswith(f"{field}: must be ")


# -- share links ------------------------------------------------------------------------------------------

EVERY_KNOB = SamplingParams(
    do_sample=False, temperature=0.1 + 0.2, top_k=40, top_p=0.95, min_p=0.05, typical_p=0.9, epsilon_cutoff=3e-4,
    eta_cutoff=1e-3, repetition_penalty=1.3, presence_penalty=-0.5, frequency_penalty=2.0, no_repeat_ngram_size=3,
    bad_words=["dragon", "a&b=c"], sequence_bias=[("the", -5.0), ("ban", float("-inf")), ("the", 1.0)],
    min_new_tokens=4, max_new_tokens=100_000, stop=["\n", "END#", "&"], seed=2**63 - 1,
    order=["top_p", "temperature", "top_k"])

TRICKY = [
    PlaygroundConfig("Tell me a story."),
    PlaygroundConfig(""),
    PlaygroundConfig("a & b = c # d ? e + f %20 g\nline 2\r\n\ttab  "),
    PlaygroundConfig(XSS, system_prompt=f'"></textarea>{XSS}', view="distributions", sample=5, step=17,
                     color_by="raw"),
    PlaygroundConfig("日本語 🚀 עברית ünïcødé \u200b\x00", raw=True, system_prompt="ignored when raw"),
    PlaygroundConfig("   ", params=EVERY_KNOB, samples=16),
    PlaygroundConfig("sweep", view="sweep", samples=1, params=SamplingParams(),
                     axes=(("temperature", "0.1, 0.5:1.0:0.25"), ("stop", '["\\n"], ["a,b"]'),
                           ("order", "temperature>min_p, min_p>temperature"))),
    PlaygroundConfig("axis text with a colon", axes=(("sequence_bias", '{"a:b": -5}, {}'),)),
    PlaygroundConfig("0.5", system_prompt="true", view="sweep"),
    PlaygroundConfig('"quoted"', system_prompt='["a list"]'),
    PlaygroundConfig("true", params=SamplingParams(temperature=0.0, stop=["true", "1"], bad_words=["[x]"])),
]


@pytest.mark.parametrize("config", TRICKY, ids=range(len(TRICKY)))
def test_share_link_round_trip(config: PlaygroundConfig) -> None:
    query = config.to_query()
    assert PlaygroundConfig.from_query(parse_qs(query)) == config
    assert PlaygroundConfig.from_query(parse_qs(query, keep_blank_values=True)) == config
    assert PlaygroundConfig.from_query(query) == config
    assert PlaygroundConfig.from_query("?" + query) == config
    assert PlaygroundConfig.from_query("https://example.org/playground/?" + query + "#top") == config
    if len(config.axes) <= 1:  # a plain dict of str holds one value per key
        assert PlaygroundConfig.from_query({k: v[0] for k, v in parse_qs(query).items()}) == config
    assert not set(query) & set("<>\"'#\n\r\t ")  # nothing that could break out of a URL or an attribute


def test_share_link_holds_only_changes() -> None:
    config = PlaygroundConfig("Tell me a story.", view="sweep", samples=2,
                              params=SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=48,
                                                    order="min_p>temperature"),
                              axes=(("temperature", "0.2,0.9"),))
    assert config.to_query() == ("prompt=Tell+me+a+story.&samples=2&view=sweep&temperature=0.8&top_p=0.9"
                                 "&max_new_tokens=48&order=min_p%3Etemperature&axis=temperature:0.2,0.9")
    assert PlaygroundConfig("hi", params=SamplingParams()).to_query() == "prompt=hi"
    # parameters missing from a link are SamplingParams() defaults, not the page's starting values
    assert PlaygroundConfig.from_query("prompt=hi").params == SamplingParams()
    every = PlaygroundConfig("x", params=EVERY_KNOB).to_query()
    assert "stop=%5B%22%5Cn%22,%22END%23%22,%22%26%22%5D" in every  # compact JSON lists
    assert "order=top_p%3Etemperature%3Etop_k" in every


@pytest.mark.parametrize("query, field, value", [
    ("prompt=hi&foo=1", "foo", "1"),
    ("prompt=hi&temperature=hot", "temperature", "hot"),
    ("prompt=hi&temperature=NaN", "temperature", "nan"),
    ("prompt=hi&top_k=1.5", "top_k", "1.5"),
    ("prompt=hi&samples=0", "samples", "0"),
    ("prompt=hi&samples=3&samples=4", "samples", "['3', '4']"),
    ("prompt=a&prompt=b", "prompt", "['a', 'b']"),
    ("prompt=hi&view=grid", "view", "grid"),
    ("prompt=hi&raw=maybe", "raw", "maybe"),
    ("prompt=hi&color_by=", "color_by", "''"),
    ("prompt=hi&step=-2", "step", "-2"),
    ("prompt=hi&order=foo>bar", "order", "foo"),
    ("prompt=hi&stop=[1]", "stop", "[1]"),
    ("prompt=hi&sequence_bias={\"a\":\"x\"}", "sequence_bias", "x"),
    ("prompt=hi&axis=temperature", "axis", "temperature"),
    ("prompt=hi&axis=:0.5", "axis", ":0.5"),
    ("prompt=hi&axis=temp:0.5", "axis", "temp"),
    ("prompt=hi&axis=temperature:0.1:0.9:0", "axis temperature", "0.1:0.9:0"),
    ("prompt=hi&axis=temperature:0.5,9000", "temperature", "9000"),
    ("prompt=hi&system_prompt=x", "system_prompt", "x"),
    # never clamped into range, never read as another value
    ("prompt=hi&temperature=-1", "temperature", "-1"),
    ("prompt=hi&top_p=2", "top_p", "2"),
    ("prompt=hi&samples=17", "samples", "17"),
    ("prompt=hi&do_sample=1", "do_sample", "1"),
    ("prompt=hi&raw=True", "raw", "True"),
    ("prompt=hi&max_new_tokens=", "max_new_tokens", "''"),
    # a blank key (a stray "=" in a link) is named as such, not as an empty field name
    ("prompt=hi&=x", "link key", "''"),
    ("=&=", "link key", "''"),
    ("prompt=hi&%20=1", "link key", "' '"),
])
def test_from_query_errors_name_the_field(query: str, field: str, value: str) -> None:
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_query(query)
    assert info.value.field == field and value in str(info.value)


@pytest.mark.parametrize("parse, data, field", [
    (PlaygroundConfig.from_dict, {"prompt": "hi", "": 1}, "config"),
    (PlaygroundConfig.from_dict, {"prompt": "hi", "params": {" ": 0.5}}, "params"),
    (from_dict, {"": 0.5}, "params"),
])
def test_a_blank_key_is_named_by_its_object(parse, data, field) -> None:
    """A blank key cannot name the field, so the message names the object holding it and quotes the key."""
    with pytest.raises(ParamError) as info:
        parse(data)
    assert info.value.field == field and str(info.value).startswith(f"{field}: must be an object whose keys")


def test_link_values_beyond_the_page_sliders_are_kept() -> None:
    config = PlaygroundConfig.from_query("prompt=hi&temperature=3&max_new_tokens=600&top_k=900&seed=4000000000")
    params = config.params
    assert (params.temperature, params.max_new_tokens, params.top_k, params.seed) == (3.0, 600, 900, 4_000_000_000)


def test_from_query_rejects_non_text_values() -> None:
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_query({"prompt": "hi", "samples": 3})  # type: ignore[dict-item]
    assert info.value.field == "samples"
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_query(["prompt=hi"])  # type: ignore[arg-type]
    assert info.value.field == "query"


# -- preset dicts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", TRICKY, ids=range(len(TRICKY)))
def test_dict_round_trip(config: PlaygroundConfig) -> None:
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data  # a -inf bias travels as JSON's -Infinity
    assert PlaygroundConfig.from_dict(json.loads(json.dumps(data))) == config


def test_dict_format() -> None:
    config = PlaygroundConfig("p", view="sweep", params=SamplingParams(temperature=0.5, stop=["\n"]),
                              axes=(("top_p", "0.5, 1"),))
    assert config.to_dict() == {"view": "sweep", "prompt": "p", "raw": False, "system_prompt": "", "samples": 3,
                                "params": {"temperature": 0.5, "stop": ["\n"]},
                                "axes": [{"name": "top_p", "values": "0.5, 1"}]}
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_dict({"prompt": "p", "outputs": ["frozen text"]})
    assert info.value.field == "outputs"
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_dict({"view": "sweep"})
    assert info.value.field == "prompt"
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_dict({"prompt": "p", "axes": [{"name": "top_p"}]})
    assert info.value.field == "axes"
    assert changed_params(EVERY_KNOB)["sequence_bias"] == [["the", -5.0], ["ban", float("-inf")], ["the", 1.0]]


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
