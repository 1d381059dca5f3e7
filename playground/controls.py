"""Every SamplingParams knob as a widget description: group, kind, range and a one-line `info`.

One table drives the whole parameter panel: the UI builds widgets from CONTROLS in this order, passes their
values back in the same order, and `params_from_values` turns them into validated SamplingParams. Text
fields (stop, bad_words, sequence_bias, logit_bias, dry_sequence_breakers, order) have one textual form, parsed
and printed here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from engine.params import DEFAULT_ORDER, NUMERIC_FIELDS, ParamError, SamplingParams, from_dict

GROUPS = ("Sampling", "Penalties", "Length and stopping", "Beams", "Seed", "More samplers")
EARLY_STOPPING_CHOICES = ("false", "true", "never")  # transformers' early_stopping: False, True or "never"


@dataclass(frozen=True)
class Control:
    """One knob. kind: "slider", "number", "checkbox", "text" or "order"."""

    field: str
    group: str
    kind: str
    info: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    placeholder: str = ""


CONTROLS: tuple[Control, ...] = (
    # Sampling
    Control("do_sample", "Sampling", "checkbox", "Sample from the distribution; off = greedy (always the most likely token)."),
    Control("temperature", "Sampling", "slider", "Divides the logits: < 1 sharpens, > 1 flattens; 0 = greedy.", 0.0, 2.5, 0.05),
    Control("top_k", "Sampling", "slider", "Keep only the k most likely tokens; 0 = off.", 0, 200, 1),
    Control("top_p", "Sampling", "slider", "Nucleus: keep the smallest set of tokens whose mass reaches p; 1 = off.", 0.01, 1.0, 0.01),
    Control("min_p", "Sampling", "slider", "Drop tokens less likely than min_p x the top token's probability; 0 = off.", 0.0, 1.0, 0.01),
    Control("typical_p", "Sampling", "slider", "Keep tokens whose surprise is closest to the entropy, up to mass p; 1 = off.", 0.01, 1.0, 0.01),
    Control("epsilon_cutoff", "Sampling", "slider", "Drop tokens with probability below epsilon; 0 = off.", 0.0, 0.01, 0.0001),
    Control("eta_cutoff", "Sampling", "slider", "Entropy-adaptive cutoff (eta sampling); 0 = off.", 0.0, 0.01, 0.0001),
    # Penalties
    Control("repetition_penalty", "Penalties", "slider", "Divide (or multiply, if negative) logits of tokens already seen in prompt or output; 1 = off.", 0.5, 2.5, 0.05),
    Control("presence_penalty", "Penalties", "slider", "OpenAI: subtract this from every token already generated once; 0 = off.", -2.0, 2.0, 0.1),
    Control("frequency_penalty", "Penalties", "slider", "OpenAI: subtract this x the count of each generated token; 0 = off.", -2.0, 2.0, 0.1),
    Control("no_repeat_ngram_size", "Penalties", "slider", "Forbid repeating any n-gram of this size; 0 = off.", 0, 10, 1),
    Control("bad_words", "Penalties", "text", "Words never generated (comma-separated; also banned with a leading space).",
            placeholder="e.g. very, really"),
    Control("sequence_bias", "Penalties", "text", "Add a bias to the logits of words: one `word: bias` per line (-inf bans).",
            placeholder="e.g. the: -5"),
    Control("logit_bias", "Penalties", "text", "OpenAI's logit_bias: add a bias to token ids, one `id: bias` per line (-100..100).",
            placeholder="e.g. 2: -100"),
    # Length and stopping
    Control("max_new_tokens", "Length and stopping", "slider", "Stop after this many new tokens.", 1, 512, 1),
    Control("min_new_tokens", "Length and stopping", "slider", "The end-of-text token is masked until this many tokens exist.", 0, 256, 1),
    Control("stop", "Length and stopping", "text", "Stop strings, one per line (\\n for a newline); the output is cut before them.",
            placeholder="e.g. \\n\\n"),
    # Seed
    Control("seed", "Seed", "number", "A sample's randomness depends only on (seed, sample index, step): same seed, same text.", 0, 2**31 - 1, 1),
    # Beams (transformers' beam search; num_beams 1 = off)
    Control("num_beams", "Beams", "slider", "Beam search: keep this many best partial outputs each step; 1 = off (sampling or greedy).", 1, 8, 1),
    Control("num_return_sequences", "Beams", "slider", "How many of the best beams to show (at most num_beams).", 1, 8, 1),
    Control("length_penalty", "Beams", "slider", "Beam score = sum of log-probs / length^penalty: > 0 favours longer outputs, < 0 shorter.", -2.0, 3.0, 0.1),
    Control("early_stopping", "Beams", "choice", "Stop when num_beams outputs are done (true), when no beam can do better (false), or only at the length limit (never)."),
    Control("num_beam_groups", "Beams", "slider", "Diverse beam search (greedy, needs diversity_penalty > 0): split the beams into this many groups that choose in turn; 1 = off.", 1, 8, 1),
    Control("diversity_penalty", "Beams", "slider", "Diverse beam search: subtracted from a token's log-prob once per beam of an earlier group that chose it at this step (needs groups > 1).", 0.0, 5.0, 0.1),
    # More samplers: the community samplers of text-generation-webui and llama.cpp, under their names there
    Control("dry_multiplier", "More samplers", "slider", "DRY (p-e-w, text-generation-webui): penalize the token that would extend a repeat by multiplier x base^(length - allowed); 0 = off.", 0.0, 5.0, 0.05),
    Control("dry_base", "More samplers", "slider", "DRY: how fast the penalty grows with each extra repeated token.", 1.0, 4.0, 0.05),
    Control("dry_allowed_length", "More samplers", "slider", "DRY: repeats up to this many tokens go unpenalized.", 1, 20, 1),
    Control("dry_sequence_breakers", "More samplers", "text", "DRY: a repeat never extends across these, one per line (\\n for a newline).",
            placeholder="e.g. \\n"),
    Control("xtc_probability", "More samplers", "slider", "XTC (p-e-w, text-generation-webui / llama.cpp): chance per step of excluding the top choices; 0 = off.", 0.0, 1.0, 0.01),
    Control("xtc_threshold", "More samplers", "slider", "XTC: tokens at least this likely are top choices; all but the least likely of them go.", 0.0, 0.5, 0.01),
    Control("mirostat", "More samplers", "slider", "Mirostat v2 (Basu et al. 2021, llama.cpp): 2 = on, 0 = off; caps surprise so it tracks tau.", 0, 2, 2),
    Control("mirostat_tau", "More samplers", "slider", "Mirostat: the target surprise per token, in bits.", 0.0, 10.0, 0.1),
    Control("mirostat_eta", "More samplers", "slider", "Mirostat: learning rate of the surprise cap.", 0.0, 1.0, 0.01),
    Control("dynatemp_low", "More samplers", "slider", "Dynamic temperature (text-generation-webui): the temperature of a certain step; off when low = high = 1.", 0.05, 5.0, 0.05),
    Control("dynatemp_high", "More samplers", "slider", "Dynamic temperature: the temperature of a maximally uncertain step.", 0.05, 5.0, 0.05),
    Control("dynatemp_exponent", "More samplers", "slider", "Dynamic temperature: T = low + (high - low) x (entropy / max entropy)^exponent.", 0.0, 5.0, 0.05),
    Control("top_n_sigma", "More samplers", "slider", "Top-nσ (Tang et al. 2024): keep logits within n standard deviations of the top one; 0 = off.", 0.0, 5.0, 0.05),
    Control("top_a", "More samplers", "slider", "Top-a (text-generation-webui): drop tokens below top_a x the top probability squared; 0 = off.", 0.0, 1.0, 0.01),
    Control("tfs", "More samplers", "slider", "Tail-free sampling (Bricken 2019): cut where the sorted probabilities flatten out; 1 = off.", 0.0, 1.0, 0.01),
)
CONTROL_FIELDS: tuple[str, ...] = tuple(c.field for c in CONTROLS)
ORDER_INFO = ("The order the processors run in. Remove a name and add it back to move it to the end; "
              "a partial list swaps just the named processors among their default places.")


# -- text forms of the list-valued knobs ----------------------------------------------------------------------

def parse_word_list(field: str, text: str) -> tuple[str, ...]:
    """"very, really" -> ("very", "really")."""
    if not isinstance(text, str):
        raise ParamError(field, "comma-separated words", text)
    return tuple(w.strip() for w in text.split(",") if w.strip())


def parse_stop(text: str) -> tuple[str, ...]:
    r"""One stop string per line; the two characters \n inside a line mean a newline."""
    return parse_lines("stop", text)


def parse_lines(field: str, text: str) -> tuple[str, ...]:
    r"""One string per line (stop, dry_sequence_breakers); the two characters \n inside a line mean a newline.

    Lines keep their spaces (a breaker may be " "); empty lines are dropped.
    """
    if not isinstance(text, str):
        raise ParamError(field, "one string per line", text)
    return tuple(line.replace("\\n", "\n") for line in text.splitlines() if line)


def parse_sequence_bias(text: str) -> dict[str, float]:
    """`word: bias` per line (or a JSON object) -> {word: bias}."""
    return _parse_bias_lines("sequence_bias", text, "word", "the: -5")


def parse_logit_bias(text: str) -> dict[str, float]:
    """`token id: bias` per line (or a JSON object) -> {"id": bias}; SamplingParams checks the ids and range."""
    return _parse_bias_lines("logit_bias", text, "token id", "2: -100")


def _parse_bias_lines(field: str, text: str, key: str, example: str) -> dict[str, float]:
    """`key: number` per line, split at the last colon (or a JSON object)."""
    if not isinstance(text, str):
        raise ParamError(field, f"`{key}: bias` lines", text)
    if text.strip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            raise ParamError(field, f'a JSON object such as {{"{example.split(":")[0]}": {example.split(": ")[1]}}}', text) from None
    bias: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        word, sep, number = line.rpartition(":")
        try:
            value = float(number) if sep else math.nan
        except ValueError:
            value = math.nan
        if not sep or not word.strip() or math.isnan(value):
            raise ParamError(field, f"one `{key}: number` per line (e.g. `{example}`)", line)
        bias[word.strip()] = value
    return bias


def format_stop(stop: Sequence[str]) -> str:
    """The inverse of parse_lines: one string per line, a newline inside one shown as the two characters \\n."""
    return "\n".join(s.replace("\n", "\\n") for s in stop)


def format_sequence_bias(bias: Sequence[tuple[str, float]]) -> str:
    return "\n".join(f"{word}: {_bias_text(value)}" for word, value in bias)


def _bias_text(value: float) -> str:
    """Short (`-5`, `-inf`) where that reads back exactly, else every digit (`0.123456789`)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


