"""text-generation-webui preset files (YAML) and SillyTavern "Text Completion" presets (JSON): export and import.

text-generation-webui (modules/presets.py, modules/sampler_hijack.py, modules/text_generation.py) names most of
its samplers as we do; three things differ:
- epsilon_cutoff and eta_cutoff are in units of 1e-4 there (text_generation.py multiplies them by 1e-4);
- dynamic temperature is a switch (`dynamic_temperature`) with dynatemp_low / dynatemp_high / dynatemp_exponent;
- the order is `sampler_priority` (its nicknames: `dynamic_temperature`, `quadratic_sampling`, `no_repeat_ngram`)
  with `temperature_last`, which moves temperature, dynamic temperature and quadratic sampling to the end;
  processors the list does not name run first (its sort key is -1), as in our "text-generation-webui" preset.
SillyTavern's presets use their own short names (`temp`, `rep_pen`, `min_temp`, ...) for the same request that it
sends to text-generation-webui (public/scripts/textgen-settings.js); they are renamed and read the same way.

Import, as for llama.cpp (playground/llamacpp.py): every key is mapped, or listed in a note saying why it has no
equivalent; never dropped silently. A bad value is a ParamError naming the preset's key.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import yaml

from engine.errors import ParamError
from engine.knobs import DRY_SEQUENCE_BREAKERS, PROCESSORS
from engine.order import DEFAULT_ORDER, LAST_STAGES
from engine.params import FIELD_NAMES, SamplingParams

from .config import PlaygroundConfig
from .llamacpp import params_from_fields

NOT_IN_WEBUI = "_not_in_text_generation_webui"
# Our field -> text-generation-webui's key of the same meaning and scale. guidance_scale and penalty_alpha are
# mapped when this playground has them (FIELD_NAMES), and listed as lacking otherwise.
SAME = {name: name for name in (
    "temperature", "top_p", "top_k", "min_p", "typical_p", "top_n_sigma", "xtc_threshold", "xtc_probability",
    "tfs", "top_a", "adaptive_target", "adaptive_decay", "dry_multiplier", "dry_base", "dry_allowed_length",
    "repetition_penalty", "presence_penalty", "frequency_penalty", "encoder_repetition_penalty",
    "no_repeat_ngram_size", "smoothing_factor", "smoothing_curve", "dynatemp_exponent", "mirostat_tau",
    "mirostat_eta", "do_sample", "guidance_scale", "negative_prompt", "penalty_alpha") if name in FIELD_NAMES}
PER_TEN_THOUSAND = ("epsilon_cutoff", "eta_cutoff")  # webui's value x 1e-4 = ours
# our processor -> its sampler_priority nickname
NICKNAMES = {"repetition_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
             "frequency_penalty": "frequency_penalty", "dry": "dry", "top_n_sigma": "top_n_sigma",
             "temperature": "temperature", "dynatemp": "dynamic_temperature", "smoothing": "quadratic_sampling",
             "top_k": "top_k", "top_p": "top_p", "typical_p": "typical_p", "epsilon_cutoff": "epsilon_cutoff",
             "eta_cutoff": "eta_cutoff", "tfs": "tfs", "top_a": "top_a", "min_p": "min_p", "adaptive_p": "adaptive_p",
             "mirostat": "mirostat", "xtc": "xtc", "encoder_repetition_penalty": "encoder_repetition_penalty",
             "no_repeat_ngram": "no_repeat_ngram"}
PROCESSOR_OF = {nick: ours for ours, nick in NICKNAMES.items()}
TEMPERATURE_LAST = ("temperature", "dynamic_temperature", "quadratic_sampling")  # what temperature_last moves
# SillyTavern's preset key -> text-generation-webui's (the request SillyTavern sends it)
SILLYTAVERN_NAMES = {"temp": "temperature", "rep_pen": "repetition_penalty", "rep_pen_range": "repetition_penalty_range",
                     "freq_pen": "frequency_penalty", "presence_pen": "presence_penalty",
                     "encoder_rep_pen": "encoder_repetition_penalty", "dynatemp": "dynamic_temperature",
                     "min_temp": "dynatemp_low", "max_temp": "dynatemp_high", "mirostat_mode": "mirostat_mode"}
# SillyTavern keys that exist only there and map to ours (its request carries them to text-generation-webui)
SILLYTAVERN_OWN = ("seed", "num_beams", "length_penalty", "early_stopping", "min_length", "ban_eos_token")
# keys that change nothing the playground computes: how text is sent, shown or tokenized, other back ends' fields
IGNORED = frozenset({"streaming", "n", "skip_special_tokens", "spaces_between_special_tokens", "add_bos_token",
                     "legacy_api", "custom_model", "bypass_status_check", "openrouter_allow_fallbacks",
                     "max_tokens_second", "sampler_order", "samplers", "type", "server_urls", "rep_pen_size",
                     "grammar_string", "json_schema"})


def _reason(field: str) -> str:
    reasons = {"dry_mode": "text-generation-webui runs DRY with its own rule (dry_mode webui)",
               "renormalize_logits": "text-generation-webui's scores are not renormalized; the distribution is the same",
               "max_new_tokens": "a preset holds no length (text-generation-webui sets max_new_tokens per request)",
               "stop": "a preset holds no stop strings", "max_time": "a preset holds no time limit",
               "token_healing": "text-generation-webui has no token healing",
               "prompt_lookup_num_tokens": "a preset holds no speed setting (prompt lookup changes no token)",
               "max_matching_ngram_size": "a preset holds no speed setting (prompt lookup changes no token)",
               "assistant_model": "a preset holds no speed setting (a draft model changes no token)",
               "num_assistant_tokens": "a preset holds no speed setting (a draft model changes no token)"}
    if field in reasons:
        return reasons[field]
    if field.startswith(("num_beam", "length_penalty", "early_stopping", "num_return", "diversity")):
        return "text-generation-webui's presets hold no beam search settings"
    return "text-generation-webui has no such sampler"


# -- export -----------------------------------------------------------------------------------------------------

def preset(config: PlaygroundConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(text-generation-webui preset keys, what it cannot carry: field -> {value, reason}) for one cell."""
    p = config.params
    out: dict[str, Any] = {theirs: _plain(getattr(p, ours)) for ours, theirs in SAME.items()}
    out.update({name: float(f"{getattr(p, name) * 1e4:.10g}") for name in PER_TEN_THOUSAND})
    dynamic = (p.dynatemp_low, p.dynatemp_high) != (1.0, 1.0)
    out.update(dynamic_temperature=dynamic, dynatemp_low=p.dynatemp_low, dynatemp_high=p.dynatemp_high,
               mirostat_mode=p.mirostat, repetition_penalty_range=0, temperature_last=False,
               dry_sequence_breakers=", ".join(json.dumps(b, ensure_ascii=False) for b in p.dry_sequence_breakers),
               sampler_priority="\n".join(NICKNAMES[name] for name in p.order if name in NICKNAMES))
    left: dict[str, Any] = {}
    defaults = SamplingParams()
    mapped = {*SAME, *PER_TEN_THOUSAND, "dynatemp_low", "dynatemp_high", "mirostat", "dry_sequence_breakers",
              "order", "dry_mode", "seed"}
    for name in FIELD_NAMES:
        if name not in mapped and getattr(p, name) != getattr(defaults, name):
            left[name] = {"value": _plain(getattr(p, name)), "reason": _reason(name)}
    if p.dry_multiplier and p.dry_mode != "webui":
        left["dry_mode"] = {"value": p.dry_mode, "reason": _reason("dry_mode")}
    late = _unlisted_after_listed(p)
    if late:
        left["order"] = {"value": list(p.order), "reason": f"{', '.join(late)} run(s) after samplers of "
                         "sampler_priority here; text-generation-webui runs processors the list cannot name first"}
    if p.seed != defaults.seed:
        left["seed"] = {"value": p.seed, "reason": "a text-generation-webui preset holds no seed (SillyTavern's does)"}
    return out, left


