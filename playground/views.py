"""What each view shows, as plain data: HTML strings, plotly figures, DataFrames and dicts (no Gradio here).

The UI layer (playground/ui.py) and the API (playground/api.py) both call these, so a view and its endpoint
can never disagree. Runs go through the engine's sweep path (a Generate run is a sweep with no axes), and
finished runs are kept in a RunStore for the colour toggle and the Distributions view. Branching (the token
popup, branches, edit and continue, the branch tree) is in branching.py; Compare in comparing.py.
"""
from __future__ import annotations

import contextlib
import json
import math
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import plotly.graph_objects as go
import torch

from engine.events import BeamProgress, RunningBeam
from engine.generate import Engine, RowResult
from engine.metrics import ASSIST_COLUMNS, assist_metrics, cell_summary, flat_frame, json_safe, sample_metrics
from engine.models import TokenPieces
from engine.errors import ParamError, check_whole
from engine.samplers import mirostat_mu
from engine.sweepspec import SweepSpec
from engine.sweep import progress_steps, stream_sweep
from engine.switching import current_engine
from engine.trace import stage_stats

from .plots import COLOR_SCALES, distribution_figure, format_value, metric_heatmap, shorten, steps_figure
from .render import TokenView, prompt_html, samples_html, seed_note_html, stage_table, sweep_grid_html
from .runs import BranchLink, Run, RunStore
from .slots import POLL_SECONDS, RunSlots

TRACE_TOP_N = 5  # alternatives kept per token and stage (tooltips, the steps plot)
FRAME_SECONDS = 0.1  # at most ~10 streamed frames a second: the page, not the engine, is the bottleneck
GRID_METRICS = ("perplexity", "cell_diversity", "distinct_2", "mean_entropy", "repeated_4gram_rate", "num_tokens",
                "beam_score", "watermark_z", "watermark_p", "watermark_green_fraction", "synthid_score",
                "acceptance_rate", "target_forwards")
# detection scores shown beside the quality metrics where a run has them (a watermark on)
WATERMARK_COLUMNS = ("watermark_z", "watermark_p", "synthid_score")
SAMPLE_COLUMNS = ("num_tokens", "finish_reason", "perplexity", "mean_entropy", "distinct_2", "repeated_4gram_rate",
                  "beam_score")


@dataclass
class Frame:
    """One streamed update of a run: the page's HTML so far and a status line; `run` set on the last frame."""

    html: str
    status: str
    progress: float  # steps done / max steps
    run: Run | None = None


def row_label(spec: SweepSpec, row_axis_values: tuple[tuple[str, Any], ...], sample: int, beams: bool = False) -> str:
    parts = [f"{name}={_short(value)}" for name, value in row_axis_values]
    prefix = spec.prefix[sample - spec.first_sample] if spec.prefix and not beams else ()
    forced = [f"branch at step {len(prefix) - 1}"] if prefix and not isinstance(prefix, str) else (
        ["continued from a text"] if prefix else [])
    return " · ".join([*parts, f"beam {sample}" if beams else f"sample {sample}", *forced])


SHORT_TEXT = 32  # characters of a text axis value (a prompt) in a row label; the records keep it whole


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ">".join(map(str, value)) if all(isinstance(v, str) for v in value) else json.dumps(list(value))
    if isinstance(value, str):
        return shorten(value, SHORT_TEXT)
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- running ----------------------------------------------------------------------------------------------

