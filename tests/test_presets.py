"""The presets in examples/: they load, build runnable sweeps, teach what they say, and hold no outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.generate import EngineLimits
from engine.order import DEFAULT_ORDER
from engine.params import SamplingParams
from playground.config import PlaygroundConfig
from playground.presets import EXAMPLES_DIR, Preset, PresetError, load_presets

FILES = sorted(EXAMPLES_DIR.glob("*.json"))
PRESET_KEYS = {"name", "description", "view", "prompt", "raw", "system_prompt", "samples", "params", "axes"}


@pytest.fixture(scope="module")
def presets() -> dict[str, Preset]:
    loaded = load_presets()
    assert len(loaded) == len(FILES) >= 10
    names = [p.name for p in loaded]
    assert len(set(names)) == len(names)
    return {p.name: p for p in loaded}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_file_format(path: Path) -> None:
    """Two-digit prefix for the order, the documented keys only: settings, never frozen outputs."""
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.json", path.name)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == PRESET_KEYS
    assert set(data["params"]) <= set(SamplingParams().to_dict())
    assert all(set(axis) == {"name", "values"} and isinstance(axis["values"], str) for axis in data["axes"])
    assert data["view"] in ("generate", "sweep") and (data["view"] == "sweep") == bool(data["axes"])
    sentences = re.findall(r"[.!?](?:\s|$)", data["description"])
    assert 1 <= len(sentences) <= 2 and 40 <= len(data["description"]) <= 400


def test_every_preset_runs_in_seconds(presets: dict[str, Preset]) -> None:
    limits = EngineLimits()
    for preset in presets.values():
        spec = preset.config.sweep_spec()
        rows = spec.rows()
        limits.check([row.params for row in rows])
        assert len(rows) <= 16, preset.name
        assert all(32 <= row.params.max_new_tokens <= 64 for row in rows), preset.name
        assert PlaygroundConfig.from_query(preset.config.to_query()) == preset.config
        assert Preset.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset


def axis_values(preset: Preset) -> dict[str, tuple]:
    return {axis.name: axis.values for axis in preset.config.sweep_spec().axes}


def test_required_presets(presets: dict[str, Preset]) -> None:
    story = presets["Creative story: temperature 0.2 vs 0.9"]
    assert story.config.prompt == "Once upon a time, in a distant galaxy, there was a spaceship called Voyager."
    assert axis_values(story) == {"temperature": (0.2, 0.9)} and 2 <= story.config.samples <= 3

    explanation = presets["Explanation: temperature 0.9 vs 0.7"]
    assert explanation.config.prompt == "Explain how blockchain works in simple terms."
    assert axis_values(explanation) == {"temperature": (0.9, 0.7)}

    ladder = presets["Top-p ladder"]
    assert ladder.config.prompt == "What are some effective ways to manage stress in daily life?"
    assert axis_values(ladder) == {"top_p": (0.1, 0.3, 0.5, 0.7, 0.9)}

    eldoria = presets["Top-p 0.2 vs 0.95"]
    assert "Eldoria" in eldoria.config.prompt and axis_values(eldoria) == {"top_p": (0.2, 0.95)}

    ngram = presets["Top-p 0.95 vs 0.5 with no_repeat_ngram_size=2"]
    assert ngram.config.prompt.startswith("Explain step by step how the internet works")
    assert ngram.config.params.no_repeat_ngram_size == 2 and axis_values(ngram) == {"top_p": (0.95, 0.5)}

    headlines = presets["Headlines: num_return_sequences"]
    assert headlines.config.view == "generate" and headlines.config.samples == 5 and not headlines.config.axes
    assert "headline" in headlines.config.prompt


def test_own_presets_teach_what_they_say(presets: dict[str, Preset]) -> None:
    min_p = presets["min-p vs top-p at temperature 1.5"]
    assert min_p.config.params.temperature == 1.5
    assert axis_values(min_p) == {"min_p": (0, 0.1), "top_p": (0.9, 1.0)}

    penalty = presets["Repetition penalty 1.0 / 1.3 / 1.8"]
    assert penalty.config.params.greedy  # only the penalty differs between the cells
    assert axis_values(penalty) == {"repetition_penalty": (1.0, 1.3, 1.8)}

    order = presets["Processor order: temperature before vs after min-p at temperature 1.5"]
    assert order.config.params.temperature == 1.5 and order.config.params.min_p == 0.1
    orders = [params.order for _, params in order.config.sweep_spec().cells()]
    assert orders[0] == DEFAULT_ORDER and orders[1].index("min_p") < orders[1].index("temperature")

    diverse = presets["Diverse beam search: diversity_penalty 0.5 vs 3"]
    assert diverse.config.params.greedy and diverse.config.params.num_beam_groups == 2
    assert axis_values(diverse) == {"diversity_penalty": (0.5, 3.0)}

    greedy = presets["Greedy is deterministic"]
    assert greedy.config.params.greedy and greedy.config.samples == 3 and greedy.config.view == "generate"


def test_bad_files_are_named(tmp_path: Path) -> None:
    good = json.loads(FILES[0].read_text(encoding="utf-8"))
    cases = {
        "01_not_json.json": "{not json",
        "02_list.json": "[]",
        "03_bad_param.json": json.dumps({**good, "params": {"temperature": -1}}),
        "04_frozen.json": json.dumps({**good, "outputs": ["a frozen sample"]}),
        "05_no_description.json": json.dumps({**good, "description": ""}),
        "06_bad_axis.json": json.dumps({**good, "axes": [{"name": "top_p", "values": "0.5:0.1:0.1"}]}),
        # never clamped, dropped or read as another value
        "07_top_p_2.json": json.dumps({**good, "params": {"top_p": 2}}),
        "08_unknown_param.json": json.dumps({**good, "params": {"temprature": 0.5}}),
        "09_fractional.json": json.dumps({**good, "samples": 2.5}),
        "10_raw_text.json": json.dumps({**good, "raw": "true"}),
        "11_axis_key.json": json.dumps({**good, "axes": [{"name": "top_p", "values": "0.5", "note": "x"}]}),
    }
    expected = {"01_not_json.json": "not valid JSON", "02_list.json": "preset: must be a JSON object",
                "03_bad_param.json": "temperature: must be", "04_frozen.json": "outputs: must be one of the known",
                "05_no_description.json": "description: must be a non-empty string",
                "06_bad_axis.json": "axis top_p: must be", "07_top_p_2.json": "top_p: must be a number in (0, 1], got 2",
                "08_unknown_param.json": "temprature: must be one of the known fields",
                "09_fractional.json": "samples: must be a whole number in [1, 16], got 2.5",
                "10_raw_text.json": "raw: must be true or false, got 'true'", "11_axis_key.json": "axes: must be"}
    for name, text in cases.items():
        folder = tmp_path / name.removesuffix(".json")
        folder.mkdir()
        (folder / name).write_text(text, encoding="utf-8")
        with pytest.raises(PresetError) as info:
            load_presets(folder)
        assert str(info.value).startswith(f"{name}: ") and expected[name] in str(info.value), str(info.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    text = FILES[0].read_text(encoding="utf-8")
    (tmp_path / "01_a.json").write_text(text, encoding="utf-8")
    (tmp_path / "02_b.json").write_text(text, encoding="utf-8")
    with pytest.raises(PresetError, match=r"^02_b\.json: name .* is already used by 01_a\.json"):
        load_presets(tmp_path)
    assert load_presets(tmp_path / "missing") == []  # no folder, no presets (and no crash)
