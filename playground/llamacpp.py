"""The settings as a llama.cpp server `/completion` request, and such a request (or the `params` of a llama.cpp
server's /props `default_generation_settings`) read back as settings.

Both directions use llama.cpp's rules where the playground has two: DRY in `dry_mode="llama.cpp"` and the order
as llama.cpp's `samplers` list (`order="llama.cpp"` is its server's default chain). What one side cannot express
is listed, never dropped: the export's `_not_in_llama_cpp` object ({field: {value, reason}}; llama.cpp ignores a
key it does not know), the import's notes. No Gradio here.
"""
from __future__ import annotations

import json
import math
from typing import Any

from engine.errors import ParamError
from engine.knobs import DRY_SEQUENCE_BREAKERS, KNOBS
from engine.order import ORDER_PRESETS
from engine.params import SamplingParams, from_dict

from .config import PlaygroundConfig
from .exports import sweep_cells

NOT_IN_LLAMA_CPP = "_not_in_llama_cpp"
# Our field -> llama.cpp server's field of the same meaning and scale.
SAME = {"top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typical_p": "typical_p",
        "top_n_sigma": "top_n_sigma", "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold",
        "repetition_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty", "dry_multiplier": "dry_multiplier", "dry_base": "dry_base",
        "dry_allowed_length": "dry_allowed_length", "dry_sequence_breakers": "dry_sequence_breakers",
        "mirostat": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta", "seed": "seed",
        "max_new_tokens": "n_predict", "stop": "stop"}
# llama.cpp's sampler names (common_sampler_type_to_str) for our processors; the penalties are one sampler there.
SAMPLER_OF = {"repetition_penalty": "penalties", "presence_penalty": "penalties", "frequency_penalty": "penalties",
              "dry": "dry", "top_n_sigma": "top_n_sigma", "top_k": "top_k", "typical_p": "typ_p", "top_p": "top_p",
              "min_p": "min_p", "xtc": "xtc", "temperature": "temperature", "dynatemp": "temperature"}
SAMPLER_NAMES = {"penalties": ("repetition_penalty", "presence_penalty", "frequency_penalty"), "dry": ("dry",),
                 "top_n_sigma": ("top_n_sigma",), "top_k": ("top_k",), "typ_p": ("typical_p",),
                 "typical_p": ("typical_p",), "typical": ("typical_p",), "top_p": ("top_p",), "min_p": ("min_p",),
                 "xtc": ("xtc",), "temperature": ("temperature", "dynatemp"), "temp": ("temperature", "dynatemp")}
# The processors' knobs a sampler missing from `samplers` leaves unused (llama.cpp does not run it).
SAMPLER_KNOBS = {"penalties": ("repetition_penalty", "presence_penalty", "frequency_penalty"),
                 "dry": ("dry_multiplier",), "top_n_sigma": ("top_n_sigma",), "top_k": ("top_k",),
                 "typ_p": ("typical_p",), "top_p": ("top_p",), "min_p": ("min_p",), "xtc": ("xtc_probability",)}
# llama.cpp server's defaults for what a request leaves out (common/common.h common_params_sampling)
SERVER_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "typical_p": 1.0,
                   "top_n_sigma": -1.0, "xtc_probability": 0.0, "xtc_threshold": 0.1, "repeat_penalty": 1.0,
                   "repeat_last_n": 64, "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
                   "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": -1,
                   "dry_sequence_breakers": list(DRY_SEQUENCE_BREAKERS), "mirostat": 0, "mirostat_tau": 5.0,
                   "mirostat_eta": 0.1, "dynatemp_range": 0.0, "dynatemp_exponent": 1.0, "n_predict": -1,
                   "seed": 4294967295,
                   "samplers": ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                                "temperature"]}
# llama.cpp keys that change nothing the playground computes (how the answer is sent, logged or cached)
TRANSPORT = frozenset({"stream", "cache_prompt", "n_probs", "return_tokens", "timings_per_token",
                       "post_sampling_probs", "response_fields", "id_slot", "return_progress", "model"})


