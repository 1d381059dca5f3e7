"""A whole parameter sweep as one engine batch: SweepSpec -> rows -> one decode -> records and a DataFrame.

Sampling and greedy rows decode together in one batched loop (streamed step by step). Beam cells run after
them, every cell of the same beam width, group count and length in one beam batch (engine/beams.py); a beam cell's rows
are its num_return_sequences best hypotheses, best first, and its steps stream as BeamProgress (engine/events.py).
Contrastive rows (penalty_alpha > 0) run next, those of the same top_k and length in one batch (engine/contrastive.py),
and DoLa rows (dola_layers) last, those of the same prompt in one batch (engine/dola.py).
A decoding_mode axis (engine/decoding_modes.py) only sets each cell's knobs, so its cells take these same routes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Generator, Iterator

import pandas as pd

from .beam_results import BeamResult, BeamSequence, BeamSteps
from .beams import beam_search_steps
from .contrastive import ContrastiveSteps, contrastive_steps
from .dola import dola_steps, layer_table
from .errors import ParamError
from .events import BeamProgress, RunningBeam, StepUpdate, Update
from .forcing import check_prefix
from .generate import Engine
from .metrics import assist_metrics, cell_diversity, sample_metrics
from .params import SamplingParams
from .results import GenerationResult, RowResult
from .sweepspec import SweepRow, SweepSpec


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
        # a sweep that watermarks some rows scores every row's output for the green list (bias 0: the baseline)
        green_any = any(r.params.watermark_bias for r in self.rows)
        for i, (row, out) in enumerate(zip(self.rows, self.generation.rows)):
            record: dict[str, Any] = {"cell": row.cell, "sample": row.sample,
                                      "prompt_tokens": len(self.generation.prompt_of(i))}
            record.update({f"axis_{name}": _plain(value) for name, value in row.axis_values})
            record.update(row.params.to_dict())
            record.update(text=out.text, finish_reason=out.finish_reason, token_ids=out.token_ids,
                          logprobs=out.raw_logprobs)
            if out.beam_score is not None:
                record["beam_score"] = out.beam_score
            if out.beam_group is not None:
                record["beam_group"] = out.beam_group
            if out.constraints_met is not None:  # constrained beam search: how many force_words entries it holds
                record["constraints_met"] = sum(out.constraints_met)
            if out.degeneration_penalties:  # contrastive search: the mean over the output's tokens
                record["degeneration_penalty"] = sum(out.degeneration_penalties) / len(out.degeneration_penalties)
            if out.premature_layers is not None:  # DoLa: the layer each step contrasted with
                record["premature_layers"] = out.premature_layers
            record.update(sample_metrics(out.token_ids, out.raw_logprobs, out.raw_entropies))
            record.update(self.generation.watermark_scores(i, always=green_any))
            record.update(assist_metrics(out))
            record["cell_diversity"] = diversity_by_cell[row.cell]
            records.append(record)
        return records

    def dataframe(self) -> pd.DataFrame:
        return pd.DataFrame(self.records())

    def to_json_dict(self) -> dict[str, Any]:
        gen = self.generation
        return {
            "spec": self.spec.to_dict(),
            "prompt_token_count": len(gen.prompt_ids),  # the first row's; each record has its own
            "generated_tokens": gen.generated_tokens,
            "seconds": round(gen.seconds, 3),
            "samples": self.records(),
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def stream_sweep(engine: Engine, spec: SweepSpec, trace_top_n: int = 0,
                 cancel: threading.Event | None = None) -> Iterator[tuple[Update, SweepResult | None]]:
    """Run every cell x sample of `spec`; yields a StepUpdate for each step of the sampling rows, then a
    BeamProgress for each step of each beam batch (the running beams in the places of its output rows), and the
    SweepResult with the last update (a StepUpdate). The trace (trace_top_n > 0) is kept only when no cell uses
    beams."""
    spec_rows = spec.rows()
    row_prompts = _encode_prompts(engine, spec, spec_rows)  # [rows] token ids; one list object per distinct prompt
    # what each row runs: min_length / max_length (prompt-inclusive, its own prompt) as min/max_new_tokens
    rows = [dataclasses.replace(r, params=r.params.for_prompt(len(p))) for r, p in zip(spec_rows, row_prompts)]
    forced = _forced_prefixes(engine, spec, rows)  # per row, or None
    prompts_of = (lambda idx: row_prompts[0]) if not spec.varies_prompt else (lambda idx: [row_prompts[i] for i in idx])
    # the whole sweep is refused before any work: each prompt with its rows, and each beam batch with its rows
    engine.check_rows(row_prompts, [r.params for r in rows])
    beam_batches = _beam_batches(rows)
    for cell_rows in beam_batches:
        engine.check(row_prompts[cell_rows[0][0]],
                     [rows[idx[0]].params for idx in cell_rows for _ in range(rows[idx[0]].params.num_beams)])
    contrastive_batches = _contrastive_batches(rows)
    for batch_rows in contrastive_batches:
        engine.check(row_prompts[batch_rows[0]], [rows[i].params for i in batch_rows])
    dola_batches = _dola_batches(rows)
    for batch_rows in dola_batches:  # the layers too: each row's against the model's
        engine.check(row_prompts[batch_rows[0]], [rows[i].params for i in batch_rows])
        layer_table(engine.loaded, [rows[i].params for i in batch_rows])
    if dola_batches and forced is not None:
        raise ParamError("prefix", "empty with dola_layers (a DoLa row starts from the prompt here)",
                         list(spec.prefix))
    sampled = [i for i, r in enumerate(rows) if _sampling_loop(r)]
    if len(sampled) == len(rows):  # the common case: one batched loop, streamed as it is
        params = [r.params for r in rows]
        if engine.shared.join and engine.shared.joinable(params, forced, spec.varies_prompt):
            # it joins a batch decoding now, or starts one others may join (engine/shared_batches.py)
            updates = engine.shared.stream(row_prompts[0], params, [r.sample for r in rows], trace_top_n, cancel)
        else:
            updates = engine.stream(prompts_of(sampled), params, [r.sample for r in rows], trace_top_n, cancel,
                                    forced=forced)
        with contextlib.closing(updates):  # closed early: the run's rows leave its batch at once
            for update in updates:
                yield update, (SweepResult(spec, rows, update.result) if update.result is not None else None)
        return

    started = time.perf_counter()
    results: dict[int, RowResult] = {}
    forward_seconds, last = 0.0, None
    if sampled:  # no trace: a mixed sweep's result has none (its rows are replayed instead)
        for update in engine.stream(prompts_of(sampled), [rows[i].params for i in sampled],
                                    [rows[i].sample for i in sampled], 0, cancel,
                                    forced=None if forced is None else [forced[i] for i in sampled]):
            last = StepUpdate(update.step, [sampled[j] for j in update.rows], update.tokens,
                              [sampled[j] for j in update.finished], update.raw_logprobs, update.final_logprobs,
                              update.raw_top, update.finish_reasons)
            if update.result is not None:
                results.update({sampled[j]: r for j, r in enumerate(update.result.rows)})
                forward_seconds = update.result.forward_seconds
            yield last, None  # the last step too: streamed tokens add up to the final ones
    for cell_rows in beam_batches:
        configs = [rows[idx[0]].params for idx in cell_rows]
        steps = beam_search_steps(engine, row_prompts[cell_rows[0][0]], configs, cancel)
        batch = yield from _beam_progress(steps, cell_rows)
        for idx, beams in zip(cell_rows, batch):
            results.update(zip(idx, (beam_row(engine, seq, beams.params, cancel) for seq in beams.sequences)))
    for batch_rows in contrastive_batches:  # each distinct configuration once; its samples are the same text
        configs = list(dict.fromkeys(rows[i].params for i in batch_rows))
        item_of = [configs.index(rows[i].params) for i in batch_rows]
        steps = contrastive_steps(engine, row_prompts[batch_rows[0]], configs, cancel)
        outputs = yield from _contrastive_progress(steps, batch_rows, item_of)
        results.update({i: dataclasses.replace(outputs[item]) for i, item in zip(batch_rows, item_of)})
    for batch_rows in dola_batches:  # each distinct (configuration, sample) once: a greedy row's samples are one
        keys = [(rows[i].params, 0 if rows[i].params.greedy else rows[i].sample) for i in batch_rows]
        distinct = list(dict.fromkeys(keys))
        item_of = [distinct.index(key) for key in keys]
        steps = dola_steps(engine, row_prompts[batch_rows[0]], [p for p, _ in distinct], [s for _, s in distinct],
                           cancel)
        outputs = yield from _contrastive_progress(steps, batch_rows, item_of)
        results.update({i: dataclasses.replace(outputs[item]) for i, item in zip(batch_rows, item_of)})
    generation = GenerationResult(prompt_ids=list(row_prompts[0]), params=[r.params for r in rows],
                                  row_prompt_ids=[list(p) for p in row_prompts] if spec.varies_prompt else None,
                                  sample_indices=[r.sample for r in rows], rows=[results[i] for i in range(len(rows))],
                                  trace=None, seconds=time.perf_counter() - started, forward_seconds=forward_seconds,
                                  detector=engine.detector)
    final = StepUpdate(last.step if last else 0, [], [], list(range(len(rows))), [], [], [],
                       [r.finish_reason for r in generation.rows], result=generation)
    yield final, SweepResult(spec, rows, generation)


def _beam_progress(steps: BeamSteps, cell_rows: list[list[int]]
                   ) -> Generator[tuple[BeamProgress, None], None, list[BeamResult]]:
    """A beam batch's steps as BeamProgress (each cell's running beams in the places of its output rows, best
    first); returns the batch's results."""
    shown = max(len(idx) for idx in cell_rows)  # the ranks that are output rows
    while True:
        try:
            progress = next(steps)
        except StopIteration as end:
            return end.value
        tokens, logprobs = progress.tokens[:, :shown].tolist(), progress.logprobs[:, :shown].tolist()
        beams = {row: RunningBeam(tokens[item][rank], [lp[0] for lp in logprobs[item][rank]],
                                  [lp[1] for lp in logprobs[item][rank]])
                 for item, idx in enumerate(cell_rows) for rank, row in enumerate(idx)}
        yield BeamProgress(progress.step - 1, beams), None


