"""Fuzzing the HTTP surfaces with the shapes that once broke them: lone surrogates, whole numbers beyond int64,
floats beyond float32 and tiny ones, odd logit_bias keys, deep nesting and wrong types, in the OpenAI routes
(/v1/completions, /v1/chat/completions) and the gradio /generate endpoint.

Every answer must be a 2xx or a 4xx with a message (never a 5xx, never an unexplained error), carry no NaN or
infinity and no null log-prob, and the server must still answer afterwards. The example count comes from the
Hypothesis profile (tests/conftest.py: "ci" by default, HYPOTHESIS_PROFILE=thorough for many more).
"""
from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assertions import assert_finite
from gradio_helpers import call_raw
from openai_helpers import assert_server_still_serves

# text with lone surrogates (category Cs), letters, digits, punctuation, spaces and control characters
TEXT = st.text(alphabet=st.characters(categories=["Cs", "L", "N", "P", "Zs", "Cc"]), max_size=12)
SURROGATE_TEXT = st.builds(lambda a, s, b: a + s + b, TEXT, st.sampled_from(["\ud800", "\udfff", "\udc00"]), TEXT)
TEXTS = st.one_of(TEXT, SURROGATE_TEXT, st.just("the"))
HUGE_INTS = st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 10**20, -(2**63) - 1, 10**30, 10**400])
EDGE_FLOATS = st.sampled_from([5e-324, 1e-45, 1e-38, 1e-30, 1e-10, 3.4e38, 3.5e38, 1e39, 1e308, -1e308,
                               -3.5e38, 1e20, 0.0, -0.0, math.nan, math.inf, -math.inf])


def nested(depth: int, as_object: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if as_object else [value]
    return value


NESTED = st.builds(nested, st.integers(1, 60), st.booleans())
WRONG_TYPES = st.one_of(st.none(), st.booleans(), NESTED, st.lists(st.integers(0, 3), max_size=2),
                        st.dictionaries(TEXTS, st.integers(), max_size=2))
NUMBERS = st.one_of(HUGE_INTS, EDGE_FLOATS, st.floats(-3, 3), st.integers(-5, 100))
ODD = st.one_of(NUMBERS, TEXTS, WRONG_TYPES)
LOGIT_BIAS_KEYS = st.one_of(st.integers(0, 60000).map(str), TEXTS, st.sampled_from(
    ["²", "--5", "-1", " 7 ", "1e3", "٣", "99999999999999999999999", "49152", ""]))
LOGIT_BIAS = st.dictionaries(LOGIT_BIAS_KEYS, st.one_of(st.floats(-100, 100), NUMBERS, TEXTS), min_size=1, max_size=3)
TEXT_FIELDS = ("bad_words", "stop", "dry_sequence_breakers")
# the fields fuzzed on both surfaces, those that once broke them more than once (never the lengths or the row
# count: a valid huge value would only be slow)
FIELDS = ["temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty",
          "presence_penalty", "frequency_penalty", "no_repeat_ngram_size", "bad_words", "sequence_bias", "seed",
          "dry_multiplier", "dry_base", "dry_allowed_length", "dry_sequence_breakers", "xtc_probability",
          "xtc_threshold", "mirostat", "mirostat_tau", "mirostat_eta", "dynatemp_low", "dynatemp_high",
          "dynatemp_exponent", "top_n_sigma", "top_a", "tfs", "do_sample", "order", "stop", "logit_bias",
          "top_k", "temperature", "repetition_penalty", "sequence_bias", "logit_bias", *TEXT_FIELDS]


def value_for(name: str) -> st.SearchStrategy:
    if name == "sequence_bias":
        return st.one_of(st.dictionaries(TEXTS, NUMBERS, min_size=1, max_size=2), ODD)
    if name == "logit_bias":
        return st.one_of(LOGIT_BIAS, ODD)
    if name in TEXT_FIELDS:
        return st.one_of(st.lists(TEXTS, min_size=1, max_size=3), ODD)
    if name == "dynatemp_low":  # dynamic temperature acts when low and high differ from 1
        return NUMBERS
    return ODD


KNOBS = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: value_for(n) for n in names}))
PROMPTS = st.one_of(st.just("Hello"), st.just("The capital of France is"), TEXTS, ODD)
EXTRAS = st.fixed_dictionaries({}, optional={"logprobs": st.one_of(st.just(True), ODD), "stream": st.booleans(),
                                             "unknown field \ud800 é": ODD})


def strict_json(text: str) -> Any:
    """JSON as a strict client reads it: NaN / Infinity are not JSON."""
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a response")
    return json.loads(text, parse_constant=refuse)


def check_v1_response(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                payload = strict_json(line[len("data: "):])
                assert "error" not in payload, payload
                assert_finite(payload)
        return
    body = strict_json(response.text)
    if response.status_code >= 400:
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"], body
    assert_finite(body)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(prompt=PROMPTS, knobs=KNOBS, extras=EXTRAS, chat=st.booleans())
def test_v1_routes_never_fail_on_odd_input(http, prompt, knobs, extras, chat):
    body: dict[str, Any] = {"model": "x", "max_tokens": 2, **knobs, **extras}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    response = http.post("/chat/completions" if chat else "/completions", content=json.dumps(body),
                         headers={"content-type": "application/json"})
    check_v1_response(response)


# /generate's prefix (branching): none, a text, token ids (in and out of the vocabulary, beyond int64), one per
# sample, too many for max_new_tokens = 2, or something else entirely
TOKEN_IDS = st.lists(st.one_of(st.integers(0, 49_151), HUGE_INTS, st.integers(-5, -1)), max_size=3)
PREFIXES = st.one_of(st.none(), TEXTS, TOKEN_IDS, st.lists(st.one_of(TEXTS, TOKEN_IDS), min_size=1, max_size=3), ODD)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          max_examples=max(5, settings.default.max_examples // 3))
@given(prompt=PROMPTS, knobs=KNOBS, samples=st.one_of(st.just(1), st.just(2), ODD),
       raw=st.one_of(st.just(False), st.just(True), ODD), system_prompt=st.one_of(st.just(""), TEXTS, ODD),
       prefix=PREFIXES)
def test_gradio_generate_never_fails_on_odd_input(app_url, prompt, knobs, samples, raw, system_prompt, prefix):
    params = {**knobs, "max_new_tokens": 2}
    event, data = call_raw(app_url, "generate", [prompt, params, samples, raw, system_prompt, prefix])
    if event == "error":  # a gr.Error with the field's message; an unhandled exception has none
        message = data.get("error") if isinstance(data, dict) else data
        assert isinstance(message, str) and message, data
    else:
        assert event == "complete"
        assert_finite(data)


def test_the_server_still_answers_after_the_fuzzing(http, app_url):
    assert_server_still_serves(http)
    event, data = call_raw(app_url, "generate", ["Hi", {"max_new_tokens": 2, "temperature": 0}, 1])
    assert event == "complete" and data[0]["samples"][0]["text"] is not None