def stream_run(engine: Engine, store: RunStore, spec: SweepSpec, kind: str, color_by: str = "final",
               stop: threading.Event | None = None, slots: RunSlots | None = None,
               parent: BranchLink | None = None) -> Iterator[Frame]:
    """Run every cell x sample of `spec` as one engine batch (kind "generate" streams its tokens as HTML).

    Yields a Frame at most every FRAME_SECONDS with the tokens so far (coloured by final probability while
    streaming; the finished run is re-rendered with alternatives), and the stored Run on the last frame.
    With `slots`, the run first waits for a free slot, yielding where it stands in the queue every
    POLL_SECONDS (no Frame has a run then); a run stopped while it waits ends with a frame saying so.
    A run over the engine's limits is refused (ParamError) before it queues. `parent`: the run and output
    this one branches from (kept with the run: the branch tree).
    """
    engine = current_engine(engine)  # the model it starts on, to the end (the page's picker may switch meanwhile)
    engine.limits.check([row.params for row in spec.rows()])  # no waiting in line only to be refused
    if slots is None:
        yield from _stream_run(engine, store, spec, kind, color_by, stop, lambda progress: None, parent)
        return
    ticket = slots.enter()
    try:
        poll = 0.0  # the first look does not wait: a queued run says so at once
        while not slots.wait(ticket, poll):
            poll = POLL_SECONDS
            if stop is not None and stop.is_set():
                yield Frame("", "Stopped before it started (it was queued)", 0.0)
                return
            yield Frame("", slots.place(ticket).message(slots.limit), 0.0)
        yield from _stream_run(engine, store, spec, kind, color_by, stop,
                               lambda progress: slots.report(ticket, progress), parent)
    finally:  # finished, failed, or closed early (the client went away): the slot or the place is freed
        slots.leave(ticket)


def _stream_run(engine: Engine, store: RunStore, spec: SweepSpec, kind: str, color_by: str,
                stop: threading.Event | None, on_progress: Callable[[float], None],
                parent: BranchLink | None = None) -> Iterator[Frame]:
    """stream_run once the run holds its slot; `on_progress` hears the fraction of steps done at every frame."""
    rows = spec.rows()
    labels = [row_label(spec, r.axis_values, r.sample, r.params.num_beams > 1) for r in rows]
    pieces = [TokenPieces(engine.loaded.tokenizer) for _ in rows]
    views: list[list[TokenView]] = [[] for _ in rows]
    total_steps, done_steps = progress_steps(rows), 0
    beam_rows = sum(r.params.num_beams > 1 for r in rows)
    sampled_steps = max([r.params.max_new_tokens for r in rows if r.params.num_beams == 1], default=0)
    last_frame = 0.0
    started = time.perf_counter()
    running_beams: dict[int, RunningBeam] = {}  # the latest preview of each beam row (rendered per frame)
    generated = 0  # tokens so far, for the live speed
    # closed early too (the page or the API client went away): the engine's loop is closed here, at once
    with contextlib.closing(stream_sweep(engine, spec, TRACE_TOP_N, stop)) as updates:
        for update, result in updates:
            done_steps += 1
            if isinstance(update, BeamProgress):
                if kind == "generate":
                    running_beams.update(update.beams)
            else:
                generated += len(update.rows)
                if kind == "generate":
                    for row, token, raw_lp, final_lp in zip(update.rows, update.tokens, update.raw_logprobs,
                                                            update.final_logprobs):
                        views[row].append(TokenView(pieces[row].add(token), math.exp(raw_lp), math.exp(final_lp)))
            if result is not None:
                # beam rows showed running beams, not their final hypotheses: those are split by the store
                streamed = ([[v.text for v in views[i]] if r.params.num_beams == 1 else None for i, r in enumerate(rows)]
                            if kind == "generate" else None)
                run = store.add(kind, spec.prompt, result.generation, labels, result if kind == "sweep" else None, streamed,
                                spec, parent, engine)
                yield Frame(render_run(store, run, color_by), run_status(run), 1.0, run)
                return
            now = time.perf_counter()
            if now - last_frame >= FRAME_SECONDS:
                last_frame = now
                if isinstance(update, BeamProgress):  # a beam batch: its outputs appear when it ends
                    status = f"beam search step {update.step + 1} ({beam_rows} beam outputs)"
                else:
                    status = (f"step {update.step + 1} / {sampled_steps} · {len(update.rows)} of {len(rows) - beam_rows} "
                              f"sampled outputs running")
                elapsed = now - started
                status += f" · {elapsed:.1f} s · {generated / max(elapsed, 1e-9):.0f} tok/s so far"
                status += sharing_note(engine.turns.in_flight - 1)
                on_progress(min(done_steps / max(total_steps, 1), 1.0))
                for row, beam in running_beams.items():  # beams reorder every step: each is drawn anew
                    views[row] = [TokenView(text, math.exp(raw), math.exp(final)) for text, raw, final
                                  in zip(engine.loaded.pieces(beam.token_ids), beam.raw_logprobs, beam.final_logprobs)]
                running_beams.clear()
                html = (prompt_html(spec.prompt) + samples_html(views, "final", labels, tooltips=False)
                        if kind == "generate" else "")
                yield Frame(html, status, min(done_steps / max(total_steps, 1), 1.0))


