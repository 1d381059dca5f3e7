"""/v1 with beam search, diverse beams, constrained beams (force_words) and contrastive search (penalty_alpha),
through the official `openai` client (playground/openai_search.py).

The routes run in this process on a tiny random model (a FastAPI app holding just the /v1 router, reached through
starlette's TestClient, which is an httpx client), and each answer must equal the same mode's cell of a
decoding_mode sweep on the same prompt: the sweep and /v1 run one engine search. What a searched answer cannot
give (streaming, logprobs, n beyond the beams) is a 400 naming the field.
"""
from __future__ import annotations

import json

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openai import OpenAI

from engine.decoding_modes import MODE_AXIS, MODE_NAMES
from engine.generate import Engine
from engine.models import tiny_random_model
from engine.params import SamplingParams
from engine.scheduler import BatchScheduler
from engine.sweep import run_sweep
from engine.sweepspec import Axis, SweepSpec
from playground.config import PlaygroundConfig
from playground.exports import openai_request_json
from playground.openai_api import openai_router

PROMPT = "The weather today is"
MODES = ("beam_search", "diverse_beams", "contrastive", "constrained_beams", "dola")
# the sweep's base: greedy, with the force_words constrained beams read (a base with them is a constrained search)
BASE = SamplingParams(do_sample=False, num_beams=4, num_return_sequences=2, force_words=(("rain",),),
                      max_new_tokens=5)


@pytest.fixture(scope="module")
def spread() -> Engine:
    return Engine(tiny_random_model(init_std=1.0))


@pytest.fixture(scope="module")
def client(spread):
    app = FastAPI()
    scheduler = BatchScheduler(spread)
    app.include_router(openai_router(spread, scheduler))
    with TestClient(app) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)
    scheduler.close()


@pytest.fixture(scope="module")
def swept(spread) -> dict[str, list[str]]:
    """Each mode's texts in one decoding_mode sweep of the raw prompt (a beam cell: its 2 best beams)."""
    result = run_sweep(spread, SweepSpec(PROMPT, BASE, (Axis(MODE_AXIS, MODES),), raw=True))
    texts: dict[str, list[str]] = {}
    for record in result.records():
        texts.setdefault(record["axis_decoding_mode"], []).append(record["text"])
    return texts


KNOBS = {  # what a client sends for each mode (the engine's names, in extra_body)
    "beam_search": {"num_beams": 4, "do_sample": False},
    "diverse_beams": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "do_sample": False},
    "contrastive": {"penalty_alpha": 0.6, "top_k": 4, "do_sample": False},
    "constrained_beams": {"num_beams": 4, "do_sample": False, "force_words": [["rain"]]},
    "dola": {"dola_layers": "high", "do_sample": False},
}


@pytest.mark.parametrize("mode", MODES)
def test_completions_search_like_the_sweep(client, swept, mode):
    n = 1 if mode in ("contrastive", "dola") else 2
    out = client.completions.create(model="any", prompt=PROMPT, max_tokens=5, n=n, extra_body=KNOBS[mode])
    assert [c.text for c in out.choices] == swept[mode]
    assert [c.index for c in out.choices] == list(range(n))
    assert all(c.finish_reason in ("stop", "length") for c in out.choices)
    assert out.usage.completion_tokens > 0 and out.usage.prompt_tokens > 0


def test_chat_completions_run_contrastive_and_constrained_search(spread, client):
    messages = [{"role": "user", "content": "Say something about the weather."}]
    for mode in ("contrastive", "constrained_beams"):
        out = client.chat.completions.create(model="any", messages=messages, max_tokens=5, extra_body=KNOBS[mode])
        spec = SweepSpec("Say something about the weather.", BASE.replace(num_return_sequences=1),
                         (Axis(MODE_AXIS, (mode,)),))
        [record] = run_sweep(spread, spec).records()
        assert out.choices[0].message.content == record["text"] and out.object == "chat.completion"


@pytest.mark.parametrize("body, param", [  # (each case's own dict: "stream" is taken out of it)
    ({"stream": True, **KNOBS["contrastive"]}, "stream"),
    ({"stream": True, **KNOBS["constrained_beams"]}, "stream"),
    ({"stream": True, **KNOBS["dola"]}, "stream"),
    ({"logprobs": 2, **KNOBS["dola"]}, "logprobs"),
    ({"dola_layers": "7", "do_sample": False}, "dola_layers"),  # the tiny model has 2 layers
    ({"logprobs": 2, **KNOBS["beam_search"]}, "logprobs"),
    ({"n": 5, **KNOBS["beam_search"]}, "n"),
    ({"n": 2, **KNOBS["contrastive"]}, "n"),
    ({"penalty_alpha": 0.6, "top_k": 4}, "do_sample"),  # contrastive search does not sample
    ({"force_words": [["rain"]]}, "num_beams"),  # constrained search needs beams
    ({"num_beams": 4, "do_sample": False, "stop": ["."]}, "stop"),
])
def test_what_a_searched_answer_cannot_give_is_a_400_naming_the_field(client, body, param):
    body = dict(body)
    stream = body.pop("stream", False)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="any", prompt=PROMPT, max_tokens=4, stream=stream, extra_body=body)
    assert info.value.status_code == 400 and info.value.body["param"] == param
    assert param in info.value.body["message"]


def test_the_pages_openai_export_of_a_mode_sweep_runs_on_v1(client):
    """Each cell's exported request body (Share & export) is one /v1 request that the server runs."""
    config = PlaygroundConfig(prompt=PROMPT, raw=True, samples=2, params=BASE.replace(temperature=0.8, max_new_tokens=3),
                              axes=((MODE_AXIS, ", ".join(MODE_NAMES)),), view="sweep")
    bodies = json.loads(openai_request_json(config, "any"))
    assert len(bodies) == len(MODE_NAMES)
    for name, body in zip(MODE_NAMES, bodies):
        out = client.completions.create(**{k: body.pop(k) for k in ("model", "prompt", "max_tokens", "n")},
                                        extra_body=body)
        assert len(out.choices) == (1 if name == "contrastive" else 2), name  # samples, or the 2 best beams


def test_dola_samples_on_v1_are_the_sweeps_samples(spread, client):
    """Sampled DoLa: the n choices are samples 0..n-1 of the same configuration, as a sweep's samples are."""
    knobs = {"dola_layers": "low", "temperature": 0.9, "seed": 7}
    out = client.completions.create(model="any", prompt=PROMPT, max_tokens=5, n=3, extra_body=knobs)
    spec = SweepSpec(PROMPT, SamplingParams(dola_layers="low", temperature=0.9, seed=7, max_new_tokens=5), samples=3,
                     raw=True)
    assert [c.text for c in out.choices] == [r["text"] for r in run_sweep(spread, spec).records()]
