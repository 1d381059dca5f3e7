"""OpenAI-style requests read and checked: the body (size, JSON, nesting), the fields of a chat or legacy
completion, and every SamplingParams knob by its engine name; anything wrong is a RequestError naming the field
(400, or 413 over a budget), never a 500.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from engine.generate import Engine
from engine.knobs import KNOBS
from engine.errors import ParamError
from engine.params import FIELD_NAMES, SamplingParams, from_dict
from engine.errors import shown as shown_value

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
    # legacy completions: every prompt of the request (choice i * n + j is prompt i's sample j), and echo:
    # each choice's text starts with its prompt, whose tokens' raw logprobs lead its logprobs
    prompts: list[list[int]] = field(default_factory=list)
    echo: bool = False
    echo_texts: list[str] = field(default_factory=list)  # per prompt: the text echo puts before the completion
    max_tokens: int | None = None  # as the request gave it (or its default); 0 only with echo

    def __post_init__(self) -> None:
        if not self.prompts:
            self.prompts = [self.prompt_ids]

    @property
    def generates(self) -> bool:
        """False for echo with max_tokens 0: the prompts are scored and nothing is generated."""
        return self.max_tokens != 0


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
        prompts = [(_chat_prompt(body, engine), "")] if chat else _completion_prompts(body, engine)
    except ParamError as exc:  # e.g. text that is not valid Unicode
        raise RequestError(str(exc), prompt_name) from None
    context = engine.loaded.context_length
    prompt_ids = max((ids for ids, _ in prompts), key=len)  # the longest prompt bounds the lengths
    if len(prompt_ids) >= context:
        raise RequestError(f"{prompt_name}: must be at most {context - 1} tokens long (the model's context is "
                           f"{context} tokens, and the reply needs at least one), got {len(prompt_ids)} tokens",
                           prompt_name, 413)
    echo = not chat and _flag(body, "echo")

    max_names = ("max_tokens", "max_completion_tokens", "max_new_tokens") if chat else ("max_tokens", "max_new_tokens")
    max_name, max_tokens = _one_of(body, max_names)
    if max_tokens is None and body.get("max_length") is not None:  # transformers' prompt-inclusive form decides
        max_tokens = KNOBS["max_new_tokens"].default  # (max_length beside another max_new_tokens is refused)
    elif max_tokens is None:
        # within the server's per-row limit too: a request that names no length is never refused for it
        max_tokens = max(1, min(DEFAULT_MAX_TOKENS, engine.limits.max_new_tokens,
                                engine.loaded.context_length - len(prompt_ids)))
    if max_tokens == 0 and not echo:
        raise RequestError(f"{max_name}: must be a whole number >= 1 (0 only with echo: true, which scores the "
                           f"prompt and generates nothing), got 0", max_name)
    _whole(max_name, max_tokens, 0 if echo else 1)
    room = engine.loaded.context_length - len(prompt_ids)
    if max_tokens > room:  # the server's own limits (per row, per request) are the engine's: checked at submit
        raise RequestError(f"{max_name}: must be at most {room} for this prompt ({len(prompt_ids)} prompt tokens, "
                           f"context {engine.loaded.context_length}), got {max_tokens}", max_name, 413)
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
        if body.get("logprobs") is not None:
            top_logprobs = body["logprobs"]
            _whole("logprobs", top_logprobs, 0, MAX_LEGACY_LOGPROBS)
        _check_batch(len(prompts), n, stream, echo, engine)

    knobs: dict[str, Any] = {k: v for k, v in body.items() if k in ENGINE_FIELDS and v is not None}
    temperature = knobs.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and not 0 <= temperature <= 2:
        raise RequestError(f"temperature: must be a number in [0, 2] (as in OpenAI's API), got {temperature!r}",
                           "temperature")
    knobs["max_new_tokens"] = max_tokens or 1  # echo with max_tokens 0 generates nothing (the knob needs >= 1)
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
    if chat and params.token_healing:
        raise RequestError("token_healing: must be false in a chat request (healing reads the prompt back as plain "
                           "text, which would drop the chat template's markers; use /v1/completions)", "token_healing")
    return ParsedRequest(chat, prompts[0][0], params, n, stream, include_usage, top_logprobs, ignored,
                         [ids for ids, _ in prompts], echo, [text for _, text in prompts], max_tokens)


def _check_batch(prompts: int, n: int, stream: bool, echo: bool, engine: Engine) -> None:
    """What a legacy completion may combine: echo and several prompts are answered whole, not streamed."""
    if echo and stream:
        raise RequestError("echo: must be false with stream: true (echo is answered whole, not streamed); "
                           "send stream: false", "echo")
    if prompts > 1 and stream:
        raise RequestError(f"prompt: one prompt with stream: true (a list of {prompts} prompts is answered whole); "
                           f"send stream: false", "prompt")
    rows = engine.limits.max_rows
    if prompts * n > rows:
        raise RequestError(f"prompt: at most {rows} choices per request (prompts x n), got {prompts} x {n}",
                           "prompt", 413)


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


PROMPT_SHAPES = ("a non-empty string, a list of token ids, or a list of several of either (a batch: strings or "
                 "token-id lists)")


def _completion_prompts(body: dict, engine: Engine) -> list[tuple[list[int], str]]:
    """The legacy prompt field as (token ids, text) per prompt: a string, a list of token ids, or a list of
    strings or of token-id lists (OpenAI's shapes; lm-evaluation-harness sends token-id lists)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(_is_id(t) for t in prompt):
        prompt = [prompt]  # one prompt of token ids
    items = prompt if isinstance(prompt, list) else [prompt]
    if not items:
        raise RequestError(f"prompt: must be {PROMPT_SHAPES}, got []", "prompt")
    return [_one_prompt(item, engine, f"prompt[{i}]" if isinstance(prompt, list) and len(items) > 1 else "prompt")
            for i, item in enumerate(items)]


def _one_prompt(item: Any, engine: Engine, shown: str) -> tuple[list[int], str]:
    if isinstance(item, str) and item.strip():
        return engine.encode(item, raw=True), item
    if isinstance(item, list) and item and all(_is_id(t) for t in item):
        vocab = engine.loaded.vocab_size
        bad = [t for t in item if not 0 <= t < vocab]
        if bad:
            raise RequestError(f"{shown}: token ids must be in [0, {vocab - 1}], got {bad[0]}", "prompt")
        return list(item), engine.loaded.tokenizer.decode(item, skip_special_tokens=False)
    raise RequestError(f"{shown}: must be {PROMPT_SHAPES}, got {shown_value(item)}", "prompt")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