def preset_yaml(config: PlaygroundConfig) -> str:
    """The preset file (user_data/presets/NAME.yaml), what it cannot carry as comments first."""
    out, left = preset(config)
    lines = [f"# {name}: {json.dumps(item['value'], ensure_ascii=False)} is not carried ({item['reason']})"
             for name, item in left.items()]
    if not config.raw:
        lines.append("# the playground applied the model's chat template; use text-generation-webui's chat or "
                     "instruct mode for the same prompt")
    priority = out.pop("sampler_priority")  # a block of names, one per line, as text-generation-webui writes it
    body = yaml.safe_dump(out, sort_keys=False, allow_unicode=True).rstrip()
    return "\n".join([*lines, body, "sampler_priority: |-", *("  " + name for name in priority.split("\n"))]) + "\n"


def sillytavern_preset(config: PlaygroundConfig) -> dict[str, Any]:
    """A SillyTavern Text Completion preset (textgen settings JSON) with the same settings."""
    out, left = preset(config)
    p = config.params
    st = {name: out[webui] for name, webui in SILLYTAVERN_NAMES.items() if webui in out}
    st.update({k: v for k, v in out.items() if k not in SILLYTAVERN_NAMES.values()})
    st["sampler_priority"] = out["sampler_priority"].split("\n")
    st["dry_sequence_breakers"] = json.dumps(list(p.dry_sequence_breakers), ensure_ascii=False)
    if (p.dynatemp_low, p.dynatemp_high) != (1.0, 1.0) and p.temperature != (p.dynatemp_low + p.dynatemp_high) / 2:
        left["temperature"] = {"value": p.temperature, "reason": "SillyTavern sends temperature (min_temp + max_temp) "
                               "/ 2 with dynamic temperature on"}
    st.update(seed=p.seed, num_beams=p.num_beams, length_penalty=p.length_penalty,
              early_stopping=p.early_stopping if isinstance(p.early_stopping, bool) else True,
              min_length=p.min_length)
    for name in ("seed", "num_beams", "length_penalty", "min_length"):
        left.pop(name, None)
    if p.early_stopping == "never":
        left["early_stopping"] = {"value": "never", "reason": "SillyTavern's early_stopping is true or false"}
    else:
        left.pop("early_stopping", None)
    if left:
        st[NOT_IN_WEBUI] = left
    return st


