"""The batched decoding loop: prefill the shared prompt once, copy its KV cache into every row, decode all rows.

    engine = Engine(load_model())
    result = engine.generate(engine.encode("Hello"), [SamplingParams(temperature=0.7)] * 4, sample_indices=[0, 1, 2, 3])

Rows differ only in their SamplingParams (and sample index); every parameter is a per-row tensor, so one step
is one model forward for all unfinished rows plus a fixed number of tensor ops: no Python loop over rows.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterator, Sequence

import torch

from .models import LoadedModel
from .params import DEFAULT_ORDER, ParamError, SamplingParams
from .prefill import decode_one_token, prefill
from .processors import apply_pipeline, plan_stages
from .row_tensors import row_params
from .rowstate import DecodeState, RowParams
from .sampling import choose_next, row_keys
from .stops import cut_at_stop, stop_hits
from .trace import StageSummary, Trace, log_normalizer_and_entropy, summarize

FINISH_REASONS = ("length", "stop", "cancelled", "no_candidates")  # no_candidates: the processors removed every token


@dataclass(frozen=True)
class EngineLimits:
    """Work one call may ask for; exceeding either is refused before any work starts."""

    max_rows: int = 512
    max_total_tokens: int = 131_072  # sum over rows of max_new_tokens

    def check(self, params: Sequence[SamplingParams]) -> None:
        """Refuse a run over the budget (needs no model, so callers can check before loading one)."""
        if not params:
            raise ParamError("rows", "at least one configuration", 0)
        if len(params) > self.max_rows:
            raise ParamError("rows", f"at most {self.max_rows} rows (cells x samples) per run", len(params))
        total = sum(p.max_new_tokens for p in params)
        if total > self.max_total_tokens:
            raise ParamError("max_new_tokens", f"a budget of at most {self.max_total_tokens} new tokens in all "
                                               f"(rows x max_new_tokens); this run asks for", total)


@dataclass
class RowResult:
    token_ids: list[int]
    text: str
    raw_logprobs: list[float]  # log p of each chosen token under the unmodified model
    final_logprobs: list[float]  # log p of each chosen token under the final (processed) distribution
    raw_entropies: list[float]  # entropy (nats) of the raw distribution at each step
    finish_reason: str  # "stop" (EOS or stop string), "length", "cancelled" or "no_candidates" (nothing left)
    beam_score: float | None = None  # a beam row's sequence score (transformers' sequences_scores)
    # diverse beam search: per step, the tokens the earlier groups' beams chose (what diversity_penalty saw),
    # and the beam group the output grew in
    peer_tokens: list[list[int]] | None = None
    beam_group: int | None = None


@dataclass
class GenerationResult:
    prompt_ids: list[int]
    params: list[SamplingParams]
    sample_indices: list[int]
    rows: list[RowResult]
    trace: Trace | None
    seconds: float
    forward_seconds: float  # the model's forwards: the prefill and every decode step
    row_prompt_ids: list[list[int]] | None = None  # one prompt per row when the rows' prompts differ
    prefill_seconds: float = 0.0  # of forward_seconds, the prompt's prefill
    trace_seconds: float = 0.0  # summarising the stages for the trace (0 without one)

    def prompt_of(self, row: int) -> list[int]:
        return self.row_prompt_ids[row] if self.row_prompt_ids is not None else self.prompt_ids

    @property
    def generated_tokens(self) -> int:
        return sum(len(r.token_ids) for r in self.rows)


@dataclass
class Replay:
    """The distribution at every stage of one (row, step): stage 0 raw, then after each processor in order."""

    stage_names: list[str]
    probs: torch.Tensor  # [S, V] float32
    chosen: int


@dataclass
class RunningBeam:
    """A beam still being searched, shown in the place of an output row until the search ends."""

    token_ids: list[int]
    raw_logprobs: list[float]
    final_logprobs: list[float]


@dataclass
class StepUpdate:
    """Tokens chosen at one step. rows: indices of the rows that got a token; finished: rows that ended."""

    step: int
    rows: list[int]
    tokens: list[int]
    finished: list[int]
    raw_logprobs: list[float]  # per entry of `rows`: log p of its token under the raw model
    final_logprobs: list[float]  # ... and under the final (processed) distribution it was sampled from
    raw_top: list[list[tuple[int, float]]]  # per entry: the raw model's top-N (id, log p); empty without a trace
    finish_reasons: list[str]  # per entry of `finished`: "stop", "length", "cancelled" or "no_candidates"
    result: GenerationResult | None = None  # set on the last update only
    # a step of a beam batch (rows empty): per output row of its cells, the running beam of that rank
    beam_preview: dict[int, RunningBeam] | None = None


@dataclass
class _Rows:
    """The unfinished rows of a run and everything indexed by them (kept in step as rows leave)."""

    ids: torch.Tensor  # [b] original row index
    params: RowParams
    state: DecodeState

    def select(self, keep: torch.Tensor) -> "_Rows":
        return _Rows(self.ids[keep], self.params.select(keep), self.state.select(keep))


def _row_prompts(prompt_ids: Sequence[int] | Sequence[Sequence[int]], rows: int) -> list[list[int]]:
    """One prompt for every row, or one per row -> a list of per-row prompts (validated)."""
    if len(prompt_ids) and isinstance(prompt_ids[0], (list, tuple)):
        prompts = [list(p) for p in prompt_ids]  # type: ignore[arg-type]
        if len(prompts) != rows:
            raise ParamError("prompt_ids", f"one prompt for all rows or one per row ({rows})", len(prompts))
        return prompts
    return [list(prompt_ids)] * rows  # type: ignore[arg-type]


class Engine:
    """Batched generation over one loaded model."""

    def __init__(self, loaded: LoadedModel, limits: EngineLimits = EngineLimits()):
        self.loaded = loaded
        self.limits = limits

    # -- inputs ------------------------------------------------------------------------------------------

    def encode(self, prompt: str, raw: bool = False, system_prompt: str | None = None) -> list[int]:
        return self.loaded.encode_prompt(prompt, raw=raw, system_prompt=system_prompt)

    def check(self, prompt_ids: Sequence[int], params: Sequence[SamplingParams]) -> None:
        """Refuse work over the budget or beyond the model's context, before any of it starts."""
        if not prompt_ids:
            raise ParamError("prompt", "a non-empty prompt", "")
        self.limits.check(params)
        for p in params:
            for token, _ in p.logit_bias:
                if token >= self.loaded.vocab_size:
                    raise ParamError("logit_bias", f"token ids in [0, {self.loaded.vocab_size - 1}]", token)
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
                 cancel: threading.Event | None = None) -> GenerationResult:
        update = None
        for update in self.stream(prompt_ids, params, sample_indices, trace_top_n, cancel):
            pass
        assert update is not None and update.result is not None
        return update.result

    @torch.inference_mode()
    def stream(self, prompt_ids: Sequence[int] | Sequence[Sequence[int]], params: Sequence[SamplingParams],
               sample_indices: Sequence[int] | None = None, trace_top_n: int = 0,
               cancel: threading.Event | None = None,
               cancel_rows: Callable[[], Collection[int]] | None = None) -> Iterator[StepUpdate]:
        """Decode every row together, yielding the tokens of each step; the last update carries the result.

        prompt_ids: one prompt for every row, or one per row (rows with different prompts share the batch:
        each distinct prompt is prefilled on its own, then the caches are left-padded into one).
        Cancel between steps with `cancel.set()` (every row ends with finish_reason "cancelled"), or some rows
        only: `cancel_rows()` is asked once per step for the row indices to end now.
        """
        params = list(params)
        sample_indices = list(sample_indices) if sample_indices is not None else [0] * len(params)
        if len(sample_indices) != len(params):
            raise ParamError("sample_indices", f"one per row ({len(params)})", len(sample_indices))
        beams = [p.num_beams for p in params if p.num_beams > 1]
        if beams:
            raise ParamError("num_beams", "1 in this loop (beam configurations run through a sweep)", beams[0])
        row_prompts = _row_prompts(prompt_ids, len(params))
        self.limits.check(params)
        by_prompt: dict[tuple[int, ...], list[SamplingParams]] = {}
        for row_prompt, p in zip(row_prompts, params):  # each prompt with its own rows' lengths (own positions)
            by_prompt.setdefault(tuple(row_prompt), []).append(p)
        for row_prompt, row_params in by_prompt.items():
            self.check(list(row_prompt), row_params)
        shared = len(by_prompt) == 1
        started = time.perf_counter()
        device = self.loaded.device
        batch = len(params)
        max_steps = max(p.max_new_tokens for p in params)
        max_new = torch.tensor([p.max_new_tokens for p in params], device=device)
        eos = torch.tensor(self.loaded.eos_token_ids, device=device)
        trace = Trace(batch, max_steps, 1 + len(DEFAULT_ORDER), trace_top_n) if trace_top_n > 0 else None

        # Prefill once per distinct prompt, then give every row its own copy of the cache.
        t0 = self._sync_time()
        start = prefill(self.loaded, row_prompts[:1] if shared else row_prompts, batch)
        forward_seconds = prefill_seconds = self._sync_time() - t0
        logits, cache = start.logits, start.cache  # logits: [B, V] raw next-token logits
        trace_seconds = 0.0
        rows = _Rows(torch.arange(batch, device=device), self.row_params(params, sample_indices), start.state)
        plans = plan_stages(rows.params)
        history: list[tuple[torch.Tensor, ...]] = []  # per step: (row ids, token, raw logp, final logp, raw entropy)
        finish = torch.zeros(batch, dtype=torch.long, device=device)  # index into FINISH_REASONS

        step = 0
        for step in range(max_steps):
            # 1. every row's processors, in its own order; the trace summarises each stage that changed
            raw_lse, raw_entropy = log_normalizer_and_entropy(logits)  # [b], [b]
            t_trace = time.perf_counter()
            stages: list[StageSummary] = [summarize(logits, trace_top_n)] if trace is not None else []
            trace_seconds += time.perf_counter() - t_trace

            def on_stage(_: int, scores: torch.Tensor, changed: bool) -> None:
                nonlocal trace_seconds
                if trace is not None:
                    t_stage = time.perf_counter()
                    stages.append(summarize(scores, trace_top_n) if changed else stages[-1])
                    trace_seconds += time.perf_counter() - t_stage

            scores = apply_pipeline(logits, rows.state, rows.params, plans, on_stage)
            # a row whose processors removed every token has nothing to sample from: it ends at this step with no
            # token ("no_candidates"); its raw logits stand in only so that the batch's arithmetic stays finite
            empty = scores.amax(-1) == float("-inf")  # [b]
            any_empty = bool(empty.any())
            if any_empty:
                scores = torch.where(empty[:, None], logits, scores)

            # 2. the next token of every row: argmax for greedy rows, seeded Gumbel-max for the others
            chosen = choose_next(scores, rows.params.greedy, row_keys(rows.params.seed, rows.params.sample_index, step))  # [b]
            final_logp = scores.gather(1, chosen[:, None])[:, 0] - scores.logsumexp(dim=-1)
            raw_logp = logits.gather(1, chosen[:, None])[:, 0] - raw_lse
            emitted = (rows.ids, chosen, raw_logp, final_logp, raw_entropy)
            if any_empty:  # the rows with no candidates emit nothing
                emitted = tuple(t[~empty] for t in emitted)
            history.append(emitted)
            if trace is not None:
                t_trace = time.perf_counter()
                trace.record(step, rows.ids, stages, chosen)
                trace_seconds += time.perf_counter() - t_trace
            rows.state.append(chosen, final_logp)

            # 3. which rows are done: EOS or a stop string ("stop"), or max_new_tokens ("length")
            stopped = torch.isin(chosen, eos) | stop_hits(self.loaded.decode, rows.state.tokens, rows.state.step,
                                                          [params[i] for i in rows.ids.tolist()])
            done = stopped | (rows.state.step >= max_new[rows.ids])
            finish[rows.ids[stopped]] = FINISH_REASONS.index("stop")
            if any_empty:
                finish[rows.ids[empty]] = FINISH_REASONS.index("no_candidates")
                done = done | empty
            if cancel is not None and cancel.is_set():
                finish[rows.ids[~done]] = FINISH_REASONS.index("cancelled")
                done = torch.ones_like(done)
            if cancel_rows is not None and (leaving := cancel_rows()):
                # rows whose consumer went away (e.g. a client disconnected) leave at this step
                gone = torch.tensor([i in leaving for i in rows.ids.tolist()], device=device) & ~done
                finish[rows.ids[gone]] = FINISH_REASONS.index("cancelled")
                done = done | gone
            ids, toks = emitted[0].tolist(), emitted[1].tolist()
            raw_list, final_list = torch.stack([emitted[2], emitted[3]]).tolist()  # one transfer
            logps = raw_list, final_list, self._raw_top(trace, step, ids)
            if bool(done.all()):
                break
            finished = rows.ids[done].tolist()
            yield StepUpdate(step, ids, toks, finished, *logps, [FINISH_REASONS[finish[i]] for i in finished])

            # 4. finished rows leave the batch (and the cache); the others decode one more token
            if finished:
                keep = (~done).nonzero()[:, 0]
                cache.keep(keep)
                rows = rows.select(keep)
                plans = plan_stages(rows.params)
                chosen = chosen[keep]
            t0 = self._sync_time()
            logits = decode_one_token(self.loaded.model, chosen, cache)  # [b, V]
            forward_seconds += self._sync_time() - t0

        if trace is not None:
            trace.trim(step + 1)  # the room for steps never taken (rows ended before max_new_tokens) is freed
        result = GenerationResult(
            prompt_ids=list(row_prompts[0]), row_prompt_ids=None if shared else row_prompts, params=params, sample_indices=sample_indices,
            rows=self._row_results(history, finish.tolist(), params), trace=trace,
            seconds=time.perf_counter() - started, forward_seconds=forward_seconds, prefill_seconds=prefill_seconds,
            trace_seconds=trace_seconds)
        finished = rows.ids[done].tolist()
        yield StepUpdate(step, ids, toks, finished, *logps, [FINISH_REASONS[finish[i]] for i in finished], result=result)

    @torch.inference_mode()
    def replay(self, result: GenerationResult, row: int, step: int, params: SamplingParams | None = None) -> "Replay":
        """Full-vocabulary distributions of every stage for one (row, step) of a finished run.

        Recomputes the raw logits with one forward of prompt + the row's first `step` tokens and rebuilds the
        processors' state from those tokens, so it equals what the batch saw without keeping [B, V] per step.
        With `params`, the same context goes through another configuration's processors instead (e.g. another
        order): what that configuration would have made of exactly this context.
        """
        out = result.rows[row]
        if not 0 <= step < len(out.token_ids):
            raise ParamError("step", f"an integer in [0, {len(out.token_ids) - 1}] for row {row}", step)
        device, vocab = self.loaded.device, self.loaded.vocab_size
        params = params if params is not None else result.params[row]
        prompt = torch.tensor([result.prompt_of(row)], device=device)
        generated = torch.tensor([out.token_ids[:step]], dtype=torch.long, device=device)
        logits = self.loaded.model(input_ids=torch.cat([prompt, generated], dim=1), logits_to_keep=1).logits[:, -1, :].float()
        beam_row = result.params[row].num_beams > 1
        if params.num_beams > 1:  # beam search runs its processors on log-probabilities (as transformers does)
            logits = torch.log_softmax(logits, dim=-1)
        stages = [logits.softmax(-1)[0]]
        # a beam run keys every beam with sample index 0 and records no surprise (its final log-probs are
        # unnormalized scores); a sampled row's state is rebuilt from what it recorded
        final_logp = None if beam_row else torch.tensor([out.final_logprobs[:step]], dtype=torch.float32, device=device)
        state = DecodeState.start(prompt, vocab, generated, final_logp)
        if out.peer_tokens is not None and params.num_beam_groups > 1:  # what the earlier beam groups chose
            state.peer_counts = torch.zeros(1, vocab, device=device)
            state.peer_counts[0].index_add_(0, torch.tensor(out.peer_tokens[step], dtype=torch.long, device=device),
                                            torch.ones(len(out.peer_tokens[step]), device=device))
        apply_pipeline(logits, state,
                       self.row_params([params], [0 if beam_row else result.sample_indices[row]]),
                       on_stage=lambda _s, scores, _c: stages.append(scores.softmax(-1)[0]))
        return Replay(["raw", *params.order], torch.stack(stages).cpu(), out.token_ids[step])

    # -- helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _raw_top(trace: Trace | None, step: int, ids: list[int]) -> list[list[tuple[int, float]]]:
        """The raw model's top-N (id, log p) of this step for the rows `ids` (empty lists without a trace)."""
        if trace is None:
            return [[] for _ in ids]
        top_ids, top_probs = trace.top_ids[step, 0, ids].tolist(), trace.top_probs[step, 0, ids].log().tolist()
        return [list(zip(i, p)) for i, p in zip(top_ids, top_probs)]

    def _sync_time(self) -> float:
        if self.loaded.device.type == "cuda":
            torch.cuda.synchronize(self.loaded.device)
        return time.perf_counter()

    def _row_results(self, history: list[tuple[torch.Tensor, ...]], finish: list[int],
                     params: list[SamplingParams]) -> list[RowResult]:
        """Regroup the per-step tensors by row: one stable sort by row id instead of per-step Python lists."""
        ids, tokens, raw_logp, final_logp, entropy = (torch.cat(column).cpu() for column in zip(*history))
        order = torch.sort(ids, stable=True).indices
        counts = torch.bincount(ids, minlength=len(params)).tolist()
        columns = [c[order].split(counts) for c in (tokens, raw_logp, final_logp, entropy)]
        results = []
        for i, (tok, rl, fl, h) in enumerate(zip(*columns)):
            token_ids = tok.tolist()
            results.append(RowResult(token_ids, self.text_of(token_ids, params[i].stop), rl.tolist(), fl.tolist(),
                                     h.tolist(), FINISH_REASONS[finish[i]]))
        return results

    def text_of(self, token_ids: list[int], stops: tuple[str, ...]) -> str:
        """The row's text, cut before the first stop string (which is not part of the output, as in OpenAI)."""
        return cut_at_stop(self.loaded.decode(token_ids), stops)
