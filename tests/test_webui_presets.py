"""text-generation-webui and SillyTavern presets (playground/webui_presets.py): export, import, the order they run."""
import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ParamError
from engine.order import DEFAULT_ORDER, LAST_STAGES, ORDER_PRESETS
from engine.params import SamplingParams
from playground.config import PlaygroundConfig
from playground.webui_presets import (NICKNAMES, NOT_IN_WEBUI, preset, preset_yaml, read_preset, sillytavern_preset,
                                      sillytavern_preset_json)

BASE = PlaygroundConfig(prompt="Once upon a time", raw=True, params=SamplingParams(max_new_tokens=32))
WEBUI_DEFAULT_PRIORITY = [  # text-generation-webui modules/presets.py default_preset_values["sampler_priority"]
    "repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "top_n_sigma", "temperature",
    "dynamic_temperature", "quadratic_sampling", "top_k", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "tfs",
    "top_a", "min_p", "adaptive_p", "mirostat", "xtc", "encoder_repetition_penalty", "no_repeat_ngram"]


def changed(a: SamplingParams, b: SamplingParams) -> dict:
    return {k: (getattr(a, k), getattr(b, k)) for k in a.to_dict() if getattr(a, k) != getattr(b, k)}


def test_a_preset_without_an_order_runs_in_text_generation_webui_s_default_order():
    config, notes = read_preset("min_p: 0.02\nxtc_probability: 0.5\ntop_p: 0.95\n", BASE)
    assert config.params.order == ORDER_PRESETS["text-generation-webui"]
    assert (config.params.min_p, config.params.xtc_probability, config.params.top_p) == (0.02, 0.5, 0.95)
    assert config.params.dry_mode == "webui" and notes == []
    explicit, _ = read_preset({"sampler_priority": "\n".join(WEBUI_DEFAULT_PRIORITY)}, BASE)
    assert explicit.params.order == ORDER_PRESETS["text-generation-webui"]


def test_unlisted_samplers_run_first_and_temperature_last_moves_the_temperatures_to_the_end():
    config, _ = read_preset({"sampler_priority": ["min_p", "temperature", "top_k"], "temperature_last": True}, BASE)
    order = config.params.order
    listed = [n for n in order if n in ("min_p", "top_k", "temperature", "dynatemp", "smoothing")]
    assert listed == ["min_p", "top_k", "temperature", "dynatemp", "smoothing"]
    # every processor the list does not name runs before the first named one (text-generation-webui's key -1)
    first = order.index("min_p")
    assert set(order[:first]) == set(DEFAULT_ORDER) - {"min_p", "top_k", "temperature", "dynatemp", "smoothing",
                                                       *LAST_STAGES}
    assert order[-len(LAST_STAGES):] == LAST_STAGES and sorted(order) == sorted(DEFAULT_ORDER)


def test_units_and_switches_are_translated():
    config, notes = read_preset({"epsilon_cutoff": 3, "eta_cutoff": 0.5, "dynamic_temperature": True,
                                 "dynatemp_low": 0.5, "dynatemp_high": 2.0, "mirostat_mode": 2,
                                 "dry_multiplier": 0.8, "dry_sequence_breakers": '"\\n", ":", "\\"", "*", "—"'}, BASE)
    p = config.params
    assert p.epsilon_cutoff == pytest.approx(3e-4) and p.eta_cutoff == pytest.approx(0.5e-4)
    assert (p.dynatemp_low, p.dynatemp_high, p.mirostat) == (0.5, 2.0, 2)
    assert p.dry_sequence_breakers == ("\n", ":", "\"", "*", "—")
    off, _ = read_preset({"dynamic_temperature": False, "dynatemp_low": 0.5, "dynatemp_high": 2.0}, BASE)
    assert (off.params.dynatemp_low, off.params.dynatemp_high) == (1.0, 1.0)  # the switch is off: not applied


def test_what_has_no_equivalent_is_listed_never_dropped_silently():
    _, notes = read_preset({"repetition_penalty": 1.2, "repetition_penalty_range": 256, "mirostat_mode": 1,
                            "sampler_priority": ["top_k", "my_sampler"], "frobnicate": 7, "ban_eos_token": True,
                            "presence_penalty": 0.3}, BASE)
    text = "\n".join(notes)
    for key in ("repetition_penalty_range: 256", "mirostat_mode: 1", "'my_sampler'", "frobnicate: 7",
                "ban_eos_token", "presence and frequency penalties count the prompt"):
        assert key in text, key