def _contrastive_progress(steps: ContrastiveSteps, batch_rows: list[int], item_of: list[int]
                          ) -> Generator[tuple[BeamProgress, None], None, list[RowResult]]:
    """A contrastive (or DoLa) batch's steps as BeamProgress (each row's output so far); returns its results."""
    while True:
        try:
            step, running = next(steps)
        except StopIteration as end:
            return end.value
        yield BeamProgress(step - 1, {row: running[item] for row, item in zip(batch_rows, item_of)}), None


def beam_row(engine: Engine, seq: BeamSequence, params: SamplingParams, cancel: threading.Event | None) -> RowResult:
    """A returned hypothesis as an output row: "stop" when it ended with EOS, "cancelled" when the search was
    stopped before it reached max_new_tokens, "no_candidates" when there is none, else "length"."""
    ended = seq.token_ids and seq.token_ids[-1] in engine.loaded.eos_token_ids
    full = len(seq.token_ids) >= params.max_new_tokens
    reason = "stop" if ended else "length" if full or cancel is None or not cancel.is_set() else "cancelled"
    if seq.score is None:
        reason = "no_candidates"  # every continuation was removed before a hypothesis finished
    return RowResult(seq.token_ids, seq.text, seq.raw_logprobs, seq.final_logprobs, seq.raw_entropies, reason,
                     beam_score=seq.score, peer_tokens=seq.peer_tokens, beam_group=seq.group,
                     constraints_met=seq.constraints_met)


