"""/v1 requests that search instead of sampling row by row: beam search (num_beams > 1; diverse with
num_beam_groups, constrained with force_words), contrastive search (penalty_alpha > 0, top_k > 1) and DoLa
(dola_layers: its own loop, engine/dola.py; the n choices are samples 0..n-1, equal when greedy).

They run through the engine's own searches (engine/beams.py, engine/contrastive.py; the same code a sweep's beam and
contrastive cells run, taking turns on the engine with the other runs) and are answered whole: the n best beams
are the n choices. Streaming, logprobs, echo and several prompts are refused with a 400 naming the field: a
beam's tokens are not final until the search ends, and these answers carry no per-token alternatives here.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable

from fastapi.responses import JSONResponse

from engine.beams import beam_search
from engine.beams import check_batch as check_beams
from engine.contrastive import check_batch as check_contrastive
from engine.contrastive import contrastive_search
from engine.dola import dola_decode, layer_table
from engine.generate import Engine
from engine.params import SamplingParams
from engine.results import RowResult
from engine.sweep import beam_row

from .openai_request import ParsedRequest, RequestError


def searches(params: SamplingParams) -> bool:
    """Whether a request's parameters ask for beam search, contrastive search or DoLa."""
    return params.num_beams > 1 or params.penalty_alpha > 0 or bool(params.dola_layers)


def search_params(parsed: ParsedRequest) -> SamplingParams:
    """The configuration to run, checked for what a searched answer can give: n is the number of best beams
    returned (at most num_beams); contrastive search is deterministic, so it answers one choice."""
    params = parsed.params
    what, name = ("num_beams > 1", "beam") if params.num_beams > 1 else (
        ("penalty_alpha > 0", "contrastive") if params.penalty_alpha > 0 else ("dola_layers", "DoLa"))
    if parsed.stream:
        raise RequestError(f"stream: must be false with {what} ({name} search is answered whole: its tokens are not "
                           f"final until it ends); send stream: false", "stream")
    if parsed.top_logprobs is not None:
        key = "logprobs"
        raise RequestError(f"{key}: must be left out with {what} (a {name} search answer carries no per-token "
                           f"logprobs here)", key)
    if parsed.echo:
        raise RequestError(f"echo: must be false with {what}", "echo")
    if len(parsed.prompts) > 1:
        raise RequestError(f"prompt: one prompt with {what} (got a list of {len(parsed.prompts)})", "prompt")
    if params.num_beams > 1:
        if parsed.n > params.num_beams:
            raise RequestError(f"n: must be at most num_beams ({params.num_beams}) with beam search (the choices are "
                               f"the n best beams), got {parsed.n}", "n")
        return params.replace(num_return_sequences=parsed.n)
    if params.dola_layers and not params.penalty_alpha:  # the engine refuses DoLa with contrastive search itself
        return params
    if parsed.n != 1:
        raise RequestError(f"n: must be 1 with penalty_alpha > 0 (contrastive search is deterministic: every choice "
                           f"would be the same text), got {parsed.n}", "n")
    return params


def check_search(engine: Engine, parsed: ParsedRequest, params: SamplingParams) -> None:
    """What the search would refuse (its batch rules, the lengths against the prompt, the engine's limits for its
    rows: every beam is a row), before any work; a ParamError names the field."""
    ready = params.for_prompt(len(parsed.prompt_ids))
    if params.num_beams > 1:
        check_beams([ready])
    elif params.penalty_alpha > 0:
        check_contrastive([ready], engine.loaded.vocab_size)
    else:
        layer_table(engine.loaded, [ready])  # the layers against the model's
    engine.check(parsed.prompt_ids, [params] * max(params.num_beams, parsed.n))


def run_search(engine: Engine, prompt_ids: list[int], params: SamplingParams, n: int = 1) -> list[RowResult]:
    """The answer's rows: the num_return_sequences best beams (best first), the contrastive output, or DoLa's n
    samples."""
    if params.num_beams > 1:
        [result] = beam_search(engine, prompt_ids, [params])
        return [beam_row(engine, seq, result.params, None) for seq in result.sequences]
    if params.penalty_alpha > 0:
        return contrastive_search(engine, prompt_ids, [params])
    return dola_decode(engine, prompt_ids, [params] * n, list(range(n)))


async def search_response(engine: Engine, model_id: str, parsed: ParsedRequest, params: SamplingParams,
                          headers: dict[str, str], finish_reason: Callable[[str], str]) -> JSONResponse:
    """The whole answer of a searched request, the search run off the event loop."""
    loop = asyncio.get_running_loop()
    rows = await loop.run_in_executor(None, run_search, engine, parsed.prompt_ids, params, parsed.n)
    choices: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        reason = finish_reason(row.finish_reason)
        if parsed.chat:
            choices.append({"index": index, "message": {"role": "assistant", "content": row.text}, "logprobs": None,
                            "finish_reason": reason})
        else:
            choices.append({"index": index, "text": row.text, "logprobs": None, "finish_reason": reason})
    completion = sum(len(row.token_ids) for row in rows)
    usage = {"prompt_tokens": len(parsed.prompt_ids), "completion_tokens": completion,
             "total_tokens": len(parsed.prompt_ids) + completion}
    body = {"id": ("chatcmpl-" if parsed.chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion" if parsed.chat else "text_completion", "created": int(time.time()),
            "model": model_id, "choices": choices, "usage": usage}
    return JSONResponse(body, headers={**headers, "X-Batch-Rows": str(params.num_beams)})
