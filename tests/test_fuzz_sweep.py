"""Fuzzing the gradio /sweep and /distribution endpoints over Gradio's plain HTTP API (tests/test_fuzz_api.py does
/generate and the /v1 routes, with the same value strategies).

/sweep: axis specs with every field, odd values, empty / long / huge lists, values as text (ranges, brackets),
wrong types, duplicate axes, extra or missing keys, order axes with bad names, plus odd base params, samples,
raw, system prompt and independent_seeds. /distribution: run ids that do not exist, outputs and steps out of
range, wrong types, whole numbers beyond int64, NaN and infinity.

Every call ends in a result or in a gr.Error whose message names the field ("field: must be ..., got ..."),
never Gradio's bare error (an unhandled exception has no message); a result holds no NaN or infinity; the server
still answers afterwards. Outputs are 2 tokens long so that a valid sweep costs a second on 2 CPU cores.
The example count comes from the Hypothesis profile (tests/conftest.py: "ci" by default, HYPOTHESIS_PROFILE=thorough).
"""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as count_outcome
from hypothesis import strategies as st

from assertions import assert_finite
from engine.order import DEFAULT_ORDER
from engine.params import FIELD_NAMES
from gradio_helpers import call_raw
from openai_helpers import assert_server_still_serves
from test_fuzz_api import EDGE_FLOATS, HUGE_INTS, KNOBS, ODD, TEXTS, WRONG_TYPES, value_for

MAX_NEW_TOKENS = 2


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, rare_in_10: int = 2) -> st.SearchStrategy:
    """`common` in most examples, `rare` in rare_in_10 of 10 (st.one_of weighs its branches alike, and an odd
    argument that is checked first would end most calls before the part under test is read)."""
    return st.integers(1, 10).flatmap(lambda roll: rare if roll > 10 - rare_in_10 else common)

# fields whose valid values make a run long or wide (steps, beams): only small valid values, or invalid ones
LENGTH_FIELDS = frozenset({"max_new_tokens", "min_new_tokens", "num_beams", "num_return_sequences", "num_beam_groups",
                           "exponential_decay_start"})
SMALL_OR_INVALID = st.one_of(st.integers(-2, 4), HUGE_INTS, EDGE_FLOATS, TEXTS, WRONG_TYPES)
# processor names, some of them wrong, joined as the page's "a>b" text or given as a list
ORDER_NAMES = st.lists(st.sampled_from([*DEFAULT_ORDER, "nope", "", " top_k ", "TOP_K", "top-k", ">"]), max_size=4)
ORDER_VALUE = st.one_of(ORDER_NAMES, ORDER_NAMES.map(">".join), ODD)
# text forms of an axis, as the page's axis box sends them: lists, ranges, brackets, nothing
AXIS_TEXTS = st.one_of(TEXTS, st.sampled_from([
    "", " ", ",", ",,", "0.2, 0.9", "0.1:0.9:0.2", "0:1:0.25, 0.5", "1:2:0", "2:1:0.5", "0:1e300:1e-300", "1e999:1e999:1",
    "0:1:0.015625", '["\\n"], ["a,b"]', "[", "]]]", '"unclosed', "{\"a\": -Infinity}, {}", "NaN, Infinity",
    "temperature>min_p, min_p>temperature", "a>b, >", "true, false", "null", "1:2:3"]))
# huge lists of one repeated value: refused by the row or cell bound before any work
BIG_LENGTHS = st.sampled_from([513, 4097, 100_000])


def axis_values(name: str) -> st.SearchStrategy:
    one = ORDER_VALUE if name == "order" else SMALL_OR_INVALID if name in LENGTH_FIELDS else value_for(name)
    return st.one_of(st.lists(one, max_size=3), AXIS_TEXTS, ODD,
                     st.tuples(one, BIG_LENGTHS).map(lambda pair: [pair[0]] * pair[1]))