def progress_steps(rows: list[SweepRow]) -> int:
    """How many progress updates stream_sweep yields at most before its result: the sampling rows' steps, then
    the steps of each beam batch."""
    sampled = [r.params.max_new_tokens for r in rows if _sampling_loop(r)]
    beams = [rows[cells[0][0]].params.max_new_tokens for cells in _beam_batches(rows)]
    contrastive = [rows[batch[0]].params.max_new_tokens for batch in _contrastive_batches(rows)]
    dola = [max(rows[i].params.max_new_tokens for i in batch) for batch in _dola_batches(rows)]
    return max(sampled, default=0) + sum(beams) + sum(contrastive) + sum(dola)


def _sampling_loop(row: SweepRow) -> bool:
    """Whether a row decodes in the batched sampling loop (not beams, contrastive search or DoLa)."""
    return row.params.num_beams == 1 and row.params.penalty_alpha == 0 and not row.params.dola_layers


def _dola_batches(rows: list[SweepRow]) -> list[list[int]]:
    """DoLa rows (dola_layers set) grouped by prompt: each group one batch (engine/dola.py); its row indices."""
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.params.dola_layers:
            groups[(r.prompt, r.system_prompt)].append(i)
    return list(groups.values())


def _beam_batches(rows: list[SweepRow]) -> list[list[list[int]]]:
    """Beam cells grouped by (prompt, num_beams, num_beam_groups, max_new_tokens, constrained or not): each group one beam batch (a
    beam batch reads one prompt); each cell its row indices."""
    cells: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.params.num_beams > 1:
            cells[r.cell].append(i)
    groups: dict[tuple[str, str | None, int, int, int, bool], list[list[int]]] = defaultdict(list)
    for idx in cells.values():
        r, p = rows[idx[0]], rows[idx[0]].params
        groups[(r.prompt, r.system_prompt, p.num_beams, p.num_beam_groups, p.max_new_tokens,
                bool(p.force_words))].append(idx)
    return list(groups.values())


