"""OpenAI-compatible endpoints on the app's own server: GET /v1/models, POST /v1/chat/completions, /v1/completions.

Requests go through one BatchScheduler, so requests that arrive together decode in one engine batch (see
engine/scheduler.py). Every SamplingParams knob is accepted as an extension field by its engine name. Any
model name maps to the loaded model. Logprobs are those of the model's raw (unprocessed) distribution.
Bad input gets OpenAI-style error JSON (400, or 413 over the budget), never a 500.
"""
from __future__ import annotations

import asyncio
import json
import math
import queue
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from engine.generate import Engine
from engine.models import TokenPieces
from engine.params import FIELD_NAMES, ParamError, SamplingParams, from_dict
from engine.scheduler import BatchScheduler, ChoiceDone, Job, JobDone, JobError, TokenEvent
from engine.stops import sendable_length

from .errors import log_bad_input

MAX_N = 128
DEFAULT_MAX_TOKENS = 256
MAX_TOP_LOGPROBS = 20
MAX_LEGACY_LOGPROBS = 5
# OpenAI fields we read; everything else that is not an engine knob is ignored and reported.
CHAT_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "n", "stream", "stream_options", "stop",
               "logprobs", "top_logprobs", "user", "min_tokens", "max_new_tokens", "min_new_tokens"}
COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "n", "stream", "stream_options", "stop", "logprobs", "echo",
                     "user", "min_tokens", "max_new_tokens", "min_new_tokens"}
# temperature, top_p, seed, penalties, top_k, ...; the lengths have OpenAI names too (read by _one_of)
ENGINE_FIELDS = set(FIELD_NAMES) - {"max_new_tokens", "min_new_tokens", "stop"}
STREAM_OPTIONS = {"include_usage", "include_obfuscation"}  # OpenAI's; obfuscation pads nothing here
WAIT_SECONDS = 0.5  # how often a waiting request looks at the client connection
MAX_JSON_DEPTH = 32  # arrays / objects nested deeper than this are refused (no OpenAI field needs more than 5)
MAX_IGNORED_SHOWN = 20  # unknown field names listed in X-Ignored-Fields