def sharing_note(others: int) -> str:
    """What a run's speed depends on: other runs taking turns on the engine (page, API and /v1 alike)."""
    if others <= 0:
        return ""
    return f" · sharing the engine with {others} other run{'s' if others != 1 else ''} (steps alternate)"


def run_status(run: Run) -> str:
    gen = run.generation
    stopped = sum(r.finish_reason == "cancelled" for r in gen.rows)
    tail = f" · stopped early ({stopped} output{'s' if stopped != 1 else ''} cut)" if stopped else ""
    return (f"{len(gen.rows)} output{'s' if len(gen.rows) != 1 else ''} · {gen.generated_tokens} tokens in {gen.seconds:.1f} s "
            f"({gen.generated_tokens / max(gen.seconds, 1e-9):.0f} tokens/s, one batch){tail} · {time_split(gen)}")


def time_split(gen: Any) -> str:
    """Where a run's time went: the prompt's prefill, the model's decode forwards, the trace, and the rest
    (processors, sampling, streaming to the page). A shared machine makes the same run 2-10x slower at times."""
    decode = max(gen.forward_seconds - gen.prefill_seconds, 0.0)
    rest = max(gen.seconds - gen.forward_seconds - gen.trace_seconds, 0.0)
    return (f"time: prefill {gen.prefill_seconds:.2f} s, model decode {decode:.1f} s, trace {gen.trace_seconds:.1f} s, "
            f"processors, sampling and page {rest:.1f} s (on a busy or shared machine the same run can take "
            f"several times longer)")


LONG_RUN_TOKENS = 4096  # rows x max_new_tokens above which a run is called long before it starts
LONG_RUN_SECONDS = 30.0


def run_estimate(spec: SweepSpec, tokens_per_second: float | None) -> tuple[str, bool]:
    """What a run asks for before it starts (rows x max_new_tokens), its time at the last measured speed, and
    whether it is long."""
    rows = spec.rows()
    longest = max(r.params.max_new_tokens for r in rows)
    total = sum(r.params.max_new_tokens for r in rows)
    text = f"{len(rows)} output{'s' if len(rows) != 1 else ''} x up to {longest} tokens = up to {total} tokens"
    seconds = total / tokens_per_second if tokens_per_second else None
    if seconds is not None:
        text += f", about {seconds:.0f} s at the last run's {tokens_per_second:.0f} tokens/s"
    long = total > LONG_RUN_TOKENS or (seconds is not None and seconds > LONG_RUN_SECONDS)
    if long:
        text = "A long run: " + text + ". Stop keeps what is done; fewer samples or tokens run faster"
    return text, long


# -- Generate view ----------------------------------------------------------------------------------------

def token_views(store: RunStore, run: Run) -> list[list[TokenView]]:
    """Every row's tokens with raw/final probabilities and the final stage's top alternatives."""
    label = store.engine.loaded.token_label
    trace = run.generation.trace
    views = []
    for row, (out, pieces) in enumerate(zip(run.generation.rows, run.pieces)):
        row_views = []
        for step, (piece, raw_lp, final_lp) in enumerate(zip(pieces, out.raw_logprobs, out.final_logprobs)):
            alternatives: list[tuple[str, float]] = []
            if trace is not None:
                ids, probs = trace.top_ids[step, -1, row].tolist(), trace.top_probs[step, -1, row].tolist()
                alternatives = [(label(i), p) for i, p in zip(ids, probs) if p > 0]
            row_views.append(TokenView(piece, math.exp(raw_lp), math.exp(final_lp), alternatives))
        views.append(row_views)
    return views


