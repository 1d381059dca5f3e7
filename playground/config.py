"""The whole state a share link or a preset reproduces, and its two text forms (URL query, preset JSON).

No Gradio here: the UI turns its widgets into a PlaygroundConfig and back; this module only knows the state.
Both text forms hold only what differs from the defaults, so links stay short and presets stay readable.
Sampling parameters are compared with SamplingParams() (the no-op values), not with the UI's starting
values, so a link means the same thing even if the page's starting values change later.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from engine.forcing import check_prefix
from engine.errors import ParamError, check_flag, check_whole
from engine.params import FIELD_NAMES, SamplingParams, from_dict
from engine.decoding_modes import MODE_AXIS, check_mode_axis, mode_overrides
from engine.sweepspec import (AXIS_NAMES, MAX_AXES, PROMPT_AXES, SPECIAL_AXES, Axis, SweepSpec, check_mode_combinations,
                              check_prompt_axis)
from engine.values import changed_params, format_value, parse_axis_values, parse_value

VIEWS = ("generate", "sweep", "distributions")
COLOR_BY = ("raw", "final")
MAX_SAMPLES = 16
MAX_INDEX = 100_000  # sample / step indices: a bound for link input, as large as max_new_tokens allows
URL_SAFE = ":,"  # allowed as they are in a query; keeps axis=temperature:0.2,0.9 readable
MAX_TOKEN_ID = 2**31 - 1  # a bound for link input; the loaded model's vocabulary is checked where it is known
MAX_FIRST_SAMPLE = 2**31 - 1  # SweepSpec's bound on a sample index


def whole_number(field: str, value: Any, text: bool = False) -> int:
    """A count or an index: an int, or a float without a fraction (a browser's numbers and JSON's 2.0 are floats);
    with text=True also a number written as text (what a page's number box may send). Anything else (a bool,
    2.5, "two") is a ParamError naming the field. The one whole-number check of the page and the gradio API."""
    given = value
    if text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ParamError(field, "a whole number", given) from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParamError(field, "a whole number", given)
    return value


def default_params() -> SamplingParams:
    """The page's starting parameters: a little below temperature 1, short outputs that run in seconds."""
    return SamplingParams(temperature=0.8, max_new_tokens=48)


