"""A person's own presets, kept in their browser: as data (no Gradio here).

A saved preset is exactly a preset file's JSON object (Preset.to_dict, the format of examples/*.json), so one
serialisation serves the browser's store, the downloaded file and examples/. The browser holds a list of such
objects; the preset menu shows them after the built-in ones, marked as yours (their menu value starts with MINE).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import ParamError

from .config import PlaygroundConfig
from .exports import preset_json
from .presets import Preset

MINE = "mine:"  # a saved preset's menu value: MINE + its name (a built-in preset's value is its bare name)
MINE_LABEL = " (yours)"  # after a saved preset's name in the menu
MAX_SAVED = 50  # presets kept per browser; the oldest goes first
MAX_NAME = 80  # characters of a preset's name (it labels the menu and names the file)
MAX_FILE_BYTES = 1_000_000  # a preset file is a few KB; a bigger one is not a preset
DEFAULT_DESCRIPTION = "Saved from the Decoding Playground"


def check_name(name: Any) -> str:
    """A preset's name as typed: stripped, non-empty, at most MAX_NAME characters."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        raise ParamError("preset name", f"a name of 1 to {MAX_NAME} characters", name)
    return name.strip()


def saved_preset(name: Any, config: PlaygroundConfig, now: datetime | None = None) -> dict[str, Any]:
    """The current settings as a preset object (the browser's entry and the file's content)."""
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    return Preset(check_name(name), f"{DEFAULT_DESCRIPTION} on {when}.", config).to_dict()


def valid_saved(saved: Any) -> list[dict[str, Any]]:
    """The browser's list as stored; anything that is not a list of objects (a store from an older page, edited
    by hand) counts as empty rather than breaking the page. Each entry is checked when it is loaded."""
    if not isinstance(saved, list):
        return []
    return [entry for entry in saved if isinstance(entry, dict) and isinstance(entry.get("name"), str)]


def add_saved(saved: Any, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The list with `entry` at its end, replacing one of the same name; at most MAX_SAVED (oldest dropped)."""
    kept = [item for item in valid_saved(saved) if item["name"] != entry["name"]] + [entry]
    return kept[-MAX_SAVED:]


def delete_saved(saved: Any, value: Any) -> tuple[list[dict[str, Any]], str]:
    """The list without the preset the menu's `value` names (MINE + name); and its name. ParamError when the
    value is not one of the saved presets (a built-in preset is not deleted: it is a file in examples/)."""
    entries = valid_saved(saved)
    names = [entry["name"] for entry in entries]
    name = value[len(MINE):] if isinstance(value, str) and value.startswith(MINE) else None
    if name not in names:
        raise ParamError("preset", f"one of your saved presets ({', '.join(names) or 'none saved yet'}) picked in "
                                   f"the menu", value)
    return [entry for entry in entries if entry["name"] != name], name


def find_saved(saved: Any, value: Any) -> Preset:
    """The saved preset the menu's `value` names, checked like a file (a knob renamed since it was saved is named)."""
    name = value[len(MINE):] if isinstance(value, str) and value.startswith(MINE) else None
    for entry in valid_saved(saved):
        if entry["name"] == name:
            return Preset.from_dict(entry)
    raise ParamError("preset", "one of your saved presets", value)


def menu_choices(builtin: list[Preset], saved: Any) -> list[tuple[str, str]]:
    """The preset menu: built-in presets (value: the name), then the saved ones marked as yours."""
    return ([(preset.name, preset.name) for preset in builtin]
            + [(entry["name"] + MINE_LABEL, MINE + entry["name"]) for entry in valid_saved(saved)])


def read_preset_text(text: Any) -> Preset:
    """A preset file's text -> the Preset; ParamError naming the field (the JSON, a key, a knob) when it is bad."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise ParamError("preset file", f"at most {MAX_FILE_BYTES} bytes", f"{len(text)} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParamError("preset file", "UTF-8 text", f"undecodable byte at {exc.start}") from None
    if not isinstance(text, str):
        raise ParamError("preset file", "JSON text", text)
    if len(text) > MAX_FILE_BYTES:
        raise ParamError("preset file", f"at most {MAX_FILE_BYTES} characters", f"{len(text)} characters")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ParamError("preset file", "valid JSON (a preset object like examples/*.json)", str(exc)) from None
    return Preset.from_dict(data)


def read_preset_file(path: str | Path) -> Preset:
    """An uploaded preset file; ParamError as read_preset_text."""
    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ParamError("preset file", f"at most {MAX_FILE_BYTES} bytes", f"{path.stat().st_size} bytes")
    return read_preset_text(path.read_bytes())


def file_name(name: str) -> str:
    """A preset's file name: its name in lower case, runs of other characters as one underscore."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60]
    return (slug or "preset") + ".json"


def write_preset_file(entry: dict[str, Any], directory: str | Path) -> Path:
    """The preset object as a file in `directory`: the Share tab's preset JSON, the format of examples/*.json
    (checked before it is written)."""
    preset = Preset.from_dict(entry)
    path = Path(directory) / file_name(preset.name)
    path.write_text(preset_json(preset.config, preset.name, preset.description) + "\n", encoding="utf-8")
    return path
