"""Branching: a row that starts from a forced prefix continues exactly as its parent would from there.

The forced tokens are decoded as the row's first steps (engine/forcing.py), so the noise stream, the penalties'
counts and mirostat's mu all stay aligned with the parent: forcing the parent's own first k tokens must
reproduce the parent token for token (for every fork step and many settings at once), and forcing another
token at step k must give that token the probability the parent's final distribution gave it.
"""
from __future__ import annotations

import math
import random
from urllib.parse import quote

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweep import run_sweep
from engine.sweepspec import SweepSpec
from pages import open_token, run_generate, shot, wait_done
from playground.runs import RunStore
from playground.branching import branch_choices, branch_spec
from playground.views import stream_run

PROMPT = "Write a short story about a lighthouse keeper."
STEPS = 24
SETTINGS = (
    dict(temperature=1.0, top_p=0.9, repetition_penalty=1.3),
    dict(mirostat=2, mirostat_tau=4.0),
    dict(temperature=1.2, no_repeat_ngram_size=2, min_p=0.05),
    dict(dry_multiplier=0.8, presence_penalty=0.6, frequency_penalty=0.4, top_k=50),
    dict(xtc_probability=0.5, xtc_threshold=0.1, temperature=1.1),
    dict(do_sample=False, repetition_penalty=1.2),
    dict(temperature=1.5, top_n_sigma=1.0, encoder_repetition_penalty=1.2),
    dict(typical_p=0.8, dynatemp_low=0.5, dynatemp_high=1.5, min_new_tokens=20),
)


@pytest.fixture(scope="module")
def parent(engine):
    params = [SamplingParams(**s, seed=11, max_new_tokens=STEPS) for s in SETTINGS]
    prompt = engine.encode(PROMPT)
    return prompt, params, engine.generate(prompt, params, list(range(len(params))))


def last_run(frames):
    return [frame.run for frame in frames if frame.run is not None][-1]


def test_forcing_the_parents_own_tokens_reproduces_it_at_every_fork(engine, parent):
    prompt, params, result = parent
    rng = random.Random(0)
    for _ in range(3):  # three rounds of random fork steps, every setting in each
        forks = [rng.randrange(0, len(r.token_ids) + 1) for r in result.rows]
        child = engine.generate(prompt, params, list(range(len(params))),
                                forced=[r.token_ids[:k] for r, k in zip(result.rows, forks)])
        for k, a, b in zip(forks, result.rows, child.rows):
            assert b.token_ids == a.token_ids, f"fork at {k}"
            assert b.final_logprobs == pytest.approx(a.final_logprobs, abs=1e-5)
            assert b.raw_logprobs == pytest.approx(a.raw_logprobs, abs=1e-5)
            assert b.finish_reason == a.finish_reason


def test_an_alternative_takes_its_probability_under_the_parent(engine, parent):
    prompt, params, result = parent
    for row in (0, 2, 3):
        k = 6
        final = engine.replay(result, row, k).probs[-1]  # the parent's final distribution at the fork
        kept = [int(t) for t in final.topk(5).indices if float(final[int(t)]) > 0]
        alternative = next(t for t in kept if t != result.rows[row].token_ids[k])
        forced = result.rows[row].token_ids[:k] + [alternative]
        child = engine.generate(prompt, [params[row]], [row], forced=[forced])
        out = child.rows[0]
        assert out.token_ids[:k + 1] == forced
        assert math.exp(out.final_logprobs[k]) == pytest.approx(float(final[alternative]), rel=1e-3)
        # the branch's own later steps replay exactly (the Distributions view works for branches)
        if len(out.token_ids) > k + 2:
            replay = engine.replay(child, 0, k + 2)
            assert math.log(float(replay.probs[-1][out.token_ids[k + 2]])) == pytest.approx(
                out.final_logprobs[k + 2], abs=1e-4)


def test_a_forced_token_the_settings_removed_is_taken_and_marked(engine):
    prompt = engine.encode(PROMPT)
    params = SamplingParams(top_k=1, max_new_tokens=6, seed=1)
    parent = engine.generate(prompt, [params])
    second = int(engine.replay(parent, 0, 0).probs[0].topk(2).indices[1])  # rank 2 under the raw model
    child = engine.generate(prompt, [params], forced=[[second]]).rows[0]
    assert child.token_ids[0] == second and child.final_logprobs[0] == float("-inf")
    assert math.isfinite(child.raw_logprobs[0]) and len(child.token_ids) == 6
    assert all(math.isfinite(x) for x in child.final_logprobs[1:])


