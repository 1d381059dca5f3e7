"""The settings as the page holds them: every widget a PlaygroundConfig is read from and written to, by name.

The widgets live in several panels (the prompt and knobs in the settings column, the axes in Sweep, the colour
toggle in Generate, the output and step in Distributions); the form names them all. A handler wired with
`inputs_kwargs=form.widgets` receives their values as keyword arguments of those names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gradio as gr

from engine.errors import ParamError
from engine.params import NUMERIC_FIELDS
from engine.sweepspec import MAX_AXES

from ..config import PlaygroundConfig, whole_number
from ..controls import CONTROLS, params_from_values, values_from_params

MAX_PAGE_INT = 2**53 - 1  # the largest whole number a browser's numbers hold exactly
NO_AXIS = "(none)"
AXIS_NAMES = tuple(f"axis_{i + 1}" for i in range(MAX_AXES))  # the parameter each axis sweeps
AXIS_TEXTS = tuple(f"axis_{i + 1}_values" for i in range(MAX_AXES))  # its values as typed
STATE_NAMES = ("prompt", "mode", "system_prompt", "samples", *AXIS_NAMES, *AXIS_TEXTS, "view", "sample", "step",
               "color_by", "independent_seeds", "prefix", "prefix_ids", "first_sample")
PREFIX_LABEL = "Continue from (forced prefix)"
PREFIX_INFO = "Every sample starts with this text (it counts as new tokens). Remove it to run freely."
# every name, in the order the page has always sent the values (the knobs in CONTROLS order, whatever the layout)
NAMES = (*STATE_NAMES, *(c.field for c in CONTROLS), "order")
assert len(set(NAMES)) == len(NAMES), "a knob's name is also a page setting's name"


@dataclass(frozen=True)
class Form:
    """The page's settings widgets by name (NAMES, in that order)."""

    widgets: dict[str, gr.components.Component]

    def __post_init__(self) -> None:
        if tuple(self.widgets) != NAMES:
            raise ValueError(f"the form's widgets must be {NAMES}, in that order")

    @property
    def components(self) -> list[gr.components.Component]:
        return list(self.widgets.values())

    def updates(self, config: PlaygroundConfig,
                decode: Callable[[tuple[int, ...]], str] = lambda ids: "") -> dict[gr.components.Component, Any]:
        """The widgets' new values for a config (a preset or a link); ParamError for a number the page cannot hold.
        `decode`: the text of token ids (a branch's exact prefix is shown as its text, read-only)."""
        check_page_numbers(config)
        values = {self.widgets[name]: value for name, value in zip(NAMES, form_values(config, decode))}
        values[self.widgets["prefix"]] = gr.Textbox(values[self.widgets["prefix"]], interactive=not config.prefix_ids,
                                                    info=prefix_info(config))
        return values


def prefix_info(config: PlaygroundConfig) -> str:
    """What the forced-prefix box says about the start it holds."""
    sample = f" The run is sample {config.first_sample} of these settings (its noise)." if config.first_sample else ""
    if config.prefix_ids:
        return (f"A branch's exact start: {len(config.prefix_ids)} token ids (shown as text, not editable).{sample} "
                f"Remove it to run freely.")
    return PREFIX_INFO + sample


def config_from_form(values: Mapping[str, Any]) -> PlaygroundConfig:
    """The settings' values by name -> a validated PlaygroundConfig (ParamError names the first bad field)."""
    axes = tuple((values[name], values[text] or "") for name, text in zip(AXIS_NAMES, AXIS_TEXTS)
                 if values[name] and values[name] != NO_AXIS)
    params = params_from_values([values[c.field] for c in CONTROLS], values["order"])
    return PlaygroundConfig(prompt=values["prompt"], raw=values["mode"] == "raw",
                            system_prompt=values["system_prompt"] or "", params=params,
                            samples=whole_number("samples", values["samples"], text=True), axes=axes,
                            view=values["view"] or "generate", sample=whole_number("output", values["sample"], text=True),
                            step=whole_number("step", values["step"], text=True), color_by=values["color_by"],
                            independent_seeds=bool(values["independent_seeds"]), **prefix_from_form(values))


def prefix_from_form(values: Mapping[str, Any]) -> dict[str, Any]:
    """The forced start: exact token ids (a branch's, kept out of sight; the box then only shows their text), else
    the box's text; and the first sample's index."""
    ids = values["prefix_ids"] or ()
    if not isinstance(ids, (list, tuple)):
        raise ParamError("prefix_ids", "a list of token ids", ids)
    return {"prefix": "" if ids else values["prefix"] or "", "prefix_ids": tuple(ids),
            "first_sample": whole_number("first_sample", values["first_sample"] or 0, text=True)}


def form_values(config: PlaygroundConfig, decode: Callable[[tuple[int, ...]], str] = lambda ids: "") -> list[Any]:
    """A config -> the widgets' values in NAMES order (the inverse of config_from_form). `decode`: the text shown
    for a prefix of token ids."""
    names = [a[0] for a in config.axes] + [NO_AXIS] * (MAX_AXES - len(config.axes))
    texts = [a[1] for a in config.axes] + [""] * (MAX_AXES - len(config.axes))
    return [config.prompt, "raw" if config.raw else "chat", config.system_prompt, config.samples, *names, *texts,
            config.view, config.sample, config.step, config.color_by, config.independent_seeds,
            decode(config.prefix_ids) if config.prefix_ids else config.prefix, list(config.prefix_ids),
            config.first_sample,
            *values_from_params(config.params), list(config.params.order)]


def check_page_numbers(config: PlaygroundConfig) -> None:
    """Whole numbers the page can hold: a browser's numbers are doubles, so a seed (or top_k) from a link or a
    preset above 2**53 - 1 would come back from the page as another number. Refused, naming the field."""
    for name, (kind, _) in NUMERIC_FIELDS.items():
        value = getattr(config.params, name)
        if kind is int and abs(value) > MAX_PAGE_INT:
            raise ParamError(name, f"at most {MAX_PAGE_INT} in the page (a browser holds no larger whole number "
                                   f"exactly; the API and the command line take it)", value)