class RequestError(Exception):
    def __init__(self, message: str, param: str | None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


def error_response(message: str, param: str | None, status: int = 400) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


@dataclass
class ParsedRequest:
    chat: bool
    prompt_ids: list[int]
    params: SamplingParams
    n: int
    stream: bool
    include_usage: bool
    top_logprobs: int | None  # None: no logprobs asked for
    ignored: list[str] = field(default_factory=list)


# -- request -> engine ----------------------------------------------------------------------------------------

async def read_body(request: Request) -> Any:
    """The request's JSON body. Only JSON is taken: a Content-Type other than application/json (or +json) is
    refused with 415 (a missing one is read as JSON), and the body must be UTF-8 (RFC 8259), nested at most
    MAX_JSON_DEPTH deep. Raises ClientDisconnect when the client goes away while sending it."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media, *options = (part.strip().lower() for part in content_type.split(";"))
        charsets = [o.partition("=")[2].strip("\" ") for o in options if o.startswith("charset=")]
        if (media != "application/json" and not media.endswith("+json")) or \
                any(c not in ("utf-8", "utf8") for c in charsets):
            raise RequestError(f"content-type: must be application/json (UTF-8), got {content_type!r}", None, 415)
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request body must be UTF-8 encoded JSON (byte {exc.start} is not UTF-8)",
                           None) from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise RequestError(f"the request body must not nest arrays or objects more than {MAX_JSON_DEPTH} deep",
                           None) from None
    except ValueError:
        raise RequestError("the request body is not valid JSON", None) from None
    if _depth_over(body, MAX_JSON_DEPTH):
        raise RequestError(f"the request body must not nest arrays or objects more than {MAX_JSON_DEPTH} deep", None)
    return body


def _depth_over(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests lists / dicts more than `limit` deep (level by level: no recursion)."""
    level = [value]
    for _ in range(limit):
        level = [v for item in level if isinstance(item, (list, dict))
                 for v in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return any(isinstance(item, (list, dict)) for item in level)


def parse_request(body: Any, chat: bool, engine: Engine) -> ParsedRequest:
    """Validate an OpenAI request body into engine terms; RequestError names the field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", None)
    known = CHAT_FIELDS if chat else COMPLETION_FIELDS
    ignored = sorted(k for k in body if k not in known and k not in ENGINE_FIELDS)
    prompt_name = "messages" if chat else "prompt"
    try:
        prompt_ids = _chat_prompt(body, engine) if chat else _completion_prompt(body, engine)
    except ParamError as exc:  # e.g. text that is not valid Unicode
        raise RequestError(str(exc), prompt_name) from None
    context = engine.loaded.context_length
    if len(prompt_ids) >= context:
        raise RequestError(f"{prompt_name}: must be at most {context - 1} tokens long (the model's context is "
                           f"{context} tokens, and the reply needs at least one), got {len(prompt_ids)} tokens",
                           prompt_name, 413)

    max_names = ("max_tokens", "max_completion_tokens", "max_new_tokens") if chat else ("max_tokens", "max_new_tokens")
    max_name, max_tokens = _one_of(body, max_names)
    if max_tokens is None:
        max_tokens = max(1, min(DEFAULT_MAX_TOKENS, engine.loaded.context_length - len(prompt_ids)))
    _whole(max_name, max_tokens, 1)
    room = min(engine.loaded.context_length - len(prompt_ids), engine.limits.max_total_tokens)
    if max_tokens > room:
        raise RequestError(f"{max_name}: must be at most {room} for this prompt ({len(prompt_ids)} prompt tokens, "
                           f"context {engine.loaded.context_length}, budget {engine.limits.max_total_tokens}), "
                           f"got {max_tokens}", max_name, 413)
    n = body.get("n", 1)
    _whole("n", n, 1, MAX_N)
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise RequestError(f"stream_options: must be an object, got {options!r}", "stream_options")
    include_usage = _flag(options, "include_usage", "stream_options.include_usage")
    ignored += sorted(f"stream_options.{k}" for k in options if k not in STREAM_OPTIONS)

    top_logprobs: int | None = None
    if chat:
        if _flag(body, "logprobs"):
            top_logprobs = body.get("top_logprobs")
            top_logprobs = 0 if top_logprobs is None else top_logprobs
            _whole("top_logprobs", top_logprobs, 0, MAX_TOP_LOGPROBS)
        elif body.get("top_logprobs") is not None:
            raise RequestError("top_logprobs: needs logprobs: true", "top_logprobs")
    else:
        if _flag(body, "echo"):
            raise RequestError("echo: is not supported (must be false)", "echo")
        if body.get("logprobs") is not None:
            top_logprobs = body["logprobs"]
            _whole("logprobs", top_logprobs, 0, MAX_LEGACY_LOGPROBS)

    knobs: dict[str, Any] = {k: v for k, v in body.items() if k in ENGINE_FIELDS and v is not None}
    temperature = knobs.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and not 0 <= temperature <= 2:
        raise RequestError(f"temperature: must be a number in [0, 2] (as in OpenAI's API), got {temperature!r}",
                           "temperature")
    knobs["max_new_tokens"] = max_tokens
    min_name, min_tokens = _one_of(body, ("min_tokens", "min_new_tokens"))
    if min_tokens is not None:
        knobs["min_new_tokens"] = min_tokens
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
            raise RequestError(f"stop: must be a non-empty string or a list of up to 4 of them, got {stop!r}", "stop")
        knobs["stop"] = stop
    if "seed" not in knobs:  # OpenAI without a seed means fresh randomness every request
        knobs["seed"] = secrets.randbits(31)
    try:
        params = from_dict(knobs)
    except ParamError as exc:  # say the length fields by the names the request used
        names = {"max_new_tokens": max_name, "min_new_tokens": min_name}
        message = str(exc).replace("min_new_tokens", min_name).replace("max_new_tokens", max_name)
        raise RequestError(message, names.get(exc.field, exc.field)) from None
    if params.num_beams > 1:
        raise RequestError(f"num_beams: must be 1 on this endpoint (beam search runs in the page and in /sweep), "
                           f"got {params.num_beams}", "num_beams")
    return ParsedRequest(chat, prompt_ids, params, n, stream, include_usage, top_logprobs, ignored)


def _chat_prompt(body: dict, engine: Engine) -> list[int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: must be a non-empty list of {role, content}", "messages")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise RequestError(f"messages[{i}]: must be an object with role system, user or assistant", "messages")
        content = message.get("content")
        if isinstance(content, list):  # content parts: only text parts carry meaning for a text model
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise RequestError(f"messages[{i}].content: only text parts are supported", "messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content: must be a string", "messages")
        role = "system" if message["role"] == "developer" else message["role"]
        turns.append({"role": role, "content": content})
    if not any(t["content"].strip() for t in turns):
        raise RequestError("messages: at least one message must have content", "messages")
    return engine.loaded.encode_messages(turns)


def _completion_prompt(body: dict, engine: Engine) -> list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError("prompt: must be a non-empty string", "prompt")
    return engine.encode(prompt, raw=True)


def _whole(name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        span = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise RequestError(f"{name}: must be a whole number {span}, got {value!r}", name)


def _flag(body: dict, name: str, shown: str | None = None) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{shown or name}: must be true or false, got {value!r}", shown or name)
    return value


def _one_of(body: dict, names: tuple[str, ...]) -> tuple[str, Any]:
    """(name, value) of a field that has several names (OpenAI's and the engine's): the first one given, or
    (names[0], None). Two names with different values are refused, not one of them silently preferred."""
    given = [(name, body[name]) for name in names if body.get(name) is not None]
    for name, value in given[1:]:
        if value != given[0][1] or type(value) is not type(given[0][1]):
            raise RequestError(f"{given[0][0]} and {name}: give one of them (they differ: {given[0][1]!r} vs "
                               f"{value!r})", name)
    return given[0] if given else (names[0], None)


# -- engine -> response ---------------------------------------------------------------------------------------

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


def legacy_logprobs(engine: Engine, events: list[TokenEvent], offset: int = 0) -> dict[str, Any]:
    """The completions API's logprobs for these tokens; `offset`: where their text starts in the choice's text
    (a stream passes how much it has sent so far)."""
    special = engine.loaded.special_ids
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
        self.model_id = engine.loaded.name
        self.created_at = int(time.time())

    def _model(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": self.created_at, "owned_by": "decoding-playground"}

    async def list_models(self) -> dict:
        return {"object": "list", "data": [self._model()]}

    async def get_model(self, name: str) -> Response:
        return JSONResponse(self._model())  # any name maps to the loaded model, as in requests

    async def chat_completions(self, request: Request) -> Response:
        return await self.handle(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self.handle(request, chat=False)

    async def handle(self, request: Request, chat: bool) -> Response:
        try:
            parsed = parse_request(await read_body(request), chat, self.engine)
            job = self._submit(parsed)
        except RequestError as exc:
            log_bad_input(str(exc))
            return error_response(str(exc), exc.param, exc.status)
        except ClientDisconnect:  # gone while sending the body: nobody to answer, nothing to log
            return Response(status_code=400)
        headers = {"X-Ignored-Fields": _header_list(parsed.ignored)} if parsed.ignored else {}
        if parsed.stream:
            return await self.stream_response(request, job, parsed, headers)
        return await self.full_response(request, job, parsed, headers)

    def _submit(self, parsed: ParsedRequest) -> Job:
        """The request's n rows into the next batch; the engine's budgets answer 413 under the request's names."""
        try:
            return self.scheduler.submit(parsed.prompt_ids, [parsed.params] * parsed.n, list(range(parsed.n)),
                                         parsed.top_logprobs or 0)
        except ParamError as exc:
            over_budget = exc.field in ("rows", "max_new_tokens")  # EngineLimits' two budgets
            names = {"rows": "n", "max_new_tokens": "max_tokens", "prompt": "messages" if parsed.chat else "prompt"}
            raise RequestError(str(exc), names.get(exc.field, exc.field), 413 if over_budget else 400) from None

    async def full_response(self, request: Request, job: Job, parsed: ParsedRequest,
                            headers: dict[str, str]) -> Response:
        choices = [Collected() for _ in range(parsed.n)]
        usage = None
        async for event in _events(job, request):
            if isinstance(event, TokenEvent):
                choices[event.choice].tokens.append(event)
            elif isinstance(event, ChoiceDone):
                choices[event.choice].done = event
            elif isinstance(event, JobDone):
                usage = event
            elif isinstance(event, JobError):
                return error_response(event.message, None, 500)
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
        reason = "length" if collected.done.finish_reason == "length" else "stop"
        if parsed.chat:
            return {"index": index, "message": {"role": "assistant", "content": collected.done.text},
                    "logprobs": logprobs, "finish_reason": reason}
        return {"index": index, "text": collected.done.text, "logprobs": logprobs, "finish_reason": reason}

    async def stream_response(self, request: Request, job: Job, parsed: ParsedRequest,
                              headers: dict[str, str]) -> Response:
        events = _events(job, request)
        first = await anext(events, None)  # the batch has started: its size is known
        headers = {**headers, "X-Batch-Rows": str(job.batch_rows), "Cache-Control": "no-cache"}
        stream = SseStream(self.engine, self.model_id, parsed)
        return StreamingResponse(stream.lines(first, events, job), media_type="text/event-stream", headers=headers)


class SseStream:
    """One streamed answer: events of the job -> `data: {...}` lines, the text held back while a stop string
    may be starting, logprobs per token."""

    def __init__(self, engine: Engine, model_id: str, parsed: ParsedRequest):
        self.engine, self.model_id, self.parsed = engine, model_id, parsed
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
        reason = "length" if event.finish_reason == "length" else "stop"
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
                elif isinstance(event, JobError):
                    yield f"data: {json.dumps({'error': {'message': event.message, 'type': 'server_error'}})}\n\n"
                    return
                event = await anext(events, None)
        finally:
            job.cancel()  # the client went away (or the job ended): its rows leave the batch at the next step


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


def _header_list(names: list[str]) -> str:
    """Field names for a response header: ASCII only (JSON escapes), at most MAX_IGNORED_SHOWN of them."""
    shown = [json.dumps(name)[1:-1][:100] for name in names[:MAX_IGNORED_SHOWN]]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > MAX_IGNORED_SHOWN else "")


def _usage(done: JobDone) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
