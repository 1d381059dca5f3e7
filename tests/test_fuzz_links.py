"""Fuzzing the share-link and preset parsers (PlaygroundConfig.from_query / from_dict) and the exports built from
what they accept. A link is user input that reaches the server as the page's query (the page's load event reads
it); a preset is JSON. No model: these run in the fast lane.

Every input ends in a PlaygroundConfig or a ParamError naming a field, never another exception; an accepted
config survives its own link exactly, and its exports (Python snippet, generation_config JSON, OpenAI request)
are built without error and hold no NaN or infinity. The example count comes from the Hypothesis profile
(tests/conftest.py: "ci" by default, HYPOTHESIS_PROFILE=thorough for many more).
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assertions import assert_finite
from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import FIELD_NAMES
from playground.config import PlaygroundConfig
from playground.exports import export_notes_text, generate_snippet, generation_config_json, openai_request_json

STATE_KEYS = ["prompt", "raw", "system", "view", "samples", "sample", "step", "color_by", "independent_seeds", "axis",
              "prefix", "prefix_ids", "first_sample"]
KEYS = st.one_of(st.sampled_from(STATE_KEYS), st.sampled_from(FIELD_NAMES),
                 st.sampled_from(["", "system_prompt", "axes", "Prompt", "temperature ", "%00", "a[b]"]),
                 st.text(max_size=6))
# value texts as a link carries them: numbers at the edges, JSON, ranges, order texts, odd characters
VALUE_TEXTS = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "0.5", "1e308", "1e309", "-0", "NaN", "Infinity", "-Infinity", "true", "false",
                     "null", "[]", "{}", '["\\n"]', '{"the": -5}', '{"a": NaN}', "99999999999999999999", "2.0", " 3 ",
                     "[[[[[[[[", "generate", "sweep", "distributions", "raw", "final", "temperature:0.2,0.9",
                     "temperature:0:1:0.25", "order:min_p>temperature,top_k>top_p", "top_k:1,1", "seed:0:63:1",
                     "temperature:", ":0.5", "stop:[\"a,b\"],[\"x\"]", "sequence_bias:{\"a:b\": -5}, {}",
                     # a branch's forced start: token ids (good, malformed, out of range, too many), a sample index
                     "504,2213,30", " 5 , 6 ", "1,,2", "-1,2", "1.0,2", "[1,2]", "2147483647", "2147483648",
                     ",".join(["7"] * 70), "max_new_tokens:1,2", "num_beams:1,2"]),
    st.lists(st.integers(min_value=-2, max_value=2**31 + 1), min_size=1, max_size=4).map(
        lambda ids: ",".join(map(str, ids))),
    st.lists(st.sampled_from([*DEFAULT_ORDER, "nope", ""]), max_size=3).map(">".join),
    st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"]), max_size=10),
    st.integers().map(str), st.floats().map(str))
PAIRS = st.lists(st.tuples(KEYS, VALUE_TEXTS), max_size=6)


def link_forms(pairs: list[tuple[str, str]]) -> list[Any]:
    """The forms a link reaches from_query in: a query, a whole URL, "?query", and a parse_qs-like mapping."""
    try:
        query = urlencode(pairs, safe=":,")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: sent as it is, unencoded
        query = "&".join(f"{key}={value}" for key, value in pairs)
    mapping: dict[str, list[str]] = {}
    for key, value in pairs:
        mapping.setdefault(key, []).append(value)
    return [query, "?" + query, "https://example.org/p/?" + query + "#x", mapping]


def check_accepted(config: PlaygroundConfig) -> None:
    """An accepted config: its link reads back as itself, and every export is built and finite."""
    assert PlaygroundConfig.from_query(config.to_query()) == config
    assert PlaygroundConfig.from_dict(config.to_dict()) == config
    compile(generate_snippet(config, "some/model"), "<snippet>", "exec")
    for text in (generation_config_json(config), openai_request_json(config, "m")):
        assert_finite(json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c))))
    assert isinstance(export_notes_text(config), str)


def parse_or_refuse(parse, value: Any) -> PlaygroundConfig | None:
    try:
        return parse(value)
    except ParamError as exc:  # any other exception fails the test
        assert exc.field and str(exc).startswith(f"{exc.field}: must be "), exc
        return None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(pairs=PAIRS, with_prompt=st.booleans())
def test_share_links_parse_or_name_the_field(pairs, with_prompt):
    if with_prompt:
        pairs = [("prompt", "Hello"), *pairs]
    for form in link_forms(pairs):
        config = parse_or_refuse(PlaygroundConfig.from_query, form)
        if config is not None:
            check_accepted(config)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=40), prefix=st.sampled_from(["", "?", "https://h/?", "http://[::1/?", "//h/?"]))
def test_any_text_as_a_link_parses_or_names_the_field(text, prefix):
    config = parse_or_refuse(PlaygroundConfig.from_query, prefix + text)
    if config is not None:
        check_accepted(config)
    config = parse_or_refuse(PlaygroundConfig.from_query, prefix + quote(text, safe="=&"))
    if config is not None:
        check_accepted(config)


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=8)
PRESET_KEYS = ["prompt", "raw", "system_prompt", "params", "samples", "axes", "view", "sample", "step", "color_by",
               "independent_seeds", "prefix", "prefix_ids", "first_sample"]
PRESET_VALUES = {
    "params": st.one_of(st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=3), JSON_VALUES),
    "axes": st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(FIELD_NAMES), "values": VALUE_TEXTS}),
                               max_size=4), JSON_VALUES),
    "prefix_ids": st.one_of(st.lists(st.integers(min_value=-2, max_value=2**31 + 1), max_size=5), JSON_VALUES),
    "first_sample": st.one_of(st.integers(min_value=-2, max_value=2**31 + 1), JSON_VALUES),
}
PRESETS = st.one_of(
    st.fixed_dictionaries({"prompt": st.just("Hello")},
                          optional={key: PRESET_VALUES.get(key, st.one_of(VALUE_TEXTS, JSON_VALUES))
                                    for key in PRESET_KEYS if key != "prompt"}),
    st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3), JSON_VALUES)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(preset=PRESETS)
def test_preset_json_parses_or_names_the_field(preset):
    config = parse_or_refuse(PlaygroundConfig.from_dict, preset)
    if config is not None:
        check_accepted(config)
