"""The batched decoding loop: prefill the shared prompt once, copy its KV cache into every row, decode all rows.

    engine = Engine(load_model())
    result = engine.generate(engine.encode("Hello"), [SamplingParams(temperature=0.7)] * 4, sample_indices=[0, 1, 2, 3])

Rows differ only in their SamplingParams (and sample index); every parameter is a per-row tensor, so one step
is one model forward for all unfinished rows plus a fixed number of tensor ops: no Python loop over rows.

This module is the loop; the rest lives next to it: prefill.py (the model's forwards), row_tensors.py (the
per-row tensors), stops.py (stop strings), trace.py (the per-step summaries), results.py and events.py (what a run
returns and streams), replay.py (one step again at full vocabulary), beams.py (beam search).
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterator, Mapping, Sequence

import torch

from .events import RunningBeam, StepUpdate
from .forcing import ForcedTokens
from .guidance import Companions, unconditional_contexts
from .healing import heal_prompt
from .joining import Admit, check_joinable, join
from .kv_cache import reserve
from .models import DEFAULT_MODEL, LoadedModel
from .errors import ParamError
from .order import DEFAULT_ORDER
from .params import SamplingParams, check_vocabulary
from .prefill import decode_one_token, prefill
from .processors import plan_stages
from .replay import Replay, final_distributions, replay
from .results import FINISH_REASONS, GenerationResult, RowResult
from .row_groups import RowGroups
from .row_tensors import row_params
from .shared_batches import SharedBatches
from .rowstate import RowParams
from .steps import Endings, Rows, choose, step_update, synced_time
from .watermark import Detector
from .sampling import row_keys
from .stops import cut_at_stop
from .trace import Trace, TraceRecorder
from .turns import Turns

# kept importable from here: the types moved to their own modules
__all__ = ["Engine", "EngineLimits", "FINISH_REASONS", "GenerationResult", "Replay", "RowResult", "RunningBeam",
           "StepUpdate"]

@dataclass(frozen=True)
class EngineLimits:
    """Work one call may ask for; exceeding any limit is refused before any work starts.

    A server sets smaller limits for what one request may ask (a hosted Space: app.py's --max-rows,
    --max-new-tokens, --max-total-tokens); `hints` says, per limit name, how that server's limit is raised, so the
    refusal tells the person what to change, e.g. "this server's max_rows; raise it with --max-rows" (without a
    hint: the EngineLimits field)."""

    max_rows: int = 512
    max_total_tokens: int = 131_072  # sum over rows of max_new_tokens
    max_new_tokens: int = 100_000  # per row (the knob's own range ends here too)
    # whether a request may name a draft model (assistant_model) other than the bundled one: each name loads a model
    # into the server, so a hosted server (app.py --no-model-picker) turns it off
    other_models: bool = True
    hints: Mapping[str, str] = field(default_factory=dict, compare=False)  # limit name -> how to raise it

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_total_tokens", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamError(name, "a whole number >= 1", value)

    def check(self, params: Sequence[SamplingParams]) -> None:
        """Refuse a run over the budget (needs no model, so callers can check before loading one)."""
        if not params:
            raise ParamError("rows", "at least one configuration", 0)
        if len(params) > self.max_rows:
            raise ParamError("rows", f"at most {self.max_rows} rows (cells x samples) per run "
                                     f"({self._limit('max_rows')})", len(params))
        longest = max(p.max_new_tokens for p in params)
        if longest > self.max_new_tokens:
            raise ParamError("max_new_tokens", f"at most {self.max_new_tokens} new tokens per row "
                                               f"({self._limit('max_new_tokens')})", longest)
        if not self.other_models:
            named = next((p.assistant_model for p in params if p.assistant_model not in ("", DEFAULT_MODEL)), None)
            if named is not None:
                raise ParamError("assistant_model", f"empty or \"{DEFAULT_MODEL}\" on this server (it loads no other "
                                 f"models: {self.hints.get('other_models') or 'EngineLimits.other_models'})", named)
        total = sum(p.max_new_tokens for p in params)
        if total > self.max_total_tokens:
            raise ParamError("max_new_tokens", f"at most {self.max_total_tokens} new tokens in all, rows x "
                                               f"max_new_tokens ({self._limit('max_total_tokens')})", total)

    def _limit(self, name: str) -> str:
        """Which limit refused, and how to raise it (the caller's hint), else the field that sets it."""
        return self.hints.get(name) or f"EngineLimits.{name}"


class Engine:
    """Batched generation over one loaded model."""

    def __init__(self, loaded: LoadedModel, limits: EngineLimits = EngineLimits()):
        self.loaded = loaded
        self.limits = limits
        self.turns = Turns()  # concurrent runs (page, API, /v1 batches) alternate steps, first come first served
        self.shared = SharedBatches(self)  # the page's runs join each other's batches (engine/shared_batches.py)
        self.draft_models: dict[str, LoadedModel | ParamError] = {}  # draft models by name (draft_model.py)

    # -- inputs ------------------------------------------------------------------------------------------

    def encode(self, prompt: str, raw: bool = False, system_prompt: str | None = None) -> list[int]:
        return self.loaded.encode_prompt(prompt, raw=raw, system_prompt=system_prompt)

    def check(self, prompt_ids: Sequence[int], params: Sequence[SamplingParams]) -> None:
        """Refuse work over the budget or beyond the model's context, before any of it starts."""
        if not prompt_ids:
            raise ParamError("prompt", "a non-empty prompt", "")
        params = [p.for_prompt(len(prompt_ids)) for p in params]  # min_length / max_length count the prompt
        self.limits.check(params)
        check_vocabulary(params, self.loaded.vocab_size)
        longest = len(prompt_ids) + max(p.max_new_tokens for p in params)
        if longest > self.loaded.context_length:
            raise ParamError("prompt", f"at most {self.loaded.context_length} tokens together with max_new_tokens "
                                       f"({len(prompt_ids)} prompt + {max(p.max_new_tokens for p in params)} new)", longest)

    def row_params(self, params: Sequence[SamplingParams], sample_indices: Sequence[int] | None = None) -> RowParams:
        """Tokenize the text-valued knobs and build the per-row tensors."""
        return row_params(self.loaded, params, sample_indices)

    # -- the loop ----------------------------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[int], params: Sequence[SamplingParams],
                 sample_indices: Sequence[int] | None = None, trace_top_n: int = 0,
                 cancel: threading.Event | None = None,
                 forced: Sequence[Sequence[int]] | None = None) -> GenerationResult:
        update = None
        for update in self.stream(prompt_ids, params, sample_indices, trace_top_n, cancel, forced=forced):
            pass
        assert update is not None and update.result is not None
        return update.result

    def stream(self, prompt_ids: Sequence[int] | Sequence[Sequence[int]], params: Sequence[SamplingParams],
               sample_indices: Sequence[int] | None = None, trace_top_n: int = 0,
               cancel: threading.Event | None = None,
               cancel_rows: Callable[[], Collection[int]] | None = None,
               forced: Sequence[Sequence[int]] | None = None, admit: Admit | None = None,
               group_results: bool = False) -> Iterator[StepUpdate]:
        """Decode every row together, yielding the tokens of each step; the last update carries the result.

        prompt_ids: one prompt for every row, or one per row (rows with different prompts share the batch:
        each distinct prompt is prefilled on its own, then the caches are left-padded into one).
        Cancel between steps with `cancel.set()` (every row ends with finish_reason "cancelled"), or some rows
        only: `cancel_rows()` is asked once per step for the row indices to end now.
        forced: per row, tokens it takes at its first steps instead of sampling (a branch: engine/forcing.py);
        they are decoded as steps of the row, so the noise stream stays aligned with an unforced run.
        admit: asked once per step boundary for rows that join the batch now (continuous batching:
        engine/joining.py); they take the next row indices, and the result lists them after the first rows. With a
        trace, joining rows ask for the same trace_top_n and get trace rows indexed by their own steps.
        group_results: each update also carries the result of each request (the first rows, each Joining) whose
        last rows ended at that step, as it would be alone (engine/row_groups.py).
        Each step is taken in the engine's turn (engine/turns.py): runs streaming at the same time alternate steps.
        """
        return self.turns.taking_turns(self._decode(prompt_ids, params, sample_indices, trace_top_n, cancel,
                                                    cancel_rows, forced, admit, group_results))

    @torch.inference_mode()
    def _decode(self, prompt_ids: Sequence[int] | Sequence[Sequence[int]], params: Sequence[SamplingParams],
                sample_indices: Sequence[int] | None, trace_top_n: int, cancel: threading.Event | None,
                cancel_rows: Callable[[], Collection[int]] | None,
                forced: Sequence[Sequence[int]] | None = None, admit: Admit | None = None,
                group_results: bool = False) -> Iterator[StepUpdate]:
        """The loop of `stream`: each next() is one step (the first also reads the prompt)."""
        if admit is not None:
            check_joinable(params, forced)
        if any(p.prompt_lookup_num_tokens or p.assistant_model for p in params):  # drafts verified: engine/assisted.py
            from .assisted import assisted_decode
            yield from assisted_decode(self, prompt_ids, params, sample_indices, trace_top_n, cancel, cancel_rows,
                                       forced)
            return
        params, sample_indices, row_prompts, shared = self._checked(prompt_ids, params, sample_indices)
        forcing = ForcedTokens.build(forced, params, self.loaded.vocab_size, self.loaded.device)
        started = time.perf_counter()
        device, batch = self.loaded.device, len(params)
        max_steps = max(p.max_new_tokens for p in params)
        recorder = TraceRecorder(Trace(batch, max_steps, 1 + len(DEFAULT_ORDER), trace_top_n) if trace_top_n > 0 else None)
        endings = Endings(self.loaded, params)

        # Prefill once per distinct prompt, then give every row its own copy of the cache; a guided row's
        # unconditional context joins the batch as a companion row (engine/guidance.py)
        contexts = unconditional_contexts(self.loaded.tokenizer, params, row_prompts, self.loaded.context_length)
        extra = [c for c in contexts if c is not None]
        t0 = synced_time(device)
        start = prefill(self.loaded, row_prompts[:1] if shared else row_prompts, batch, extra)
        forward_seconds = prefill_seconds = synced_time(device) - t0
        logits, cache = start.logits, start.cache  # logits: [B, V] raw next-token logits
        reserve(cache.kv, max_steps)  # each step writes its new position only, not a copy of the whole cache
        companions = Companions.start(contexts, start.extra_logits, device)
        rows = Rows(torch.arange(batch, device=device), self.row_params(params, sample_indices), start.state)
        plans = plan_stages(rows.params)
        groups = RowGroups(row_prompts, params, sample_indices, started, prefill_seconds) if group_results else None
        # per step: (row ids, token, raw logp, final logp, raw entropy, p at adaptive-P's input)
        history: list[tuple[torch.Tensor, ...]] = []

        step = 0
        for step in itertools.count():  # every row ends by its own max_new_tokens (joined rows count from their own start)
            # 1-2. every row's processors in its own order, then its next token (engine/steps.py: choose); each row's
            # own step keys its noise (a row that joined mid-run counts from its first step)
            if companions is not None:
                rows.state.unconditional_logits = companions.unconditional_logits(logits)
            keys = row_keys(rows.params.seed, rows.params.sample_index, rows.state.row_step)  # [b]
            forced_now = forcing.at(rows.ids, step) if forcing is not None else None  # [b] or None
            choice = choose(logits, rows.ids, rows.state, rows.params, plans, keys, forced_now, recorder)
            chosen, emitted = choice.chosen, choice.emitted
            history.append(emitted)
            recorder.record(step, rows.ids, chosen)
            rows.state.append(chosen, choice.final_logp, choice.adaptive_p)

            # 3. which rows are done: EOS or a stop string, max_new_tokens, nothing left to sample, or cancelled
            done = endings.after_step(rows, chosen, choice.empty, cancel, cancel_rows)  # [b]
            finished = rows.ids[done].tolist()
            update = step_update(step, emitted, finished, endings.reasons_of(finished), recorder)
            if groups is not None and finished:
                update.group_results = groups.ended(finished, self, history, endings.reasons_of(list(range(len(params)))),
                                                    recorder, forward_seconds)
            if len(finished) == len(rows.ids):
                break
            yield update

            # 4. finished rows leave the batch (and the cache); the others decode one more token
            if finished:
                keep = (~done).nonzero()[:, 0]
                if companions is None:
                    cache.keep(keep)
                else:  # a finished row's companion leaves with it
                    cache_rows, companions = companions.keep(keep, len(rows.ids))
                    cache.keep(cache_rows)
                rows = rows.select(keep)
                plans = plan_stages(rows.params)
                chosen = chosen[keep]
            t0 = synced_time(device)
            if companions is None:
                logits = decode_one_token(self.loaded.model, chosen, cache)  # [b, V]
            else:  # one forward: the rows, then their companions fed the same tokens
                logits = companions.split(decode_one_token(self.loaded.model, companions.fed(chosen), cache), len(chosen))
            # 5. rows joining now (continuous batching): their prompt prefilled alone, their rows appended
            for joining in (admit() if admit is not None else ()):
                joined_at = synced_time(device)
                rows, cache, logits, prompt, joined = join(self, joining, rows, cache, logits, endings, trace_top_n)
                recorder.add_rows(len(joined), step + 1, max(p.max_new_tokens for p in joined))  # their step 0: the next
                if groups is not None:  # its forwards count from its prefill (the join) on, as alone
                    groups.add(prompt, joined, joining.sample_indices, joined_at, forward_seconds + joined_at - t0,
                               synced_time(device) - joined_at, recorder)
                plans = plan_stages(rows.params)
                params, sample_indices = params + joined, sample_indices + list(joining.sample_indices)
                row_prompts, shared = row_prompts + [prompt] * len(joined), False
            forward_seconds += synced_time(device) - t0

        if recorder.trace is not None:
            recorder.trace.trim(recorder.steps_recorded)  # room for steps never taken (rows ended early) is freed
        result = GenerationResult(
            prompt_ids=list(row_prompts[0]), row_prompt_ids=None if shared else row_prompts, params=params,
            sample_indices=sample_indices, rows=self._row_results(history, endings.reasons_of(list(range(len(params)))), params),
            trace=recorder.trace, seconds=time.perf_counter() - started, forward_seconds=forward_seconds,
            prefill_seconds=prefill_seconds, trace_seconds=recorder.seconds, detector=self.detector)
        yield dataclasses.replace(update, result=result)

    @property
    def detector(self) -> Detector:
        """Watermark detection for this model: its vocabulary, the BOS id transformers' WatermarkDetector strips
        (the model config's), the EOS id SynthID's detector masks from, the device the green lists are drawn on."""
        loaded = self.loaded
        return Detector(loaded.vocab_size, getattr(loaded.model.config, "bos_token_id", None),
                        loaded.tokenizer.eos_token_id, str(loaded.device))

    def replay(self, result: GenerationResult, row: int, step: int, params: SamplingParams | None = None) -> Replay:
        """Full-vocabulary distributions of every stage for one (row, step) of a finished run (engine/replay.py);
        with `params`, what another configuration's processors make of exactly that context."""
        return replay(self.loaded, result, row, step, params)

    def final_distributions(self, result: GenerationResult, row: int, steps: int) -> torch.Tensor:
        """[steps, V] the distribution a row of a finished run sampled from at each of its first `steps` steps."""
        return final_distributions(self.loaded, result, row, steps)

    def text_of(self, token_ids: list[int], stops: tuple[str, ...]) -> str:
        """The row's text, cut before the first stop string (which is not part of the output, as in OpenAI)."""
        return cut_at_stop(self.loaded.decode(token_ids), stops)

    # -- helpers -----------------------------------------------------------------------------------------

    def _checked(self, prompt_ids: Sequence[int] | Sequence[Sequence[int]], params: Sequence[SamplingParams],
                 sample_indices: Sequence[int] | None
                 ) -> tuple[list[SamplingParams], list[int], list[list[int]], bool]:
        """A stream's inputs, refused before any work when they do not fit -> (params, sample indices, one prompt
        per row, whether every row has the same prompt)."""
        params = list(params)
        sample_indices = list(sample_indices) if sample_indices is not None else [0] * len(params)
        if len(sample_indices) != len(params):
            raise ParamError("sample_indices", f"one per row ({len(params)})", len(sample_indices))
        beams = [p.num_beams for p in params if p.num_beams > 1]
        if beams:
            raise ParamError("num_beams", "1 in this loop (beam configurations run through a sweep)", beams[0])
        contrastive = [p.penalty_alpha for p in params if p.penalty_alpha > 0]
        if contrastive:
            raise ParamError("penalty_alpha", "0 in this loop (contrastive search runs through a sweep)", contrastive[0])
        dola = [p.dola_layers for p in params if p.dola_layers]
        if dola:
            raise ParamError("dola_layers", "empty in this loop (DoLa runs through a sweep: engine/dola.py)", dola[0])
        row_prompts = self.healed_prompts(_row_prompts(prompt_ids, len(params)), params)
        params = [p.for_prompt(len(row_prompt)) for p, row_prompt in zip(params, row_prompts)]
        prompts = self.check_rows(row_prompts, params)
        return params, sample_indices, row_prompts, prompts == 1

    def healed_prompts(self, row_prompts: list[list[int]], params: Sequence[SamplingParams]) -> list[list[int]]:
        """Each row's prompt, healed (engine/healing.py) for the rows with token_healing: once per distinct prompt,
        and always from the prompt as given (healing a healed prompt again could change it again)."""
        if not any(p.token_healing for p in params):
            return row_prompts
        self.check_rows(row_prompts, params)  # refused before the healing forward too
        healed: dict[tuple[int, ...], list[int]] = {}
        out = []
        for row_prompt, p in zip(row_prompts, params):
            key = tuple(row_prompt)
            if p.token_healing and key not in healed:
                healed[key] = heal_prompt(self.loaded, key)
            out.append(healed[key] if p.token_healing else row_prompt)
        return out

    def check_rows(self, row_prompts: Sequence[Sequence[int]], params: Sequence[SamplingParams]) -> int:
        """Rows with a prompt each: the budget over all of them, then each prompt with its own rows (their lengths
        count from that prompt's length). Returns how many distinct prompts there are."""
        self.limits.check(params)
        by_prompt: dict[tuple[int, ...], list[SamplingParams]] = {}
        for row_prompt, p in zip(row_prompts, params):
            by_prompt.setdefault(tuple(row_prompt), []).append(p)
        for row_prompt, rows_of_prompt in by_prompt.items():
            self.check(list(row_prompt), rows_of_prompt)
        return len(by_prompt)

    def _row_results(self, history: list[tuple[torch.Tensor, ...]], reasons: list[str],
                     params: list[SamplingParams]) -> list[RowResult]:
        """Regroup the per-step tensors by row: one stable sort by row id instead of per-step Python lists."""
        ids, tokens, raw_logp, final_logp, entropy, adaptive = (torch.cat(column).cpu() for column in zip(*history))
        order = torch.sort(ids, stable=True).indices
        counts = torch.bincount(ids, minlength=len(params)).tolist()
        columns = [c[order].split(counts) for c in (tokens, raw_logp, final_logp, entropy, adaptive)]
        results = []
        for i, (tok, rl, fl, h, ap) in enumerate(zip(*columns)):
            token_ids = tok.tolist()
            results.append(RowResult(token_ids, self.text_of(token_ids, params[i].stop), rl.tolist(), fl.tolist(),
                                     h.tolist(), reasons[i],
                                     adaptive_probs=ap.tolist() if params[i].adaptive_target > 0 else None))
        return results


def _row_prompts(prompt_ids: Sequence[int] | Sequence[Sequence[int]], rows: int) -> list[list[int]]:
    """One prompt for every row, or one per row -> a list of per-row prompts (validated)."""
    if len(prompt_ids) and isinstance(prompt_ids[0], (list, tuple)):
        prompts = [list(p) for p in prompt_ids]  # type: ignore[arg-type]
        if len(prompts) != rows:
            raise ParamError("prompt_ids", f"one prompt for all rows or one per row ({rows})", len(prompts))
        return prompts
    return [list(prompt_ids)] * rows  # type: ignore[arg-type]