@dataclass(frozen=True)
class PlaygroundConfig:
    """Prompt, parameters, sweep axes and which view / output / step is shown. Validated on construction."""

    prompt: str
    raw: bool = False
    system_prompt: str = ""
    params: SamplingParams = field(default_factory=default_params)
    samples: int = 3  # samples in the Generate view, and samples per cell in a sweep
    axes: tuple[tuple[str, str], ...] = ()  # (parameter name, values text as typed), at most 3
    view: str = "generate"
    sample: int = 0  # which output the Distributions view shows
    step: int = 0  # which step of that output
    color_by: str = "final"  # colour tokens by their "raw" or "final" probability
    independent_seeds: bool = False  # a sweep: each cell its own seed (engine.sweepspec.cell_seed)
    # A branch (or an edit) run again: every sample's forced start, as text ("" = none) or as exact token ids (a
    # branch of an output: its kept tokens and the new choice), and the index of the first sample (a branch of
    # sample 3 is sample 3 alone: the same noise). At most one of prefix and prefix_ids.
    prefix: str = ""
    prefix_ids: tuple[int, ...] = ()
    first_sample: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", _axes_tuple(self.axes))
        if isinstance(self.prefix_ids, list):  # a preset's JSON list
            object.__setattr__(self, "prefix_ids", tuple(self.prefix_ids))
        self.validate()

    def validate(self) -> None:
        """Raise ParamError naming the first bad field; axis values must parse and suit their field."""
        for name in ("prompt", "system_prompt"):
            _check_text(name, getattr(self, name))
        check_flag("raw", self.raw)
        check_flag("independent_seeds", self.independent_seeds)
        if not isinstance(self.params, SamplingParams):
            raise ParamError("params", "SamplingParams", self.params)
        check_whole("samples", self.samples, 1, MAX_SAMPLES)
        check_whole("sample", self.sample, 0, MAX_INDEX - 1)
        check_whole("step", self.step, 0, MAX_INDEX - 1)
        if self.view not in VIEWS:
            raise ParamError("view", f"one of {', '.join(VIEWS)}", self.view)
        if self.color_by not in COLOR_BY:
            raise ParamError("color_by", f"one of {', '.join(COLOR_BY)}", self.color_by)
        axes = self.parsed_axes()
        self._check_prefix(axes)

    def _check_prefix(self, axes: tuple[Axis, ...]) -> None:
        """The forced start: a text or whole token ids (not both), no longer than any cell's max_new_tokens (it
        counts as new tokens); not with beam search. The vocabulary is checked where a model is loaded
        (check_prefix_tokens)."""
        _check_text("prefix", self.prefix)
        if not isinstance(self.prefix_ids, tuple) or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_TOKEN_ID for t in self.prefix_ids):
            raise ParamError("prefix_ids", f"a list of token ids (whole numbers in [0, {MAX_TOKEN_ID}])",
                             self.prefix_ids)
        check_whole("first_sample", self.first_sample, 0, MAX_FIRST_SAMPLE)
        if self.prefix and self.prefix_ids:
            raise ParamError("prefix", "left out when prefix_ids is given (one forced start: a text or token ids)",
                             self.prefix)
        lengths = {self.params.max_new_tokens, *(v for a in axes if a.name == "max_new_tokens" for v in a.values)}
        if len(self.prefix_ids) > min(lengths):
            raise ParamError("prefix_ids", f"at most max_new_tokens ({min(lengths)}) token ids: the prefix counts as "
                                           f"new tokens", f"{len(self.prefix_ids)} ids")
        beams = {self.params.num_beams, *(v for a in axes if a.name == "num_beams" for v in a.values)}
        if max(beams) > 1 and (self.prefix or self.prefix_ids or self.first_sample):
            key = "prefix" if self.prefix else "prefix_ids" if self.prefix_ids else "first_sample"
            raise ParamError(key, "left out with beam search (a forced start is for sampled and greedy rows)",
                             "num_beams > 1")

    @property
    def forced(self) -> str | tuple[int, ...]:
        """Every sample's forced start: the text, the token ids, or "" for none."""
        return self.prefix_ids or self.prefix

    def parsed_axes(self) -> tuple[Axis, ...]:
        """The axes with their values parsed; each value is checked against the base parameters."""
        if len(self.axes) > MAX_AXES:
            raise ParamError("axes", f"at most {MAX_AXES} axes", [name for name, _ in self.axes])
        names = [name for name, _ in self.axes]
        if len(set(names)) != len(names):
            raise ParamError("axes", "distinct parameter names", names)
        parsed = []
        for name, text in self.axes:
            if name not in AXIS_NAMES:
                raise ParamError("axis", f"a parameter name from {list(AXIS_NAMES)}", name)
            axis = Axis(name, parse_axis_values(name, text))
            if name in PROMPT_AXES:
                check_prompt_axis(axis)
            if name == MODE_AXIS:
                check_mode_axis(axis.values)
            parsed.append(axis)
        check_mode_combinations(tuple(parsed))
        modes = next((a.values for a in parsed if a.name == MODE_AXIS), ())
        for axis in parsed:  # linear, unlike SweepSpec's full grid: each value on the base (or each mode's cell)
            for value in axis.values if axis.name not in SPECIAL_AXES else ():
                for mode in modes or (None,):
                    changes = mode_overrides(mode, self.params) if mode else {}
                    self.params.replace(**{**changes, axis.name: value})
        return tuple(parsed)

    def sweep_spec(self) -> SweepSpec:
        """The SweepSpec of this state (the grid of the axes x samples; no axes is one cell)."""
        return SweepSpec(prompt=self.prompt, base=self.params, axes=self.parsed_axes(), samples=self.samples,
                         raw=self.raw, system_prompt=self.system_prompt or None,
                         independent_seeds=self.independent_seeds,
                         prefix=(self.forced,) * self.samples if self.forced else (), first_sample=self.first_sample)

    @classmethod
    def from_spec(cls, spec: SweepSpec, **state: Any) -> "PlaygroundConfig":
        """The config that runs `spec` (one configuration, no axes) again: a branch's prompt, settings, samples,
        forced start and first sample. `state`: the other fields (view, color_by, ...)."""
        if spec.axes:
            raise ParamError("axes", "none (a link holds one run's configuration; a sweep's is in the form)",
                             [a.name for a in spec.axes])
        if len(set(spec.prefix)) > 1:
            raise ParamError("prefix", "the same forced start for every sample (a link holds one)", len(spec.prefix))
        forced = spec.prefix[0] if spec.prefix else ""
        return cls(prompt=spec.prompt, raw=spec.raw, system_prompt=spec.system_prompt or "", params=spec.base,
                   samples=spec.samples, independent_seeds=spec.independent_seeds,
                   prefix=forced if isinstance(forced, str) else "",
                   prefix_ids=() if isinstance(forced, str) else tuple(forced), first_sample=spec.first_sample,
                   **state)

    def replace(self, **changes: Any) -> "PlaygroundConfig":
        return dataclasses.replace(self, **changes)

    # -- share links --------------------------------------------------------------------------------------

    def to_query(self) -> str:
        """A URL query holding only what differs from the defaults; from_query reads it back exactly."""
        pairs: list[tuple[str, str]] = [("prompt", self.prompt)]
        for key, value in self._changed_state().items():
            text = (value if key in _TEXT_FIELDS else ",".join(map(str, value)) if key == "prefix_ids"
                    else format_value(key, value))
            pairs.append((_QUERY_KEYS[key], text))
        pairs += [(name, format_value(name, value)) for name, value in changed_params(self.params).items()]
        pairs += [("axis", f"{name}:{text}") for name, text in self.axes]
        return urlencode(pairs, safe=URL_SAFE)

    @classmethod
    def from_query(cls, query: "Mapping[str, str | list[str]] | str") -> "PlaygroundConfig":
        """The state of a share link: a query string, or a mapping such as parse_qs returns.

        A missing key takes its default (SamplingParams() for parameters); an unknown or repeated key, or a
        bad value, is a ParamError naming it. With a request's query params, pass str(params) so that
        repeated axis keys survive.
        """
        items = _query_items(query)
        state: dict[str, Any] = {"prompt": ""}  # parse_qs drops "prompt=" when the prompt is empty
        params: dict[str, Any] = {}
        axes: list[tuple[str, str]] = []
        for key, value in items:
            if key == "axis":
                axes.append(_split_axis(value))
            elif key == "prefix" and not value:  # an empty forced start is not "none" said quietly
                raise ParamError(key, "a non-empty text (leave the key out for no forced start)", value)
            elif _STATE_KEYS.get(key) in _TEXT_FIELDS:
                state[_STATE_KEYS[key]] = value
            elif key == "prefix_ids":
                state[key] = _token_ids(value)
            elif key in _STATE_KEYS:
                state[_STATE_KEYS[key]] = parse_value(key, value)
            elif key in FIELD_NAMES:
                params[key] = parse_value(key, value)
            else:
                raise ParamError(key, "a known link key (prompt, raw, system, view, samples, sample, step, "
                                      "color_by, independent_seeds, prefix, prefix_ids, first_sample, axis or a "
                                      "parameter name)", value)
        return cls(params=from_dict(params), axes=tuple(axes), **state)

    # -- presets ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The preset JSON form: parameters that differ from SamplingParams(); sample/step/color_by if set."""
        data: dict[str, Any] = {"view": self.view, "prompt": self.prompt, "raw": self.raw,
                                "system_prompt": self.system_prompt, "samples": self.samples,
                                "params": changed_params(self.params),
                                "axes": [{"name": name, "values": text} for name, text in self.axes]}
        for key in ("sample", "step", "color_by", "independent_seeds", "prefix", "prefix_ids", "first_sample"):
            if getattr(self, key) != _DEFAULTS[key]:
                data[key] = list(self.prefix_ids) if key == "prefix_ids" else getattr(self, key)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PlaygroundConfig":
        """Inverse of to_dict; missing keys take their defaults (SamplingParams() for parameters)."""
        if not isinstance(data, Mapping):
            raise ParamError("config", "an object of key: value", data)
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            if not str(unknown[0]).strip():  # a blank key cannot name the field: the message names the object
                raise ParamError("config", f"an object whose keys are known keys ({', '.join(sorted(allowed))})",
                                 {unknown[0]: data[unknown[0]]})
            raise ParamError(unknown[0], f"one of the known keys ({', '.join(sorted(allowed))})", data[unknown[0]])
        if "prompt" not in data:
            raise ParamError("prompt", "given", None)
        state = {k: v for k, v in data.items() if k not in ("params", "axes")}
        return cls(params=from_dict(data.get("params", {})), axes=_axes_from_json(data.get("axes", [])), **state)

    def _changed_state(self) -> dict[str, Any]:
        """State fields (not prompt, params, axes) that differ from their defaults, in declaration order."""
        return {key: getattr(self, key) for key in _DEFAULTS if getattr(self, key) != _DEFAULTS[key]}


