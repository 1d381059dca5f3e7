"""Prompts as sweep axes: "story vs explanation x temperature" as one batch and one grid.

A prompt-axis sweep decodes rows with different prompts in one batch (each prompt prefilled once, the caches
left-padded into one); every cell must equal the same cell swept on its own prompt, token for token, for sampled
and for beam cells, and the Distributions replay of a row must read that row's prompt.
"""
from __future__ import annotations

import json
import math

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from engine.__main__ import main
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweep import run_sweep
from engine.sweepspec import Axis, SweepSpec
from engine.values import parse_axis_values
from pages import open_app, set_axis, shot, wait_done
from playground.config import PlaygroundConfig

STORY = "Once upon a time, in a distant galaxy, there was a spaceship called Voyager."
EXPLAIN = "Explain how blockchain works in simple terms."
TEMPERATURES = (0.2, 0.9, 1.5)


def prompt_sweep(base: SamplingParams, *more: Axis, samples: int = 2, **kw) -> SweepSpec:
    return SweepSpec("", base, (Axis("prompt", (STORY, EXPLAIN)), *more), samples=samples, **kw)


def test_each_prompt_equals_its_own_sweep(engine):
    base = SamplingParams(max_new_tokens=12, seed=5, top_p=0.9)
    both = run_sweep(engine, prompt_sweep(base, Axis("temperature", TEMPERATURES)))
    records = both.records()
    assert len(records) == 2 * 3 * 2 and {r["axis_prompt"] for r in records} == {STORY, EXPLAIN}
    for prompt in (STORY, EXPLAIN):
        alone = run_sweep(engine, SweepSpec(prompt, base, (Axis("temperature", TEMPERATURES),), samples=2)).records()
        mine = [r for r in records if r["axis_prompt"] == prompt]
        assert [r["token_ids"] for r in mine] == [r["token_ids"] for r in alone]
        for a, b in zip(mine, alone):
            assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)
            assert a["prompt_tokens"] == b["prompt_tokens"] == len(engine.encode(prompt))
    assert len({r["prompt_tokens"] for r in records}) == 2  # the two prompts differ in length: left padding is used


def test_beam_cells_read_their_own_prompt(engine):
    base = SamplingParams(max_new_tokens=6, do_sample=False, num_beams=2, num_return_sequences=2)
    both = run_sweep(engine, prompt_sweep(base, samples=1)).records()
    for prompt in (STORY, EXPLAIN):
        alone = run_sweep(engine, SweepSpec(prompt, base)).records()
        mine = [r for r in both if r["axis_prompt"] == prompt]
        assert [r["token_ids"] for r in mine] == [r["token_ids"] for r in alone]
        assert [r["beam_score"] for r in mine] == pytest.approx([r["beam_score"] for r in alone], rel=1e-4)


def test_replay_reads_the_rows_prompt(engine):
    result = run_sweep(engine, prompt_sweep(SamplingParams(max_new_tokens=5, seed=2), samples=1))
    generation = result.generation
    for row in range(len(result.rows)):
        replay = engine.replay(generation, row, 3)
        token = generation.rows[row].token_ids[3]
        recorded = generation.rows[row].final_logprobs[3]
        assert math.log(float(replay.probs[-1][token])) == pytest.approx(recorded, abs=1e-4)


def test_system_prompt_axis_and_independent_seeds(engine):
    spec = SweepSpec("Say hello.", SamplingParams(max_new_tokens=4, seed=9),
                     (Axis("system_prompt", ("", "You are a pirate.")),), independent_seeds=True)
    rows = spec.rows()
    assert [r.system_prompt for r in rows] == [None, "You are a pirate."]
    assert rows[0].params.seed != rows[1].params.seed  # the system prompt is part of the cell's identity
    records = run_sweep(engine, spec).records()
    assert [r["prompt_tokens"] for r in records] == [
        len(engine.encode("Say hello.", system_prompt=s)) for s in (None, "You are a pirate.")]
    assert records[0]["prompt_tokens"] != records[1]["prompt_tokens"]


