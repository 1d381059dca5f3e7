"""The OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions) on the launched app.

Most tests use the official `openai` client, as a user would; error cases, response headers and the
server-sent-events framing use raw HTTP. Generations are kept short (the suite runs on CPU).
"""
from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.params import SamplingParams
from openai_helpers import (ARTICLE_MESSAGES, QUESTION, STORY, chat, chat_ids, collect_chat_stream, ignored_fields,
                            sse_events)


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


def test_streamed_completion_logprobs_equal_the_whole_response(client):
    """Streamed chunk by chunk, the completions logprobs (tokens, values, text offsets) add up to the response."""
    kwargs = dict(model="x", prompt="Once upon a time, there was", max_tokens=8, temperature=0, logprobs=2)
    whole = client.completions.create(**kwargs).choices[0].logprobs
    tokens, values, offsets = [], [], []
    for chunk in client.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                tokens += choice.logprobs.tokens
                values += choice.logprobs.token_logprobs
                offsets += choice.logprobs.text_offset
    assert tokens == whole.tokens and offsets == whole.text_offset
    assert values == pytest.approx(whole.token_logprobs, abs=1e-5)
