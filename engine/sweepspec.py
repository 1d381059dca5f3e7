"""Sweep specifications: a prompt, base parameters, up to three axes and samples per cell -> rows.

Any SamplingParams field can be an axis (the processor `order` included), and so can the prompt and the system
prompt (PROMPT_AXES: "story vs explanation x temperature" is one batch; rows with different prompts share it).
The decoding mode is an axis too (MODE_AXIS "decoding_mode", engine/decoding_modes.py: greedy, sampling, beam
search, ... side by side in one grid): each cell lays its mode's knobs over the base, then the other axes' values.
Every cell is validated before any work.

Seeds: by default every cell keeps the base seed, so sample i of every cell draws the same random numbers (coupled
noise: cells differ only by their parameters, and often start with the same words). With independent_seeds each
cell gets its own seed, derived from the base seed and the cell's axis values (cell_seed): reproducible, and the
same cell gets the same seed in any grid that holds it.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .decoding_modes import MODE_AXIS, check_axes_with_modes, check_mode_axis, check_mode_params, mode_overrides
from .errors import ParamError, check_flag, check_text, check_whole
from .params import FIELD_NAMES, SamplingParams, from_dict

CELL_SEED_MAX = 2**53 - 1  # a derived seed stays a whole number that JSON readers and browsers hold exactly


def cell_seed(seed: int, axis_values: tuple[tuple[str, Any], ...]) -> int:
    """The seed of a cell with independent seeds: a hash of the base seed and the cell's (name, value) pairs.

    The pairs are sorted by name, so the order of the axes does not matter; the result is in [0, 2**53 - 1].
    """
    key = json.dumps([seed, sorted([name, _plain(value)] for name, value in axis_values)], sort_keys=True,
                     separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=b"dp-cell-seed").digest()
    return int.from_bytes(digest, "big") & CELL_SEED_MAX


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_prefixes(prefix: Any, samples: int) -> None:
    """() or one prefix per sample: a text (encoded without special tokens) or token ids (checked against the
    vocabulary and max_new_tokens when the run starts)."""
    if not isinstance(prefix, tuple):
        raise ParamError("prefix", "a tuple with one prefix per sample", prefix)
    if prefix and len(prefix) != samples:
        raise ParamError("prefix", f"one prefix per sample ({samples})", len(prefix))
    for item in prefix:
        if isinstance(item, str):
            check_text("prefix", item, allow_empty=True)
        elif not isinstance(item, tuple) or not all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            raise ParamError("prefix", "a text or a list of token ids per sample", item)


def check_prompt_axis(axis: Axis) -> None:
    """A prompt axis holds non-empty prompts; a system_prompt axis holds texts ("" = no system prompt)."""
    for value in axis.values:
        if axis.name == "prompt":
            _check_prompt("axis prompt", value)
        else:
            check_text("axis system_prompt", value, allow_empty=True)


def _check_prompt(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ParamError(name, "a non-empty string", value)
    check_text(name, value)

def check_mode_combinations(axes: tuple[Axis, ...]) -> None:
    """With a decoding_mode axis, the other axes may vary only knobs its modes leave to them."""
    modes = next((a.values for a in axes if a.name == MODE_AXIS), ())
    check_axes_with_modes(modes, {a.name: a.values for a in axes if a.name not in SPECIAL_AXES})


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepRow:
    """One decoded row: a cell's parameters plus which sample of that cell it is."""

    cell: int
    sample: int
    axis_values: tuple[tuple[str, Any], ...]
    params: SamplingParams
    prompt: str = ""
    system_prompt: str | None = None


MAX_AXES = 3
MAX_CELLS = 4096
PROMPT_AXES = ("prompt", "system_prompt")  # axes that change what the rows read, not how they sample
SPECIAL_AXES = (*PROMPT_AXES, MODE_AXIS)  # axes that are not one SamplingParams field
AXIS_NAMES = (*SPECIAL_AXES, *FIELD_NAMES)


