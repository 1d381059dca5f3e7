"""What the OpenAI-API tests share: request bodies and checks of the responses (fixtures: tests/conftest.py)."""
from __future__ import annotations

import httpx
from openai import OpenAI

QUESTION = [{"role": "user", "content": "What is deep learning?"}]
ARTICLE_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is deep learning?"},
]
STORY = [{"role": "user", "content": "Tell me a story."}]




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
