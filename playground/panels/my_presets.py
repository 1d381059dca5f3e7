"""The person's own presets, under the preset menu: save the settings under a name (kept in this browser, so they
survive a reload and show in the menu marked as yours), delete one, download the settings as a preset file, and
load one from a file (the format of examples/*.json, so a downloaded file can go there as it is)."""
from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.errors import ParamError

from .. import my_presets
from ..config import PlaygroundConfig
from ..errors import user_errors
from ..presets import Preset
from ..render import CSS, error_html
from .common import PRIVATE, PageContext
from .form import config_from_form

STORAGE_KEY = "decoding-playground-presets"
# Gradio encrypts a BrowserState with this key. Every saved preset is checked like a file when it is loaded, so
# the encryption guards nothing here; a fixed key (not a fresh one per server start) keeps them across restarts.
STORAGE_SECRET = "decoding-playground-saved-presets"


@dataclass
class MyPresetsPanel:
    saved: gr.BrowserState  # the saved presets: a list of preset objects (examples/*.json's format)
    name: gr.Textbox
    save: gr.Button
    delete: gr.Button
    download: gr.Button
    upload: gr.UploadButton
    file: gr.File  # the downloaded preset (shown after Download)
    note: gr.HTML


def build_my_presets() -> MyPresetsPanel:
    """The rows under the preset menu (call inside the settings column)."""
    saved = gr.BrowserState([], storage_key=STORAGE_KEY, secret=STORAGE_SECRET)
    with gr.Row(equal_height=True, elem_id="my-presets"):
        name = gr.Textbox("", label="Save these settings as", placeholder="a name for your preset", max_lines=1,
                          elem_id="my-preset-name", scale=3)
        save = gr.Button("Save as preset…", elem_id="my-preset-save", scale=1, min_width=120)
    with gr.Row():
        delete = gr.Button("Delete the picked preset", size="sm", elem_id="my-preset-delete")
        download = gr.Button("Download as file", size="sm", elem_id="my-preset-download")
        upload = gr.UploadButton("Load a preset file", size="sm", file_types=[".json"], type="filepath",
                                 elem_id="my-preset-upload")
    file = gr.File(label="Preset file (it can go into examples/ as it is)", interactive=False, visible=False,
                   elem_id="my-preset-file")
    note = gr.HTML("", elem_id="my-preset-note", css_template=CSS)
    return MyPresetsPanel(saved, name, save, delete, download, upload, file, note)


def note_html(text: str) -> str:
    return f'<div class="dp-status" role="status">{html.escape(text)}</div>'


def wire_my_presets(page: PageContext, demo: gr.Blocks, panel: MyPresetsPanel, menu: gr.Dropdown,
                    builtin: list[Preset], fill: Callable[[str, PlaygroundConfig], dict],
                    fill_outputs: list[gr.components.Component]) -> None:
    """The menu lists the saved presets after `builtin` ones; picking one fills the settings through `fill` (its
    outputs: `fill_outputs`), as a built-in preset does."""

    def menu_update(saved: Any, value: Any = None) -> gr.Dropdown:
        return gr.Dropdown(choices=my_presets.menu_choices(builtin, saved), value=value)

    @user_errors
    def save(saved: Any, preset_name: Any, **settings: Any):
        entry = my_presets.saved_preset(preset_name, config_from_form(settings))
        kept = my_presets.add_saved(saved, entry)
        note = (f"Saved \"{entry['name']}\" in this browser: it is in the preset menu, marked (yours). "
                f"{len(kept)} of at most {my_presets.MAX_SAVED} saved.")
        return {panel.saved: kept, menu: menu_update(kept, my_presets.MINE + entry["name"]),
                panel.note: note_html(note), panel.name: entry["name"]}

    @user_errors
    def pick(saved: Any, value: Any):
        if not isinstance(value, str) or not value.startswith(my_presets.MINE):
            return gr.skip()  # a built-in preset: settings.wire_loading fills it
        chosen = my_presets.find_saved(saved, value)
        return {**fill(f"*Your preset \"{chosen.name}\": {chosen.description}*", chosen.config),
                panel.name: chosen.name, panel.note: ""}

    @user_errors
    def delete(saved: Any, value: Any):
        kept, name = my_presets.delete_saved(saved, value)
        return {panel.saved: kept, menu: menu_update(kept), panel.note: note_html(f"Deleted \"{name}\".")}

    @user_errors
    def download(preset_name: Any, **settings: Any):
        entry = my_presets.saved_preset(preset_name or "My preset", config_from_form(settings))
        path = my_presets.write_preset_file(entry, tempfile.mkdtemp(prefix="preset-"))
        return {panel.file: gr.File(str(path), visible=True),
                panel.note: note_html(f"{path.name}: the settings as a preset file (examples/*.json's format).")}

    @user_errors
    def load_file(path: Any):
        try:
            if not path:
                raise ParamError("preset file", "a .json file", path)
            chosen = my_presets.read_preset_file(path)
            updates = fill(f"*Loaded from a file: \"{chosen.name}\": {chosen.description}*", chosen.config)
        except ParamError as exc:  # said under the menu (it stays), and as a toast; the settings are unchanged
            yield {panel.note: error_html(str(exc), "Bad preset file")}
            raise
        yield {**updates, panel.name: chosen.name,
               panel.note: note_html(f"Loaded \"{chosen.name}\". Save as preset… keeps it in this browser.")}

    form = page.form.widgets
    with_menu = [panel.saved, menu, panel.note, panel.name]
    demo.load(menu_update, panel.saved, menu, show_progress="hidden", **PRIVATE)
    panel.save.click(save, inputs_kwargs={**form, "saved": panel.saved, "preset_name": panel.name},
                     outputs=with_menu, preprocess=False, show_progress="hidden", **PRIVATE)
    menu.input(pick, [panel.saved, menu], [*fill_outputs, panel.name, panel.note], show_progress="hidden", **PRIVATE)
    panel.delete.click(delete, [panel.saved, menu], [panel.saved, menu, panel.note], show_progress="hidden", **PRIVATE)
    panel.download.click(download, inputs_kwargs={**form, "preset_name": panel.name},
                         outputs=[panel.file, panel.note], preprocess=False, show_progress="hidden", **PRIVATE)
    panel.upload.upload(load_file, panel.upload, [*fill_outputs, panel.name, panel.note], show_progress="hidden",
                        **PRIVATE)
