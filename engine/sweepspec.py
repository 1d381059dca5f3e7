"""Sweep specifications: a prompt, base parameters, up to three axes and samples per cell -> rows.

Any SamplingParams field can be an axis (the processor `order` included); every cell is validated before any work.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from .params import FIELD_NAMES, ParamError, SamplingParams, check_flag, check_text, from_dict

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


MAX_AXES = 3
MAX_CELLS = 4096


@dataclass(frozen=True)
class SweepSpec:
    """A prompt, base parameters, up to three axes (any SamplingParams field) and samples per cell."""

    prompt: str
    base: SamplingParams = field(default_factory=SamplingParams)
    axes: tuple[Axis, ...] = ()
    samples: int = 1
    raw: bool = False
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ParamError("prompt", "a non-empty string", self.prompt)
        check_text("prompt", self.prompt)
        if self.system_prompt is not None:
            check_text("system_prompt", self.system_prompt, allow_empty=True)
        check_flag("raw", self.raw)
        if not isinstance(self.base, SamplingParams):
            raise ParamError("base", "SamplingParams", self.base)
        if len(self.axes) > MAX_AXES:
            raise ParamError("axes", f"at most {MAX_AXES} axes", [a.name for a in self.axes])
        names = [a.name for a in self.axes]
        for axis in self.axes:
            if axis.name not in FIELD_NAMES:
                raise ParamError("axis", f"a parameter name from {list(FIELD_NAMES)}", axis.name)
            if not axis.values:
                raise ParamError(f"axis {axis.name}", "a non-empty list of values", list(axis.values))
        if len(set(names)) != len(names):
            raise ParamError("axes", "distinct parameter names", names)
        if not isinstance(self.samples, int) or isinstance(self.samples, bool) or self.samples < 1:
            raise ParamError("samples", "a whole number >= 1", self.samples)
        cells = math.prod(len(a.values) for a in self.axes)
        if cells > MAX_CELLS:  # refuse before building every cell's parameters
            raise ParamError("axes", f"at most {MAX_CELLS} cells (the product of the axes' lengths)", cells)
        self.cells()  # validate every cell's parameters before any work

    def cells(self) -> list[tuple[tuple[tuple[str, Any], ...], SamplingParams]]:
        """Cartesian product of the axes, first axis slowest; each with its validated parameters."""
        out = []
        for combo in itertools.product(*(a.values for a in self.axes)):
            values = tuple((a.name, v) for a, v in zip(self.axes, combo))
            out.append((values, self.base.replace(**dict(values))))
        return out

    def rows(self) -> list[SweepRow]:
        """Every cell's rows: `samples` samples, or for a beam cell its num_return_sequences best beams."""
        return [
            SweepRow(cell=i, sample=s, axis_values=values, params=params)
            for i, (values, params) in enumerate(self.cells())
            for s in range(params.num_return_sequences if params.num_beams > 1 else self.samples)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "base": self.base.to_dict(),
            "axes": [{"name": a.name, "values": list(a.values)} for a in self.axes],
            "samples": self.samples,
            "raw": self.raw,
            "system_prompt": self.system_prompt,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
        axes = tuple(Axis(a["name"], tuple(a["values"])) for a in d.get("axes", []))
        return cls(prompt=d.get("prompt", ""), base=from_dict(d.get("base", {})), axes=axes,
                   samples=d.get("samples", 1), raw=d.get("raw", False), system_prompt=d.get("system_prompt"))
