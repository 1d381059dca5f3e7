"""One request to the running app over plain HTTP, on any of its three surfaces (for engine.bench.load).

    page          the gradio /generate endpoint through Gradio's HTTP API (POST .../call/generate, then its
                  event stream: progress events while it decodes, the result last)
    chat          /v1/chat/completions, streamed (SSE) or not
    completions   /v1/completions, streamed or not

No gradio import (engine/ never imports the UI): Gradio's HTTP API is two plain requests.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx

SURFACES = ("page", "chat", "completions")


@dataclass(frozen=True)
class Request:
    surface: str  # one of SURFACES
    prompt: str
    max_tokens: int
    stream: bool  # the page's endpoint always streams its progress; the flag matters for /v1
    seed: int | None  # None: no seed sent (/v1 then draws a fresh one; the page keeps its default 0)

    def knobs(self) -> dict:
        """Sampling settings, named alike on both surfaces (the lengths are set by each call)."""
        knobs: dict = {"temperature": 0.8, "top_p": 0.95}
        return knobs if self.seed is None else {**knobs, "seed": self.seed}


@dataclass
class Outcome:
    request: Request
    seconds: float
    text: str | None  # None when it failed
    error: str | None = None
    batch_rows: int = 0  # /v1's X-Batch-Rows: the rows of the engine batch it ran in


def send(url: str, request: Request, timeout: float = 600) -> Outcome:
    """Send one request and wait for its whole answer; any failure becomes the Outcome's error, never raised."""
    started = time.perf_counter()
    try:
        if request.surface == "page":
            text, rows = _page_generate(url, request, timeout), 0
        else:
            text, rows = _v1(url, request, timeout)
        return Outcome(request, time.perf_counter() - started, text, None, rows)
    except Exception as exc:  # a load test counts failures of any kind; it never stops at the first one
        return Outcome(request, time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}"[:300])


def _page_generate(url: str, request: Request, timeout: float) -> str:
    params = {**request.knobs(), "max_new_tokens": request.max_tokens, "min_new_tokens": request.max_tokens}
    body = {"data": [request.prompt, params, 1, False, ""]}  # Gradio's HTTP API wants every argument
    with httpx.Client(timeout=timeout) as http:
        started = http.post(f"{url}gradio_api/call/generate", json=body)
        started.raise_for_status()
        event = None
        with http.stream("GET", f"{url}gradio_api/call/generate/{started.json()['event_id']}") as events:
            for line in events.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    data = json.loads(line[len("data: "):])
                    if event == "error":
                        raise RuntimeError(f"/generate answered an error: {data}")
                    return data[0]["samples"][0]["text"]
    raise RuntimeError("/generate's event stream ended without a result")


def _v1(url: str, request: Request, timeout: float) -> tuple[str, int]:
    """(text, batch rows) of one /v1 request."""
    chat = request.surface == "chat"
    body: dict = {"model": "any", "max_tokens": request.max_tokens, "min_tokens": request.max_tokens,
                  "stream": request.stream, **request.knobs()}
    if chat:
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    path = "v1/chat/completions" if chat else "v1/completions"
    if not request.stream:
        response = httpx.post(url + path, json=body, timeout=timeout)
        response.raise_for_status()
        choice = response.json()["choices"][0]
        return (choice["message"]["content"] if chat else choice["text"]), _rows(response)
    text = ""
    with httpx.stream("POST", url + path, json=body, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[len("data: "):])["choices"]:
                    text += (choice["delta"].get("content") or "") if chat else choice.get("text", "")
        return text, _rows(response)


def _rows(response: httpx.Response) -> int:
    return int(response.headers.get("X-Batch-Rows", 0))


def first_chunk_then_leave(url: str, prompt: str, max_tokens: int, timeout: float = 600) -> float:
    """Start a streamed chat completion, read until its first content chunk, and close the connection (a client
    that goes away mid-answer). Returns the seconds to that chunk."""
    body = {"model": "any", "messages": [{"role": "user", "content": prompt}], "stream": True, "seed": 1,
            "max_tokens": max_tokens, "min_tokens": max_tokens}
    started = time.perf_counter()
    with httpx.stream("POST", url + "v1/chat/completions", json=body, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return time.perf_counter() - started  # leaving the block closes the connection
    raise RuntimeError("the stream ended before its first content chunk")


def page_sweep(url: str, prompt: str, max_tokens: int, timeout: float = 600) -> None:
    """One small sweep (2 x 2 cells) through the gradio /sweep endpoint; raises on an error event."""
    axes = [{"name": "temperature", "values": [0.5, 1.0]}, {"name": "top_k", "values": [0, 40]}]
    body = {"data": [prompt, {"max_new_tokens": max_tokens}, axes, 1, False, "", False]}
    with httpx.Client(timeout=timeout) as http:
        started = http.post(f"{url}gradio_api/call/sweep", json=body)
        started.raise_for_status()
        events = http.get(f"{url}gradio_api/call/sweep/{started.json()['event_id']}").text
    if "event: complete" not in events:
        raise RuntimeError(f"/sweep did not complete: {events[-300:]}")
