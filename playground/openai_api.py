"""OpenAI-compatible endpoints on the app's own server: GET /v1/models, POST /v1/chat/completions, /v1/completions.

Requests go through one BatchScheduler, so requests that arrive together decode in one engine batch, and one
arriving while a batch decodes joins it at its next step (see engine/scheduler.py). Every SamplingParams knob is accepted as an extension field by its engine name. Any
model name maps to the loaded model. Logprobs are those of the model's raw (unprocessed) distribution.
Bad input gets OpenAI-style error JSON (400, or 413 over a limit), never a 500; a real fault gets a 500 with an
id that finds its traceback in the server log (playground/errors.py), never the fault's own text.
"""
from __future__ import annotations

import asyncio
import json
import math
import queue
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from engine.generate import Engine
from engine.models import TokenPieces
from engine.errors import ParamError
from engine.scheduler import BatchScheduler, ChoiceDone, Job, JobDone, JobError, TokenEvent
from engine.scoring import TokenScores, score_tokens
from engine.stops import sendable_length
from engine.switching import load_error, model_name, until_loaded

from .errors import log_bad_input, report_fault
from .openai_search import check_search, search_params, search_response, searches
from .openai_request import (MAX_IGNORED_SHOWN, WAIT_SECONDS, ParsedRequest, RequestError, error_response,
                             parse_request, read_body)


def openai_finish_reason(engine_reason: str) -> str:
    """OpenAI's finish_reason: "length" for a reply cut by a limit (max_tokens, or max_time: "time"), else "stop"
    (EOS, a stop string, nothing left to sample, or cancelled)."""
    return "length" if engine_reason in ("length", "time") else "stop"

class ChoiceText:
    """A choice's text as it streams: special tokens dropped, and text that may be the start of a stop string
    held back until it is known not to be one (so a stop string never reaches the client)."""

    def __init__(self, engine: Engine, stops: tuple[str, ...]):
        self.pieces = TokenPieces(engine.loaded.tokenizer)
        self.special = engine.loaded.special_ids
        self.stops = stops
        self.text = ""
        self.sent = 0

    def add(self, token_id: int) -> str:
        """The new text that is safe to send after this token."""
        piece = self.pieces.add(token_id)
        if token_id not in self.special:
            self.text += piece
        return self._send_upto(sendable_length(self.text, self.stops))

    def finish(self, final_text: str) -> str:
        """The rest of the engine's final text (cut before any stop string)."""
        if final_text.startswith(self.text[:self.sent]):
            self.text = final_text
            return self._send_upto(len(final_text))
        return ""

    def _send_upto(self, end: int) -> str:
        if end <= self.sent:
            return ""
        out, self.sent = self.text[self.sent:end], end
        return out


def _token_entry(engine: Engine, token_id: int, logprob: float) -> dict[str, Any]:
    text = engine.loaded.token_label(token_id)
    return {"token": text, "logprob": _finite(logprob), "bytes": list(text.encode("utf-8"))}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -9999.0  # JSON has no -inf; OpenAI uses -9999 for "impossible"


class Collected:
    """Everything of one choice, gathered from the events (for non-streamed responses and logprobs)."""

    def __init__(self) -> None:
        self.tokens: list[TokenEvent] = []
        self.done: ChoiceDone | None = None


def chat_logprobs(engine: Engine, events: list[TokenEvent]) -> dict[str, Any]:
    special = engine.loaded.special_ids
    content = []
    for e in events:
        if e.token_id in special:
            continue
        entry = _token_entry(engine, e.token_id, e.raw_logprob)
        entry["top_logprobs"] = [_token_entry(engine, i, lp) for i, lp in e.raw_top]
        content.append(entry)
    return {"content": content}


def legacy_logprobs(engine: Engine, events: list[TokenEvent], offset: int = 0,
                    keep_special: bool = False) -> dict[str, Any]:
    """The completions API's logprobs for these tokens; `offset`: where their text starts in the choice's text
    (a stream passes how much it has sent so far). Special tokens are left out unless `keep_special` (echo lists
    every token, so that positions line up with the token ids: log-likelihood evaluation counts on it)."""
    special = frozenset() if keep_special else engine.loaded.special_ids
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for e in events:
        if e.token_id in special:
            continue
        text = engine.loaded.token_label(e.token_id)
        tokens.append(text)
        token_logprobs.append(_finite(e.raw_logprob))
        tops.append({engine.loaded.token_label(i): _finite(lp) for i, lp in e.raw_top})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}