@pytest.mark.parametrize("axes, field", [
    ((Axis("prompt", ("ok", "")),), "axis prompt"),
    ((Axis("prompt", ("ok", "  ")),), "axis prompt"),
    ((Axis("prompt", ("ok", 3)),), "axis prompt"),
    ((Axis("prompt", ("ok", "\ud800")),), "axis prompt"),
    ((Axis("system_prompt", (None,)), Axis("prompt", ("ok",))), "axis system_prompt"),
    ((Axis("temperature", (0.5,)),), "prompt"),  # no prompt axis: the prompt is required
    ((Axis("prompt", ()),), "axis prompt"),
])
def test_bad_prompt_axes_name_the_field(axes, field):
    with pytest.raises(ParamError) as info:
        SweepSpec("", SamplingParams(), axes)
    assert info.value.field == field


def test_typed_prompt_values_stay_text():
    assert parse_axis_values("prompt", '"Hi, there", 42, [1]') == ("Hi, there", "42", "[1]")
    assert parse_axis_values("system_prompt", '"", Be brief.') == ("", "Be brief.")


def test_share_links_and_presets_carry_prompt_axes():
    config = PlaygroundConfig(prompt="", view="sweep", axes=(("prompt", f'"{STORY}", "{EXPLAIN}"'),
                                                             ("temperature", "0.2, 0.9")))
    again = PlaygroundConfig.from_query(config.to_query())
    assert again == config and again.sweep_spec().axes[0].values == (STORY, EXPLAIN)
    with pytest.raises(ParamError) as info:
        PlaygroundConfig(prompt="", view="sweep", axes=(("prompt", '"a", ""'),))
    assert info.value.field == "axis prompt"


def test_the_command_line_takes_a_prompt_axis_without_prompt(bundled, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("engine.models.load_model", lambda *a, **k: bundled)
    out = tmp_path / "grid.json"
    assert main(["sweep", "--axis", f'prompt="{STORY}","{EXPLAIN}"', "--axis", "temperature=0.2,1.5",
                 "--max-new-tokens", "4", "--out", str(out)]) == 0
    samples = json.loads(out.read_text())["samples"]
    assert [(s["axis_prompt"], s["axis_temperature"]) for s in samples] == [
        (STORY, 0.2), (STORY, 1.5), (EXPLAIN, 0.2), (EXPLAIN, 1.5)]
    assert main(["sweep", "--axis", "temperature=0.2"]) == 2
    assert "prompt" in capsys.readouterr().err


def test_the_sweep_endpoint_takes_prompt_axes(app_url):
    client = Client(app_url, verbose=False)
    axes = [{"name": "prompt", "values": [STORY, EXPLAIN]}, {"name": "temperature", "values": [0.2, 0.9, 1.5]}]
    out = client.predict("", {"max_new_tokens": 4, "seed": 1}, axes, 1, api_name="/sweep")
    assert [(c["axis_prompt"], c["axis_temperature"]) for c in out["cells"]] == [
        (p, t) for p in (STORY, EXPLAIN) for t in TEMPERATURES]
    with pytest.raises(Exception) as info:
        client.predict("", {"max_new_tokens": 4}, [{"name": "prompt", "values": ["a", ""]}], 1, api_name="/sweep")
    assert "axis prompt" in str(info.value)


def test_a_two_prompt_by_three_temperature_sweep_in_the_page(page, app_url):
    open_app(page, app_url, "?max_new_tokens=5&samples=1&view=sweep&prompt=")
    set_axis(page, 1, "prompt", f'"{STORY}", "{EXPLAIN}"')
    set_axis(page, 2, "temperature", "0.2, 0.9, 1.5")
    page.locator("#run-sweep").click()
    wait_done(page, "sweep-status")
    expect(page.locator("#sweep-grid .dp-cell")).to_have_count(6)
    grid = page.locator("#sweep-grid")
    expect(grid).to_contain_text("prompt = Once upon a time")
    expect(grid).to_contain_text("prompt = Explain how blockchain")
    expect(page.locator("#heatmap")).to_contain_text("Explain how", timeout=30_000)
    shot(page, "sweep-prompt-axis")
