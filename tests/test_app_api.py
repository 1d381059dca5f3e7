"""The named endpoints /generate, /sweep, /distribution and /compare through gradio_client against the launched app."""
import json
import math
import time

import httpx
import pytest
from gradio_client import Client

from assertions import assert_logprobs, wait_for
from gradio_helpers import call_raw

from engine.order import DEFAULT_ORDER


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_page_is_served(app_url):
    response = httpx.get(app_url, timeout=30)
    assert response.status_code == 200 and "Decoding Playground" in response.text


def test_generate_returns_samples_with_logprobs(client):
    params = {"temperature": 0.8, "top_k": 40, "max_new_tokens": 8, "seed": 5}
    out = client.predict("Name a colour.", params, 2, api_name="/generate")
    assert len(out["samples"]) == 2 and out["run_id"]
    for sample in out["samples"]:
        assert 1 <= len(sample["token_ids"]) <= 8
        assert len(sample["tokens"]) == len(sample["token_ids"]) == len(sample["raw_logprobs"])
        assert_logprobs(sample["raw_logprobs"] + sample["final_logprobs"], sample["index"])
        assert sample["finish_reason"] in ("stop", "length")
        assert sample["metrics"]["num_tokens"] == len(sample["token_ids"])
    again = client.predict("Name a colour.", params, 2, api_name="/generate")
    assert [s["text"] for s in again["samples"]] == [s["text"] for s in out["samples"]]  # seeded: reproducible


def test_generate_greedy_samples_agree(client):
    out = client.predict("Name a colour.", {"temperature": 0, "max_new_tokens": 6}, 3, api_name="/generate")
    assert len({tuple(s["token_ids"]) for s in out["samples"]}) == 1


@pytest.mark.parametrize("params, samples, field", [
    ({"top_p": 2}, 1, "top_p"),
    ({"temperature": -1}, 1, "temperature"),
    ({"not_a_knob": 1}, 1, "not_a_knob"),
    ({"max_new_tokens": 8}, 0, "samples"),
])
def test_generate_bad_input_names_the_field(client, params, samples, field):
    with pytest.raises(Exception) as info:
        client.predict("Hello", params, samples, api_name="/generate")
    assert field in str(info.value)


def test_sweep_runs_every_cell(client):
    axes = [{"name": "temperature", "values": [0.3, 1.0]}, {"name": "top_p", "values": "0.5, 1.0"}]
    out = client.predict("Say something.", {"max_new_tokens": 4, "seed": 1}, axes, 2, api_name="/sweep")
    assert len(out["samples"]) == 8 and len(out["cells"]) == 4
    cells = {(c["axis_temperature"], c["axis_top_p"]) for c in out["cells"]}
    assert cells == {(0.3, 0.5), (0.3, 1.0), (1.0, 0.5), (1.0, 1.0)}
    assert all(r["text"] is not None and (r["perplexity"] is None or r["perplexity"] > 0) for r in out["samples"])


def test_sweep_rejects_four_axes(client):
    axes = [{"name": n, "values": [v]} for n, v in
            (("temperature", 1.0), ("top_p", 0.9), ("top_k", 5), ("min_p", 0.1))]
    with pytest.raises(Exception) as info:
        client.predict("Hi", {"max_new_tokens": 2}, axes, 1, api_name="/sweep")
    assert "axes" in str(info.value)


def test_distribution_of_a_step(client):
    out = client.predict("Count to five.", {"temperature": 0.9, "top_p": 0.8, "max_new_tokens": 6, "seed": 2}, 1,
                         api_name="/generate")
    sample = out["samples"][0]
    dist = client.predict(out["run_id"], 0, 2, 10, api_name="/distribution")
    assert [s["stage"] for s in dist["stages"]] == ["raw", *DEFAULT_ORDER]
    assert dist["chosen"]["id"] == sample["token_ids"][2]
    final = dist["stages"][-1]
    assert math.isclose(math.log(final["chosen_prob"]), sample["final_logprobs"][2], abs_tol=1e-4)
    raw = dist["stages"][0]
    assert math.isclose(math.log(raw["chosen_prob"]), sample["raw_logprobs"][2], abs_tol=1e-4)
    assert final["support"] <= raw["support"] and 0 < final["mass_kept"] <= 1  # top_p 0.8 removed tokens
    assert all(len(stage["tokens"]) <= 10 for stage in dist["top_tokens"])


def test_distribution_bad_step_and_unknown_run(client):
    out = client.predict("Hi", {"max_new_tokens": 3, "temperature": 0}, 1, api_name="/generate")
    with pytest.raises(Exception) as info:
        client.predict(out["run_id"], 0, 99, 10, api_name="/distribution")
    assert "step" in str(info.value)
    with pytest.raises(Exception) as info:
        client.predict("no-such-run", 0, 0, 10, api_name="/distribution")
    assert "run_id" in str(info.value)


