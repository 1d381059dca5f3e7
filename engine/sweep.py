"""A whole parameter sweep as one engine batch: SweepSpec -> rows -> one decode -> records and a DataFrame."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator

import pandas as pd

from .generate import Engine, GenerationResult, StepUpdate
from .metrics import cell_diversity, sample_metrics
from .params import SweepRow, SweepSpec


@dataclass
class SweepResult:
    spec: SweepSpec
    rows: list[SweepRow]
    generation: GenerationResult

    def records(self) -> list[dict[str, Any]]:
        """One record per sample: the cell's parameter values, sample index, seed, text, tokens, logprobs, metrics."""
        diversity_by_cell: dict[int, float | None] = {}
        for row in self.rows:
            if row.cell not in diversity_by_cell:
                same_cell = [r.token_ids for sr, r in zip(self.rows, self.generation.rows) if sr.cell == row.cell]
                diversity_by_cell[row.cell] = cell_diversity(same_cell)
        records = []
        for row, out in zip(self.rows, self.generation.rows):
            record: dict[str, Any] = {"cell": row.cell, "sample": row.sample}
            record.update({f"axis_{name}": _plain(value) for name, value in row.axis_values})
            record.update(row.params.to_dict())
            record.update(text=out.text, finish_reason=out.finish_reason, token_ids=out.token_ids,
                          logprobs=out.raw_logprobs)
            record.update(sample_metrics(out.token_ids, out.raw_logprobs, out.raw_entropies))
            record["cell_diversity"] = diversity_by_cell[row.cell]
            records.append(record)
        return records

    def dataframe(self) -> pd.DataFrame:
        return pd.DataFrame(self.records())

    def to_json_dict(self) -> dict[str, Any]:
        gen = self.generation
        return {
            "spec": self.spec.to_dict(),
            "prompt_token_count": len(gen.prompt_ids),
            "generated_tokens": gen.generated_tokens,
            "seconds": round(gen.seconds, 3),
            "samples": self.records(),
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def stream_sweep(engine: Engine, spec: SweepSpec, trace_top_n: int = 0,
                 cancel: threading.Event | None = None) -> Iterator[tuple[StepUpdate, SweepResult | None]]:
    """Run every cell x sample of `spec` as ONE batch; yields each step, and the SweepResult with the last."""
    rows = spec.rows()
    prompt_ids = engine.encode(spec.prompt, raw=spec.raw, system_prompt=spec.system_prompt)
    for update in engine.stream(prompt_ids, [r.params for r in rows], [r.sample for r in rows], trace_top_n, cancel):
        yield update, (SweepResult(spec, rows, update.result) if update.result is not None else None)


def run_sweep(engine: Engine, spec: SweepSpec, trace_top_n: int = 0,
              cancel: threading.Event | None = None) -> SweepResult:
    result = None
    for _, result in stream_sweep(engine, spec, trace_top_n, cancel):
        pass
    assert result is not None
    return result
