"""What the gradio API tests share: calling an endpoint over Gradio's plain HTTP API (fixtures: tests/conftest.py)."""
from __future__ import annotations

import json

import httpx


def call_raw(app_url: str, api_name: str, args: list) -> tuple[str, object]:
    """Call an endpoint over Gradio's plain HTTP API, the body JSON with ASCII escapes (gradio_client, through
    httpx, cannot send a lone surrogate). Returns the last SSE event's name ("complete" or "error") and data."""
    # Gradio's HTTP API wants every argument (it does not apply the functions' defaults), so they are padded here
    defaults = {"generate": [None, None, 1, False, ""], "sweep": [None, None, None, 1, False, "", False],
                "distribution": [None, 0, 0, 20], "compare": [None, 0, 1]}[api_name]
    body = json.dumps({"data": args + defaults[len(args):]})
    with httpx.Client(timeout=120) as http:
        started = http.post(f"{app_url}gradio_api/call/{api_name}", content=body,
                            headers={"content-type": "application/json"})
        assert started.status_code == 200, started.text
        event, data = None, None
        with http.stream("GET", f"{app_url}gradio_api/call/{api_name}/{started.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event, data = line[len("event: "):], None
                elif line.startswith("data: "):
                    data = json.loads(line[len("data: "):])
                    if event in ("complete", "error"):
                        return event, data
    raise AssertionError(f"no complete or error event from /{api_name}")
