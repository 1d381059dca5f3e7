"""A person's own presets (playground/my_presets.py): the browser's entries, the menu, the file that goes into
examples/ as it is, and a bad file named by its field."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from engine.errors import ParamError
from playground import my_presets
from playground.config import PlaygroundConfig
from playground.exports import preset_json
from playground.presets import EXAMPLES_DIR, Preset, load_preset, load_presets

CONFIG = PlaygroundConfig.from_query("prompt=Name%20three%20rivers.&temperature=0.35&max_new_tokens=7&samples=2"
                                     "&axis=top_p:0.5,0.9&view=sweep")
NOW = datetime(2026, 11, 30, 19, 0, tzinfo=timezone.utc)


def test_a_saved_preset_is_a_preset_file_object_holding_every_setting():
    entry = my_presets.saved_preset("  Rivers  ", CONFIG, NOW)
    assert entry["name"] == "Rivers"
    assert entry["description"] == "Saved from the Decoding Playground on 2026-11-30 19:00 UTC."
    assert Preset.from_dict(entry).config == CONFIG  # knobs, axes, prompt: all of it
    assert entry == json.loads(preset_json(CONFIG, entry["name"], entry["description"]))  # the Share tab's JSON


def test_the_file_loads_as_an_example_preset(tmp_path):
    entry = my_presets.saved_preset("Rivers: cool / hot", CONFIG, NOW)
    path = my_presets.write_preset_file(entry, tmp_path)
    assert path.name == "rivers_cool_hot.json"
    assert load_preset(path).config == CONFIG
    assert [p.name for p in load_presets(tmp_path)] == ["Rivers: cool / hot"]
    example = sorted(EXAMPLES_DIR.glob("*.json"))[0]  # and an example file reads back like a saved one
    assert my_presets.read_preset_text(example.read_text()) == load_preset(example)


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, None, 3])
def test_a_name_is_one_to_80_characters(name):
    with pytest.raises(ParamError, match=r"^preset name: must be a name of 1 to 80 characters"):
        my_presets.saved_preset(name, CONFIG)


def test_saving_replaces_the_same_name_and_keeps_the_newest_50():
    saved: list = []
    for i in range(my_presets.MAX_SAVED + 3):
        saved = my_presets.add_saved(saved, my_presets.saved_preset(f"p{i}", CONFIG, NOW))
    assert len(saved) == my_presets.MAX_SAVED and saved[0]["name"] == "p3" and saved[-1]["name"] == "p52"
    again = my_presets.add_saved(saved, my_presets.saved_preset("p10", CONFIG.replace(prompt="Other"), NOW))
    assert [e["name"] for e in again].count("p10") == 1 and again[-1]["prompt"] == "Other"


def test_the_menu_lists_built_in_presets_then_yours_marked():
    builtin = load_presets()
    saved = [my_presets.saved_preset("Mine", CONFIG, NOW)]
    choices = my_presets.menu_choices(builtin, saved)
    assert choices[:len(builtin)] == [(p.name, p.name) for p in builtin]
    assert choices[-1] == ("Mine (yours)", "mine:Mine")
    assert my_presets.find_saved(saved, "mine:Mine").config == CONFIG
    assert my_presets.menu_choices(builtin, "not a list") == choices[:len(builtin)]  # a broken store: none of yours


def test_delete_takes_only_a_saved_preset():
    saved = [my_presets.saved_preset(name, CONFIG, NOW) for name in ("A", "B")]
    kept, name = my_presets.delete_saved(saved, "mine:A")
    assert name == "A" and [e["name"] for e in kept] == ["B"]
    builtin = load_presets()[0].name
    with pytest.raises(ParamError, match=r"^preset: must be one of your saved presets \(A, B\)"):
        my_presets.delete_saved(saved, builtin)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"^preset file: must be valid JSON"),
    ("[1, 2]", r"^preset: must be a JSON object, got 'list'"),
    ('{"name": "x", "description": "d", "prompt": "p", "params": {"temperature": -3}}', r"^temperature: must be"),
    ('{"name": "x", "description": "d", "prompt": "p", "colour": 1}', r"^colour: must be one of the known keys"),
    ('{"name": "", "description": "d", "prompt": "p"}', r"^name: must be a non-empty string"),
    ('{"name": "x", "description": "d", "prompt": "p", "axes": [{"name": "top_q", "values": "1"}]}', r"^axis"),
    (b"\xff\xfe", r"^preset file: must be UTF-8 text"),
    (" " * (my_presets.MAX_FILE_BYTES + 1), r"^preset file: must be at most 1000000 characters"),
])
def test_a_bad_file_names_its_field(text, message):
    with pytest.raises(ParamError, match=message):
        my_presets.read_preset_text(text)