@dataclass(frozen=True)
class SweepSpec:
    """A prompt, base parameters, up to three axes (any SamplingParams field) and samples per cell."""

    prompt: str
    base: SamplingParams = field(default_factory=SamplingParams)
    axes: tuple[Axis, ...] = ()
    samples: int = 1
    raw: bool = False
    system_prompt: str | None = None
    independent_seeds: bool = False  # each cell its own seed (cell_seed), not the base seed in every cell
    prefix: tuple[str | tuple[int, ...], ...] = ()  # per sample: forced first tokens (text or ids); () = none
    first_sample: int = 0  # the samples' indices start here (a branch of sample 3 is sample 3 alone)

    def __post_init__(self) -> None:
        check_flag("independent_seeds", self.independent_seeds)
        names = [a.name for a in self.axes]
        if "prompt" not in names:  # with a prompt axis, the prompt box is not read
            _check_prompt("prompt", self.prompt)
        elif not isinstance(self.prompt, str):
            raise ParamError("prompt", "a string (a prompt axis gives the rows' prompts)", self.prompt)
        if self.system_prompt is not None:
            check_text("system_prompt", self.system_prompt, allow_empty=True)
        check_flag("raw", self.raw)
        if not isinstance(self.base, SamplingParams):
            raise ParamError("base", "SamplingParams", self.base)
        if len(self.axes) > MAX_AXES:
            raise ParamError("axes", f"at most {MAX_AXES} axes", [a.name for a in self.axes])
        for axis in self.axes:
            if axis.name not in AXIS_NAMES:
                raise ParamError("axis", f"a parameter name from {list(AXIS_NAMES)}", axis.name)
            if not axis.values:
                raise ParamError(f"axis {axis.name}", "a non-empty list of values", list(axis.values))
            if axis.name in PROMPT_AXES:
                check_prompt_axis(axis)
            if axis.name == MODE_AXIS:
                check_mode_axis(axis.values)
        if len(set(names)) != len(names):
            raise ParamError("axes", "distinct parameter names", names)
        check_mode_combinations(self.axes)
        if not isinstance(self.samples, int) or isinstance(self.samples, bool) or self.samples < 1:
            raise ParamError("samples", "a whole number >= 1", self.samples)
        _check_prefixes(self.prefix, self.samples)
        check_whole("first_sample", self.first_sample, 0, 2**31 - 1)
        cells = math.prod(len(a.values) for a in self.axes)
        if cells > MAX_CELLS:  # refuse before building every cell's parameters
            raise ParamError("axes", f"at most {MAX_CELLS} cells (the product of the axes' lengths)", cells)
        self.cells()  # validate every cell's parameters before any work
        if not self.raw and any(p.token_healing for _, p in self.cells()):
            raise ParamError("token_healing", "used with a raw prompt (healing reads the prompt back as plain text, "
                             "which would drop the chat template's markers)", True)
        if (self.prefix or self.first_sample) and any(p.num_beams > 1 for _, p in self.cells()):
            raise ParamError("prefix", "left out with beam search (a forced prefix is for sampled and greedy rows)",
                             "num_beams > 1")
        if self.prefix and any(p.penalty_alpha > 0 for _, p in self.cells()):
            raise ParamError("prefix", "left out with contrastive search (a forced prefix is for sampled and greedy "
                             "rows)", "penalty_alpha > 0")

    def cells(self) -> list[tuple[tuple[tuple[str, Any], ...], SamplingParams]]:
        """Cartesian product of the axes, first axis slowest; each with its validated parameters."""
        out = []
        for combo in itertools.product(*(a.values for a in self.axes)):
            values = tuple((a.name, v) for a, v in zip(self.axes, combo))
            params = self._cell_params(values)
            if self.independent_seeds:
                params = params.replace(seed=cell_seed(params.seed, values))
            out.append((values, params))
        return out

    def _cell_params(self, values: tuple[tuple[str, Any], ...]) -> SamplingParams:
        """The base, its cell's decoding mode laid over it (if any), then the other axes' values: one replace, so
        only the cell's final parameters are validated. A mode cell's refusal names the cell."""
        changes = {name: v for name, v in values if name not in SPECIAL_AXES}
        name = dict(values).get(MODE_AXIS)
        if name is None:
            return self.base.replace(**changes)
        try:
            params = self.base.replace(**{**mode_overrides(name, self.base), **changes})
            check_mode_params(name, params)
        except ParamError as exc:
            cell = ", ".join(f"{n}={_plain(v)}" for n, v in values if n not in PROMPT_AXES)
            exc.args = (f"{exc} (in the cell {cell})",)
            raise
        return params

    def rows(self) -> list[SweepRow]:
        """Every cell's rows: `samples` samples, or for a beam cell its num_return_sequences best beams."""
        return [
            SweepRow(cell=i, sample=s, axis_values=values, params=params, prompt=prompt, system_prompt=system_prompt)
            for i, (values, params) in enumerate(self.cells())
            for prompt, system_prompt in [self.prompts_of(values)]
            for s in (range(params.num_return_sequences) if params.num_beams > 1
                      else range(self.first_sample, self.first_sample + self.samples))
        ]

    def prompts_of(self, axis_values: tuple[tuple[str, Any], ...]) -> tuple[str, str | None]:
        """A cell's (prompt, system prompt): its prompt-axis values, else the spec's ("" = no system prompt)."""
        values = dict(axis_values)
        return values.get("prompt", self.prompt), values.get("system_prompt", self.system_prompt) or None

    @property
    def varies_prompt(self) -> bool:
        return any(a.name in PROMPT_AXES for a in self.axes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "base": self.base.to_dict(),
            "axes": [{"name": a.name, "values": list(a.values)} for a in self.axes],
            "samples": self.samples,
            "raw": self.raw,
            "system_prompt": self.system_prompt,
            "independent_seeds": self.independent_seeds,
            **({"prefix": [p if isinstance(p, str) else list(p) for p in self.prefix]} if self.prefix else {}),
            **({"first_sample": self.first_sample} if self.first_sample else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
        axes = tuple(Axis(a["name"], tuple(a["values"])) for a in d.get("axes", []))
        return cls(prompt=d.get("prompt", ""), base=from_dict(d.get("base", {})), axes=axes,
                   samples=d.get("samples", 1), raw=d.get("raw", False), system_prompt=d.get("system_prompt"),
                   independent_seeds=d.get("independent_seeds", False),
                   prefix=tuple(p if isinstance(p, str) else tuple(p) for p in d.get("prefix", [])),
                   first_sample=d.get("first_sample", 0))
