"""playground.controls without a model or a browser: the text forms of the list-valued knobs, the
widgets <-> SamplingParams round trip, readable errors for bad widget values, and the CONTROLS table itself."""
from __future__ import annotations

import dataclasses
import math

import pytest

from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import FIELD_NAMES, NUMERIC_FIELDS, SamplingParams
from playground.controls import (
    CONTROL_FIELDS,
    CONTROLS,
    GROUPS,
    parse_sequence_bias,
    parse_stop,
    parse_word_list,
    params_from_values,
    values_from_params,
)

INDEX = {field: i for i, field in enumerate(CONTROL_FIELDS)}


def widget_values(**changes):
    """The widget values of the default SamplingParams with some fields replaced (by name, in CONTROLS order)."""
    values = values_from_params(SamplingParams())
    for name, value in changes.items():
        values[INDEX[name]] = value
    return values


# -- stop ---------------------------------------------------------------------------------------------------

def test_parse_stop_one_string_per_line():
    assert parse_stop("END\nStop here") == ("END", "Stop here")


def test_parse_stop_backslash_n_means_newline():
    assert parse_stop(r"\n\n") == ("\n\n",)
    assert parse_stop("Q:\n" + r"a\nb") == ("Q:", "a\nb")


def test_parse_stop_drops_blank_lines():
    assert parse_stop("\nEND\n\n\nfin\n") == ("END", "fin")
    assert parse_stop("") == ()


def test_parse_stop_rejects_a_non_string():
    with pytest.raises(ParamError, match="^stop:"):
        parse_stop(["END"])  # type: ignore[arg-type]


# -- bad_words ----------------------------------------------------------------------------------------------

def test_parse_word_list_splits_on_commas_and_strips():
    assert parse_word_list("bad_words", "very, really ,  truly") == ("very", "really", "truly")


def test_parse_word_list_drops_empty_items():
    assert parse_word_list("bad_words", " , very,, ,really,") == ("very", "really")
    assert parse_word_list("bad_words", "") == ()


def test_parse_word_list_names_its_field_on_a_non_string():
    with pytest.raises(ParamError, match="^bad_words:"):
        parse_word_list("bad_words", 3)  # type: ignore[arg-type]


# -- sequence_bias ------------------------------------------------------------------------------------------

def test_parse_sequence_bias_word_colon_number_lines():
    assert parse_sequence_bias("the: -5\n a : 2.5 \n\n") == {"the": -5.0, "a": 2.5}


def test_parse_sequence_bias_splits_on_the_last_colon():
    assert parse_sequence_bias("Q: A: 3") == {"Q: A": 3.0}


def test_parse_sequence_bias_minus_inf_bans():
    bias = parse_sequence_bias("the: -inf")
    assert bias == {"the": -math.inf}


def test_parse_sequence_bias_json_object():
    assert parse_sequence_bias('{"the": -5, "a b": 1.5}') == {"the": -5, "a b": 1.5}
    assert parse_sequence_bias('  {"the": -5}') == {"the": -5}


def test_parse_sequence_bias_blank_is_empty():
    assert parse_sequence_bias("") == {}
    assert parse_sequence_bias("\n  \n") == {}


@pytest.mark.parametrize("text", ["the -5", "the", "word\nthe: 1"])
def test_parse_sequence_bias_line_without_colon_names_the_field(text):
    with pytest.raises(ParamError) as info:
        parse_sequence_bias(text)
    assert info.value.field == "sequence_bias"
    assert str(info.value).startswith("sequence_bias:")
    bad_line = next(line for line in text.splitlines() if ":" not in line)
    assert repr(bad_line) in str(info.value)


@pytest.mark.parametrize("text", ["the: lots", "the: ", ": 5", "the: nan", "the: 1e"])
def test_parse_sequence_bias_bad_number_or_word_names_the_field(text):
    with pytest.raises(ParamError) as info:
        parse_sequence_bias(text)
    assert info.value.field == "sequence_bias"
    assert repr(text) in str(info.value)


