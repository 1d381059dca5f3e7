"""Named endpoints for scripts: /generate, /sweep and /distribution (callable with gradio_client).

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    out = client.predict("Write a haiku.", {"temperature": 0.7, "max_new_tokens": 32}, 2, api_name="/generate")
    dist = client.predict(out["run_id"], 0, 3, api_name="/distribution")

They run the same code paths as the page (playground.views); bad input raises an error naming the field.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from engine.generate import Engine
from engine.metrics import cell_summary, json_safe, sample_metrics
from engine.params import ParamError, SamplingParams, check_flag, check_whole, from_dict
from engine.sweepspec import Axis, SweepSpec
from engine.values import parse_axis_values

from . import views
from .errors import user_error
from .runs import Run, RunStore

MAX_API_SAMPLES = 64


def register_api(engine: Engine, store: RunStore) -> None:
    """Add the three endpoints to the Blocks being built (call inside `with gr.Blocks()`)."""

    def generate(prompt: str, params: dict | None = None, samples: int = 1, raw: bool = False,
                 system_prompt: str = "") -> dict:
        """Generate `samples` outputs of one configuration in one batch.

        params: SamplingParams fields by name, e.g. {"temperature": 0.7, "top_p": 0.9, "seed": 1}.
        Returns run_id (for /distribution), seconds and per sample: text, token_ids, tokens (the text each token
        added), raw_logprobs (the unmodified model), final_logprobs (the distribution sampled from),
        finish_reason and metrics. With num_beams > 1 the samples are the num_return_sequences best beams, each
        with its beam_score (`samples` is then ignored).
        """
        try:
            check_whole("samples", samples, 1, MAX_API_SAMPLES)
            spec = SweepSpec(prompt, _params(params), (), samples, check_flag("raw", raw), _system(system_prompt))
            run = _finish(views.stream_run(engine, store, spec, "generate"))
        except ParamError as exc:
            raise user_error(exc, as_html=False) from None
        return json_safe({"run_id": run.run_id, "seconds": round(run.generation.seconds, 3),
                          "samples": [_sample(run, i) for i in range(run.row_count)]})

    def sweep(prompt: str, params: dict | None = None, axes: list | None = None, samples: int = 1,
              raw: bool = False, system_prompt: str = "", independent_seeds: bool = False) -> dict:
        """Run a sweep (up to 3 axes) as one batch.

        axes: [{"name": "temperature", "values": [0.2, 0.9]}, {"name": "top_p", "values": "0.5:1.0:0.25"}]
        (values as a list, or as text like the page's axis boxes). Returns run_id, seconds, `samples` (one
        record per sample: cell, axis values, every parameter, text, token_ids, logprobs, metrics) and `cells`
        (one row per cell with mean metrics and diversity). independent_seeds: each cell its own seed (derived
        from the base seed and the cell's axis values) instead of the base seed in every cell.
        """
        try:
            check_whole("samples", samples, 1, MAX_API_SAMPLES)
            spec = SweepSpec(prompt, _params(params), _axes(axes), samples, check_flag("raw", raw),
                             _system(system_prompt), check_flag("independent_seeds", independent_seeds))
            run = _finish(views.stream_run(engine, store, spec, "sweep"))
        except ParamError as exc:
            raise user_error(exc, as_html=False) from None
        assert run.sweep is not None
        records = run.sweep.dataframe()
        return json_safe({"run_id": run.run_id, "seconds": round(run.generation.seconds, 3),
                          "samples": run.sweep.records(),
                          "cells": cell_summary(records).to_dict(orient="records")})

    def distribution(run_id: str, sample: int = 0, step: int = 0, top_n: int = 20) -> dict:
        """The next-token distribution of one output at one step, after every processor (stage).

        Returns stages (entropy, support, mass_kept, chosen_prob, chosen_rank, top_prob per stage), the
        chosen token, and the top_n tokens of every stage; for a beam of a later group in diverse beam search,
        also earlier_groups_chose (the tokens its diversity_penalty lowered at this step).
        """
        try:
            run = store.get(run_id)
            return views.distribution_json(store, run, _int("sample", sample), _int("step", step), _int("top_n", top_n))
        except ParamError as exc:
            raise user_error(exc, as_html=False) from None

    gr.api(generate, api_name="generate")
    gr.api(sweep, api_name="sweep")
    gr.api(distribution, api_name="distribution")


def _finish(frames) -> Run:
    run = None
    for frame in frames:
        run = frame.run or run
    assert run is not None
    return run


def _sample(run: Run, row: int) -> dict[str, Any]:
    out = run.generation.rows[row]
    return {"index": row, "text": out.text, "token_ids": out.token_ids, "tokens": run.pieces[row],
            "raw_logprobs": out.raw_logprobs, "final_logprobs": out.final_logprobs,
            "finish_reason": out.finish_reason,
            **({"beam_score": out.beam_score} if out.beam_score is not None else {}),
            "metrics": sample_metrics(out.token_ids, out.raw_logprobs, out.raw_entropies)}


def _params(params: Any) -> SamplingParams:
    """The parameters object (None: the defaults); anything else that is not an object is refused by from_dict."""
    return from_dict({} if params is None else params)


def _system(text: Any) -> str | None:
    if text is not None and not isinstance(text, str):
        raise ParamError("system_prompt", "text", text)
    return text or None


def _axes(axes: Any) -> tuple[Axis, ...]:
    if axes is None:
        return ()
    if not isinstance(axes, list):
        raise ParamError("axes", 'a list of {"name": ..., "values": [...]}', axes)
    out = []
    for axis in axes:
        if (not isinstance(axis, dict) or set(axis) != {"name", "values"} or not isinstance(axis["name"], str)):
            raise ParamError("axes", 'a list of {"name": ..., "values": [...]} (no other keys)', axis)
        values = axis["values"]
        if isinstance(values, str):
            values = parse_axis_values(axis["name"], values)
        if not isinstance(values, (list, tuple)):
            raise ParamError(f"axis {axis['name']}", "a list of values or a text such as '0.2, 0.9'", values)
        out.append(Axis(axis["name"], tuple(values)))
    return tuple(out)


def _int(field: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParamError(field, "a whole number", value)
    return value
