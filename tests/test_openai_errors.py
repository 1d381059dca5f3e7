"""The OpenAI-compatible API under bad input and load: unknown fields, OpenAI-style errors (400 / 413, never a
500, the server keeps serving), concurrent requests batched together and matching serial runs, and a client
that disconnects mid-stream.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx

import openai
import pytest

from openai_helpers import (QUESTION, STORY, assert_error, assert_server_still_serves, chat,
                            ignored_fields)


# -- unknown fields and errors ---------------------------------------------------------------------------------


def test_unknown_fields_are_ignored_and_reported(client, http):
    response = http.post("/chat/completions", json={"model": "x", "messages": QUESTION, "max_tokens": 2,
                                                     "not_a_real_field": 1, "another_unknown": {"a": 1}})
    assert response.status_code == 200, response.text
    assert ignored_fields(response) == {"not_a_real_field", "another_unknown"}
    raw = client.completions.with_raw_response.create(model="x", prompt="Hi", max_tokens=2,
                                                      extra_body={"mystery_knob": 3})
    assert raw.parse().choices[0].text is not None
    assert ignored_fields(raw) == {"mystery_knob"}
    plain = http.post("/chat/completions", json={"model": "x", "messages": QUESTION, "max_tokens": 2})
    assert ignored_fields(plain) == set()


CHAT = {"model": "x", "messages": QUESTION, "max_tokens": 4}
COMPLETION = {"model": "x", "prompt": "Hello", "max_tokens": 4}


@pytest.mark.parametrize("path, body, status, fields", [
    ("/chat/completions", {**CHAT, "temperature": -1}, 400, ("temperature",)),
    ("/chat/completions", {**CHAT, "temperature": 2.5}, 400, ("temperature",)),
    ("/chat/completions", {**CHAT, "top_p": 2}, 400, ("top_p",)),
    ("/chat/completions", {**CHAT, "n": 0}, 400, ("n",)),
    ("/chat/completions", {**CHAT, "n": 1000}, 400, ("n",)),
    ("/chat/completions", {**CHAT, "temperature": "hot"}, 400, ("temperature",)),
    ("/chat/completions", {**CHAT, "max_tokens": "ten"}, 400, ("max_tokens",)),
    ("/chat/completions", {**CHAT, "top_k": "ten"}, 400, ("top_k",)),
    ("/chat/completions", {**CHAT, "seed": "abc"}, 400, ("seed",)),
    ("/chat/completions", {**CHAT, "presence_penalty": 3}, 400, ("presence_penalty",)),
    ("/chat/completions", {"model": "x", "max_tokens": 4}, 400, ("messages",)),
    ("/chat/completions", {**CHAT, "messages": []}, 400, ("messages",)),
    ("/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}, 400, ("messages",)),
    ("/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 21}, 400, ("top_logprobs",)),
    ("/chat/completions", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400, ("stop",)),
    ("/chat/completions", {**CHAT, "logit_bias": {"5": 200}}, 400, ("logit_bias",)),
    ("/chat/completions", {**CHAT, "max_tokens": 10**6}, 413, ("max_tokens",)),
    ("/chat/completions", {**CHAT, "n": 128, "max_tokens": 2000}, 413, ("n", "max_tokens")),
    ("/completions", {**COMPLETION, "echo": True, "stream": True}, 400, ("echo",)),
    ("/completions", {**COMPLETION, "logprobs": 6}, 400, ("logprobs",)),
    ("/completions", {"model": "x", "max_tokens": 4}, 400, ("prompt",)),
    ("/completions", {**COMPLETION, "max_tokens": 10**6}, 413, ("max_tokens",)),
    # whole numbers beyond int64, finite values beyond float32, and tiny values that would overflow float32
    ("/completions", {**COMPLETION, "top_k": 2**64}, 400, ("top_k",)),
    ("/completions", {**COMPLETION, "top_k": 2**63}, 400, ("top_k",)),
    ("/completions", {**COMPLETION, "top_k": 1e20}, 400, ("top_k",)),
    ("/completions", {**COMPLETION, "seed": 2**64}, 400, ("seed",)),
    ("/completions", {**COMPLETION, "max_tokens": 2**64}, 413, ("max_tokens",)),
    ("/completions", {**COMPLETION, "sequence_bias": {"the": -1e308}}, 400, ("sequence_bias",)),
    ("/completions", {**COMPLETION, "sequence_bias": {"the": 3.5e38}}, 400, ("sequence_bias",)),
    ("/completions", {**COMPLETION, "sequence_bias": {"the": -3.5e38}}, 400, ("sequence_bias",)),
    ("/completions", {**COMPLETION, "repetition_penalty": 1e39}, 400, ("repetition_penalty",)),
    ("/completions", {**COMPLETION, "repetition_penalty": 5e-324}, 400, ("repetition_penalty",)),
    ("/completions", {**COMPLETION, "temperature": 1e-38}, 400, ("temperature",)),
    ("/completions", {**COMPLETION, "dynatemp_low": 1e-38, "dynatemp_high": 1e-38}, 400, ("dynatemp_low",)),
    # text that is not valid Unicode (a lone surrogate)
    ("/completions", {**COMPLETION, "prompt": "hi \ud800 there"}, 400, ("prompt",)),
    ("/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "hi \udfff"}]}, 400, ("messages",)),
    ("/completions", {**COMPLETION, "bad_words": ["\ud800"]}, 400, ("bad_words",)),
    ("/completions", {**COMPLETION, "dry_sequence_breakers": ["\ud800"]}, 400, ("dry_sequence_breakers",)),
    ("/completions", {**COMPLETION, "stop": ["\ud800"]}, 400, ("stop",)),
    ("/completions", {**COMPLETION, "sequence_bias": {"\ud800": 1}}, 400, ("sequence_bias",)),
    # logit_bias keys that are not token ids, or ids outside the vocabulary
    ("/completions", {**COMPLETION, "logit_bias": {"\u00b2": 1}}, 400, ("logit_bias",)),
    ("/completions", {**COMPLETION, "logit_bias": {"--5": 1}}, 400, ("logit_bias",)),
    ("/completions", {**COMPLETION, "logit_bias": {"49152": 1}}, 400, ("logit_bias",)),
    ("/completions", {**COMPLETION, "logit_bias": {"99999999999999999999999": 1}}, 400, ("logit_bias",)),
    # a prompt beyond the context is the prompt's fault, not max_tokens'
    ("/completions", {**COMPLETION, "prompt": "hello " * 9000}, 413, ("prompt",)),
    ("/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "hello " * 9000}]}, 413, ("messages",)),
])
def test_bad_requests_get_openai_errors(http, path, body, status, fields):
    assert_error(post_json(http, path, body), status, fields)
    assert_server_still_serves(http)


def post_json(http: httpx.Client, path: str, body) -> httpx.Response:
    """POST a body as JSON with ASCII escapes (httpx's json= cannot encode a lone surrogate)."""
    return http.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def test_a_prompt_beyond_the_context_names_its_length(http):
    error = post_json(http, "/completions", {**COMPLETION, "prompt": "hello " * 9000}).json()["error"]
    assert error["message"].startswith("prompt: must be at most 8191 tokens long (the model's context is 8192 "), error
    assert error["message"].endswith("got 9001 tokens"), error


@pytest.mark.parametrize("content", [b"[" * 100_000, b'{"a":' * 5000, b"{" * 10,
                                     b'{"model": "x", "prompt": "hi", "stop": ' + b"[" * 40 + b"]" * 40 + b"}"],
                         ids=["100k [", "5k {a:", "10 {", "stop nested 40 deep"])
def test_deeply_nested_bodies_get_400(http, content):
    response = http.post("/completions", content=content, headers={"content-type": "application/json"})
    assert_error(response, 400, None)
    assert_server_still_serves(http)


@pytest.mark.parametrize("content_type, status", [
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("application/json; charset=utf-16", 415),
    (None, 200), ("application/json; charset=UTF-8", 200), ("application/vnd.api+json", 200),
])
def test_only_json_content_types_are_read(http, content_type, status):
    headers = {"content-type": content_type} if content_type else {}
    response = http.post("/completions", content=json.dumps({**COMPLETION, "max_tokens": 1}), headers=headers)
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, status, ("content-type",))


