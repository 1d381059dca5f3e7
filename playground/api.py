"""Named endpoints for scripts: /generate, /sweep, /distribution and /compare (callable with gradio_client).

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    out = client.predict("Write a haiku.", {"temperature": 0.7, "max_new_tokens": 32}, 2, api_name="/generate")
    dist = client.predict(out["run_id"], 0, 3, api_name="/distribution")
    parted = client.predict(out["run_id"], 0, 1, api_name="/compare")

They run the same code paths as the page (playground.views); bad input raises an error naming the field.
/generate and /sweep stream: while the run decodes they yield {"progress", "status"} updates (what
`client.submit(...)` sees), and the result last (what `client.predict(...)` returns). Because they are
generators, Gradio closes them when the client goes away (or cancels), and the run stops at its next step.
"""
from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Iterator

import gradio as gr

from engine.generate import Engine
from engine.metrics import assist_metrics, cell_summary, json_safe, sample_metrics
from engine.errors import ParamError, check_flag, check_text, check_whole
from engine.params import from_dict
from engine.sweepspec import Axis, SweepSpec
from engine.values import parse_axis_values

from . import comparing, views
from .config import whole_number
from .errors import internal_error, user_error
from .runs import Run, RunStore
from .slots import DEFAULT_RUN_SLOTS, RunSlots, concurrency

MAX_API_SAMPLES = 64


def register_api(engine: Engine, store: RunStore, slots: RunSlots | None = None) -> dict[str, list[inspect.Parameter]]:
    """Add the three endpoints to the Blocks being built (call inside `with gr.Blocks()`). slots: the page's run
    slots, shared by /generate and /sweep (a run waiting for one streams its place in the queue)."""
    slots = slots if slots is not None else RunSlots(DEFAULT_RUN_SLOTS)

    def generate(prompt: str, params: dict | None = None, samples: int = 1, raw: bool = False,
                 system_prompt: str = "", prefix: Any = None) -> dict:  # a generator: progress updates, then the result
        """Generate `samples` outputs of one configuration in one batch.

        params: SamplingParams fields by name, e.g. {"temperature": 0.7, "top_p": 0.9, "seed": 1}.
        Returns run_id (for /distribution), seconds and per sample: text, token_ids, tokens (the text each token
        added), raw_logprobs (the unmodified model), final_logprobs (the distribution sampled from),
        finish_reason and metrics. With num_beams > 1 the samples are the num_return_sequences best beams, each
        with its beam_score (`samples` is then ignored).
        prefix: forced first tokens, to branch from an output or continue an edited text: a text or a list of
        token ids for every sample, or a list with one of those per sample. They count as new tokens and are
        decoded as the samples' first steps (same seed, sample index and step numbers), so a sample continues as
        its unforced run would have from that prefix; forcing a run's own first k tokens reproduces it.
        """
        yield from _stream(lambda: _spec(prompt, params, None, samples, raw, system_prompt, prefix=prefix), "generate",
                           lambda run: {"run_id": run.run_id, "seconds": round(run.generation.seconds, 3),
                                        "samples": [_sample(run, i) for i in range(run.row_count)]})

    def sweep(prompt: str, params: dict | None = None, axes: list | None = None, samples: int = 1,
              raw: bool = False, system_prompt: str = "", independent_seeds: bool = False) -> dict:  # a generator
        """Run a sweep (up to 3 axes) as one batch.

        axes: [{"name": "temperature", "values": [0.2, 0.9]}, {"name": "top_p", "values": "0.5:1.0:0.25"}]
        (values as a list, or as text like the page's axis boxes). Returns run_id, seconds, `samples` (one
        record per sample: cell, axis values, every parameter, text, token_ids, logprobs, metrics) and `cells`
        (one row per cell with mean metrics and diversity). independent_seeds: each cell its own seed (derived
        from the base seed and the cell's axis values) instead of the base seed in every cell.
        """
        def result(run: Run) -> dict:
            assert run.sweep is not None
            return {"run_id": run.run_id, "seconds": round(run.generation.seconds, 3),
                    "samples": run.sweep.records(),
                    "cells": cell_summary(run.sweep.dataframe()).to_dict(orient="records")}

        yield from _stream(lambda: _spec(prompt, params, axes, samples, raw, system_prompt,
                                         independent_seeds), "sweep", result)

    def distribution(run_id: str, sample: int = 0, step: int = 0, top_n: int = 20) -> dict:
        """The next-token distribution of one output at one step, after every processor (stage).

        Returns stages (entropy, support, mass_kept, chosen_prob, chosen_rank, top_prob per stage), the
        chosen token, and the top_n tokens of every stage; for a beam of a later group in diverse beam search,
        also earlier_groups_chose (the tokens its diversity_penalty lowered at this step).
        """
        try:
            run = store.get(check_text("run_id", run_id))
            return views.distribution_json(store, run, whole_number("sample", sample), whole_number("step", step),
                                      whole_number("top_n", top_n))
        except ParamError as exc:
            raise user_error(exc, as_html=False) from None
        except Exception as exc:  # a real fault: an id for the client, the traceback in the server log
            raise internal_error(exc, "/distribution") from None

    def compare(run_id: str, sample: int = 0, other: int = 1) -> dict:
        """Where two outputs of a run part: per step of their shared prefix (up to and including the first step
        where they choose differently), each one's choice and its probability, the total variation and both KL
        divergences between their final distributions (KL null where infinite), and first_fork (null if none).
        """
        try:
            run = store.get(check_text("run_id", run_id))
            return comparing.divergence(store, run, whole_number("sample", sample), whole_number("other", other)).data
        except ParamError as exc:
            raise user_error(exc, as_html=False) from None
        except Exception as exc:  # a real fault: an id for the client, the traceback in the server log
            raise internal_error(exc, "/compare") from None

    def _stream(make_spec: Callable[[], SweepSpec], kind: str, result: Callable[[Run], dict]) -> Iterator[dict]:
        """Run a spec: {"progress", "status"} while it decodes, then result(run). Closing this generator
        (Gradio does when the client disconnects or cancels) stops the engine at its next step."""
        run = None
        try:
            cancel = threading.Event()
            frames = views.stream_run(engine, store, make_spec(), kind, stop=cancel, slots=slots)
            try:
                for frame in frames:
                    if frame.run is not None:
                        run = frame.run
                    else:
                        yield {"progress": round(frame.progress, 4), "status": frame.status}
            finally:  # also when closed early: the engine is told to stop and its generator is closed now
                cancel.set()
                frames.close()
        except ParamError as exc:
            raise user_error(exc, as_html=False) from None
        except gr.Error:
            raise
        except Exception as exc:  # a real fault: an id for the client, the traceback in the server log
            raise internal_error(exc, f"/{kind}") from None
        assert run is not None
        yield json_safe(result(run))

    gr.api(generate, api_name="generate", **concurrency(slots))
    gr.api(sweep, api_name="sweep", **concurrency(slots))
    gr.api(distribution, api_name="distribution")
    gr.api(compare, api_name="compare")
    return {fn.__name__: list(inspect.signature(fn).parameters.values())
            for fn in (generate, sweep, distribution, compare)}