@pytest.mark.parametrize("forced, field", [
    ([[1, 2]], "prefix"),  # one list for two rows
    ([[10**9], []], "prefix of row 0"),
    ([[-1], []], "prefix of row 0"),
    ([list(range(9)), []], "prefix of row 0"),  # longer than max_new_tokens
    ([[True], []], "prefix of row 0"),
])
def test_bad_prefixes_name_the_field(engine, forced, field):
    params = [SamplingParams(max_new_tokens=8)] * 2
    with pytest.raises(ParamError) as info:
        engine.generate(engine.encode("Hi"), params, [0, 1], forced=forced)
    assert info.value.field == field


def test_a_sweep_spec_carries_text_prefixes_per_sample(engine):
    spec = SweepSpec("Name a colour.", SamplingParams(max_new_tokens=8, seed=3), samples=2, prefix=("Blue", ()))
    records = run_sweep(engine, spec).records()
    assert records[0]["text"].startswith("Blue")
    assert records[1]["token_ids"] == run_sweep(engine, SweepSpec("Name a colour.", SamplingParams(
        max_new_tokens=8, seed=3), samples=2)).records()[1]["token_ids"]  # an empty prefix leaves a sample free
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ParamError, match="prefix"):
        SweepSpec("Hi", SamplingParams(num_beams=2, do_sample=False), prefix=("a",))
    with pytest.raises(ParamError, match="one prefix per sample"):
        SweepSpec("Hi", SamplingParams(), samples=2, prefix=("a",))


def test_the_generate_endpoint_branches_from_a_prefix(app_url):
    client = Client(app_url, verbose=False)
    params = {"max_new_tokens": 10, "seed": 5, "temperature": 1.0}
    parent = client.predict("Tell me a joke.", params, 2, api_name="/generate")
    ids = [s["token_ids"] for s in parent["samples"]]
    again = client.predict("Tell me a joke.", params, 2, False, "", [ids[0][:4], ids[1][:7]], api_name="/generate")
    assert [s["token_ids"] for s in again["samples"]] == ids
    text = client.predict("Tell me a joke.", params, 2, False, "", "Why did", api_name="/generate")
    assert all(s["text"].startswith("Why did") for s in text["samples"])
    for bad in ([[1], [2], [3]], [[10**12]], [["x"]], {"a": 1}, list(range(11))):
        with pytest.raises(Exception) as info:
            client.predict("Tell me a joke.", params, 2, False, "", bad, api_name="/generate")
        assert "prefix" in str(info.value)


def test_a_page_branch_with_the_parents_own_token_reproduces_the_output(engine):
    store = RunStore(engine)
    spec = SweepSpec("Tell me a joke.", SamplingParams(max_new_tokens=10, seed=4, temperature=1.0, top_k=40), samples=3)
    run = last_run(stream_run(engine, store, spec, "generate"))
    parent = run.generation.rows[2]
    same = last_run(stream_run(engine, store, branch_spec(run, 2, 5, parent.token_ids[5]), "generate"))
    assert same.generation.rows[0].token_ids == parent.token_ids and same.labels == ["sample 2 · branch at step 5"]
    choices = branch_choices(store, run, 2, 5)
    assert any(t == parent.token_ids[5] and "(chosen)" in label for label, t in choices)
    other = next(t for _, t in choices if t != parent.token_ids[5])
    child = last_run(stream_run(engine, store, branch_spec(run, 2, 5, other), "generate")).generation.rows[0]
    assert child.token_ids[:6] == parent.token_ids[:5] + [other]
    with pytest.raises(ParamError, match="step"):
        branch_spec(run, 2, 99, other)


def test_branch_from_an_alternative_in_the_page(page, app_url):
    run_generate(page, app_url, "?max_new_tokens=8&samples=2&temperature=1&seed=6&prompt=" + quote("Tell me a joke."))
    parent = [page.locator(f'#tokens .dp-tok[data-sample="1"][data-step="{s}"]').inner_text() for s in range(3)]
    open_token(page, 1, 3)
    dropdown = page.locator("#branch-token input")
    dropdown.click()
    options = page.locator("#branch-token").get_by_role("option")
    expect(options.first).to_be_visible(timeout=30_000)
    alternative = next(i for i in range(options.count()) if "(chosen)" not in options.nth(i).inner_text())
    picked = options.nth(alternative).inner_text()
    options.nth(alternative).click()
    page.locator("#branch-run").click()
    wait_done(page, "generate-status")
    expect(page.locator("#tokens .dp-sample")).to_have_count(1)
    expect(page.locator("#tokens .dp-sample-title")).to_contain_text("sample 1 · branch at step 3")
    branch = [page.locator(f'#tokens .dp-tok[data-sample="0"][data-step="{s}"]').inner_text() for s in range(4)]
    assert branch[:3] == parent
    assert repr(branch[3].replace("·", " "))[1:-1] in picked or branch[3].strip() in picked
    shot(page, "branch")