def sillytavern_preset_json(config: PlaygroundConfig) -> str:
    return json.dumps(sillytavern_preset(config), indent=2, ensure_ascii=False, allow_nan=False)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _unlisted_after_listed(p: SamplingParams) -> list[str]:
    """Our processors that sampler_priority cannot name, that act, and that run after one it names."""
    first = min(p.order.index(name) for name in NICKNAMES)
    last = max(p.order.index(name) for name in NICKNAMES)
    return [name for i, name in enumerate(p.order) if i > first and name not in NICKNAMES and _acts(p, name)
            and (name not in LAST_STAGES or i < last)]


def _acts(p: SamplingParams, processor: str) -> bool:
    spec = next(s for s in PROCESSORS if s.name == processor)
    return any(getattr(p, k.name) != k.default for k in spec.fields if k.name in FIELD_NAMES)


# -- import -----------------------------------------------------------------------------------------------------

def read_preset(data: Any, base: PlaygroundConfig,
                eos_token_ids: Sequence[int] = ()) -> tuple[PlaygroundConfig, list[str]]:
    """A text-generation-webui preset (YAML or JSON text, or a dict) or a SillyTavern Text Completion preset ->
    the settings that run the same way here (base: the rest of the page's state) and one note per key with no
    equivalent. Keys it leaves out take text-generation-webui's defaults (modules/presets.py), as loading the
    preset there would. eos_token_ids: the model's end tokens, for ban_eos_token."""
    data = _as_dict(data)
    notes: list[str] = []
    named = {}  # text-generation-webui's key -> the file's own (SillyTavern's), for messages
    if "temp" in data or "rep_pen" in data:  # SillyTavern's names
        named = {SILLYTAVERN_NAMES[k]: k for k in data if k in SILLYTAVERN_NAMES}
        data = {SILLYTAVERN_NAMES.get(k, k): v for k, v in data.items()}
        if data.get("dynamic_temperature") is True:  # SillyTavern sends temperature = (min + max) / 2 with it
            low, high = data.get("dynatemp_low", 1), data.get("dynatemp_high", 1)
            if _number(low) and _number(high):
                data["temperature"] = (low + high) / 2
    fields: dict[str, Any] = {"dry_mode": "webui", "dry_sequence_breakers": list(DRY_SEQUENCE_BREAKERS)}
    origin: dict[str, str] = {}
    given = dict(data)

    def take(ours: str, theirs: str, value: Any) -> None:
        fields[ours], origin[ours] = value, named.get(theirs, theirs)

    for ours, theirs in SAME.items():
        take(ours, theirs, given.get(theirs, getattr(SamplingParams(), ours)))
    if _number(fields["top_k"]) and fields["top_k"] < 0:  # SillyTavern writes -1 for off to some back ends
        take("top_k", "top_k", 0)
    for name in PER_TEN_THOUSAND:
        value = given.get(name, 0)
        take(name, name, value / 1e4 if _number(value) else value)
    _read_dynamic(given, take)
    _read_mirostat(given, take, notes)
    _read_breakers(given, take)
    _read_penalty_range(given, notes)
    for name in SILLYTAVERN_OWN:
        if name in given:
            _read_sillytavern_own(name, given[name], take, notes, eos_token_ids)
    fields["order"] = _order(given.get("sampler_priority"), given.get("temperature_last", False), notes)
    origin["order"] = "sampler_priority"
    if isinstance(given.get(NOT_IN_WEBUI), dict) and given[NOT_IN_WEBUI]:
        notes.append(f"{NOT_IN_WEBUI}: the export left out {', '.join(given[NOT_IN_WEBUI])}; set them again by hand")
    known = {*SAME.values(), *PER_TEN_THOUSAND, *SILLYTAVERN_OWN, "dynamic_temperature", "dynatemp_low",
             "dynatemp_high", "mirostat_mode", "dry_sequence_breakers", "repetition_penalty_range", "sampler_priority",
             "temperature_last", NOT_IN_WEBUI, *IGNORED}
    for key, value in given.items():
        if key not in known and not _is_off(value):
            notes.append(f"{key}: {json.dumps(value, ensure_ascii=False, default=str)[:80]} has no equivalent here: "
                         "left out")
    params = params_from_fields(base.params, fields, origin)
    return base.replace(params=params, axes=()), notes