def test_parse_sequence_bias_bad_json_names_the_field():
    with pytest.raises(ParamError) as info:
        parse_sequence_bias('{"the": -5')
    assert info.value.field == "sequence_bias"
    assert "JSON" in str(info.value)


@pytest.mark.parametrize("text", ['{"the": "x"}', '{"the": 1e999}', '{"": 1}'])
def test_sequence_bias_json_with_bad_values_is_refused_by_params(text):
    """parse_sequence_bias passes a JSON object through; SamplingParams refuses bad entries, naming the field."""
    with pytest.raises(ParamError) as info:
        params_from_values(widget_values(sequence_bias=text), None)
    assert info.value.field == "sequence_bias"


# -- widgets <-> SamplingParams -----------------------------------------------------------------------------

ROUND_TRIP = [
    SamplingParams(),
    SamplingParams(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.95, epsilon_cutoff=0.0003,
                   eta_cutoff=0.0009, seed=1234, max_new_tokens=200, min_new_tokens=10),
    SamplingParams(stop=("\n\n", "END", "Q:\nA:"), bad_words=("very", "really"),
                   sequence_bias=(("the", -5.0), ("a", 2.5), ("never", -math.inf))),
    SamplingParams(repetition_penalty=1.3, presence_penalty=-0.5, frequency_penalty=1.2, no_repeat_ngram_size=3),
    SamplingParams(temperature=1.5, min_p=0.1, order=("min_p", "temperature")),
    SamplingParams(do_sample=False, max_new_tokens=16),
    SamplingParams(temperature=0.0, order=tuple(reversed(DEFAULT_ORDER))),
    SamplingParams(sequence_bias=(("the", 0.123456789), ("a", 1e-7), ("b", 12345678.0)), top_p=0.123456789),
    SamplingParams(dry_multiplier=0.8, dry_base=2.5, dry_allowed_length=3, dry_sequence_breakers=("\n\n", ",", " ", "END"),
                   xtc_probability=0.5, xtc_threshold=0.2, mirostat=2, mirostat_tau=3.5, mirostat_eta=0.25,
                   dynatemp_low=0.5, dynatemp_high=1.5, dynatemp_exponent=2.0, top_n_sigma=1.5, top_a=0.1, tfs=0.9),
    SamplingParams(dry_sequence_breakers=()),
]


@pytest.mark.parametrize("params", ROUND_TRIP, ids=range(len(ROUND_TRIP)))
def test_values_round_trip(params):
    values = values_from_params(params)
    assert len(values) == len(CONTROLS)
    assert params_from_values(values, list(params.order)) == params


def test_values_are_the_widget_forms():
    params = SamplingParams(stop=("\n\n", "END"), bad_words=("very", "really"), sequence_bias=(("the", -5.0),),
                            temperature=0.5, do_sample=False)
    values = dict(zip(CONTROL_FIELDS, values_from_params(params)))
    assert values["stop"] == "\\n\\n\nEND"  # a newline inside a stop string is shown as the two characters \n
    assert values["bad_words"] == "very, really"
    assert values["sequence_bias"] == "the: -5"
    assert values["temperature"] == 0.5
    assert values["do_sample"] is False


def test_sequence_bias_text_is_short_but_exact():
    params = SamplingParams(sequence_bias=(("the", -5.0), ("a", 0.5), ("b", 0.123456789), ("c", -math.inf)))
    text = values_from_params(params)[INDEX["sequence_bias"]]
    assert text == "the: -5\na: 0.5\nb: 0.123456789\nc: -inf"
    assert params_from_values(values_from_params(params), None).sequence_bias == params.sequence_bias


def test_greedy_round_trip_stays_greedy():
    for params in (SamplingParams(do_sample=False), SamplingParams(temperature=0.0)):
        back = params_from_values(values_from_params(params), None)
        assert back.greedy and back == params


