"""/v1 requests with top_logprobs join a running batch of the same top_logprobs (engine/scheduler.py), over real
HTTP on the launched app: the joined request's response (text, tokens, logprobs, top_logprobs) is the one it gets
alone. X-Batch-Rows says which batch it ran in."""
from __future__ import annotations

import threading

import httpx
import pytest

from openai_helpers import QUESTION, STORY

TOP = 3
TOL = 2e-4  # float rounding of the padded attention (the same tolerance as tests/test_joining_trace.py)


def logprobs_request(**extra) -> dict:
    return {"model": "x", "messages": QUESTION, "temperature": 0.9, "seed": 77, "max_tokens": 10, "logprobs": True,
            "top_logprobs": TOP, **extra}


def content(body: dict) -> list[dict]:
    return body["choices"][0]["logprobs"]["content"]


def test_a_logprobs_request_joining_a_running_batch_answers_as_alone(http):
    started, leave = threading.Event(), threading.Event()
    long_rows: list[str] = []

    def long_request() -> None:  # a streamed request with the same top_logprobs, decoding long
        body = logprobs_request(messages=STORY, seed=5, max_tokens=400, min_new_tokens=400, stream=True)
        with http.stream("POST", "/chat/completions", json=body) as response:
            long_rows.append(response.headers["X-Batch-Rows"])
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    started.set()
                if leave.is_set():
                    return  # the client goes away: its rows leave the batch

    runner = threading.Thread(target=long_request)
    runner.start()
    try:
        assert started.wait(120), "the long request never started"
        joined = http.post("/chat/completions", json=logprobs_request())
        assert joined.status_code == 200, joined.text
        assert joined.headers["X-Batch-Rows"] == "2"  # it joined the running batch
    finally:
        leave.set()
        runner.join(120)
    assert long_rows == ["1"]
    alone = run_alone(http, logprobs_request())
    a, b = joined.json(), alone.json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    assert a["choices"][0]["finish_reason"] == b["choices"][0]["finish_reason"] and a["usage"] == b["usage"]
    mine, theirs = content(a), content(b)
    assert [e["token"] for e in mine] == [e["token"] for e in theirs] and len(mine) == 10
    assert [e["logprob"] for e in mine] == pytest.approx([e["logprob"] for e in theirs], abs=TOL)
    assert [[t["token"] for t in e["top_logprobs"]] for e in mine] == [[t["token"] for t in e["top_logprobs"]]
                                                                      for e in theirs]
    assert all(len(e["top_logprobs"]) == TOP for e in mine)
    assert [t["logprob"] for e in mine for t in e["top_logprobs"]] == pytest.approx(
        [t["logprob"] for e in theirs for t in e["top_logprobs"]], abs=TOL)


def test_a_request_with_other_top_logprobs_does_not_join(http):
    started, leave = threading.Event(), threading.Event()

    def long_request() -> None:
        body = logprobs_request(messages=STORY, seed=5, max_tokens=400, min_new_tokens=400, stream=True)
        with http.stream("POST", "/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    started.set()
                if leave.is_set():
                    return

    runner = threading.Thread(target=long_request)
    runner.start()
    try:
        assert started.wait(120), "the long request never started"
        other = http.post("/chat/completions", json=logprobs_request(top_logprobs=TOP + 1, max_tokens=3))
        assert other.status_code == 200, other.text
        assert other.headers["X-Batch-Rows"] == "1"  # a batch of its own beside the running one
    finally:
        leave.set()
        runner.join(120)


def run_alone(http: httpx.Client, body: dict) -> httpx.Response:
    """The request in a batch of its own: the first one after a client left may still join that client's batch
    (the server notices the departure at the batch's next step), so it is asked again until it runs alone."""
    for _ in range(5):
        response = http.post("/chat/completions", json=body)
        assert response.status_code == 200, response.text
        if response.headers["X-Batch-Rows"] == "1":
            return response
    pytest.fail("the request never ran alone: the abandoned batch kept decoding")


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client