# -- widgets <-> SamplingParams ---------------------------------------------------------------------------

def params_from_values(values: Sequence[Any], order: Sequence[str] | None) -> SamplingParams:
    """Widget values (in CONTROLS order) and the order list -> validated SamplingParams (ParamError names the field)."""
    if len(values) != len(CONTROLS):
        raise ParamError("controls", f"{len(CONTROLS)} values", len(values))
    raw = dict(zip(CONTROL_FIELDS, values))
    fields: dict[str, Any] = {}
    for control in CONTROLS:
        value = raw[control.field]
        if control.field in ("stop", "dry_sequence_breakers"):
            value = parse_lines(control.field, value or "")
        elif control.field == "bad_words":
            value = parse_word_list("bad_words", value or "")
        elif control.field == "sequence_bias":
            value = parse_sequence_bias(value or "")
        elif control.field == "logit_bias":
            value = parse_logit_bias(value or "")
        elif control.field == "early_stopping":
            if value not in EARLY_STOPPING_CHOICES:
                raise ParamError("early_stopping", f"one of {list(EARLY_STOPPING_CHOICES)}", value)
            value = {"false": False, "true": True, "never": "never"}[value]
        elif control.kind in ("slider", "number"):
            if value is None or value == "":
                raise ParamError(control.field, "a number", value)
            value = _number(control.field, value)
        fields[control.field] = value
    fields["order"] = list(order) if order else list(DEFAULT_ORDER)
    return from_dict(fields)


def values_from_params(params: SamplingParams) -> list[Any]:
    """SamplingParams -> widget values in CONTROLS order (the inverse of params_from_values)."""
    return [widget_value(control.field, getattr(params, control.field)) for control in CONTROLS]


def widget_value(field: str, value: Any) -> Any:
    """One field's value as its widget shows it: the text form of the list-valued knobs, others as they are."""
    if field in ("stop", "dry_sequence_breakers"):
        return format_stop(value)
    if field == "bad_words":
        return ", ".join(value)
    if field == "sequence_bias":
        return format_sequence_bias(value)
    if field == "logit_bias":
        return format_sequence_bias([(str(token), bias) for token, bias in value])
    if field == "early_stopping":
        return {False: "false", True: "true", "never": "never"}[value]
    return value


def _number(field: str, value: Any) -> float | int:
    """Widgets send floats or numeric strings (the API, or preprocess=False); keep ints as ints."""
    if isinstance(value, bool):
        raise ParamError(field, "a number", value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ParamError(field, "a number", value) from None
    if isinstance(value, float) and value.is_integer() and NUMERIC_FIELDS[field][0] is int:
        return int(value)
    return value
