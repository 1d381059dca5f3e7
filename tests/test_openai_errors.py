"""The OpenAI-compatible API under bad input and load: unknown fields, OpenAI-style errors (400 / 413, never a
500, the server keeps serving), concurrent requests batched together and matching serial runs, and a client
that disconnects mid-stream.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

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
    ("/completions", {**COMPLETION, "echo": True}, 400, ("echo",)),
    ("/completions", {**COMPLETION, "logprobs": 6}, 400, ("logprobs",)),
    ("/completions", {"model": "x", "max_tokens": 4}, 400, ("prompt",)),
    ("/completions", {**COMPLETION, "max_tokens": 10**6}, 413, ("max_tokens",)),
])
def test_bad_requests_get_openai_errors(http, path, body, status, fields):
    assert_error(http.post(path, json=body), status, fields)
    assert_server_still_serves(http)


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