def _as_dict(data: Any) -> dict[str, Any]:
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)  # YAML is a superset of JSON: both kinds of file read here
        except yaml.YAMLError as exc:
            raise ParamError("preset", f"a YAML or JSON object ({str(exc).splitlines()[0]})", data) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ParamError("preset", "an object of text-generation-webui or SillyTavern preset keys", data)
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_off(value: Any) -> bool:
    """A key of another back end's sampler left at an off value (SillyTavern writes every key it knows: 0, 1,
    false or empty): nothing to note."""
    if isinstance(value, bool):
        return value is False
    return value in (0, 1, "", None) or value in ([], {})


def _read_dynamic(given: dict[str, Any], take) -> None:
    if given.get("dynamic_temperature") is True:
        take("dynatemp_low", "dynatemp_low", given.get("dynatemp_low", 1))
        take("dynatemp_high", "dynatemp_high", given.get("dynatemp_high", 1))
        take("dynatemp_exponent", "dynatemp_exponent", given.get("dynatemp_exponent", 1))
    elif given.get("dynamic_temperature") not in (None, False):
        raise ParamError("dynamic_temperature", "true or false", given["dynamic_temperature"])


def _read_mirostat(given: dict[str, Any], take, notes: list[str]) -> None:
    mode = given.get("mirostat_mode", 0)
    if mode == 1:
        notes.append("mirostat_mode: 1 (mirostat v1) is not run by text-generation-webui's samplers (only 2): off")
        mode = 0
    take("mirostat", "mirostat_mode", mode)