def _reason(field: str) -> str:
    reasons = {"sequence_bias": "llama.cpp's logit_bias biases every token of a text, not a sequence",
               "bad_words": "llama.cpp has no banned words (a grammar can exclude them)",
               "renormalize_logits": "llama.cpp's scores are not renormalized; the distribution is the same",
               "min_new_tokens": "llama.cpp has no minimum length (ignore_eos never ends the text)",
               "max_time": "llama.cpp's t_max_predict_ms only stops after a newline",
               "dry_mode": "llama.cpp runs DRY with its own rules (dry_mode llama.cpp)",
               "mirostat": "llama.cpp has no mirostat off switch other than 0",
               "prompt_lookup_num_tokens": "llama.cpp's server drafts with its own settings (speculative.*); "
                                           "prompt lookup changes no token",
               "max_matching_ngram_size": "llama.cpp's server drafts with its own settings (speculative.*); "
                                          "prompt lookup changes no token",
               "assistant_model": "llama.cpp's server loads its draft model at start (--model-draft); "
                                  "a draft model changes no token",
               "num_assistant_tokens": "llama.cpp's server drafts with its own settings (speculative.n_max); "
                                       "a draft model changes no token"}
    if field in reasons:
        return reasons[field]
    if field.startswith(("num_beam", "length_penalty", "early_stopping", "num_return", "diversity")):
        return "llama.cpp's server has no beam search"
    if field.startswith(("watermark_", "synthid_")):
        return "llama.cpp's server has no watermarking"
    return "llama.cpp has no such sampler"


def request(config: PlaygroundConfig) -> dict[str, Any]:
    """One cell as a llama.cpp `/completion` body (every sampler field written out, so llama.cpp's own defaults
    never fill in), with `_not_in_llama_cpp` for what it cannot carry."""
    p = config.params
    body: dict[str, Any] = {"prompt": config.prompt}
    left: dict[str, Any] = {}

    def lacks(field: str, reason: str | None = None) -> None:
        value = getattr(p, field)
        left[field] = {"value": list(value) if isinstance(value, tuple) else value, "reason": reason or _reason(field)}

    dynamic = (p.dynatemp_low, p.dynatemp_high) != (1.0, 1.0)
    temperature = 0.0 if p.greedy else p.temperature
    body.update(temperature=temperature, dynatemp_range=0.0, dynatemp_exponent=p.dynatemp_exponent)
    if dynamic and not p.greedy:
        if p.temperature == 1.0 and p.dynatemp_low <= p.dynatemp_high:
            body.update(temperature=(p.dynatemp_low + p.dynatemp_high) / 2,
                        dynatemp_range=(p.dynatemp_high - p.dynatemp_low) / 2)
        else:
            for field in ("dynatemp_low", "dynatemp_high"):
                lacks(field, "llama.cpp's dynamic temperature replaces temperature (temperature +- dynatemp_range): "
                             "here it needs temperature 1 and dynatemp_low <= dynatemp_high")
    for ours, theirs in SAME.items():
        value = getattr(p, ours)
        body[theirs] = list(value) if isinstance(value, tuple) else value
    body.update(repeat_last_n=-1, dry_penalty_last_n=-1)  # the whole context, as the playground
    if p.logit_bias:
        body["logit_bias"] = [[token, bias] for token, bias in p.logit_bias]
    dynamic_on = dynamic and not p.greedy and "dynatemp_low" not in left
    body["samplers"] = samplers(p.order, dynamic_on)
    if dynamic_on and p.order.index("dynatemp") != p.order.index("temperature") + 1:
        lacks("order", "llama.cpp's dynamic temperature is its temperature sampler: here other processors run "
                       "between temperature and dynatemp")
    if _split_penalties(p.order):
        lacks("order", "llama.cpp runs repetition, presence and frequency penalties as one sampler: here other "
                       "processors run between them")
    defaults = SamplingParams()
    for name in (f for f in (*KNOBS, "order") if f not in SAME and f not in left):
        if name in ("temperature", "do_sample", "dynatemp_low", "dynatemp_high", "dynatemp_exponent",
                    "xtc_threshold", "logit_bias", "order") or getattr(p, name) == getattr(defaults, name):
            continue
        if name == "dry_mode" or (name.startswith("dry_") and not p.dry_multiplier):
            continue
        lacks(name)
    if p.dry_multiplier and p.dry_mode != "llama.cpp":
        left["dry_mode"] = {"value": p.dry_mode, "reason": _reason("dry_mode")}
    notes = []
    if p.presence_penalty or p.frequency_penalty:
        notes.append("llama.cpp's presence and frequency penalties count the prompt's tokens too; the "
                     "playground's count the generated ones")
    if p.mirostat:
        notes.append("with mirostat on llama.cpp runs only temperature and mirostat (its samplers list is unused)")
    if not config.raw:
        notes.append("/completion takes the prompt as written: send the same fields with messages to "
                     "/v1/chat/completions for the chat template")
    if config.samples > 1:
        notes.append(f"/completion returns one text: send it {config.samples} times (or n_cmpl) for the samples")
    if notes:
        left["notes"] = notes
    if left:
        body[NOT_IN_LLAMA_CPP] = left
    return body


def request_json(config: PlaygroundConfig) -> str:
    """The /completion body; a sweep is a list with one body per cell (in the sweep's order)."""
    bodies = [request(cell) for _, cell in sweep_cells(config)]
    return json.dumps(bodies if config.axes else bodies[0], indent=2, ensure_ascii=False, allow_nan=False)


