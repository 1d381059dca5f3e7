"""A browser tab's run history, as data (no Gradio here): one summary per run, newest last, at most HISTORY_SIZE.

The page keeps the list in the tab's own state (one list per browser tab, gone with the tab). The runs themselves
live in the server's RunStore, which keeps the last RunStore.capacity runs (and at most RunStore.MAX_BYTES of
them) over every visitor: an entry whose run the server has dropped still shows its summary, but can no longer
be reopened or compared (it says so).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd

from engine.errors import ParamError
from engine.params import SamplingParams

from .runs import Run, RunStore

HISTORY_SIZE = 20  # runs kept per browser tab
PROMPT_CHARS = 40  # of the prompt's start shown per entry
SETTINGS_SHOWN = 5  # changed parameters named per entry (then "…")
_DEFAULTS = SamplingParams().to_dict()


def key_settings(run: Run) -> str:
    """What sets the run apart: its parameters that differ from the defaults, and a sweep's axes."""
    base = run.spec.base if run.spec is not None else run.generation.params[0]
    changed = [f"{name}={value}" for name, value in base.to_dict().items()
               if name != "order" and value != _DEFAULTS[name]]
    if base.order != SamplingParams().order:
        changed.append("order changed")
    shown = changed[:SETTINGS_SHOWN] + (["…"] if len(changed) > SETTINGS_SHOWN else [])
    axes = [f"{axis.name} × {len(axis.values)}" for axis in run.spec.axes] if run.spec is not None else []
    return ", ".join(axes + shown) or "defaults"


def entry(run: Run, now: datetime | None = None) -> dict[str, Any]:
    """A run's summary: JSON-like, so the page's state holds it as it is."""
    gen = run.generation
    prompt = " ".join(run.prompt.split())
    return {"run_id": run.run_id, "number": run.number, "kind": run.kind,
            "time": (now or datetime.now(timezone.utc)).strftime("%H:%M:%S"),
            "prompt": prompt[:PROMPT_CHARS] + ("…" if len(prompt) > PROMPT_CHARS else ""),
            "settings": key_settings(run), "outputs": run.row_count, "tokens": gen.generated_tokens,
            "tokens_per_s": round(gen.generated_tokens / gen.seconds, 1) if gen.seconds > 0 else None}


def remember(history: Any, run: Run, limit: int = HISTORY_SIZE, now: datetime | None = None) -> list[dict[str, Any]]:
    """The history with `run` at its end (a run already in it, e.g. reopened, is not added twice), at most
    `limit` entries (the oldest dropped)."""
    entries = [item for item in (history if isinstance(history, list) else []) if isinstance(item, dict)]
    if any(item.get("run_id") == run.run_id for item in entries):
        return entries
    return (entries + [entry(run, now)])[-limit:]


def table(history: list[dict[str, Any]], store: RunStore, current: str = "") -> pd.DataFrame:
    """The history as the page shows it, newest first; `current`: the run the page shows now."""
    records = [{"run": item["number"], "time (UTC)": item["time"], "kind": item["kind"], "prompt": item["prompt"],
                "settings": item["settings"], "outputs": item["outputs"], "tokens/s": item["tokens_per_s"],
                "now": "shown" if item["run_id"] == current else
                    ("" if store.find(item["run_id"]) is not None else "dropped by the server")}
               for item in reversed(history)]
    columns = ["run", "time (UTC)", "kind", "prompt", "settings", "outputs", "tokens/s", "now"]
    return pd.DataFrame(records, columns=columns)


def choices(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The history's runs for a menu, newest first: (label, run id)."""
    return [(f"run {item['number']} · {item['time']} · {item['kind']} · {item['prompt']}", item["run_id"])
            for item in reversed(history)]


def kept_run(store: RunStore, history: list[dict[str, Any]], run_id: Any) -> Run:
    """The run of a history entry, if the server still keeps it; ParamError naming the limits otherwise."""
    if not isinstance(run_id, str) or all(item.get("run_id") != run_id for item in history):
        raise ParamError("earlier run", "a run from this tab's history", run_id)
    run = store.find(run_id)
    if run is None:
        raise ParamError("earlier run", f"a run the server still keeps (it keeps the last {store.capacity} runs of "
                                        f"all visitors together; run it again)", run_id)
    return run