def test_ban_eos_token_suppresses_the_model_s_end_tokens_when_they_are_known():
    config, notes = read_preset({"temp": 0.7, "ban_eos_token": True}, BASE, eos_token_ids=[2])
    assert config.params.suppress_tokens == (2,) and not any("ban_eos" in n for n in notes)


def test_a_sillytavern_preset_is_read_with_its_own_names():
    universal = {"temp": 1.5, "temperature_last": False, "top_p": 1, "top_k": 0, "top_a": 0, "tfs": 1,
                 "epsilon_cutoff": 0, "eta_cutoff": 0, "typical_p": 1, "min_p": 0.1, "rep_pen": 1,
                 "rep_pen_range": 0, "rep_pen_decay": 0, "rep_pen_slope": 1, "no_repeat_ngram_size": 0,
                 "penalty_alpha": 0, "num_beams": 1, "length_penalty": 1, "min_length": 0, "encoder_rep_pen": 1,
                 "freq_pen": 0, "presence_pen": 0, "skew": 0, "do_sample": True, "early_stopping": False,
                 "dynatemp": False, "min_temp": 0, "max_temp": 2, "dynatemp_exponent": 1, "smoothing_factor": 0,
                 "smoothing_curve": 1, "dry_allowed_length": 2, "dry_multiplier": 0, "dry_base": 1.75,
                 "dry_sequence_breakers": "[\"\\n\", \":\", \"\\\"\", \"*\"]", "dry_penalty_last_n": 0,
                 "add_bos_token": True, "ban_eos_token": False, "skip_special_tokens": True, "mirostat_mode": 0,
                 "mirostat_tau": 5, "mirostat_eta": 0.1, "guidance_scale": 1, "negative_prompt": "",
                 "grammar_string": "", "json_schema": {}, "banned_tokens": "",
                 "sampler_priority": ["temperature", "dynamic_temperature", "quadratic_sampling", "top_k", "top_p",
                                      "typical_p", "epsilon_cutoff", "eta_cutoff", "tfs", "top_a", "min_p", "mirostat"],
                 "samplers": ["top_k", "tfs_z", "typical_p", "top_p", "min_p", "temperature"],
                 "ignore_eos_token": False, "spaces_between_special_tokens": True, "speculative_ngram": False,
                 "sampler_order": [5, 6, 0, 1, 2, 3, 4], "logit_bias": [], "rep_pen_size": 0}
    config, notes = read_preset(json.dumps(universal), BASE)
    p = config.params
    assert (p.temperature, p.min_p, p.top_k) == (1.5, 0.1, 0)
    assert notes == []  # every key is mapped, transport, or another back end's switch left off
    # the repetition penalties are not in its sampler_priority, so they run before temperature
    assert p.order.index("repetition_penalty") < p.order.index("temperature") < p.order.index("min_p")
    with pytest.raises(ParamError, match=r"^temp \(the playground's temperature\)"):
        read_preset({**universal, "temp": -1}, BASE)


def test_sillytavern_s_dynamic_temperature_sends_the_mean_temperature():
    config, _ = read_preset({"temp": 0.7, "dynatemp": True, "min_temp": 0.5, "max_temp": 1.5}, BASE)
    p = config.params
    assert (p.temperature, p.dynatemp_low, p.dynatemp_high) == (1.0, 0.5, 1.5)


def test_bad_values_name_the_preset_s_key():
    for data, key in [({"min_p": 2}, "min_p"), ({"epsilon_cutoff": 1e6}, "epsilon_cutoff"),
                      ({"sampler_priority": 5}, "sampler_priority"), ({"temperature_last": "yes"}, "temperature_last"),
                      ({"dry_sequence_breakers": "\\n, :"}, "dry_sequence_breakers"), ("a: [1,", "preset"),
                      ("[1, 2]", "preset"), ({"dynamic_temperature": "on"}, "dynamic_temperature")]:
        with pytest.raises(ParamError) as info:
            read_preset(data, BASE)
        assert str(info.value).startswith(key), (data, str(info.value))