# Link keys of the state fields; "system" is shorter than system_prompt and reads well in a URL.
_STATE_KEYS = {"prompt": "prompt", "raw": "raw", "system": "system_prompt", "view": "view",
               "samples": "samples", "sample": "sample", "step": "step", "color_by": "color_by",
               "independent_seeds": "independent_seeds", "prefix": "prefix", "prefix_ids": "prefix_ids",
               "first_sample": "first_sample"}
_QUERY_KEYS = {field_name: key for key, field_name in _STATE_KEYS.items()}
_TEXT_FIELDS = frozenset({"prompt", "system_prompt", "prefix"})  # taken as typed, never read as JSON
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PlaygroundConfig)
             if f.name not in ("prompt", "params", "axes")}


def check_prefix_tokens(config: PlaygroundConfig, vocab_size: int, encode: Callable[[str], list[int]]) -> None:
    """A config's forced start against the loaded model (a link or a preset opened in the page): token ids in its
    vocabulary, a text no longer than max_new_tokens once tokenized (without special tokens, as the run does)."""
    if config.prefix_ids:
        check_prefix(config.prefix_ids, config.params.max_new_tokens, vocab_size, "prefix_ids")
    if config.prefix:
        count = len(encode(config.prefix))
        if count > config.params.max_new_tokens:
            raise ParamError("prefix", f"at most max_new_tokens ({config.params.max_new_tokens}) tokens once "
                                       f"tokenized: the prefix counts as new tokens", f"{count} tokens")