def test_custom_order_is_kept_and_no_order_means_the_default():
    values = values_from_params(SamplingParams())
    custom = params_from_values(values, ["min_p", "temperature"])
    assert custom.order.index("min_p") < custom.order.index("temperature")
    assert params_from_values(values, None).order == DEFAULT_ORDER
    assert params_from_values(values, []).order == DEFAULT_ORDER


def test_widget_text_fields_parse_into_params():
    params = params_from_values(widget_values(stop="\\n\\n\n\nEND", bad_words="very, really",
                                              sequence_bias="the: -5\nnever: -inf"), None)
    assert params.stop == ("\n\n", "END")
    assert params.bad_words == ("very", "really")
    assert params.sequence_bias == (("the", -5.0), ("never", -math.inf))


def test_empty_text_fields_mean_none():
    params = params_from_values(widget_values(stop=None, bad_words=None, sequence_bias=None), None)
    assert params.stop == () and params.bad_words == () and params.sequence_bias == ()


def test_numeric_strings_are_accepted():
    params = params_from_values(widget_values(temperature="0.5", top_k="40", top_p="0.9", seed="7",
                                              max_new_tokens="12.0", presence_penalty="-1.5"), None)
    assert params.temperature == 0.5 and params.top_p == 0.9 and params.presence_penalty == -1.5
    assert params.top_k == 40 and isinstance(params.top_k, int)
    assert params.seed == 7 and isinstance(params.seed, int)
    assert params.max_new_tokens == 12 and isinstance(params.max_new_tokens, int)


def test_whole_floats_become_ints():
    params = params_from_values(widget_values(top_k=5.0, no_repeat_ngram_size=2.0, seed=3.0), None)
    assert (params.top_k, params.no_repeat_ngram_size, params.seed) == (5, 2, 3)
    assert all(isinstance(v, int) for v in (params.top_k, params.no_repeat_ngram_size, params.seed))


@pytest.mark.parametrize("field, value", [
    ("top_p", 2),
    ("top_p", 0),
    ("temperature", -1),
    ("max_new_tokens", 0),
    ("min_p", 1.5),
    ("presence_penalty", 3),
    ("no_repeat_ngram_size", -1),
    ("top_k", 2.5),
    ("seed", -1),
    ("seed", "abc"),
    ("temperature", "hot"),
    ("top_k", "inf"),
    ("temperature", "nan"),
    ("temperature", ""),
    ("seed", None),
    ("top_k", True),
    ("do_sample", "yes"),
])
def test_out_of_range_value_names_the_field_and_the_value(field, value):
    with pytest.raises(ParamError) as info:
        params_from_values(widget_values(**{field: value}), None)
    message = str(info.value)
    assert info.value.field == field
    assert message.startswith(f"{field}: must be ")
    assert message.endswith(f"got {value!r}") or message.endswith(f"got {float(value)!r}")


def test_min_new_tokens_above_max_names_min_new_tokens():
    with pytest.raises(ParamError, match=r"^min_new_tokens: must be <= max_new_tokens \(8\), got 9$"):
        params_from_values(widget_values(max_new_tokens=8, min_new_tokens=9), None)


def test_wrong_number_of_values_is_refused():
    with pytest.raises(ParamError, match="^controls:"):
        params_from_values(values_from_params(SamplingParams())[:-1], None)


def test_bad_order_names_order():
    with pytest.raises(ParamError, match="^order:"):
        params_from_values(values_from_params(SamplingParams()), ["top_p", "nucleus"])


# -- the CONTROLS table -------------------------------------------------------------------------------------

def test_every_knob_but_order_has_exactly_one_control():
    knobs = [name for name in FIELD_NAMES if name != "order"]
    assert sorted(CONTROL_FIELDS) == sorted(knobs)
    assert len(CONTROL_FIELDS) == len(set(CONTROL_FIELDS))
    assert "order" not in CONTROL_FIELDS


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.field)
def test_control_has_a_one_line_info_a_group_and_a_kind(control):
    assert control.info.strip() and "\n" not in control.info
    assert control.group in GROUPS
    assert control.kind in ("slider", "number", "checkbox", "text", "choice")


def test_every_group_has_controls():
    assert {c.group for c in CONTROLS} == set(GROUPS)


