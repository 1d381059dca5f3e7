"""Axis value parsing and the playground's state: validation, share links, preset dicts (exports: test_exports.py)."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qs

import pytest

from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import SamplingParams, from_dict
from engine.values import changed_params, order_text, parse_axis_values
from configs import EVERY_KNOB, TRICKY
from playground.config import PlaygroundConfig


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