def test_a_utf16_body_is_refused(http):
    body = json.dumps({**COMPLETION, "max_tokens": 1}).encode("utf-16")
    response = http.post("/completions", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, None)
    assert "UTF-8" in response.json()["error"]["message"]


def test_unknown_field_names_that_are_not_ascii_are_listed_escaped(http):
    response = post_json(http, "/completions", {**COMPLETION, "max_tokens": 1, "température": 1, "\ud800": 2})
    assert response.status_code == 200, response.text
    assert response.headers["x-ignored-fields"] == "temp\\u00e9rature, \\ud800"


def test_a_client_gone_while_sending_the_body_is_not_an_error(http, base_url):
    """The client announces 1000 bytes, sends 10 and closes: nothing logs "Exception in ASGI application"."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        url = urlparse(base_url)
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
            conn.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"model\": ")
            # the server reads the headers and waits for the rest of the body (the case under test): nothing outside
            # the server shows that moment, so the client gives it time before it goes
            time.sleep(0.5)
        # an error would be logged while the server handles the close; an absence has no event to wait for
        time.sleep(1.0)
        assert_server_still_serves(http)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b'"text"', b"", b"\xff\xfe"])
def test_bodies_that_are_not_a_json_object(http, path, content):
    response = http.post(path, content=content, headers={"content-type": "application/json"})
    assert_error(response, 400, None)
    assert_server_still_serves(http)


def test_the_client_raises_bad_request_with_the_param(client):
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, temperature=-1)
    assert info.value.status_code == 400
    assert info.value.param == "temperature" or "temperature" in info.value.message


# -- concurrency ---------------------------------------------------------------------------------------------


def test_concurrent_requests_batch_and_match_serial(client):
    """8 requests with one prompt started together share engine batches; each seeded text is unchanged."""
    requests = [dict(seed=100 + i, n=1 + i % 2) for i in range(8)]
    barrier = threading.Barrier(len(requests))

    def run(kw, together: bool):
        if together:
            barrier.wait(timeout=30)
        raw = client.chat.completions.with_raw_response.create(
            model="x", messages=QUESTION, temperature=0.9, max_tokens=8, **kw)
        return int(raw.headers["x-batch-rows"]), [c.message.content for c in raw.parse().choices]

    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda kw: run(kw, True), requests))
    serial = [run(kw, False) for kw in requests]

    for kw, (rows, texts), (_, alone) in zip(requests, together, serial):
        assert len(texts) == kw["n"]
        assert rows >= kw["n"]
        assert texts == alone, f"seed {kw['seed']}: batched output differs from the output alone"
    assert any(rows > kw["n"] for kw, (rows, _) in zip(requests, together)), \
        f"no request shared its batch: {[rows for rows, _ in together]}"


def test_concurrent_mixed_prompts_and_endpoints_match_serial(client):
    jobs = [
        ("chat", QUESTION, 31), ("chat", STORY, 32), ("chat", QUESTION, 33), ("completion", "The sea is", 34),
    ]
    barrier = threading.Barrier(len(jobs))

    def run(job, together: bool):
        kind, prompt, seed = job
        if together:
            barrier.wait(timeout=30)
        if kind == "chat":
            return chat(client, prompt, temperature=1.0, seed=seed, max_tokens=8).choices[0].message.content
        return client.completions.create(model="x", prompt=prompt, temperature=1.0, seed=seed,
                                         max_tokens=8).choices[0].text

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: run(job, True), jobs))
    assert together == [run(job, False) for job in jobs]


def test_a_non_streaming_client_that_disconnects_frees_its_rows(http, client):
    """A long request (min_tokens = max_tokens = 1500, two rows) whose client gives up after 2 s stops decoding:
    the next request is answered at once, not after the 3,000 tokens (a batch that runs holds later requests)."""
    body = {"model": "x", "messages": STORY, "n": 2, "max_tokens": 1500, "min_tokens": 1500, "temperature": 0.8}
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=body, timeout=2)  # the client closes its connection on the timeout
    started = time.monotonic()
    out = client.with_options(timeout=40).chat.completions.create(
        model="x", messages=STORY, max_tokens=8, temperature=0)
    assert out.choices[0].message.content
    assert time.monotonic() - started < 20


def test_closing_a_stream_early_frees_its_rows(client):
    """A long stream (it cannot end early: min_tokens = max_tokens) closed after 3 chunks stops decoding."""
    stream = chat(client, temperature=0.8, seed=3, n=2, max_tokens=1500, stream=True,
                  extra_body={"min_tokens": 1500})
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    started = time.monotonic()
    out = client.with_options(timeout=30).chat.completions.create(
        model="x", messages=STORY, max_tokens=8, temperature=0)
    assert out.choices[0].message.content
    assert time.monotonic() - started < 30