@pytest.mark.parametrize("control", [c for c in CONTROLS if c.kind in ("slider", "number")], ids=lambda c: c.field)
def test_numeric_control_range_is_valid_for_its_field(control):
    assert control.field in NUMERIC_FIELDS
    assert control.minimum is not None and control.maximum is not None and control.step
    assert control.minimum < control.maximum
    base = SamplingParams(max_new_tokens=512, num_beams=8)  # room for min_new_tokens' / num_return_sequences' range
    for value in (control.minimum, control.maximum):
        changes = {control.field: value}
        # diverse beam search: groups > 1 and diversity_penalty > 0 only make sense together (and greedy)
        if control.field == "num_beam_groups" and value > 1:
            changes.update(do_sample=False, diversity_penalty=1.0)
        if control.field == "max_length":  # max_length replaces max_new_tokens, which stays at its default
            changes.update(max_new_tokens=SamplingParams().max_new_tokens)
        if control.field in ("max_time", "guidance_scale", "prompt_lookup_num_tokens", "watermark_bias"):
            changes.update(num_beams=1)  # beam search has no time limit, no guidance, no drafts
        if control.field == "penalty_alpha" and value > 0:  # contrastive search: greedy, no beams, top_k > 1
            changes.update(do_sample=False, num_beams=1, top_k=4)
        if control.field == "diversity_penalty":
            if value == 0.0:  # off: fine without groups, refused with them
                assert base.replace(diversity_penalty=value).diversity_penalty == 0.0
                with pytest.raises(ParamError, match="^diversity_penalty: must be > 0 with num_beam_groups > 1"):
                    base.replace(do_sample=False, num_beam_groups=2, diversity_penalty=value)
                continue
            changes.update(do_sample=False, num_beam_groups=2)
        assert getattr(base.replace(**changes), control.field) == value


def test_non_numeric_controls_have_the_right_kind():
    kinds = {c.field: c.kind for c in CONTROLS}
    assert kinds["do_sample"] == "checkbox"
    assert {f for f, k in kinds.items() if k == "text"} == {"stop", "bad_words", "sequence_bias", "logit_bias",
                                                           "dry_sequence_breakers", "suppress_tokens",
                                                           "begin_suppress_tokens", "negative_prompt",
                                                           "synthid_keys", "force_words", "dola_layers",
                                                           "assistant_model"}
    defaults = {f.name: f.default for f in dataclasses.fields(SamplingParams)}
    for field, kind in kinds.items():
        if kind in ("slider", "number"):
            assert isinstance(defaults[field], (int, float)) and not isinstance(defaults[field], bool)


def test_logit_bias_lines_round_trip_and_errors_name_the_field():
    params = SamplingParams(logit_bias={"2": -100, 5: 3.5})
    values = values_from_params(params)
    assert values[CONTROL_FIELDS.index("logit_bias")] == "2: -100\n5: 3.5"
    assert params_from_values(values, None) == params
    for bad in ("2 -100", "two: 5", "2: 101", "-1: 5"):
        values[CONTROL_FIELDS.index("logit_bias")] = bad
        with pytest.raises(ParamError, match="^logit_bias: "):
            params_from_values(values, None)


def test_dry_sequence_breakers_are_lines_with_backslash_n_escapes():
    """One breaker per line, as stop strings: a comma or a space can be a breaker, \\n means a newline."""
    values = values_from_params(SamplingParams())
    assert values[INDEX["dry_sequence_breakers"]] == '\\n\n:\n"\n*'  # text-generation-webui's defaults
    params = params_from_values(widget_values(dry_sequence_breakers="\\n\n,\n \nQ:\\nA:\n\n"), None)
    assert params.dry_sequence_breakers == ("\n", ",", " ", "Q:\nA:")
    assert params_from_values(values_from_params(params), None) == params
    assert params_from_values(widget_values(dry_sequence_breakers=""), None).dry_sequence_breakers == ()
    with pytest.raises(ParamError, match="^dry_sequence_breakers:"):
        params_from_values(widget_values(dry_sequence_breakers=3), None)