# values each accepted for their field, so that many examples run a real sweep and reach the result's checks
GOOD_VALUES: dict[str, list[Any]] = {
    "temperature": [0, 0.5, 1.5, 100], "top_k": [0, 1, 50], "top_p": [0.5, 1.0], "min_p": [0.0, 0.2],
    "seed": [0, 1, 2**63 - 1], "repetition_penalty": [1.0, 1.5], "do_sample": [True, False], "num_beams": [1, 2],
    "stop": [["\n"], ["a", "b"], "."], "sequence_bias": [{"the": -5}, {}, {"Hello": -math.inf}],
    "logit_bias": [{"5": -100}, {}], "bad_words": [["Hello"], []], "typical_p": [0.5, 1.0], "xtc_probability": [0, 1],
    "order": ["", "min_p>temperature", ["top_k", "temperature"], [*reversed(DEFAULT_ORDER)]],
}
GOOD_AXIS = st.sampled_from(sorted(GOOD_VALUES)).flatmap(lambda name: st.fixed_dictionaries({
    "name": st.just(name), "values": st.lists(st.sampled_from(GOOD_VALUES[name]), min_size=1, max_size=3)}))
AXIS_NAMES = st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(["order", "temperature", "seed"]),
                       st.sampled_from(["", "temp", "Temperature", "axis", "values"]), TEXTS)
AXIS = AXIS_NAMES.flatmap(lambda name: st.fixed_dictionaries({"name": st.just(name), "values": axis_values(name)}))
# the shape of one axis entry: as documented, with an extra key, a key missing, a name of another type, or no dict
ODD_AXIS = st.one_of(
    AXIS.map(lambda axis: {**axis, "extra": 1}), AXIS.map(lambda axis: {"name": axis["name"]}),
    AXIS.map(lambda axis: {"values": axis["values"]}), st.builds(lambda name, values: {"name": name, "values": values},
                                                                 st.one_of(st.none(), st.integers(), st.lists(TEXTS)),
                                                                 st.lists(st.floats(0, 1), max_size=2)), ODD)
AXES = st.one_of(
    st.lists(mostly(GOOD_AXIS, st.one_of(AXIS, ODD_AXIS), rare_in_10=4), max_size=3,
             unique_by=lambda axis: str(axis.get("name")) if isinstance(axis, dict) else repr(axis)),
    st.lists(GOOD_AXIS, min_size=4, max_size=4),  # one axis too many
    AXIS.map(lambda axis: [axis, axis]),  # the same axis twice
    st.lists(AXIS, min_size=1, max_size=2).map(lambda axes: axes + [{"name": axes[0]["name"], "values": [1.0]}]),
    ODD)
BASE_PARAMS = mostly(st.just({}), st.one_of(KNOBS, ODD), rare_in_10=3).map(
    lambda knobs: {**knobs, "max_new_tokens": MAX_NEW_TOKENS} if isinstance(knobs, dict) else knobs)
# the other arguments are valid in most examples (an odd one ends the call before the axes are read) and odd in a few
VALID_ARGS = {"prompt": "Hello", "samples": 1, "raw": False, "system_prompt": "", "independent_seeds": False}
ODD_ARGS = {"prompt": st.one_of(TEXTS, ODD), "samples": st.one_of(st.just(2), ODD), "raw": st.one_of(st.just(True), ODD),
            "system_prompt": st.one_of(st.none(), TEXTS, ODD), "independent_seeds": st.one_of(st.just(True), ODD)}
OTHER_ARGS = mostly(
    st.sampled_from([{}, {}, {"independent_seeds": True}, {"samples": 2}]),
    st.sampled_from(sorted(ODD_ARGS)).flatmap(lambda name: ODD_ARGS[name].map(lambda value: {name: value})),
).map(lambda changed: {**VALID_ARGS, **changed})
# a few of the strings an unhandled exception or a server fault would show instead of the field's message
UNEXPLAINED = ("The upstream Gradio app has raised an exception", "Traceback", "Internal Server Error")


def check_error_message(data: Any, in_hypothesis: bool = False) -> str:
    """A gr.Error from the endpoint: a message "field: must be ..., got ..." (a ParamError's form), which names the
    field. Gradio sends no message (null) for an exception it did not expect."""
    message = data.get("error") if isinstance(data, dict) else data
    assert isinstance(message, str) and message, f"an error without a message: {data!r}"
    assert not any(text in message for text in UNEXPLAINED), message
    field, sep, _ = message.partition(": must be ")
    assert sep and field.strip(), f"the message names no field: {message!r}"
    if in_hypothesis:  # --hypothesis-show-statistics shows which checks the examples reached (ascii: lone surrogates)
        count_outcome(f"error: {ascii(field[:40])}")
    return message


