"""The OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions) on the launched app.

Most tests use the official `openai` client, as a user would; error cases, response headers and the
server-sent-events framing use raw HTTP. Generations are kept short (the suite runs on CPU).
"""
from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from engine.generate import Engine
from engine.params import SamplingParams

QUESTION = [{"role": "user", "content": "What is deep learning?"}]
ARTICLE_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is deep learning?"},
]
STORY = [{"role": "user", "content": "Tell me a story."}]


# -- fixtures and helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url(app_url) -> str:
    """The API root, once /v1/models answers on the app's own port."""
    url = app_url + "v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/models", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url}/models did not answer within 30 s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def model_id(bundled) -> str:
    return bundled.name


@pytest.fixture(scope="module")
def engine(bundled) -> Engine:
    """The engine on the same weights, for reference outputs computed in-process."""
    return Engine(bundled)


def chat_ids(bundled, messages) -> list[int]:
    ids = bundled.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    return [int(i) for i in ids]


def chat(client: OpenAI, messages=QUESTION, **kw):
    kw.setdefault("max_tokens", 12)
    return client.chat.completions.create(model="anything", messages=messages, **kw)


def collect_chat_stream(stream) -> tuple[list, dict[int, str], dict[int, str | None]]:
    """All chunks, the content per choice index, and each index's finish_reason (checked to come last)."""
    chunks, texts, reasons = [], {}, {}
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            assert choice.index not in reasons, f"choice {choice.index} got a chunk after its finish_reason"
            texts.setdefault(choice.index, "")
            if choice.delta.content:
                texts[choice.index] += choice.delta.content
            if choice.finish_reason is not None:
                reasons[choice.index] = choice.finish_reason
    return chunks, texts, reasons


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a text/event-stream body, checking its framing on the way."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    body = response.text
    assert body.endswith("\n\n"), f"the stream must end with a blank line: {body[-80:]!r}"
    events = body[:-2].split("\n\n")
    payloads = []
    for event in events:
        lines = event.split("\n")
        assert lines and all(line.startswith("data: ") for line in lines), f"bad event framing: {event!r}"
        assert len(lines) == 1, f"one data line per event expected: {event!r}"
        payloads.append(lines[0][len("data: "):])
    assert payloads[-1] == "[DONE]", "the last event must be data: [DONE]"
    assert payloads.count("[DONE]") == 1
    return payloads[:-1]