def render_run(store: RunStore, run: Run, color_by: str) -> str:
    footers = [f"{out.finish_reason} · {len(out.token_ids)} tokens"
               + (f" · {out.target_forwards} forwards, {out.accepted_tokens}/{out.drafted_tokens} drafts accepted"
                  if out.target_forwards is not None else "")
               + (f" · beam score {out.beam_score:.4f}" if out.beam_score is not None else "")
               + (f" · group {out.beam_group}" if out.beam_group is not None else "")
               + (f" · forced words met {sum(out.constraints_met)}/{len(out.constraints_met)}"
                  if out.constraints_met is not None else "")
               for out in run.generation.rows]
    return prompt_html(run.prompt) + samples_html(token_views(store, run), color_by, run.labels, footers, tooltips=False,
                                                  run_id=run.run_id)


def sample_table(run: Run) -> pd.DataFrame:
    """One row per output: its label, metrics and finish reason (for the table under the outputs)."""
    records = []
    groups = any(out.beam_group is not None for out in run.generation.rows)  # diverse beams: which group
    scores = [run.generation.watermark_scores(i) for i in range(len(run.generation.rows))]
    marks = [c for c in WATERMARK_COLUMNS if any(c in s for s in scores)]
    assisted = any(out.target_forwards is not None for out in run.generation.rows)  # prompt lookup's figures
    constrained = any(out.constraints_met is not None for out in run.generation.rows)  # force_words met
    for label, out, score in zip(run.labels, run.generation.rows, scores):
        metrics = sample_metrics(out.token_ids, out.raw_logprobs, out.raw_entropies)
        record = {"output": label, "finish_reason": out.finish_reason, **metrics, "beam_score": out.beam_score,
                  "beam_group": out.beam_group, **{c: score.get(c) for c in marks}, **assist_metrics(out),
                  "constraints_met": None if out.constraints_met is None else sum(out.constraints_met)}
        records.append({k: record.get(k) for k in ("output", *SAMPLE_COLUMNS, *marks,
                                                   *(["beam_group"] if groups else []),
                                                   *(["constraints_met"] if constrained else []),
                                                   *(ASSIST_COLUMNS if assisted else ()))})
    return rounded(pd.DataFrame(records))


# -- Sweep view -------------------------------------------------------------------------------------------

def sweep_outputs(run: Run, metric: str, scale: str = "clipped",
                  store: RunStore | None = None) -> tuple[str, go.Figure, pd.DataFrame]:
    """The comparison grid (HTML), the heatmap of `metric` over the axes (colours: scale) and the long-form table.

    With the store, every sample in the grid shows its output number (as in the Distributions view) and its
    tokens coloured by probability, each a link to its distribution."""
    if run.sweep is None:
        raise ParamError("run_id", "the id of a sweep run", run.run_id)
    if metric not in GRID_METRICS:
        raise ParamError("metric", f"one of {list(GRID_METRICS)}", metric)
    records = run.sweep.dataframe()
    cells = cell_summary(records)
    axes = [a.name for a in run.sweep.spec.axes]
    if metric not in cells.columns:
        raise ParamError("metric", f"one this sweep has ({', '.join(m for m in GRID_METRICS if m in cells.columns)})", metric)
    shown = [*GRID_METRICS[:3], *(["beam_score"] if "beam_score" in cells.columns else []),
             *(c for c in WATERMARK_COLUMNS if c in cells.columns),
             *(["acceptance_rate"] if "acceptance_rate" in cells.columns else [])]
    spec = run.sweep.spec
    if scale not in COLOR_SCALES:
        raise ParamError("colour scale", f"one of {list(COLOR_SCALES)}", scale)
    tokens = _grid_tokens(store, run, records) if store is not None else None
    grid = (seed_note_html(spec.independent_seeds, spec.base.seed, len(cells))
            + sweep_grid_html(cells, records, axes, shown, tokens=tokens))
    x_axis = axes[1] if len(axes) > 1 else (axes[0] if axes else None)
    y_axis = axes[0] if len(axes) > 1 else None
    heatmap = metric_heatmap(cells, metric, x_axis, y_axis, axes[2] if len(axes) > 2 else None, scale)
    table_columns = ["cell", *[f"axis_{a}" for a in axes], "sample", *(["seed"] if spec.independent_seeds else []),
                     "text", *SAMPLE_COLUMNS, "cell_diversity", *WATERMARK_COLUMNS, *ASSIST_COLUMNS]
    return grid, heatmap, rounded(records[[c for c in table_columns if c in records.columns]])