def _contrastive_batches(rows: list[SweepRow]) -> list[list[int]]:
    """Contrastive rows (penalty_alpha > 0) grouped by (prompt, top_k, max_new_tokens): each group one batch
    (engine/contrastive.py); its row indices."""
    groups: dict[tuple[str, str | None, int, int], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.params.penalty_alpha > 0:
            groups[(r.prompt, r.system_prompt, r.params.top_k, r.params.max_new_tokens)].append(i)
    return list(groups.values())


def _forced_prefixes(engine: Engine, spec: SweepSpec, rows: list[SweepRow]) -> list[list[int]] | None:
    """Each row's forced first tokens (its sample's prefix; a text is encoded without special tokens), checked
    against the vocabulary and the row's max_new_tokens; None without prefixes."""
    if not spec.prefix:
        return None
    tokens = [engine.loaded.tokenizer.encode(p, add_special_tokens=False) if isinstance(p, str) else list(p)
              for p in spec.prefix]
    mine = [tokens[r.sample - spec.first_sample] for r in rows]
    for r, prefix in zip(rows, mine):
        check_prefix(prefix, r.params.max_new_tokens, engine.loaded.vocab_size, f"prefix of sample {r.sample}")
    return mine


def _encode_prompts(engine: Engine, spec: SweepSpec, rows: list[SweepRow]) -> list[list[int]]:
    """Each row's prompt tokens: every distinct (prompt, system prompt) encoded once, its rows sharing the list."""
    encoded: dict[tuple[str, str | None], list[int]] = {}
    for r in rows:
        key = (r.prompt, r.system_prompt)
        if key not in encoded:
            encoded[key] = list(engine.encode(r.prompt, raw=spec.raw, system_prompt=r.system_prompt))
    return [encoded[(r.prompt, r.system_prompt)] for r in rows]



def run_sweep(engine: Engine, spec: SweepSpec, trace_top_n: int = 0,
              cancel: threading.Event | None = None) -> SweepResult:
    result = None
    for _, result in stream_sweep(engine, spec, trace_top_n, cancel):
        pass
    assert result is not None
    return result