def echo_logprobs(engine: Engine, scores: TokenScores) -> dict[str, Any]:
    """A prompt's logprobs for echo: every prompt token under the raw model (null for the first, which has no
    context), the top alternatives at each position, and text offsets from 0."""
    label = engine.loaded.token_label
    tokens = [label(t) for t in scores.token_ids]
    offsets = [0]
    for token in tokens[:-1]:
        offsets.append(offsets[-1] + len(token))
    return {"tokens": tokens,
            "token_logprobs": [None if lp is None else _finite(lp) for lp in scores.logprobs],
            "top_logprobs": [None if i == 0 else {label(t): _finite(lp) for t, lp in top}
                             for i, top in enumerate(scores.top)],
            "text_offset": offsets}


def joined_logprobs(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {key: first[key] + second[key] for key in first}


def openai_router(engine: Engine, scheduler: BatchScheduler) -> APIRouter:
    """The /v1 routes for one engine (attach with `app.include_router(...)`)."""
    routes = OpenAIRoutes(engine, scheduler)
    router = APIRouter()
    router.add_api_route("/v1/models", routes.list_models, methods=["GET"])
    router.add_api_route("/v1/models/{name:path}", routes.get_model, methods=["GET"])
    router.add_api_route("/v1/chat/completions", routes.chat_completions, methods=["POST"])
    router.add_api_route("/v1/completions", routes.completions, methods=["POST"])
    return router


class OpenAIRoutes:
    """What the /v1 routes do for one engine: parse a request, submit its rows to the batch scheduler, and
    answer as one JSON body or as server-sent events."""

    def __init__(self, engine: Engine, scheduler: BatchScheduler):
        self.engine, self.scheduler = engine, scheduler
        self.model_id = model_name(engine)  # not waiting for a model still loading (app.py loads it in a thread)
        self.created_at = int(time.time())

    def _model(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": self.created_at, "owned_by": "decoding-playground"}

    async def _unloaded(self) -> Response | None:
        """Every route answers once the model has loaded (waiting meanwhile, the event loop free); None then, or
        a 503 saying why the model could not be loaded."""
        await until_loaded(self.engine)
        failed = load_error(self.engine)
        return error_response(str(failed), None, 503) if failed is not None else None

    async def list_models(self) -> Response:
        return await self._unloaded() or JSONResponse({"object": "list", "data": [self._model()]})

    async def get_model(self, name: str) -> Response:
        return await self._unloaded() or JSONResponse(self._model())  # any name maps to the loaded model

    async def chat_completions(self, request: Request) -> Response:
        return await self.handle(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self.handle(request, chat=False)

    async def handle(self, request: Request, chat: bool) -> Response:
        """One request, whatever happens: bad input is a 400 / 413 naming the field, a real fault a 500 with an
        id (its traceback in the server log under that id), never the fault's own text."""
        where = request.url.path
        try:
            return await self._unloaded() or await self.answer(request, chat)
        except Exception as exc:
            return fault_response(exc, where)

    async def answer(self, request: Request, chat: bool) -> Response:
        try:
            parsed = parse_request(await read_body(request), chat, self.engine)
            if searches(parsed.params):  # beam or contrastive search: answered whole (playground/openai_search.py)
                params = search_params(parsed)
                self._refused_as_request_error(parsed, lambda: check_search(self.engine, parsed, params))
                headers = {"X-Ignored-Fields": _header_list(parsed.ignored)} if parsed.ignored else {}
                return await search_response(self.engine, self.model_id, parsed, params, headers,
                                             openai_finish_reason)
            whole = not chat and (parsed.echo or len(parsed.prompts) > 1)  # echo, or a batch of prompts
            jobs = self._submit_each(parsed) if whole else [self._submit(parsed)]
        except RequestError as exc:
            log_bad_input(str(exc))
            return error_response(str(exc), exc.param, exc.status)
        except ClientDisconnect:  # gone while sending the body: nobody to answer, nothing to log
            return Response(status_code=400)
        headers = {"X-Ignored-Fields": _header_list(parsed.ignored)} if parsed.ignored else {}
        if whole:
            return await self.prompts_response(request, jobs, parsed, headers)
        job = jobs[0]
        if parsed.stream:
            return await self.stream_response(request, job, parsed, headers)
        return await self.full_response(request, job, parsed, headers)

    def _submit_each(self, parsed: ParsedRequest) -> list[Job]:
        """One job of n rows per prompt (they arrive together, so they share a batch); none when nothing is to be
        generated (echo with max_tokens 0). Every prompt is checked before any is submitted: nothing half-runs."""
        if not parsed.generates:
            return []
        for prompt_ids in parsed.prompts:
            self._refused_as_request_error(parsed, lambda: self.engine.check(prompt_ids, [parsed.params] * parsed.n))
        return [self._submit(parsed, prompt_ids) for prompt_ids in parsed.prompts]

    def _submit(self, parsed: ParsedRequest, prompt_ids: list[int] | None = None) -> Job:
        """The request's n rows into the next batch; the engine's budgets answer 413 under the request's names."""
        ids = parsed.prompt_ids if prompt_ids is None else prompt_ids
        return self._refused_as_request_error(parsed, lambda: self.scheduler.submit(
            ids, [parsed.params] * parsed.n, list(range(parsed.n)), parsed.top_logprobs or 0))

    @staticmethod
    def _refused_as_request_error(parsed: ParsedRequest, submit: Any) -> Any:
        """submit(), with the engine's refusal (a ParamError) as a RequestError under the request's field names."""
        try:
            return submit()
        except ParamError as exc:
            over_budget = exc.field in ("rows", "max_new_tokens")  # EngineLimits' budgets (the server's limits)
            names = {"rows": "n", "max_new_tokens": "max_tokens", "prompt": "messages" if parsed.chat else "prompt"}
            param = names.get(exc.field, exc.field)
            message = str(exc)
            if message.startswith(f"{exc.field}:"):  # the message names the request's own field
                message = param + message[len(exc.field):]
            raise RequestError(message, param, 413 if over_budget else 400) from None

    async def full_response(self, request: Request, job: Job, parsed: ParsedRequest,
                            headers: dict[str, str]) -> Response:
        choices, usage = await _collect(job, request, parsed.n)
        if isinstance(usage, JobError):
            return job_error_response(usage, request.url.path)
        if usage is None:  # the client went away: its rows were cancelled, and nobody reads this
            return Response(status_code=400)
        headers = {**headers, "X-Batch-Rows": str(usage.batch_rows)}
        body = {"id": _new_id(parsed.chat), "object": "chat.completion" if parsed.chat else "text_completion",
                "created": int(time.time()), "model": self.model_id,
                "choices": [self._choice(i, c, parsed) for i, c in enumerate(choices)], "usage": _usage(usage)}
        return JSONResponse(body, headers=headers)

    def _choice(self, index: int, collected: Collected, parsed: ParsedRequest) -> dict:
        """One finished choice of a non-streamed answer."""
        assert collected.done is not None
        logprobs = None
        if parsed.top_logprobs is not None:
            logprobs = (chat_logprobs if parsed.chat else legacy_logprobs)(self.engine, collected.tokens)
        reason = openai_finish_reason(collected.done.finish_reason)
        if parsed.chat:
            return {"index": index, "message": {"role": "assistant", "content": collected.done.text},
                    "logprobs": logprobs, "finish_reason": reason}
        return {"index": index, "text": collected.done.text, "logprobs": logprobs, "finish_reason": reason}

    async def prompts_response(self, request: Request, jobs: list[Job], parsed: ParsedRequest,
                               headers: dict[str, str]) -> Response:
        """A legacy completion with echo or several prompts, answered whole: choice i * n + j is prompt i's sample
        j. With echo each choice's text starts with its prompt and, with logprobs, its logprobs start with the
        prompt's tokens under the raw model (engine/scoring.py); max_tokens 0 generates nothing."""
        try:
            return await self._prompts_answer(request, jobs, parsed, headers)
        finally:  # whatever happened (the client gone, a fault), no row decodes on for nobody
            for job in jobs:
                job.cancel()

    async def _prompts_answer(self, request: Request, jobs: list[Job], parsed: ParsedRequest,
                              headers: dict[str, str]) -> Response:
        done: list[JobDone] = []
        choices: list[dict] = []
        for i, prompt_ids in enumerate(parsed.prompts):
            collected: list[Collected] = [Collected() for _ in range(parsed.n)]
            if jobs:
                collected, usage = await _collect(jobs[i], request, parsed.n)
                if not isinstance(usage, JobDone):
                    if usage is None:  # the client went away
                        return Response(status_code=400)
                    return job_error_response(usage, request.url.path)
                done.append(usage)
            echo = await self._echo(prompt_ids, parsed) if parsed.echo else None
            choices += [self._prompt_choice(i * parsed.n + j, c, parsed, i, echo) for j, c in enumerate(collected)]
        usage = JobDone(sum(len(p) for p in parsed.prompts), sum(d.completion_tokens for d in done),
                        max((d.batch_rows for d in done), default=0))
        body = {"id": _new_id(False), "object": "text_completion", "created": int(time.time()),
                "model": self.model_id, "choices": choices, "usage": _usage(usage)}
        return JSONResponse(body, headers={**headers, "X-Batch-Rows": str(usage.batch_rows)})

    async def _echo(self, prompt_ids: list[int], parsed: ParsedRequest) -> dict[str, Any] | None:
        """The prompt's echo logprobs (None without logprobs), computed off the event loop."""
        if parsed.top_logprobs is None:
            return None
        loop = asyncio.get_running_loop()
        scores = await loop.run_in_executor(None, score_tokens, self.engine, prompt_ids, parsed.top_logprobs)
        return echo_logprobs(self.engine, scores)

    def _prompt_choice(self, index: int, collected: Collected, parsed: ParsedRequest, prompt: int,
                       echo: dict[str, Any] | None) -> dict:
        """One choice of prompt `prompt`: its completion, after the prompt itself with echo."""
        prefix = parsed.echo_texts[prompt] if parsed.echo else ""
        if collected.done is None:  # echo with max_tokens 0: nothing generated, cut by the length limit
            return {"index": index, "text": prefix, "logprobs": echo, "finish_reason": "length"}
        choice = self._choice(index, collected, parsed)
        choice["text"] = prefix + choice["text"]
        if parsed.echo and echo is not None:
            generated = legacy_logprobs(self.engine, collected.tokens, len(prefix), keep_special=True)
            choice["logprobs"] = joined_logprobs(echo, generated)
        return choice

    async def stream_response(self, request: Request, job: Job, parsed: ParsedRequest,
                              headers: dict[str, str]) -> Response:
        events = _events(job, request)
        first = await anext(events, None)  # the batch has started: its size is known
        if isinstance(first, JobError):  # nothing sent yet: an error status, as a non-streamed request gets
            return job_error_response(first, request.url.path)
        headers = {**headers, "X-Batch-Rows": str(job.batch_rows), "Cache-Control": "no-cache"}
        stream = SseStream(self.engine, self.model_id, parsed, request.url.path)
        return StreamingResponse(stream.lines(first, events, job), media_type="text/event-stream", headers=headers)


class SseStream:
    """One streamed answer: events of the job -> `data: {...}` lines, the text held back while a stop string
    may be starting, logprobs per token."""

    def __init__(self, engine: Engine, model_id: str, parsed: ParsedRequest, where: str = "/v1"):
        self.engine, self.model_id, self.parsed, self.where = engine, model_id, parsed, where
        self.chunk_id, self.created = _new_id(parsed.chat), int(time.time())
        self.kind = "chat.completion.chunk" if parsed.chat else "text_completion"
        self.texts = [ChoiceText(engine, parsed.params.stop) for _ in range(parsed.n)]
        self.offsets = [0] * parsed.n  # per choice: the length of the logprob tokens' text streamed so far
        self.started = [False] * parsed.n

    def chunk(self, choice: int, text: str | None, reason: str | None, logprobs: Any = None) -> str:
        if self.parsed.chat:
            delta: dict[str, Any] = {}
            if not self.started[choice]:
                delta["role"] = "assistant"
                self.started[choice] = True
            if text is not None:
                delta["content"] = text
            entry: dict[str, Any] = {"index": choice, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
        else:
            entry = {"index": choice, "text": text or "", "logprobs": logprobs, "finish_reason": reason}
        body = {"id": self.chunk_id, "object": self.kind, "created": self.created, "model": self.model_id,
                "choices": [entry]}
        if self.parsed.include_usage:
            body["usage"] = None
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def token_chunks(self, event: TokenEvent) -> list[str]:
        text = self.texts[event.choice].add(event.token_id)
        logprobs, parsed = None, self.parsed
        if parsed.top_logprobs is not None and parsed.chat:
            logprobs = chat_logprobs(self.engine, [event])
        elif parsed.top_logprobs is not None:
            logprobs = legacy_logprobs(self.engine, [event], self.offsets[event.choice])
            self.offsets[event.choice] += sum(len(token) for token in logprobs["tokens"])
        if text or logprobs and (logprobs.get("content") or logprobs.get("tokens")):
            return [self.chunk(event.choice, text, None, logprobs)]
        return []

    def done_chunks(self, event: ChoiceDone) -> list[str]:
        rest = self.texts[event.choice].finish(event.text)
        reason = openai_finish_reason(event.finish_reason)
        return [*([self.chunk(event.choice, rest, None)] if rest else []), self.chunk(event.choice, None, reason)]

    def end_chunks(self, event: JobDone) -> list[str]:
        usage = []
        if self.parsed.include_usage:
            body = {"id": self.chunk_id, "object": self.kind, "created": self.created, "model": self.model_id,
                    "choices": [], "usage": _usage(event)}
            usage = [f"data: {json.dumps(body)}\n\n"]
        return [*usage, "data: [DONE]\n\n"]

    async def lines(self, first: Any, events: AsyncIterator[Any], job: Job) -> AsyncIterator[str]:
        try:
            event = first
            while event is not None:
                if isinstance(event, TokenEvent):
                    for line in self.token_chunks(event):
                        yield line
                elif isinstance(event, ChoiceDone):
                    for line in self.done_chunks(event):
                        yield line
                elif isinstance(event, JobDone):
                    for line in self.end_chunks(event):
                        yield line
                    return
                elif isinstance(event, JobError):  # the status (200) is sent: the error is the last event
                    yield _error_event(job_error_message(event, self.where))
                    return
                event = await anext(events, None)
        except Exception as exc:  # a fault while streaming: logged with its id; the client gets the id
            yield _error_event(report_fault(exc, self.where))
        finally:
            job.cancel()  # the client went away (or the job ended): its rows leave the batch at the next step


async def _collect(job: Job, request: Request, n: int) -> tuple[list[Collected], JobDone | JobError | None]:
    """Every choice of a job, and how it ended: JobDone, JobError, or None when the client went away."""
    choices = [Collected() for _ in range(n)]
    async for event in _events(job, request):
        if isinstance(event, TokenEvent):
            choices[event.choice].tokens.append(event)
        elif isinstance(event, ChoiceDone):
            choices[event.choice].done = event
        elif isinstance(event, (JobDone, JobError)):
            return choices, event
    return choices, None


async def _events(job: Job, request: Request | None) -> AsyncIterator[Any]:
    """The job's events without blocking the server's event loop. Every WAIT_SECONDS, whether events flow or
    not, it looks at the client connection: a client that went away has its job cancelled (its rows leave the
    batch at the next step) and the events end."""
    loop = asyncio.get_running_loop()
    looked = time.monotonic()
    while True:
        try:
            events = await loop.run_in_executor(None, job.next_events, WAIT_SECONDS)
        except queue.Empty:
            events = []
        if request is not None and time.monotonic() - looked >= WAIT_SECONDS:
            looked = time.monotonic()
            if await request.is_disconnected():
                job.cancel()
                return
        for event in events:
            yield event
            if isinstance(event, (JobDone, JobError)):
                return


def fault_response(exc: BaseException, where: str) -> Response:
    """A real fault as OpenAI's error JSON, status 500: the id of the log record that holds the traceback."""
    return error_response(report_fault(exc, where), None, 500)


def job_error_message(event: JobError, where: str) -> str:
    """What a client reads of a job that ended in error: a fault's id (logged here), else the job's message
    (e.g. "cancelled before it started"), which holds nothing internal."""
    return report_fault(event.error, where) if event.error is not None else event.message


def job_error_response(event: JobError, where: str) -> Response:
    return error_response(job_error_message(event, where), None, 500)


def _error_event(message: str) -> str:
    """The last event of a stream that failed after its 200 was sent (OpenAI's error object, as a data line)."""
    return f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'param': None, 'code': None}})}\n\n"


def _header_list(names: list[str]) -> str:
    """Field names for a response header: ASCII only (JSON escapes), at most MAX_IGNORED_SHOWN of them."""
    shown = [json.dumps(name)[1:-1][:100] for name in names[:MAX_IGNORED_SHOWN]]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > MAX_IGNORED_SHOWN else "")


def _usage(done: JobDone) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