def _spec(prompt: Any, params: Any, axes: Any, samples: Any, raw: Any, system_prompt: Any,
          independent_seeds: Any = False, prefix: Any = None) -> SweepSpec:
    """The arguments of /generate (axes None) and /sweep, each type-checked by name (the prompt by SweepSpec),
    as a SweepSpec."""
    if system_prompt is not None:  # None or "" = no system prompt; [] or 0 is not
        check_text("system_prompt", system_prompt, allow_empty=True)
    check_whole("samples", samples, 1, MAX_API_SAMPLES)
    base = from_dict({} if params is None else params)  # from_dict refuses anything but an object
    return SweepSpec(prompt, base, _axes(axes), samples, check_flag("raw", raw), system_prompt or None,
                     check_flag("independent_seeds", independent_seeds), _prefixes(prefix, samples))


def _prefixes(prefix: Any, samples: int) -> tuple[str | tuple[int, ...], ...]:
    """/generate's prefix as one entry per sample: None -> none; a text or a list of token ids -> the same for
    every sample; a list of texts / id lists -> one per sample (its length must be `samples`)."""
    if prefix is None:
        return ()
    if isinstance(prefix, str) or (isinstance(prefix, list) and all(isinstance(t, int) for t in prefix)):
        return (_prefix_item(prefix),) * samples
    if isinstance(prefix, list) and len(prefix) == samples:
        return tuple(_prefix_item(p) for p in prefix)
    raise ParamError("prefix", f"a text, a list of token ids, or a list of {samples} of those (one per sample)",
                     prefix)


def _prefix_item(item: Any) -> str | tuple[int, ...]:
    if isinstance(item, str):
        return item
    if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
        return tuple(item)
    raise ParamError("prefix", "a text or a list of token ids", item)


def _sample(run: Run, row: int) -> dict[str, Any]:
    out = run.generation.rows[row]
    return {"index": row, "text": out.text, "token_ids": out.token_ids, "tokens": run.pieces[row],
            "raw_logprobs": out.raw_logprobs, "final_logprobs": out.final_logprobs,
            "finish_reason": out.finish_reason,
            **({"beam_score": out.beam_score} if out.beam_score is not None else {}),
            "metrics": {**sample_metrics(out.token_ids, out.raw_logprobs, out.raw_entropies),
                        **run.generation.watermark_scores(row), **assist_metrics(out)}}


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