def check_sweep_result(data: Any, axes: Any) -> None:
    assert isinstance(data, list) and len(data) == 1, data
    result = data[0]
    assert_finite(result, "sweep")
    assert isinstance(result["run_id"], str) and result["run_id"]
    assert result["samples"] and all(isinstance(sample["text"], str) for sample in result["samples"])
    if isinstance(axes, list) and all(isinstance(axis["values"], list) for axis in axes):
        assert len(result["cells"]) == math.prod(len(axis["values"]) for axis in axes)  # one row per cell


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(params=BASE_PARAMS, axes=AXES, args=OTHER_ARGS)
def test_gradio_sweep_never_fails_on_odd_input(app_url, params, axes, args):
    event, data = call_raw(app_url, "sweep", [args["prompt"], params, axes, args["samples"], args["raw"],
                                              args["system_prompt"], args["independent_seeds"]])
    if event == "error":
        check_error_message(data, in_hypothesis=True)
    else:
        assert event == "complete", (event, data)
        count_outcome("complete")
        check_sweep_result(data, axes)


@pytest.fixture(scope="module")
def runs(app_url) -> dict[str, tuple[int, int]]:
    """Two finished runs to ask /distribution about: run id -> (outputs, tokens per output)."""
    made = {}
    for api, args, rows in (("generate", ["Hello", {"max_new_tokens": 3, "min_new_tokens": 3}, 2], 2),
                            ("sweep", ["Hello", {"max_new_tokens": 3, "min_new_tokens": 3},
                                       [{"name": "temperature", "values": [0, 1.5]}], 1, False, "", True], 2)):
        event, data = call_raw(app_url, api, args)
        assert event == "complete", data
        made[data[0]["run_id"]] = (rows, 3)
    return made


def finite_result_or_error(app_url: str, api_name: str, args: list) -> dict | None:
    """The endpoint's result, checked finite, or None after checking that its error names a field."""
    event, data = call_raw(app_url, api_name, args)
    if event == "error":
        check_error_message(data, in_hypothesis=True)
        return None
    assert event == "complete", (event, data)
    count_outcome("complete")
    assert_finite(data[0], api_name)
    return data[0]


# valid indexes (0 to 2 answer for both runs) in most examples, so that the odd ones meet a known run
ODD_INDEXES = st.one_of(st.integers(-2, 4).map(float), HUGE_INTS, EDGE_FLOATS,
                        st.sampled_from([-1, 3, 4, 0.5, 1.5, "1", "0", "", " 1", True, False, None, [0], {"0": 0}]), ODD)
INDEXES = mostly(st.integers(0, 1), ODD_INDEXES, rare_in_10=3)
TOP_N = mostly(st.integers(1, 100), st.one_of(st.integers(-1, 102), HUGE_INTS, EDGE_FLOATS, ODD))
UNKNOWN_RUN_IDS = st.one_of(st.sampled_from(["", "0" * 12, "nope", " ", "run_id"]),
                            st.text(alphabet="0123456789abcdef", min_size=12, max_size=12), TEXTS, ODD)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(choice=st.data(), sample=INDEXES, step=INDEXES, top_n=TOP_N)
def test_gradio_distribution_never_fails_on_odd_input(app_url, runs, choice, sample, step, top_n):
    run_id = choice.draw(mostly(st.sampled_from(sorted(runs)), UNKNOWN_RUN_IDS), label="run_id")
    result = finite_result_or_error(app_url, "distribution", [run_id, sample, step, top_n])
    if result is None:
        return
    outputs, tokens = runs[run_id]  # only a known run answers
    assert 0 <= result["sample"] < outputs and 0 <= result["step"] < tokens
    assert result["sample"] == sample and result["step"] == step  # 1.0 is 1; never another output or step
    assert result["stages"] and all(len(stage["tokens"]) <= top_n for stage in result["top_tokens"])


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(choice=st.data(), sample=INDEXES, other=INDEXES)
def test_gradio_compare_never_fails_on_odd_input(app_url, runs, choice, sample, other):
    run_id = choice.draw(mostly(st.sampled_from(sorted(runs)), UNKNOWN_RUN_IDS), label="run_id")
    result = finite_result_or_error(app_url, "compare", [run_id, sample, other])
    if result is None:
        return
    outputs, tokens = runs[run_id]
    assert result["sample"] == sample and result["other"] == other and 0 <= other < outputs
    assert 1 <= len(result["steps"]) <= tokens and all(0 <= s["TV"] <= 1 + 1e-6 for s in result["steps"])


