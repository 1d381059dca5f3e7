"""Decoding modes: named groups of knobs, the values of the sweep axis `decoding_mode`.

One table (MODES) says what each mode is: its knob values and a one-line description. A cell of a sweep with a
decoding_mode axis runs the base parameters with its mode's knobs laid over them:
  - every knob any mode sets (MODE_KNOBS: num_beams, penalty_alpha, force_words, ...) takes the cell's mode's
    value, or its off value (the field's default) when the mode does not name it, so a base with num_beams 4 still
    gives a greedy row in the greedy cell;
  - BASE in the table keeps the base's value (the sampling mode's temperature and top_k, constrained beams'
    force_words, the beam modes' num_return_sequences);
  - another axis may vary a mode knob only where the mode lets it (its own BASE knobs and its `tunable` ones, such
    as num_beams for beam search or top_k for contrastive search); elsewhere the combination is refused, naming
    the axis, its values and the mode, before any work.
Adding a mode is one entry in MODES (DoLa was: `dola_layers`): the other modes then switch its knob off.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import ParamError
from .params import SamplingParams

MODE_AXIS = "decoding_mode"


class _Base:
    """The marker of a knob a mode takes from the base parameters."""

    def __repr__(self) -> str:
        return "BASE"


BASE: Any = _Base()


def _sampled(params: SamplingParams) -> None:
    if params.temperature == 0.0:
        raise ParamError("temperature", "> 0 for decoding_mode sampling (the base's temperature is what it samples "
                                        "with; 0 is greedy)", params.temperature)


def _constrained(params: SamplingParams) -> None:
    if not params.force_words:
        raise ParamError("force_words", "a non-empty list in the base parameters for decoding_mode constrained_beams "
                                        "(the words every output must hold; a base with force_words is itself a "
                                        "constrained beam search: num_beams > 1, do_sample false)",
                         list(params.force_words))


@dataclass(frozen=True)
class DecodingMode:
    name: str
    description: str
    sets: Mapping[str, Any]  # knob -> the value this mode runs with; BASE: the base's value
    tunable: tuple[str, ...] = ()  # knobs of `sets` that another axis may vary in this mode's cells
    check: Callable[[SamplingParams], None] | None = None  # what the mode needs of its cell's parameters

    @property
    def axis_knobs(self) -> frozenset[str]:
        """The mode knobs another axis may vary in this mode's cells."""
        return frozenset(self.tunable) | {k for k, v in self.sets.items() if v is BASE}


MODES: tuple[DecodingMode, ...] = (
    DecodingMode("greedy", "the most likely token at every step (temperature 0)", {"temperature": 0.0}),
    DecodingMode("sampling", "the base's sampling settings (temperature, top_p, top_k, min_p, ...)",
                 {"do_sample": True, "temperature": BASE, "top_k": BASE}, check=_sampled),
    DecodingMode("beam_search", "beam search with 4 beams (the best hypothesis by length-normalised log-prob)",
                 {"do_sample": False, "num_beams": 4, "num_return_sequences": BASE}, tunable=("num_beams",)),
    DecodingMode("diverse_beams", "diverse beam search: 4 beams in 2 groups, diversity_penalty 1.0",
                 {"do_sample": False, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0,
                  "num_return_sequences": BASE}, tunable=("num_beams", "num_beam_groups", "diversity_penalty")),
    DecodingMode("contrastive", "contrastive search: penalty_alpha 0.6 among the top_k 4 tokens",
                 {"do_sample": False, "penalty_alpha": 0.6, "top_k": 4}, tunable=("penalty_alpha", "top_k")),
    DecodingMode("constrained_beams", "beam search with 4 beams whose outputs hold the base's force_words",
                 {"do_sample": False, "num_beams": 4, "force_words": BASE, "num_return_sequences": BASE},
                 tunable=("num_beams",), check=_constrained),
    DecodingMode("dola", "DoLa, greedy: the final layer contrasted with the premature layer of the 'high' half "
                 "that differs most (transformers recommends repetition_penalty 1.2: set it in the base)",
                 {"do_sample": False, "dola_layers": "high"}, tunable=("dola_layers",)),
)
MODES_BY_NAME: dict[str, DecodingMode] = {m.name: m for m in MODES}
MODE_NAMES: tuple[str, ...] = tuple(MODES_BY_NAME)
# every knob some mode sets: a cell's mode decides each of them (its value, the base's, or the knob's off value)
MODE_KNOBS: tuple[str, ...] = tuple(dict.fromkeys(k for m in MODES for k in m.sets))
_OFF: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SamplingParams)}
MODE_HELP = "; ".join(f"{m.name}: {m.description}" for m in MODES)


def mode(name: Any) -> DecodingMode:
    """The mode called `name`, or a ParamError listing the valid names."""
    if not isinstance(name, str) or name not in MODES_BY_NAME:
        raise ParamError(f"axis {MODE_AXIS}", f"one of the mode names ({', '.join(MODE_NAMES)})", name)
    return MODES_BY_NAME[name]


def check_mode_axis(values: tuple[Any, ...]) -> None:
    """Every value of a decoding_mode axis names a mode, each at most once."""
    for value in values:
        mode(value)
    if len(set(values)) != len(values):
        raise ParamError(f"axis {MODE_AXIS}", "distinct mode names", list(values))


def check_axes_with_modes(modes: tuple[Any, ...], axes: Mapping[str, tuple[Any, ...]]) -> None:
    """Refuse, before any work, another axis over a knob a mode of the sweep decides (greedy x temperature,
    contrastive x num_beams, ...); `axes`: the other axes' names and values."""
    for name in modes:
        m = mode(name)
        for knob, values in axes.items():
            if knob in MODE_KNOBS and knob not in m.axis_knobs:
                may = ", ".join(sorted(m.axis_knobs)) or "none of them"
                raise ParamError(f"axis {knob}", f"left out with decoding_mode {m.name} (the mode decides {knob}; "
                                                 f"of the mode knobs an axis may vary {may} there)", list(values))


def mode_overrides(name: str, base: SamplingParams) -> dict[str, Any]:
    """The knob values mode `name` lays over `base`: every mode knob, its mode's value, the base's (BASE) or off."""
    sets = mode(name).sets
    return {k: getattr(base, k) if sets.get(k) is BASE else sets[k] if k in sets else _OFF[k] for k in MODE_KNOBS}


def check_mode_params(name: str, params: SamplingParams) -> None:
    """What mode `name` needs of a cell's final parameters (e.g. force_words for constrained beams)."""
    m = mode(name)
    if m.check is not None:
        m.check(params)


def mode_params(name: str, base: SamplingParams) -> SamplingParams:
    """The parameters of mode `name` on `base` alone (what that mode's cell runs without other axes)."""
    params = base.replace(**mode_overrides(name, base))
    check_mode_params(name, params)
    return params