def _grid_tokens(store: RunStore, run: Run, records: pd.DataFrame) -> dict[str, dict[int, tuple[int, list[TokenView]]]]:
    """{cell label: {sample: (output number, its tokens)}}: records come one per output, in the run's order."""
    views = token_views(store, run)
    out: dict[str, dict[int, tuple[int, list[TokenView]]]] = {}
    for row, (cell, sample) in enumerate(zip(records["cell"], records["sample"])):
        out.setdefault(format_value(cell), {})[int(sample)] = (row, views[row])
    return out


def export_files(run: Run, directory: Path | None = None) -> tuple[str, str]:
    """The run's long-form records as CSV and JSON files (paths), like `python -m engine sweep --out`."""
    if run.sweep is None:
        raise ParamError("run_id", "the id of a sweep run", run.run_id)
    folder = Path(directory or tempfile.mkdtemp(prefix="sweep-"))
    records = run.sweep.dataframe()
    csv_path, json_path = folder / f"sweep-{run.run_id}.csv", folder / f"sweep-{run.run_id}.json"
    flat_frame(records).to_csv(csv_path, index=False)  # lists and dicts as JSON text, as the command line writes
    json_path.write_text(json.dumps(json_safe(run.sweep.to_json_dict()), ensure_ascii=False, indent=1))
    return str(csv_path), str(json_path)


# -- Distributions view -----------------------------------------------------------------------------------

@dataclass
class Distribution:
    """Everything the Distributions view shows for one (row, step)."""

    caption: str
    figure: go.Figure
    table: pd.DataFrame
    steps: go.Figure
    # classifier-free guidance (None without it): the unconditional distribution beside the conditional (raw) one
    # and the guidance stage's result, as a figure and a per-stage table
    guidance: go.Figure | None = None
    guidance_table: pd.DataFrame | None = None


def distribution(store: RunStore, run: Run, row: int, step: int, top_n: int = 20) -> Distribution:
    """The figures and table of the Distributions view (the slider's path: nothing else is computed)."""
    check_whole("top_n", top_n, 1, 100)
    replay = store.replay(run, row, step)
    label = store.engine.loaded.token_label
    out = run.generation.rows[row]
    stats = stage_stats(replay.probs, replay.chosen)
    # no figure title: the caption above the plot names the output and step (a title collides with the toolbar)
    figure = distribution_figure(replay.stage_names, replay.probs, replay.chosen, label, top_n)
    trace = run.generation.trace
    length = len(out.token_ids)
    if trace is not None:
        entropy = trace.entropy[:length, :, row].numpy()
        names = replay.stage_names
    else:
        entropy = pd.DataFrame({"raw": out.raw_entropies}).to_numpy()
        names = ["raw"]
    steps = steps_figure(entropy, [math.exp(v) for v in out.raw_logprobs], [math.exp(v) for v in out.final_logprobs],
                         names, step)
    text_so_far = "".join(run.pieces[row][:step])
    chosen_text = run.pieces[row][step] if step < len(run.pieces[row]) else label(replay.chosen)
    caption = (f"{run.labels[row]} · step {step} of {length - 1}: after “{_tail(text_so_far)}” the model "
               f"chose “{chosen_text}”")
    params = run.generation.params[row]
    if params.mirostat == 2 and not params.greedy:  # mirostat's state at each step
        mu = mirostat_mu(params.mirostat_tau, params.mirostat_eta, out.final_logprobs)
        caption += f" · mirostat mu {mu[step]:.2f} bits (steps 0-{length - 1}: " + ", ".join(f"{m:.1f}" for m in mu) + ")"
    if out.peer_tokens is not None and out.peer_tokens[step]:  # diverse beams: what diversity_penalty lowered
        peers = Counter(out.peer_tokens[step])
        caption += (" · earlier beam groups chose " + ", ".join(
            f"“{label(t)}”" + (f" x{n}" if n > 1 else "") for t, n in peers.items())
            + f" at this step (diversity_penalty {params.diversity_penalty:g} per choice)")
    if replay.premature_layer is not None:  # DoLa: the layer this step contrasted the final layer with
        caption += (f" · DoLa ({_dola_text(params.dola_layers)}): final layer - layer {replay.premature_layer}"
                    + (f" (per step: {', '.join(map(str, out.premature_layers))})" if out.premature_layers else ""))
    guidance = guidance_stages(replay)
    if guidance is not None:
        names, probs = guidance
        caption += (f" · classifier-free guidance {params.guidance_scale:g} against "
                    + (f"“{_tail(params.negative_prompt)}”" if params.negative_prompt else "the prompt's last token"))
        return Distribution(caption, figure, stage_table(stats, replay.stage_names), steps,
                            distribution_figure(names, probs, replay.chosen, label, top_n, collapse_unchanged=False),
                            stage_table(stage_stats(probs, replay.chosen), names))
    return Distribution(caption, figure, stage_table(stats, replay.stage_names), steps)


