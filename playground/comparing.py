"""Compare, as plain data (no Gradio here): another output's settings on this output's context at one step, stage
by stage (where two processor orders part), and where two outputs of a run part (per shared step: total variation
and KL divergence both ways between their final distributions). The Distributions view and /compare show these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from engine.distances import entropy, kl_divergence, total_variation
from engine.errors import ParamError
from engine.metrics import json_safe

from .plots import distribution_figure, divergence_figure
from .runs import Run, RunStore
from .views import rounded


@dataclass
class Comparison:
    caption: str
    table: pd.DataFrame  # after k processors: each configuration's stage, entropy, support; distance between them
    figure: go.Figure  # the other configuration's stages on this context
    data: dict[str, Any]


def compare(store: RunStore, run: Run, row: int, step: int, other: int, top_n: int = 20,
            other_run: Run | None = None) -> Comparison:
    """Run output `other`'s configuration on output `row`'s context at `step`, stage by stage beside `row`'s own.
    `other_run`: the run `other` is an output of (an earlier run; default: `run` itself).

    For an order sweep this shows where two orders part: after k processors, the total variation distance
    between the two distributions is 0 until the first processor that the orders place differently and that
    changes something.
    """
    run.check_row_step(row, step)
    theirs_run = other_run or run
    if not isinstance(other, int) or not 0 <= other < theirs_run.row_count:
        raise ParamError("compare with", f"an output index in [0, {theirs_run.row_count - 1}]", other)
    own = store.replay(run, row, step)
    theirs = store.engine.replay(run.generation, row, step, theirs_run.generation.params[other])
    records = []
    for k, (name_a, name_b, p, q) in enumerate(zip(own.stage_names, theirs.stage_names, own.probs, theirs.probs)):
        records.append({"after": k, f"output {row}": name_a, f"H {row}": entropy(p), f"support {row}": int((p > 0).sum()),
                        f"output {other}": name_b, f"H {other}": entropy(q), f"support {other}": int((q > 0).sum()),
                        "distance (TV)": total_variation(p, q)})
    table = rounded(pd.DataFrame(records))
    parted = next((r["after"] for r in records if r["distance (TV)"] > 1e-6), None)
    where = (f"they part after {parted} processor(s): {records[parted][f'output {row}']} vs "
             f"{records[parted][f'output {other}']}" if parted is not None else "they agree at every stage")
    caption = (f"{run.labels[row]} at step {step}, and the same context through the settings of "
               f"{_label(theirs_run, other, run)}: "
               f"{where}; final distance {records[-1]['distance (TV)']:.3f}")
    figure = distribution_figure(theirs.stage_names, theirs.probs, own.chosen, store.engine.loaded.token_label, top_n)
    data = json_safe({"run_id": run.run_id, "sample": row, "step": step, "other": other, "stages": records,
                      "parted_after": parted})
    return Comparison(caption, table, figure, data)


@dataclass
class Divergence:
    caption: str
    table: pd.DataFrame  # per shared step: each output's choice and its probability, TV, KL both ways
    figure: go.Figure
    data: dict[str, Any]


def divergence(store: RunStore, run: Run, row: int, other: int, other_run: Run | None = None) -> Divergence:
    """Where two outputs part: per step of their shared prefix, how far apart their final distributions are.
    `other_run`: the run `other` is an output of (an earlier run, same prompt; default: `run` itself).

    Both outputs see the same context at each step up to and including the first step where they choose
    differently (the fork), so their final distributions there differ only by their settings and state.
    TV = 1/2 sum |p - q|; KL(p || q) = sum p log(p / q) is infinite where p keeps a token that q removed.
    """
    run.check_row_step(row)
    theirs_run = other_run or run
    if not isinstance(other, int) or isinstance(other, bool) or not 0 <= other < theirs_run.row_count:
        raise ParamError("compare with", f"an output index in [0, {theirs_run.row_count - 1}]", other)
    gen, theirs = run.generation, theirs_run.generation
    if gen.prompt_of(row) != theirs.prompt_of(other):
        raise ParamError("compare with", f"an output with the same prompt as output {row} (a shared prefix)", other)
    a, b = gen.rows[row].token_ids, theirs.rows[other].token_ids
    fork = next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), None)
    shared = fork + 1 if fork is not None else min(len(a), len(b))
    records = []
    if shared:
        p = store.engine.final_distributions(gen, row, shared)  # [T, V]
        q = store.engine.final_distributions(theirs, other, shared)  # [T, V]
        label = store.engine.loaded.token_label
        for t in range(shared):
            records.append({"step": t, f"output {row} chose": label(a[t]), f"p {row}": float(p[t, a[t]]),
                            f"output {other} chose": label(b[t]), f"p {other}": float(q[t, b[t]]),
                            "TV": total_variation(p[t], q[t]),
                            f"KL({row}‖{other})": kl_divergence(p[t], q[t]), f"KL({other}‖{row})": kl_divergence(q[t], p[t])})
    names = (str(row), str(other))
    figure = divergence_figure([r["TV"] for r in records], [r[f"KL({row}‖{other})"] for r in records],
                               [r[f"KL({other}‖{row})"] for r in records], names, fork)
    caption = (f"{_label(run, row, theirs_run)} and {_label(theirs_run, other, run)}: "
               + _fork_sentence(records, row, other, fork, shared))
    kl_columns = (f"KL({row}‖{other})", f"KL({other}‖{row})")
    shown = [{k: ("∞" if v == math.inf else float(f"{v:.4g}")) if k in kl_columns else v for k, v in r.items()}
             for r in records]
    table = rounded(pd.DataFrame(shown))
    data = json_safe({"run_id": run.run_id, "sample": row, "other_run_id": theirs_run.run_id, "other": other,
                      "first_fork": fork, "steps": records})
    return Divergence(caption, table, figure, data)


def _label(run: Run, row: int, beside: Run) -> str:
    """An output's label; with the run's number when it is compared with another run's output."""
    return run.labels[row] if run is beside else f"run {run.number} · {run.labels[row]}"


def _fork_sentence(records: list[dict[str, Any]], row: int, other: int, fork: int | None, shared: int) -> str:
    if fork is None:
        return f"they choose the same token at all {shared} steps they share"
    at = records[fork]
    return (f"the same first {fork} token(s), then at step {fork} {at[f'output {row} chose']} "
            f"(p={at[f'p {row}']:.3g}) vs {at[f'output {other} chose']} (p={at[f'p {other}']:.3g}); "
            f"TV there {at['TV']:.3f}")