def assert_error(response: httpx.Response, status: int, fields: tuple[str, ...] | None) -> None:
    """OpenAI-style error JSON with the given status; the message (and param, when set) names the field."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert error["type"] == "invalid_request_error", error
    assert isinstance(error["message"], str) and error["message"], error
    if fields:
        assert any(f in error["message"] for f in fields), f"message does not name {fields}: {error['message']!r}"
        assert error["param"] is None or error["param"] in fields, error


def assert_server_still_serves(http: httpx.Client) -> None:
    ok = http.post("/chat/completions", json={"model": "x", "messages": QUESTION, "max_tokens": 2, "temperature": 0})
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"]


def ignored_fields(response) -> set[str]:
    header = response.headers.get("x-ignored-fields", "")
    return {name.strip() for name in header.split(",") if name.strip()}


# -- models -----------------------------------------------------------------------------------------------------


def test_models_lists_the_loaded_model(client, http, model_id):
    assert model_id == "SmolLM2-135M-Instruct"
    raw = http.get("/models")
    assert raw.status_code == 200
    body = raw.json()
    assert body["object"] == "list" and len(body["data"]) == 1
    entry = body["data"][0]
    assert entry["id"] == model_id and entry["object"] == "model"
    assert isinstance(entry["created"], int) and not isinstance(entry["created"], bool)
    assert "owned_by" in entry
    assert [m.id for m in client.models.list()] == [model_id]


# -- chat completions -------------------------------------------------------------------------------------------


def test_chat_completion_greedy_matches_the_engine(client, bundled, engine, model_id):
    out = chat(client, temperature=0, max_tokens=12)
    assert out.id.startswith("chatcmpl-") and out.object == "chat.completion"
    assert isinstance(out.created, int) and out.model == model_id
    assert len(out.choices) == 1
    choice = out.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and choice.logprobs is None
    assert choice.finish_reason in ("stop", "length")

    ids = chat_ids(bundled, QUESTION)
    ref = engine.generate(ids, [SamplingParams(temperature=0, max_new_tokens=12)]).rows[0]
    assert choice.message.content == ref.text
    assert choice.finish_reason == ("length" if ref.finish_reason == "length" else "stop")
    assert out.usage.prompt_tokens == len(ids)
    assert out.usage.completion_tokens == len(ref.token_ids)
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "gpt-4o", "no-such-model"])
def test_any_model_name_maps_to_the_loaded_model(client, model_id, name):
    out = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=2, temperature=0)
    assert out.model == model_id and out.choices[0].message.content


def test_content_parts_system_and_assistant_turns(client):
    as_string = chat(client, temperature=0, max_tokens=8).choices[0].message.content
    as_parts = chat(client, [{"role": "user", "content": [{"type": "text", "text": "What is deep learning?"}]}],
                    temperature=0, max_tokens=8).choices[0].message.content
    assert as_parts == as_string
    turns = [{"role": "system", "content": "You answer in one sentence."},
             {"role": "user", "content": "Name a colour."},
             {"role": "assistant", "content": "Blue."},
             {"role": "user", "content": [{"type": "text", "text": "Another one?"}]}]
    out = chat(client, turns, temperature=0, max_tokens=6)
    assert out.choices[0].message.content and out.usage.prompt_tokens > 20


def test_seeded_requests_are_reproducible(client):
    first = chat(client, STORY, temperature=1.0, seed=1234, max_tokens=16).choices[0].message.content
    again = chat(client, STORY, temperature=1.0, seed=1234, max_tokens=16).choices[0].message.content
    other = chat(client, STORY, temperature=1.0, seed=4321, max_tokens=16).choices[0].message.content
    assert first == again
    assert first != other


def test_n_choices_run_as_one_batch_with_distinct_samples(client):
    raw = client.chat.completions.with_raw_response.create(
        model="x", messages=STORY, n=4, temperature=1.0, seed=11, max_tokens=12, logprobs=True)
    out = raw.parse()
    assert int(raw.headers["x-batch-rows"]) >= 4
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    texts = [c.message.content for c in out.choices]
    assert len(set(texts)) == 4, texts  # choice i uses sample index i
    # choice i is sample i of the seed: the same as choice 0 of an n=1 request for i = 0
    alone = chat(client, STORY, temperature=1.0, seed=11, max_tokens=12).choices[0].message.content
    assert alone == texts[0]
    # usage counts every choice's tokens (an end-of-turn token is counted but carries no text)
    listed = sum(len(c.logprobs.content) for c in out.choices)
    stopped = sum(c.finish_reason == "stop" for c in out.choices)
    assert listed <= out.usage.completion_tokens <= listed + stopped
    for c in out.choices:
        if c.finish_reason == "length":
            assert len(c.logprobs.content) == 12


def test_chat_logprobs_are_the_raw_model_distribution(client, bundled, engine):
    k = 5
    greedy = chat(client, temperature=0, max_tokens=10, logprobs=True, top_logprobs=k)
    choice = greedy.choices[0]
    content = choice.logprobs.content
    if choice.finish_reason == "length":
        assert len(content) == greedy.usage.completion_tokens == 10
    else:
        assert greedy.usage.completion_tokens - 1 <= len(content) <= greedy.usage.completion_tokens
    assert "".join(e.token for e in content) == choice.message.content
    for entry in content:
        assert math.isfinite(entry.logprob) and entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode("utf-8"))
        tops = entry.top_logprobs
        assert 1 <= len(tops) <= k
        assert len(tops) == k  # the raw distribution has full support: k alternatives exist
        values = [t.logprob for t in tops]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0 for v in values)
        assert all(t.bytes == list(t.token.encode("utf-8")) for t in tops)
        # greedy on the raw model: the chosen token is the top alternative
        assert tops[0].token == entry.token and tops[0].logprob == pytest.approx(entry.logprob, abs=1e-4)

    ref = engine.generate(chat_ids(bundled, QUESTION), [SamplingParams(temperature=0, max_new_tokens=10)]).rows[0]
    assert [e.logprob for e in content] == pytest.approx(ref.raw_logprobs[:len(content)], abs=1e-4)

    # top_k=1 makes every processed distribution a single token (final log p = 0); the raw ones are reported
    narrowed = chat(client, temperature=0.7, seed=3, max_tokens=10, logprobs=True, extra_body={"top_k": 1})
    narrowed_content = narrowed.choices[0].logprobs.content
    assert [e.token for e in narrowed_content] == [e.token for e in content]
    assert [e.logprob for e in narrowed_content] == pytest.approx([e.logprob for e in content], abs=1e-4)
    assert any(e.logprob < -0.01 for e in narrowed_content)
    assert all(e.top_logprobs == [] for e in narrowed_content)  # logprobs without top_logprobs: none listed


def test_stop_strings_cut_the_text_and_never_stream(client):
    full = chat(client, temperature=0, max_tokens=16).choices[0].message.content
    words = full.split()
    assert len(words) >= 6, full
    stop = words[4]
    expected = full[:full.find(stop)]

    out = chat(client, temperature=0, max_tokens=16, stop=["@@never@@", stop])
    assert out.choices[0].message.content == expected
    assert out.choices[0].finish_reason == "stop"
    single = chat(client, temperature=0, max_tokens=16, stop=stop)
    assert single.choices[0].message.content == expected

    stream = chat(client, temperature=0, max_tokens=16, stop=[stop], stream=True)
    chunks, texts, reasons = collect_chat_stream(stream)
    assert texts[0] == expected and reasons[0] == "stop"
    assert not any(stop in (c.delta.content or "") for chunk in chunks for c in chunk.choices)


def test_extension_fields_by_engine_name(client, bundled):
    # do_sample false is greedy whatever the temperature
    greedy = chat(client, temperature=0, max_tokens=8).choices[0].message.content
    no_sample = chat(client, temperature=1.5, seed=9, max_tokens=8, extra_body={"do_sample": False})
    assert no_sample.choices[0].message.content == greedy

    # min_tokens / min_new_tokens hold the end of turn back; max_completion_tokens is max_tokens' new name
    for extra in ({"min_tokens": 5}, {"min_new_tokens": 5}):
        out = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Say hi."}],
                                             temperature=0, max_completion_tokens=5, extra_body=extra)
        assert out.usage.completion_tokens == 5 and out.choices[0].finish_reason == "length"

    # bad_words bans a word the greedy answer starts with
    first = greedy.split()[0]
    banned = chat(client, temperature=0, max_tokens=8, logprobs=True, extra_body={"bad_words": [first]})
    tokens = [e.token for e in banned.choices[0].logprobs.content]
    assert first not in tokens and " " + first not in tokens

    # the rest of the knobs are accepted and used
    knobs = {"top_k": 20, "min_p": 0.05, "typical_p": 0.95, "repetition_penalty": 1.2, "no_repeat_ngram_size": 3,
             "epsilon_cutoff": 0.0003, "eta_cutoff": 0.0009, "sequence_bias": {"learning": -5.0}}
    out = client.chat.completions.with_raw_response.create(
        model="x", messages=QUESTION, temperature=0.8, seed=2, max_tokens=8, presence_penalty=0.5,
        frequency_penalty=0.5, extra_body=knobs)
    assert out.parse().choices[0].message.content
    assert ignored_fields(out) == set()


def test_logit_bias_forces_a_token(client, bundled):
    the = bundled.tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert len(the) == 1
    out = chat(client, temperature=0, max_tokens=4, logit_bias={str(the[0]): 100}, logprobs=True)
    assert out.choices[0].message.content == " the" * 4
    # the reported log-probabilities are the raw model's, not the +100-biased ones (which would be ~0)
    assert any(e.logprob < -1 for e in out.choices[0].logprobs.content)


def test_chat_stream_one_chunk_per_token_and_usage(client, model_id):
    params = dict(temperature=0.8, seed=7, max_tokens=16)
    whole = chat(client, **params)
    stream = chat(client, stream=True, stream_options={"include_usage": True}, **params)
    chunks, texts, reasons = collect_chat_stream(stream)

    assert all(c.object == "chat.completion.chunk" and c.model == model_id for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert usage_chunk.usage.model_dump() == whole.usage.model_dump()

    choice_chunks = [c for c in chunks if c.choices]
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role in (None, "assistant") for c in choice_chunks)
    assert sum(c.choices[0].delta.role == "assistant" for c in choice_chunks) == 1
    assert [c.choices[0].finish_reason for c in choice_chunks[:-1]] == [None] * (len(choice_chunks) - 1)
    assert reasons == {0: whole.choices[0].finish_reason}
    assert texts[0] == whole.choices[0].message.content

    # one chunk per generated token (the end-of-turn token, when there is one, carries no text)
    content_chunks = [c for c in choice_chunks if c.choices[0].delta.content]
    tokens = usage_chunk.usage.completion_tokens
    assert tokens - 1 <= len(content_chunks) <= tokens


def test_chat_stream_n2_without_usage(client):
    params = dict(messages=STORY, temperature=0.9, seed=21, max_tokens=10, n=2)
    whole = chat(client, **params)
    chunks, texts, reasons = collect_chat_stream(chat(client, stream=True, **params))
    assert all(c.usage is None for c in chunks)  # no stream_options.include_usage: no usage chunk
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert reasons == {c.index: c.finish_reason for c in whole.choices}


# -- the seed article's request -----------------------------------------------------------------------------


def test_article_request_with_the_openai_client(client, model_id):
    stream = client.chat.completions.create(
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        messages=ARTICLE_MESSAGES,
        stream=True,
        temperature=0.2,
        max_tokens=200,
        top_p=0.9,
        extra_body={"top_k": 10, "repetition_penalty": 1},
    )
    chunks, texts, reasons = collect_chat_stream(stream)
    assert all(c.model == model_id for c in chunks)
    assert reasons[0] in ("stop", "length")
    assert "learning" in texts[0].lower(), texts[0]


def test_article_request_as_raw_http_with_sse_framing(http, model_id):
    body = {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "messages": ARTICLE_MESSAGES,
        "stream": True,
        "temperature": 0.2,
        "max_tokens": 200,
        "top_k": 10,
        "top_p": 0.9,
        "repetition_penalty": 1,
    }
    # Beside it, the same prompt without max_tokens (and unable to stop early): it gets the default, 256 tokens.
    # Started together, the two share one engine batch, so this costs little extra time.
    barrier = threading.Barrier(2)

    def default_length():
        barrier.wait(timeout=30)
        return http.post("/chat/completions", json={"model": "x", "messages": ARTICLE_MESSAGES, "temperature": 0,
                                                    "min_tokens": 256})

    with ThreadPoolExecutor(1) as pool:
        beside = pool.submit(default_length)
        barrier.wait(timeout=30)
        response = http.post("/chat/completions", json=body)
        default = beside.result()
    assert default.status_code == 200, default.text
    assert default.json()["usage"]["completion_tokens"] == 256
    assert default.json()["choices"][0]["finish_reason"] == "length"

    assert ignored_fields(response) == set()
    events = [json.loads(p) for p in sse_events(response)]
    text, reasons = "", []
    for event in events:
        assert event["object"] == "chat.completion.chunk" and event["model"] == model_id
        for choice in event["choices"]:
            assert choice["index"] == 0
            text += choice["delta"].get("content") or ""
            reasons.append(choice["finish_reason"])
    assert reasons[-1] in ("stop", "length") and all(r is None for r in reasons[:-1])
    assert "learning" in text.lower(), text


# -- legacy completions -------------------------------------------------------------------------------------------


def test_completion_greedy_matches_the_engine(client, engine, model_id):
    prompt = "The capital of France is"
    out = client.completions.create(model="anything", prompt=prompt, max_tokens=8, temperature=0)
    assert out.id.startswith("cmpl-") and out.object == "text_completion" and out.model == model_id
    choice = out.choices[0]
    assert choice.index == 0 and choice.logprobs is None
    ids = engine.encode(prompt, raw=True)  # fed as it is: no chat template
    ref = engine.generate(ids, [SamplingParams(temperature=0, max_new_tokens=8)]).rows[0]
    assert choice.text == ref.text
    assert choice.finish_reason == ("length" if ref.finish_reason == "length" else "stop")
    assert out.usage.prompt_tokens == len(ids) and out.usage.completion_tokens == len(ref.token_ids)
    assert out.usage.total_tokens == len(ids) + len(ref.token_ids)


def test_completion_logprobs(client, engine):
    prompt = "Once upon a time, there was"
    out = client.completions.create(model="x", prompt=prompt, max_tokens=8, temperature=0, logprobs=3)
    choice = out.choices[0]
    lp = choice.logprobs
    n = len(lp.tokens)
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    if choice.finish_reason == "length":
        assert n == out.usage.completion_tokens == 8
        assert "".join(lp.tokens) == choice.text
    for i in range(n - 1):
        assert lp.text_offset[i + 1] - lp.text_offset[i] == len(lp.tokens[i])
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert math.isfinite(value) and value <= 0
        assert 1 <= len(top) <= 3
        assert token in top and top[token] == pytest.approx(value, abs=1e-4)
        assert max(top.values()) == pytest.approx(value, abs=1e-4)  # greedy on the raw model
    ref = engine.generate(engine.encode(prompt, raw=True), [SamplingParams(temperature=0, max_new_tokens=8)]).rows[0]
    assert lp.token_logprobs == pytest.approx(ref.raw_logprobs[:n], abs=1e-4)


def test_completion_seeded_and_n(client):
    params = dict(model="x", prompt="My favourite animal is", max_tokens=10, temperature=1.0, seed=5)
    first = client.completions.create(n=3, **params)
    again = client.completions.create(n=3, **params)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in again.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and len(set(texts)) == 3


def test_completion_stream_sse_framing(http, model_id):
    body = {"model": "x", "prompt": "My favourite animal is", "max_tokens": 8, "temperature": 1.0, "seed": 5,
            "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    whole = http.post("/completions", json={**body, "stream": False}).json()
    events = [json.loads(p) for p in sse_events(http.post("/completions", json=body))]
    usage = events[-1]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    texts, reasons = {0: "", 1: ""}, {}
    for event in events[:-1]:
        assert event["object"] == "text_completion" and event["model"] == model_id
        assert event["id"].startswith("cmpl-")
        for choice in event["choices"]:
            assert {"index", "text", "finish_reason"} <= set(choice)
            assert choice["index"] not in reasons, "a chunk after that choice's finish_reason"
            texts[choice["index"]] += choice["text"] or ""
            if choice["finish_reason"] is not None:
                reasons[choice["index"]] = choice["finish_reason"]
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    assert reasons == {c["index"]: c["finish_reason"] for c in whole["choices"]}


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