_ID_TEXT = re.compile(r"\s*[0-9]+\s*")


def _token_ids(text: str) -> tuple[int, ...]:
    """prefix_ids=1,2,3: whole token ids, comma-separated (what to_query writes); anything else names the key."""
    parts = text.split(",")
    if not all(_ID_TEXT.fullmatch(part) for part in parts):
        raise ParamError("prefix_ids", "token ids as whole numbers, comma-separated (e.g. prefix_ids=504,2213)",
                         text)
    if any(len(part.strip()) > len(str(MAX_TOKEN_ID)) for part in parts):  # int() refuses very long digit runs
        raise ParamError("prefix_ids", f"token ids in [0, {MAX_TOKEN_ID}]", text)
    return tuple(int(part) for part in parts)


def _query_items(query: "Mapping[str, str | list[str]] | str") -> list[tuple[str, str]]:
    """(key, value) pairs; only `axis` may repeat."""
    if isinstance(query, str):
        query = parse_qs(_query_part(query), keep_blank_values=True)
    if not isinstance(query, Mapping):
        raise ParamError("query", "a query string or a mapping of key -> value(s)", query)
    items: list[tuple[str, str]] = []
    for key, value in query.items():
        if not str(key).strip():  # a stray "=" in a link: a message naming the blank key, not ": must be ..."
            raise ParamError("link key", "a key before each \"=\" (prompt, axis or a parameter name)", str(key))
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, str) for v in values):
            raise ParamError(str(key), "text", value)
        if len(values) != 1 and key != "axis":
            raise ParamError(str(key), "given once", values)
        items += [(str(key), v) for v in values]
    return items


def _query_part(text: str) -> str:
    """The query of a whole link (https://host/?a=b), or the text itself without a leading "?"."""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" in what looked like a host: not a link, so a plain query
        return text.removeprefix("?")
    return parts.query if parts.scheme and parts.netloc else text.removeprefix("?")


def _split_axis(text: str) -> tuple[str, str]:
    name, sep, values = text.partition(":")
    if not sep or not name.strip():
        raise ParamError("axis", "NAME:VALUES (e.g. axis=temperature:0.2,0.9)", text)
    return name.strip(), values


def _axes_tuple(axes: Any) -> tuple[tuple[str, str], ...]:
    """Axes as a tuple of (name, text) pairs, so the config stays hashable whatever sequence was given."""
    if not isinstance(axes, (list, tuple)):
        raise ParamError("axes", "a list of (name, values text) pairs", axes)
    pairs = []
    for axis in axes:
        if (not isinstance(axis, (list, tuple)) or len(axis) != 2
                or not all(isinstance(part, str) for part in axis)):
            raise ParamError("axes", "a list of (name, values text) pairs", axis)
        pairs.append((axis[0], axis[1]))
    return tuple(pairs)


def _axes_from_json(axes: Any) -> tuple[tuple[str, str], ...]:
    """Preset axes [{"name": ..., "values": "text as typed"}] as (name, text) pairs."""
    if not isinstance(axes, list):
        raise ParamError("axes", 'a list of {"name": ..., "values": ...}', axes)
    pairs = []
    for axis in axes:
        if not isinstance(axis, Mapping) or set(axis) != {"name", "values"}:
            raise ParamError("axes", 'a list of {"name": ..., "values": "text as typed"}', axis)
        pairs.append((axis["name"], axis["values"]))
    return _axes_tuple(pairs)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(name: str, value: Any) -> None:
    """Text that survives a URL: any str without unpaired surrogates (they have no UTF-8 form)."""
    if not isinstance(value, str) or _SURROGATE.search(value):
        raise ParamError(name, "text", value)