def samplers(order: tuple[str, ...], dynamic: bool = False) -> list[str]:
    """llama.cpp's sampler names in the order our processors run (each once); dynamic temperature, when on,
    places llama.cpp's temperature sampler (which runs it) if it comes first."""
    return list(dict.fromkeys(SAMPLER_OF[name] for name in order
                              if name in SAMPLER_OF and (dynamic or name != "dynatemp")))


def _split_penalties(order: tuple[str, ...]) -> bool:
    slots = [i for i, name in enumerate(order) if SAMPLER_OF.get(name) == "penalties"]
    return slots[-1] - slots[0] != len(slots) - 1


# -- import ---------------------------------------------------------------------------------------------------

def read_request(body: Any, base: PlaygroundConfig) -> tuple[PlaygroundConfig, list[str]]:
    """A llama.cpp `/completion` body (or /props' `default_generation_settings`, or its `params`) -> the
    settings that run the same way here (base: the rest of the page's state), and one note per key that has no
    equivalent or changed meaning. Keys it leaves out take llama.cpp's server defaults (temperature 0.8, top_k
    40, top_p 0.95, min_p 0.05, ...), as llama.cpp would. A bad value is a ParamError naming llama.cpp's key."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise ParamError("llama.cpp request", f"a JSON object ({exc})", body) from None
    if isinstance(body, dict) and isinstance(body.get("default_generation_settings"), dict):
        body = body["default_generation_settings"]
    if isinstance(body, dict) and isinstance(body.get("params"), dict):
        body = {**{k: v for k, v in body.items() if k != "params"}, **body["params"]}
    if not isinstance(body, dict):
        raise ParamError("llama.cpp request", "a JSON object of /completion fields", body)
    given = dict(body)
    body = {**SERVER_DEFAULTS, **given}
    notes: list[str] = []
    fields: dict[str, Any] = {"dry_mode": "llama.cpp"}
    origin: dict[str, str] = {}

    def take(ours: str, theirs: str, value: Any) -> None:
        fields[ours] = value
        origin[ours] = theirs

    for ours, theirs in SAME.items():
        value = body[theirs] if theirs in body else getattr(SamplingParams(), ours)
        if theirs == "n_predict" and value == -1:
            notes.append("n_predict: -1 (until the end of the text) has no equivalent: max_new_tokens stays "
                         f"{base.params.max_new_tokens}")
            value = base.params.max_new_tokens
        elif theirs == "seed" and value in (-1, 4294967295):
            notes.append(f"seed: {value} (a random seed per request) has no equivalent: seed stays {base.params.seed}")
            value = base.params.seed
        elif theirs == "top_n_sigma" and _number(value) and value < 0:
            value = 0.0  # llama.cpp: <= 0 is off
        elif theirs == "mirostat" and value == 1:
            notes.append("mirostat: 1 (mirostat v1) has no equivalent (the playground has v2): mirostat off")
            value = 0
        take(ours, theirs, value)
    temperature, spread = body["temperature"], body["dynatemp_range"]
    take("temperature", "temperature", temperature if not _number(temperature) or temperature > 0 else 0.0)
    if _number(spread) and spread > 0 and _number(temperature) and temperature > 0:
        low = temperature - spread
        if low > 0:
            take("temperature", "temperature", 1.0)
            take("dynatemp_low", "dynatemp_range", low)
            take("dynatemp_high", "dynatemp_range", temperature + spread)
            take("dynatemp_exponent", "dynatemp_exponent", body["dynatemp_exponent"])
        else:
            notes.append(f"dynatemp_range: {spread} reaches temperature 0 (llama.cpp clamps its low end at 0); "
                         "the playground's dynamic temperature needs a positive low end: left off")
    if body["repeat_last_n"] != -1 and (body["repeat_penalty"] != 1 or body["presence_penalty"]
                                        or body["frequency_penalty"]):
        notes.append(f"repeat_last_n: {body['repeat_last_n']} has no equivalent: the playground's penalties "
                     "see the whole context")
    if body["dry_penalty_last_n"] != -1 and body["dry_multiplier"]:
        notes.append(f"dry_penalty_last_n: {body['dry_penalty_last_n']} has no equivalent: DRY sees the whole "
                     "context here")
    if "logit_bias" in body:
        _logit_bias(body["logit_bias"], fields, origin, notes)
    order = _order(body["samplers"], fields, notes)
    fields["order"] = order
    origin["order"] = "samplers"
    known = {*SAME.values(), *SERVER_DEFAULTS, "logit_bias", "prompt", *TRANSPORT}
    if isinstance(given.get(NOT_IN_LLAMA_CPP), dict):  # the export's own list: what llama.cpp could not carry
        lost = [k for k in given[NOT_IN_LLAMA_CPP] if k != "notes"]
        if lost:
            notes.append(f"{NOT_IN_LLAMA_CPP}: the export left out {', '.join(lost)}; set them again by hand")
        known.add(NOT_IN_LLAMA_CPP)
    for key in given:
        if key not in known:
            notes.append(f"{key}: {json.dumps(given[key], ensure_ascii=False)[:80]} has no equivalent here: left out")
    params = params_from_fields(base.params, fields, origin)
    prompt = given.get("prompt")
    config = base.replace(params=params, axes=())
    if isinstance(prompt, str):
        config = config.replace(prompt=prompt, raw=True)
    elif prompt is not None:
        notes.append("prompt: not a text (token ids or a list of prompts): the page's prompt stays")
    absent = [k for k in ("temperature", "top_k", "top_p", "min_p") if k not in given]
    if absent:
        notes.append("not in the request, so llama.cpp's defaults: "
                     + ", ".join(f"{k} {SERVER_DEFAULTS[k]}" for k in absent))
    return config, notes


def params_from_fields(base: SamplingParams, fields: dict[str, Any], origin: dict[str, str]) -> SamplingParams:
    """`base` with another tool's settings (`fields`, in our names) applied; a bad value is a ParamError naming
    that tool's key (`origin`: our field -> its key) beside ours."""
    try:
        return from_dict({**base.to_dict(), **fields})
    except ParamError as exc:
        theirs = origin.get(exc.field, exc.field)
        raise ParamError(theirs if theirs == exc.field else f"{theirs} (the playground's {exc.field})",
                         str(exc).split(": must be ", 1)[-1].rsplit(", got ", 1)[0],
                         fields.get(exc.field)) from None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _logit_bias(value: Any, fields: dict[str, Any], origin: dict[str, str], notes: list[str]) -> None:
    """[[id, bias], ...] or {"id": bias}; a bias of false bans the token (suppress_tokens here)."""
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, list):
        raise ParamError("logit_bias", "[[token id, bias], ...] or {\"token id\": bias}", value)
    biases, banned = {}, []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ParamError("logit_bias", "[token id, bias] pairs", pair)
        token, bias = pair
        if isinstance(token, str) and not token.strip().isdigit():
            notes.append(f"logit_bias: {json.dumps(pair, ensure_ascii=False)} biases every token of a text in "
                         "llama.cpp, which has no equivalent here: left out")
            continue
        if bias is False:
            banned.append(int(token))
        else:
            biases[str(token)] = bias
    if biases:
        fields["logit_bias"] = biases
        origin["logit_bias"] = "logit_bias"
    if banned:
        fields["suppress_tokens"] = banned
        origin["suppress_tokens"] = "logit_bias"


