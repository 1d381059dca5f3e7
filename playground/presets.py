"""Presets: experiments as data, one JSON file each in examples/ (the file name's prefix sets their order).

A preset is a named, described PlaygroundConfig and nothing more: no outputs are stored, so every run of a
preset samples afresh with the engine (frozen texts would hide what sampling does).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ParamError

from .config import PlaygroundConfig

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


class PresetError(ValueError):
    """A bad preset file; the message starts with the file's name, then what is wrong in it."""

    def __init__(self, path: Path, problem: str):
        self.path = path
        super().__init__(f"{path.name}: {problem}")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str  # one or two sentences: what to look at and why
    config: PlaygroundConfig

    def to_dict(self) -> dict[str, Any]:
        """The preset file's JSON object."""
        return {"name": self.name, "description": self.description, **self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> "Preset":
        """Build a preset from its JSON object (name and description, then PlaygroundConfig.to_dict keys)."""
        if not isinstance(data, dict):
            raise ParamError("preset", "a JSON object", type(data).__name__)
        for key in ("name", "description"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ParamError(key, "a non-empty string", data.get(key))
        config = PlaygroundConfig.from_dict({k: v for k, v in data.items() if k not in ("name", "description")})
        return cls(name=data["name"], description=data["description"], config=config)


def load_preset(path: Path) -> Preset:
    """One preset file; any problem is a PresetError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(path, f"cannot be read ({exc})") from None
    except ValueError as exc:
        raise PresetError(path, f"not valid JSON ({exc})") from None
    try:
        return Preset.from_dict(data)
    except ParamError as exc:
        raise PresetError(path, str(exc)) from None


def load_presets(directory: Path = EXAMPLES_DIR) -> list[Preset]:
    """Every *.json preset in `directory`, by file name; names must be unique (they label the menu)."""
    presets: list[Preset] = []
    seen: dict[str, Path] = {}
    for path in sorted(Path(directory).glob("*.json")):
        preset = load_preset(path)
        if preset.name in seen:
            raise PresetError(path, f"name {preset.name!r} is already used by {seen[preset.name].name}")
        seen[preset.name] = path
        presets.append(preset)
    return presets
