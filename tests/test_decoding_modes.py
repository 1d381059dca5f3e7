"""The decoding_mode sweep axis: greedy, sampling, beam search, diverse beams, contrastive search, constrained
beams and DoLa side by side in one sweep, one grid (engine/decoding_modes.py).

Each mode's cell in a mixed sweep must equal that mode's configuration run alone, token for token; records, the
grid, the exports, share links, presets and the command line carry the mode's name; a bad name or a combination
a mode refuses is a ParamError naming the axis, before any work.
"""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from engine.__main__ import main
from engine.decoding_modes import MODE_AXIS, MODE_KNOBS, MODE_NAMES, MODES, mode_params
from engine.errors import ParamError
from engine.generate import Engine
from engine.models import tiny_random_model
from engine.params import SamplingParams
from engine.sweep import run_sweep
from engine.sweepspec import Axis, SweepSpec
from pages import open_app, set_text, shot, text_box, wait_done
from playground.config import PlaygroundConfig
from playground.presets import load_presets
from playground.render import sweep_grid_html
from engine.metrics import cell_summary

PROMPT = "Write one sentence about the sea."
# a base that every mode can take: constrained beams read its force_words (a base holding force_words is itself a
# constrained beam search), sampling reads its temperature and top_p
BASE = SamplingParams(temperature=0.9, top_p=0.95, do_sample=False, num_beams=4, force_words=(("sea",),),
                      max_new_tokens=6, seed=3)


@pytest.fixture(scope="module")
def spread():
    """A tiny random model whose logits spread like a trained one's (no near-ties for batching to flip)."""
    return Engine(tiny_random_model(init_std=1.0))


@pytest.fixture(scope="module")
def mixed(spread):
    return run_sweep(spread, SweepSpec(PROMPT, BASE, (Axis(MODE_AXIS, MODE_NAMES),), samples=2))


def test_each_mode_in_a_mixed_sweep_equals_its_row_alone(spread, mixed):
    records = mixed.records()
    assert [r["axis_decoding_mode"] for r in records] == [
        "greedy", "greedy", "sampling", "sampling", "beam_search", "diverse_beams", "contrastive", "contrastive",
        "constrained_beams", "dola", "dola"]  # samples per cell; a beam cell's rows are its num_return_sequences (1) beams
    for name in MODE_NAMES:
        alone = run_sweep(spread, SweepSpec(PROMPT, mode_params(name, BASE), samples=2)).records()
        mine = [r for r in records if r["axis_decoding_mode"] == name]
        assert [r["token_ids"] for r in mine] == [r["token_ids"] for r in alone], name
        for a, b in zip(mine, alone):
            assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4)
            assert {k: a[k] for k in MODE_KNOBS} == {k: b[k] for k in MODE_KNOBS}
    by_mode = {r["axis_decoding_mode"]: r for r in records}
    # each cell ran its own algorithm, not the sampling loop with other knobs
    assert by_mode["greedy"]["temperature"] == 0.0 and by_mode["sampling"]["temperature"] == 0.9
    assert "beam_score" in by_mode["beam_search"] and by_mode["diverse_beams"]["beam_group"] == 0
    assert by_mode["contrastive"]["degeneration_penalty"] is not None
    assert "constraints_met" in by_mode["constrained_beams"] and "constraints_met" not in by_mode["beam_search"]
    assert by_mode["dola"]["premature_layers"] and by_mode["greedy"].get("premature_layers") is None
    sampled = [r["token_ids"] for r in records if r["axis_decoding_mode"] == "sampling"]
    assert sampled[0] != sampled[1]  # two samples of the sampling cell draw different noise


def test_the_grid_and_the_exports_carry_the_mode(mixed):
    frame = mixed.dataframe()
    assert list(frame["axis_decoding_mode"].unique()) == list(MODE_NAMES)
    cells = cell_summary(frame)
    html = sweep_grid_html(cells, frame, [MODE_AXIS], ["perplexity"])
    for name in MODE_NAMES:
        assert f"decoding_mode = {name}" in html
    data = json.loads(json.dumps(mixed.to_json_dict()))
    assert data["spec"]["axes"] == [{"name": MODE_AXIS, "values": list(MODE_NAMES)}]
    assert SweepSpec.from_dict(data["spec"]) == mixed.spec
    csv = frame.to_csv(index=False)
    assert "axis_decoding_mode" in csv.splitlines()[0] and "constrained_beams" in csv