def test_compare_finds_where_two_samples_part(client):
    out = client.predict("Tell me a story.", {"temperature": 1.2, "max_new_tokens": 12, "seed": 4}, 2,
                         api_name="/generate")
    a, b = (s["token_ids"] for s in out["samples"])
    parted = client.predict(out["run_id"], 0, 1, api_name="/compare")
    fork = next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), None)
    assert parted["first_fork"] == fork
    assert len(parted["steps"]) == (fork + 1 if fork is not None else min(len(a), len(b)))
    for step in parted["steps"]:  # one configuration, one context: the same distribution until they part
        assert step["TV"] < 1e-5 and step["KL(0‖1)"] < 1e-5
        assert math.isclose(math.log(step["p 0"]), out["samples"][0]["final_logprobs"][step["step"]], abs_tol=1e-4)
    with pytest.raises(Exception) as info:
        client.predict(out["run_id"], 0, 5, api_name="/compare")
    assert "compare with" in str(info.value)


def test_diverse_beams_through_the_api(client):
    params = {"do_sample": False, "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 2.0,
              "num_return_sequences": 4, "max_new_tokens": 6}
    out = client.predict("Write a short poem about the sea.", params, 1, api_name="/generate")
    samples = out["samples"]
    assert len(samples) == 4
    scores = [s["beam_score"] for s in samples]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)
    stages = None
    later = []
    for index in range(4):
        dist = client.predict(out["run_id"], index, 0, 5, api_name="/distribution")
        stages = [s["stage"] for s in dist["stages"]]
        if dist.get("earlier_groups_chose"):
            later.append(dist)
    assert "diversity_penalty" in stages and later  # some returned beam comes from group 1
    # at step 0 a group-1 beam saw group 0's two first tokens, and its diversity_penalty stage made them less likely
    for dist in later:
        penalized = {t["id"] for t in dist["earlier_groups_chose"]}
        assert len(dist["earlier_groups_chose"]) == 2
        top = {entry["stage"]: {t["id"]: t["prob"] for t in entry["tokens"]} for entry in dist["top_tokens"]}
        compared = [i for i in penalized if i in top["raw"] and i in top["diversity_penalty"]]
        assert compared and all(top["diversity_penalty"][i] < top["raw"][i] for i in compared)