def _read_breakers(given: dict[str, Any], take) -> None:
    """'"\\n", ":", "\\"", "*"' (webui), its JSON list text (SillyTavern) or a list."""
    value = given.get("dry_sequence_breakers")
    if value is None:
        return
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text if text.startswith("[") else "[" + text + "]")
        except ValueError:
            raise ParamError("dry_sequence_breakers", 'quoted strings separated by commas, e.g. "\\n", ":"',
                             given["dry_sequence_breakers"]) from None
    take("dry_sequence_breakers", "dry_sequence_breakers", value)


def _read_penalty_range(given: dict[str, Any], notes: list[str]) -> None:
    window = given.get("repetition_penalty_range", 1024)
    acting = [k for k in ("repetition_penalty", "presence_penalty", "frequency_penalty")
              if given.get(k, 1 if k == "repetition_penalty" else 0) not in (0, 1 if k == "repetition_penalty" else 0)]
    if acting and window not in (0, None):
        notes.append(f"repetition_penalty_range: {window} has no equivalent: the penalties see the whole context "
                     f"here (the same while prompt and output stay within {window} tokens)")
    if any(k != "repetition_penalty" for k in acting):
        notes.append("text-generation-webui's presence and frequency penalties count the prompt's tokens too; the "
                     "playground's count the generated ones")


def _read_sillytavern_own(name: str, value: Any, take, notes: list[str], eos_token_ids: Sequence[int]) -> None:
    if name == "ban_eos_token":
        if value is True and eos_token_ids:
            take("suppress_tokens", "ban_eos_token", list(eos_token_ids))
        elif value is True:
            notes.append("ban_eos_token: true: set suppress_tokens to the model's end token by hand")
    elif name == "seed" and value == -1:
        notes.append("seed: -1 (a random seed per request) has no equivalent: the page's seed stays")
    else:
        take(name, name, value)


def _order(priority: Any, temperature_last: Any, notes: list[str]) -> tuple[str, ...]:
    """sampler_priority (a list, or names one per line / comma-separated) and temperature_last -> our order:
    the processors it does not name first (in transformers' order), then the named ones, then the watermarks and
    renormalize (engine/order.py LAST_STAGES), which run after every sampler."""
    if priority is None:
        priority = ["repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "top_n_sigma", "temperature",
                    "dynamic_temperature", "quadratic_sampling", "top_k", "top_p", "typical_p", "epsilon_cutoff",
                    "eta_cutoff", "tfs", "top_a", "min_p", "adaptive_p", "mirostat", "xtc",
                    "encoder_repetition_penalty", "no_repeat_ngram"]  # modules/presets.py
    if isinstance(priority, str):
        priority = [part.strip() for part in priority.replace("\n", ",").split(",") if part.strip()]
    if not isinstance(priority, list) or not all(isinstance(n, str) for n in priority):
        raise ParamError("sampler_priority", "a list of text-generation-webui sampler names", priority)
    if not isinstance(temperature_last, bool):
        raise ParamError("temperature_last", "true or false", temperature_last)
    names = list(dict.fromkeys(priority))
    if temperature_last:
        names = [n for n in names if n not in TEMPERATURE_LAST] + list(TEMPERATURE_LAST)
    listed: list[str] = []
    for name in names:
        if name in PROCESSOR_OF:
            listed.append(PROCESSOR_OF[name])
        else:
            notes.append(f"sampler_priority: {name!r} has no equivalent here: left out")
    first = [n for n in DEFAULT_ORDER if n not in listed and n not in LAST_STAGES]
    return (*first, *listed, *LAST_STAGES)