def test_modes_combine_with_other_axes_where_that_makes_sense():
    # a length axis and a prompt axis go with every mode; a mode's own knobs with that mode
    spec = SweepSpec("", BASE, (Axis("prompt", ("Hi.", "Bye.")), Axis(MODE_AXIS, ("greedy", "contrastive")),
                                Axis("max_new_tokens", (3, 5))))
    assert [(dict(v)[MODE_AXIS], p.max_new_tokens, p.penalty_alpha) for v, p in spec.cells()][:4] == [
        ("greedy", 3, 0.0), ("greedy", 5, 0.0), ("contrastive", 3, 0.6), ("contrastive", 5, 0.6)]
    spec = SweepSpec(PROMPT, BASE, (Axis(MODE_AXIS, ("beam_search", "constrained_beams")), Axis("num_beams", (2, 3))))
    assert [(p.num_beams, p.force_words) for _, p in spec.cells()] == [
        (2, ()), (3, ()), (2, (("sea",),)), (3, (("sea",),))]
    spec = SweepSpec(PROMPT, BASE, (Axis(MODE_AXIS, ("contrastive",)), Axis("top_k", (2, 8))))
    assert [p.top_k for _, p in spec.cells()] == [2, 8]
    # a base with beams still gives a greedy row in the greedy cell: the mode decides every mode knob
    [(_, greedy)] = SweepSpec(PROMPT, BASE, (Axis(MODE_AXIS, ("greedy",)),)).cells()
    assert (greedy.num_beams, greedy.force_words, greedy.greedy) == (1, (), True)


@pytest.mark.parametrize("axes, field, says", [
    ((Axis(MODE_AXIS, ("greedy", "beam")),), "axis decoding_mode", ", ".join(MODE_NAMES)),
    ((Axis(MODE_AXIS, ("greedy", 3)),), "axis decoding_mode", "got 3"),
    ((Axis(MODE_AXIS, ("greedy", "greedy")),), "axis decoding_mode", "distinct"),
    ((Axis(MODE_AXIS, ("beam_search", "contrastive")), Axis("num_beams", (2, 4))), "axis num_beams",
     "decoding_mode contrastive"),
    ((Axis(MODE_AXIS, ("greedy", "sampling")), Axis("temperature", (0.5, 1.0))), "axis temperature",
     "got [0.5, 1.0]"),
    ((Axis("max_new_tokens", (2, 3)), Axis(MODE_AXIS, ("contrastive",)), Axis("do_sample", (True,))),
     "axis do_sample", "decoding_mode contrastive"),
])
def test_bad_modes_and_refused_combinations_name_the_axis(axes, field, says):
    with pytest.raises(ParamError) as info:
        SweepSpec(PROMPT, BASE, axes)
    assert info.value.field == field and says in str(info.value)


def test_what_a_mode_needs_of_the_base_is_named_with_its_cell():
    with pytest.raises(ParamError) as info:  # constrained beams take force_words from the base
        SweepSpec(PROMPT, SamplingParams(), (Axis(MODE_AXIS, ("greedy", "constrained_beams")),))
    assert info.value.field == "force_words" and "(in the cell decoding_mode=constrained_beams)" in str(info.value)
    with pytest.raises(ParamError) as info:  # sampling samples with the base's temperature
        SweepSpec(PROMPT, SamplingParams(temperature=0.0), (Axis(MODE_AXIS, ("sampling",)),))
    assert info.value.field == "temperature" and "decoding_mode=sampling" in str(info.value)
    with pytest.raises(ParamError) as info:  # the base's stop strings do not go with beams
        SweepSpec(PROMPT, SamplingParams(stop=(".",)), (Axis(MODE_AXIS, ("greedy", "beam_search")),))
    assert info.value.field == "stop" and "decoding_mode=beam_search" in str(info.value)


