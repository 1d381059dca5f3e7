"""The named endpoints /generate, /sweep and /distribution through gradio_client against the launched app."""
import math

import httpx
import pytest
from gradio_client import Client

from engine.params import DEFAULT_ORDER


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
        assert all(math.isfinite(v) and v <= 0 for v in sample["raw_logprobs"] + sample["final_logprobs"])
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