@pytest.mark.parametrize("field, value", [("mirostat", 1), ("mirostat", 2.5), ("dry_allowed_length", 0),
                                          ("dynatemp_low", 0), ("tfs", 1.5), ("xtc_probability", "often")])
def test_more_samplers_bad_values_name_the_field(field, value):
    with pytest.raises(ParamError) as info:
        params_from_values(widget_values(**{field: value}), None)
    assert info.value.field == field and str(info.value).startswith(f"{field}: must be ")


def test_more_samplers_group_holds_every_new_knob_with_its_source():
    group = [c for c in CONTROLS if c.group == "More samplers"]
    assert GROUPS[-2:] == ("More samplers", "Watermarking")
    assert {c.field for c in group} == {
        "dry_multiplier", "dry_base", "dry_allowed_length", "dry_sequence_breakers", "dry_mode", "xtc_probability",
        "xtc_threshold", "mirostat", "mirostat_tau", "mirostat_eta", "dynatemp_low", "dynatemp_high",
        "dynatemp_exponent", "top_n_sigma", "top_a", "tfs", "smoothing_factor", "smoothing_curve", "adaptive_target",
        "adaptive_decay"}
    switches = {"dry_multiplier": "text-generation-webui", "adaptive_target": "llama.cpp", "xtc_probability": "llama.cpp", "mirostat": "Basu",
                "smoothing_factor": "text-generation-webui",
                "dynatemp_low": "text-generation-webui", "top_n_sigma": "Tang", "top_a": "text-generation-webui",
                "tfs": "Bricken"}
    for c in group:
        if c.field in switches:
            assert switches[c.field] in c.info, c.field
    # whole-number sliders come back as ints
    params = params_from_values(widget_values(mirostat=2.0, dry_allowed_length=3.0), None)
    assert params.mirostat == 2 and isinstance(params.dry_allowed_length, int)


def test_early_stopping_choice_round_trips_and_refuses_others():
    for value in (False, True, "never"):
        params = SamplingParams(num_beams=3, early_stopping=value)
        values = values_from_params(params)
        assert values[CONTROL_FIELDS.index("early_stopping")] == {False: "false", True: "true", "never": "never"}[value]
        assert params_from_values(values, None) == params
    values = values_from_params(SamplingParams())
    values[CONTROL_FIELDS.index("early_stopping")] = "sometimes"
    with pytest.raises(ParamError, match="^early_stopping: "):
        params_from_values(values, None)


def test_suppressed_tokens_take_words_and_bracketed_token_ids_and_round_trip():
    from playground.controls import format_token_list, parse_token_list, widget_value
    assert parse_token_list("suppress_tokens", " very, [42], [x], 2024 ,") == ("very", 42, "[x]", "2024")
    params = SamplingParams(suppress_tokens=["very", 42], begin_suppress_tokens=[7])
    assert widget_value("suppress_tokens", params.suppress_tokens) == "very, [42]"
    assert parse_token_list("begin_suppress_tokens", format_token_list(params.begin_suppress_tokens)) == (7,)
    assert params_from_values(values_from_params(params), None) == params


def test_watermarking_group_holds_both_watermarks_and_keys_round_trip():
    group = {c.field for c in CONTROLS if c.group == "Watermarking"}
    assert group == {"watermark_bias", "watermark_greenlist_ratio", "watermark_hashing_key", "watermark_seeding_scheme",
                     "watermark_context_width", "synthid_keys", "synthid_ngram_len", "synthid_sampling_table_size",
                     "synthid_sampling_table_seed", "synthid_context_history_size", "synthid_skip_first_ngram_calls"}
    params = params_from_values(widget_values(synthid_keys="654, 400", watermark_seeding_scheme="selfhash",
                                              watermark_bias=2.0), None)
    assert params.synthid_keys == (654, 400) and params.watermark_seeding_scheme == "selfhash"
    assert params_from_values(values_from_params(params), params.order) == params