def test_the_table_defines_every_mode_once():
    assert len(MODE_NAMES) == len(set(MODE_NAMES)) == len(MODES) >= 6
    assert all(m.description and set(m.sets) <= set(MODE_KNOBS) for m in MODES)
    assert {"num_beams", "penalty_alpha", "force_words", "num_beam_groups"} <= set(MODE_KNOBS)


def test_share_links_and_presets_carry_the_mode_axis():
    config = PlaygroundConfig(prompt=PROMPT, view="sweep", params=BASE,
                              axes=((MODE_AXIS, "greedy, contrastive, constrained_beams"), ("max_new_tokens", "3, 4")))
    again = PlaygroundConfig.from_query(config.to_query())
    assert again == config and PlaygroundConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert again.sweep_spec().axes[0].values == ("greedy", "contrastive", "constrained_beams")
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_query(f"prompt=Hi&axis={MODE_AXIS}:greedy,topk")
    assert info.value.field == "axis decoding_mode" and "beam_search" in str(info.value)
    with pytest.raises(ParamError) as info:
        PlaygroundConfig(prompt=PROMPT, axes=((MODE_AXIS, "greedy"), ("num_beams", "2, 4")))
    assert info.value.field == "axis num_beams"


def test_the_command_line_runs_a_mode_axis(spread, mixed, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("engine.models.load_model", lambda *a, **k: spread.loaded)
    out = tmp_path / "modes.json"
    assert main(["sweep", "--prompt", PROMPT, "--set", "temperature=0.9", "top_p=0.95", "do_sample=false",
                 "num_beams=4", 'force_words=[["sea"]]', "--max-new-tokens", "6", "--seed", "3", "--samples", "2",
                 "--axis", f"{MODE_AXIS}=greedy,beam_search,contrastive,constrained_beams", "--out", str(out)]) == 0
    samples = json.loads(out.read_text())["samples"]
    expected = [r for r in mixed.records() if r["axis_decoding_mode"] in ("greedy", "beam_search", "contrastive",
                                                                          "constrained_beams")]
    assert [(s["axis_decoding_mode"], s["token_ids"]) for s in samples] == [
        (r["axis_decoding_mode"], r["token_ids"]) for r in expected]
    assert main(["sweep", "--prompt", PROMPT, "--axis", f"{MODE_AXIS}=greedy,nucleus"]) == 2
    err = capsys.readouterr().err
    assert "axis decoding_mode" in err and "'nucleus'" in err and "constrained_beams" in err and "Traceback" not in err


def test_a_decoding_mode_axis_in_the_page(page, app_url):
    open_app(page, app_url, "?max_new_tokens=4&samples=1&view=sweep")
    dropdown = page.locator("#axis-name-1 input")
    dropdown.click()
    dropdown.fill(MODE_AXIS)
    page.locator("#axis-name-1").get_by_role("option", name=MODE_AXIS, exact=True).click()
    # an empty values box is filled with every mode's name; a person then keeps the ones to compare
    expect(text_box(page, "axis-values-1")).to_have_value(", ".join(MODE_NAMES))
    set_text(page, "axis-values-1", "greedy, beam_search, contrastive")
    page.locator("#run-sweep").click()
    wait_done(page, "sweep-status")
    expect(page.locator("#sweep-grid .dp-cell")).to_have_count(3)
    grid = page.locator("#sweep-grid")
    for name in ("greedy", "beam_search", "contrastive"):
        expect(grid).to_contain_text(f"decoding_mode = {name}")
    shot(page, "sweep-decoding-mode-axis")


def test_the_strategies_preset_puts_every_mode_side_by_side():
    [preset] = [p for p in load_presets() if p.name == "The decoding strategies on one prompt"]
    spec = preset.config.sweep_spec()
    assert spec.axes == (Axis(MODE_AXIS, MODE_NAMES),) and len(spec.rows()) == len(MODE_NAMES)
    by_mode = {dict(values)[MODE_AXIS]: p for values, p in spec.cells()}
    assert by_mode["greedy"].greedy and not by_mode["sampling"].greedy and by_mode["sampling"].temperature == 0.8
    assert by_mode["contrastive"].penalty_alpha > 0 and by_mode["diverse_beams"].num_beam_groups == 2
    assert by_mode["constrained_beams"].force_words == (("storm",),) and by_mode["beam_search"].force_words == ()