@pytest.mark.parametrize("params, field", [
    ({"num_beams": 4, "num_beam_groups": 2, "do_sample": False}, "diversity_penalty"),
    ({"num_beams": 4, "num_beam_groups": 3, "diversity_penalty": 1.0, "do_sample": False}, "num_beams"),
    ({"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0}, "do_sample"),
])
def test_bad_diverse_beam_settings_name_the_field(client, params, field):
    with pytest.raises(Exception) as info:
        client.predict("Hello", {**params, "max_new_tokens": 4}, 1, api_name="/generate")
    assert field in str(info.value)


@pytest.mark.parametrize("args, field", [
    (["Hi", {"max_new_tokens": 4}, 1, False, 5], "system_prompt"),
    (["Hi", {"max_new_tokens": 4}, 1, False, ["a"]], "system_prompt"),
    (["Hi", {"max_new_tokens": 4}, 1, False, {"a": 1}], "system_prompt"),
    (["Hi", {"max_new_tokens": 4}, 1, False, True], "system_prompt"),
    (["Hi", {"max_new_tokens": 4}, 1, False, "\ud800"], "system_prompt"),
    (["hi \ud800 there", {"max_new_tokens": 4}, 1], "prompt"),
    ([5, {"max_new_tokens": 4}, 1], "prompt"),
    (["Hi", [], 1, False, ""], "params"),
    (["Hi", "temperature=1", 1], "params"),
    (["Hi", {"max_new_tokens": 4}, True, False, ""], "samples"),
    (["Hi", {"max_new_tokens": 4}, 1.5, False, ""], "samples"),
    (["Hi", {"max_new_tokens": 4}, 1, "yes", ""], "raw"),
    (["Hi", {"max_new_tokens": 4, "top_k": 18446744073709551616}, 1], "top_k"),
    (["Hi", {"max_new_tokens": 4, "sequence_bias": {"the": -1e308}}, 1], "sequence_bias"),
    (["Hi", {"max_new_tokens": 4, "stop": ["\udc00"]}, 1], "stop"),
    (["Hi", {"max_new_tokens": 4, "logit_bias": {"\u00b2": 1}}, 1], "logit_bias"),
    (["Hi", {"max_new_tokens": 4, "temperature": 1e-38}, 1], "temperature"),
])
def test_generate_arguments_are_type_checked_by_name(app_url, args, field):
    event, data = call_raw(app_url, "generate", args)
    assert event == "error" and field in json.dumps(data), (event, data)


@pytest.mark.parametrize("args, field", [
    (["Hi", {"max_new_tokens": 2}, "temperature", 1, False, "", False], "axes"),
    (["Hi", {"max_new_tokens": 2}, [{"name": "temperature", "values": [0.5, 1e-38]}], 1, False, "", False], "temperature"),
    (["Hi", {"max_new_tokens": 2}, [{"name": "top_k", "values": [2**64]}], 1, False, "", False], "top_k"),
    (["Hi", {"max_new_tokens": 2}, None, 1, False, 7, False], "system_prompt"),
])
def test_sweep_arguments_are_type_checked_by_name(app_url, args, field):
    event, data = call_raw(app_url, "sweep", args)
    assert event == "error" and field in json.dumps(data), (event, data)


def test_distribution_arguments_are_type_checked_by_name(client):
    out = client.predict("Hi", {"max_new_tokens": 2, "temperature": 0}, 1, api_name="/generate")
    for args, field in (((5, 0, 0, 5), "run_id"), ((out["run_id"], "0", 0, 5), "sample"),
                        ((out["run_id"], 0, 0, 10**6), "top_n"), ((out["run_id"], 0, [0], 5), "step")):
        with pytest.raises(Exception) as info:
            client.predict(*args, api_name="/distribution")
        assert field in str(info.value)


def test_a_generate_whose_client_goes_away_stops(client, bundled):
    """A run of 3 x 4000 tokens whose client cancels it (as Gradio does when a client disconnects) stops at its
    next step: the model (in this process, as the app runs here) is not called any more, and the next /generate
    is answered at once."""
    forwards: list[float] = []
    hook = bundled.model.register_forward_hook(lambda *_: forwards.append(time.monotonic()))
    try:
        job = client.submit("Tell me a long story.", {"max_new_tokens": 4000, "min_new_tokens": 4000, "seed": 1}, 3,
                            api_name="/generate")
        wait_for(lambda: len(forwards) >= 5, 60, "the run to decode 5 steps")
        job.cancel()
        step = (forwards[-1] - forwards[1]) / (len(forwards) - 2)  # seconds per step on this (shared) machine
        # the step under way ends: no model call for two steps' time (a run that never stops fails here)
        wait_for(lambda: time.monotonic() - forwards[-1] > max(2.0, 2 * step), 60, "the model to be left alone")
        cancelled = len(forwards)
        time.sleep(max(2.0, 3 * step))  # a window for calls that must not come: their absence has no event
        assert len(forwards) == cancelled, f"{len(forwards) - cancelled} model calls after the run was cancelled"
    finally:
        hook.remove()
    started = time.monotonic()
    quick = client.submit("Hi", {"max_new_tokens": 2, "temperature": 0}, 1, api_name="/generate")
    assert quick.result(timeout=40)["samples"][0]["text"] is not None
    assert time.monotonic() - started < 20


def test_generate_streams_progress_then_the_result(client):
    job = client.submit("Count to ten.", {"max_new_tokens": 48, "min_new_tokens": 48, "seed": 1}, 2,
                        api_name="/generate")
    result = job.result(timeout=120)
    outputs = job.outputs()
    assert outputs[-1] == result and len(result["samples"]) == 2 and len(outputs) >= 2
    assert all(set(o) == {"progress", "status"} and 0 <= o["progress"] <= 1 for o in outputs[:-1])


def test_the_run_store_is_bounded(engine):
    """The server keeps the last 32 runs and, together, at most max_bytes of them (the newest always)."""
    from engine.params import SamplingParams
    from playground.runs import RunStore

    store = RunStore(engine, capacity=4, max_bytes=2_000_000)
    result = engine.generate(engine.encode("Hi"), [SamplingParams(max_new_tokens=4, min_new_tokens=4)] * 2,
                             trace_top_n=5)
    runs = [store.add("generate", "Hi", result, ["a", "b"]) for _ in range(6)]
    assert len(store) == 4 and store.get(runs[-1].run_id) is runs[-1]
    with pytest.raises(Exception, match="run_id"):
        store.get(runs[0].run_id)
    big = engine.generate(engine.encode("Hi"), [SamplingParams(max_new_tokens=60, min_new_tokens=60)] * 8,
                          trace_top_n=5)  # ~0.6 MB of trace alone
    for _ in range(5):
        last = store.add("generate", "Hi", big, ["x"] * 8)
    assert store.nbytes <= 2_000_000 and store.get(last.run_id) is last and 1 <= len(store) < 4


def test_the_public_endpoints_keep_their_names(tiny):
    """The page's own events never take a script endpoint's name (a page handler named `compare` once pushed the
    public /compare to compare_1, and scripts calling /compare got the page's handler)."""
    from engine.generate import Engine
    from playground.server import build_page

    demo = build_page(Engine(tiny))
    named = {fn.api_name: fn.fn for fn in demo.fns.values()}
    for name in ("generate", "sweep", "distribution", "compare"):
        assert named[name].__module__ == "playground.api" and named[name].__name__ == name, name