def _order(names: Any, fields: dict[str, Any], notes: list[str]) -> tuple[str, ...]:
    """llama.cpp's `samplers` -> our order: the llama.cpp preset with these samplers in the given order among
    their own places; a sampler left out of the list does not run there, so its knobs are switched off here."""
    if isinstance(names, str):
        names = [part for part in names.replace(",", ";").split(";") if part.strip()]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ParamError("samplers", "a list of llama.cpp sampler names", names)
    ours: list[str] = []
    for name in names:
        key = name.strip().lower().replace("-", "_")
        if key not in SAMPLER_NAMES:
            notes.append(f"samplers: {name!r} has no equivalent here: left out")
            continue
        ours += [n for n in SAMPLER_NAMES[key] if n not in ours]
    canonical = {SAMPLER_NAMES[k][0] for k in (n.strip().lower().replace("-", "_") for n in names) if k in SAMPLER_NAMES}
    for sampler, knobs in SAMPLER_KNOBS.items():
        if SAMPLER_NAMES[sampler][0] in canonical:
            continue
        for knob in knobs:
            off = KNOBS[knob].default
            if fields.get(knob, off) != off:
                notes.append(f"{knob}: {fields[knob]} is not used by llama.cpp ({sampler!r} is not in samplers): off")
                fields[knob] = off
    if "temperature" not in ours:
        if fields.get("temperature", 1.0) not in (0.0, 1.0) or "dynatemp_low" in fields:
            notes.append("temperature is not in samplers, so llama.cpp does not apply it: temperature 1")
        fields["temperature"] = 1.0 if fields.get("temperature") != 0.0 else 0.0
        fields.pop("dynatemp_low", None), fields.pop("dynatemp_high", None)
    preset = list(ORDER_PRESETS["llama.cpp"])
    slots = sorted(preset.index(n) for n in ours)
    for slot, name in zip(slots, ours):
        preset[slot] = name
    return tuple(preset)