def _dola_text(dola_layers: str | tuple[int, ...]) -> str:
    return dola_layers if isinstance(dola_layers, str) else "layers " + ", ".join(map(str, dola_layers))


GUIDANCE_STAGES = ["unconditional", "raw (conditional)", "after guidance"]


def guidance_stages(replay: Any) -> tuple[list[str], Any] | None:
    """Classifier-free guidance's three distributions of a replayed step, [3, V] (the replay's own numbers):
    the unconditional companion's, the conditional (raw) one, and what the guidance stage made of them."""
    if replay.unconditional is None or "guidance" not in replay.stage_names:
        return None
    after = replay.probs[replay.stage_names.index("guidance")]
    return GUIDANCE_STAGES, torch.stack([replay.unconditional, replay.probs[0], after])


def distribution_json(store: RunStore, run: Run, row: int, step: int, top_n: int = 20) -> dict[str, Any]:
    """The same distributions as plain JSON for the /distribution endpoint: per-stage stats and top tokens."""
    check_whole("top_n", top_n, 1, 100)
    replay = store.replay(run, row, step)
    label = store.engine.loaded.token_label
    stats = stage_stats(replay.probs, replay.chosen)
    top = []
    for name, probs in zip(replay.stage_names, replay.probs):
        values, ids = probs.topk(min(top_n, probs.shape[-1]))
        top.append({"stage": name, "tokens": [{"id": int(i), "text": label(int(i)), "prob": float(p)}
                                              for i, p in zip(ids, values) if p > 0]})
    return json_safe({"run_id": run.run_id, "sample": row, "step": step, "label": run.labels[row],
                      "chosen": {"id": replay.chosen, "text": label(replay.chosen)},
                      **_peer_json(run.generation.rows[row], step, label),
                      **_unconditional_json(replay, top_n, label),
                      **({} if replay.premature_layer is None else {"premature_layer": replay.premature_layer}),
                      "stages": [{"stage": name, **s} for name, s in zip(replay.stage_names, stats)],
                      "top_tokens": top})


def _unconditional_json(replay: Any, top_n: int, label: Callable[[int], str]) -> dict[str, Any]:
    """Classifier-free guidance: the unconditional distribution's top tokens (the companion's raw next-token
    distribution at this step)."""
    if replay.unconditional is None:
        return {}
    values, ids = replay.unconditional.topk(min(top_n, replay.unconditional.shape[-1]))
    return {"unconditional": [{"id": int(i), "text": label(int(i)), "prob": float(p)} for i, p in zip(ids, values)]}


def _peer_json(out: RowResult, step: int, label: Callable[[int], str]) -> dict[str, Any]:
    """Diverse beam rows: the tokens the earlier groups' beams chose at this step (diversity_penalty's input)."""
    if out.peer_tokens is None:
        return {}
    return {"earlier_groups_chose": [{"id": t, "text": label(t)} for t in out.peer_tokens[step]]}


def _tail(text: str, width: int = 60) -> str:
    return text if len(text) <= width else "…" + text[-width:]


def rounded(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 4 significant digits for display; missing values stay missing (shown blank, never 'nan')."""
    out = df.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: None if v is None or not math.isfinite(v) else float(f"{v:.4g}"))
    return out