@pytest.mark.parametrize("sample, step, field", [
    (math.nan, 0, "sample"), (0, math.inf, "step"), (2**64, 0, "sample"), (0, -1, "step"), (10**400, 0, "sample"),
    (1.5, 0, "sample"), ("1", 0, "sample"), (True, 0, "sample"), (0, 3, "step"), (2, 0, "sample")])
def test_distribution_out_of_range_names_the_field(app_url, runs, sample, step, field):
    run_id = next(iter(runs))  # the generate run: 2 outputs of 3 tokens
    event, data = call_raw(app_url, "distribution", [run_id, sample, step, 20])
    assert event == "error" and check_error_message(data).startswith(f"{field}: ")


@pytest.mark.parametrize("axes, field", [
    ([], None), (None, None),
    ([{"name": "temperature", "values": []}], "axis temperature"),
    ([{"name": "temperature", "values": [0.2]}, {"name": "temperature", "values": [0.9]}], "axes"),
    ([{"name": "order", "values": ["top_k>nope"]}], "order"),
    ([{"name": "order", "values": ["top_k>top_k"]}], "order"),
    ([{"name": "temperature", "values": [math.nan]}], "temperature"),
    ([{"name": "temperature", "values": [0.5] * 100_000}], "axes"),
    ([{"name": "seed", "values": list(range(513))}], "rows"),
    ([{"name": "temperature", "values": "0:1e300:1e-300"}], "axis temperature"),
    ([{"name": "temperature", "values": [0.5], "extra": 1}], "axes"),
    ([{"name": 5, "values": [0.5]}], "axes"),
    ([{"name": "temp", "values": [0.5]}], "axis"),
])
def test_sweep_axes_edge_cases(app_url, axes, field):
    event, data = call_raw(app_url, "sweep", ["Hello", {"max_new_tokens": MAX_NEW_TOKENS}, axes, 1, False, "", False])
    if field is None:
        assert event == "complete", data
        check_sweep_result(data, axes)
    else:
        assert event == "error" and check_error_message(data).startswith(f"{field}: ")


def raw_events(app_url: str, api_name: str, data: list) -> tuple[str, object]:
    """A plain HTTP call with exactly these arguments (no padding): the last event's name and data."""
    import httpx

    with httpx.Client(timeout=120) as http:
        started = http.post(f"{app_url}gradio_api/call/{api_name}", json={"data": data})
        events = http.get(f"{app_url}gradio_api/call/{api_name}/{started.json()['event_id']}").text
    names = [line[len("event: "):] for line in events.splitlines() if line.startswith("event: ")]
    last_data = [line for line in events.splitlines() if line.startswith("data: ")][-1]
    return names[-1], json.loads(last_data[len("data: "):])


def test_a_raw_call_may_leave_out_trailing_arguments(app_url):
    """Gradio's HTTP API wants every argument; the page fills in the documented defaults of those left out."""
    event, data = raw_events(app_url, "sweep", ["Hello", {"max_new_tokens": 2}])
    assert event == "complete" and len(data[0]["samples"]) == 1
    event, data = raw_events(app_url, "generate", ["Hello", {"max_new_tokens": 2}, 2, False, ""])  # 5 of 6
    assert event == "complete" and len(data[0]["samples"]) == 2


def test_a_raw_call_without_a_required_argument_gets_a_message(app_url):
    for api_name in ("sweep", "generate", "distribution", "compare"):
        event, data = raw_events(app_url, api_name, [])
        assert event == "error"
        assert check_error_message(data).startswith(("prompt: must be given", "run_id: must be given")), data


def test_the_server_still_answers_after_the_sweep_fuzzing(http, app_url):
    assert_server_still_serves(http)
    event, data = call_raw(app_url, "sweep", ["Hi", {"max_new_tokens": 2, "temperature": 0},
                                              [{"name": "top_k", "values": [1, 2]}], 1, False, "", False])
    assert event == "complete" and len(data[0]["cells"]) == 2