def test_the_export_is_a_preset_file_text_generation_webui_reads():
    config = BASE.replace(params=SamplingParams(temperature=0.7, min_p=0.05, epsilon_cutoff=3e-4, dynatemp_low=0.5,
                                                dynatemp_high=1.5, top_h=0.9, bad_words=("very",), max_new_tokens=32))
    text = preset_yaml(config)
    data = yaml.safe_load(text)
    assert data["epsilon_cutoff"] == 3.0 and data["dynamic_temperature"] is True
    assert data["sampler_priority"].split("\n") == [NICKNAMES[n] for n in config.params.order if n in NICKNAMES]
    assert "# top_h: 0.9 is not carried" in text and "# bad_words" in text
    order = SamplingParams(order=["top_h", "temperature"], top_h=0.9)  # top_h after a listed sampler
    assert "order" in preset(BASE.replace(params=order))[1]


def test_a_sillytavern_export_names_what_it_cannot_carry():
    config = BASE.replace(params=SamplingParams(top_h=0.5, early_stopping="never", num_beams=2, do_sample=False,
                                                max_new_tokens=32))
    data = json.loads(sillytavern_preset_json(config))
    assert data["num_beams"] == 2 and data["temp"] == 1.0
    # top_h has no equivalent, and in the default order it runs after samplers sampler_priority names
    assert set(data[NOT_IN_WEBUI]) == {"top_h", "early_stopping", "order", "max_new_tokens"}


# every knob text-generation-webui and SillyTavern presets both carry, with values in their ranges, in an order
# they can express (the processors sampler_priority cannot name first)
portable = st.fixed_dictionaries({"order": st.permutations([n for n in ORDER_PRESETS["text-generation-webui"] if n in NICKNAMES]).map(
        lambda names: [*(n for n in DEFAULT_ORDER if n not in NICKNAMES and n not in LAST_STAGES), *names,
                       *LAST_STAGES])}, optional={
    "temperature": st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.5]), "top_p": st.sampled_from([0.5, 0.9, 1.0]),
    "top_k": st.integers(0, 100), "min_p": st.sampled_from([0.0, 0.02, 0.1]), "typical_p": st.sampled_from([0.8, 1.0]),
    "tfs": st.sampled_from([0.9, 1.0]), "top_a": st.sampled_from([0.0, 0.2]),
    "epsilon_cutoff": st.sampled_from([0.0, 3e-4, 9e-4]), "eta_cutoff": st.sampled_from([0.0, 2e-4]),
    "xtc_probability": st.sampled_from([0.0, 0.5]), "xtc_threshold": st.sampled_from([0.1, 0.2]),
    "repetition_penalty": st.sampled_from([1.0, 1.15]), "presence_penalty": st.sampled_from([0.0, 0.4]),
    "frequency_penalty": st.sampled_from([0.0, 0.2]), "encoder_repetition_penalty": st.sampled_from([1.0, 1.1]),
    "no_repeat_ngram_size": st.integers(0, 4), "dry_multiplier": st.sampled_from([0.0, 0.8]),
    "dry_base": st.sampled_from([1.75, 2.0]), "dry_allowed_length": st.integers(1, 4),
    "dry_sequence_breakers": st.lists(st.sampled_from(["\n", ":", "\"", "*", "—", "'"]), unique=True).map(tuple),
    "smoothing_factor": st.sampled_from([0.0, 0.3]), "smoothing_curve": st.sampled_from([1.0, 2.0]),
    "mirostat": st.sampled_from([0, 2]), "mirostat_tau": st.sampled_from([5.0, 3.0]),
    "dynatemp_low": st.sampled_from([0.5, 1.0]), "dynatemp_high": st.sampled_from([1.0, 1.5]),
    "do_sample": st.booleans(), "seed": st.integers(0, 1000)})


@given(fields=portable, sillytavern=st.booleans())
def test_export_then_import_gives_the_same_settings(fields, sillytavern):
    params = SamplingParams(**{"max_new_tokens": 32, **fields})
    config = BASE.replace(params=params)
    if sillytavern:
        back, notes = read_preset(json.dumps(sillytavern_preset(config)), BASE)
        same_temperature = (params.dynatemp_low, params.dynatemp_high) == (1.0, 1.0) or \
            params.temperature == (params.dynatemp_low + params.dynatemp_high) / 2
        expected = params if same_temperature else params.replace(
            temperature=(params.dynatemp_low + params.dynatemp_high) / 2)
    else:
        back, notes = read_preset(preset_yaml(config), BASE)
        expected = params.replace(seed=BASE.params.seed)  # a text-generation-webui preset holds no seed
    assert changed(expected, back.params) == {}
