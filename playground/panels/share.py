"""Share & export: a link that reproduces the settings (or the shown branch: its forced start included), and the
same configuration as a preset file, for transformers and for an OpenAI-style API."""
from __future__ import annotations

from dataclasses import dataclass
import html
from typing import Any, Callable

import gradio as gr

from engine.errors import ParamError

from ..branching import branch_config
from ..errors import user_errors
from ..exports import export_notes_text, generate_snippet, generation_config_json, openai_request_json, preset_json
from ..llamacpp import read_request, request_json
from ..webui_presets import preset_yaml, read_preset, sillytavern_preset_json
from ..render import CSS, error_html
from .common import PRIVATE, PageContext
from .form import config_from_form

SHARE_URL_JS = "(query) => window.location.origin + window.location.pathname + query"
# Copy link: the whole link into the box and onto the clipboard (the async Clipboard API where the page may use
# it, else a selected text area and execCommand), and a line saying which happened.
COPY_LINK_JS = """
async (query) => {
  const url = window.location.origin + window.location.pathname + query;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch (error) {
    const area = document.createElement('textarea');
    area.value = url;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    try { copied = document.execCommand('copy'); } catch (ignored) { copied = false; }
    area.remove();
  }
  const note = copied
    ? '<div class="dp-status dp-copied" role="status">Link copied to the clipboard.</div>'
    : '<div class="dp-status" role="status">This browser did not allow copying: select the link below and copy it.</div>';
  return [url, note];
}
"""


@dataclass
class SharePanel:
    tab: gr.Tab
    button: gr.Button
    note: gr.HTML
    source: gr.Markdown  # what the link holds: the settings in the form, or the shown branch
    link: gr.Textbox
    query: gr.Textbox
    export_notes: gr.Textbox
    python_code: gr.Code
    generation_json: gr.Code
    openai_json: gr.Code
    llamacpp_json: gr.Code
    llamacpp_import: gr.Textbox
    llamacpp_load: gr.Button
    webui_yaml: gr.Code
    sillytavern_json: gr.Code
    webui_import: gr.Textbox
    webui_load: gr.Button
    preset: gr.Code


def build_share() -> SharePanel:
    """The Share & export tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Share & export", id="share") as tab:
        gr.Markdown("A link that reproduces this configuration (prompt, parameters, axes, view; for a branch shown "
                    "in Generate, the branch: its forced start and sample), and the same configuration as a preset "
                    "file, for transformers and for an OpenAI-style API.")
        with gr.Row(equal_height=True):
            button = gr.Button("Copy link", elem_id="share-button", variant="primary", scale=0, min_width=140)
            note = gr.HTML("", elem_id="share-note", css_template=CSS)
        source = gr.Markdown("", elem_id="share-source")
        link = gr.Textbox(label="Link", buttons=["copy"], elem_id="share-link")
        # the server's query; the page makes it a whole link, so the box never shows half a link
        query = gr.Textbox(visible="hidden", elem_id="share-query")
        export_notes = gr.Textbox(label="What the exports leave out, and notes", lines=3, interactive=False,
                                  elem_id="export-notes")
        python_code = gr.Code(label="model.generate(...) (a sweep: a loop over its cells)", language="python",
                              elem_id="export-python")
        generation_json = gr.Code(label="GenerationConfig JSON: GenerationConfig(**json) (a sweep: a list, one per "
                                        "cell)", language="json", elem_id="export-generation-config")
        openai_json = gr.Code(label="OpenAI-style request (a sweep: a list, one per cell)", language="json",
                              elem_id="export-openai")
        llamacpp_json = gr.Code(label="llama.cpp server /completion request, DRY and order as llama.cpp runs them "
                                      "(_not_in_llama_cpp: what it cannot carry; a sweep: a list, one per cell)",
                                language="json", elem_id="export-llamacpp")
        with gr.Row(equal_height=True):
            llamacpp_import = gr.Textbox(label="Load a llama.cpp /completion request (or /props settings)", lines=2,
                                         placeholder='{"temperature": 0.8, "top_k": 40, "samplers": ["top_k", ...]}',
                                         elem_id="import-llamacpp")
            llamacpp_load = gr.Button("Load llama.cpp settings", scale=0, min_width=140, elem_id="import-llamacpp-button")
        webui_yaml = gr.Code(label="text-generation-webui preset (user_data/presets/NAME.yaml; what it cannot carry "
                                   "as comments; a sweep: its base settings)", language="yaml", elem_id="export-webui")
        sillytavern_json = gr.Code(label="SillyTavern Text Completion preset (_not_in_text_generation_webui: what it "
                                         "cannot carry)", language="json", elem_id="export-sillytavern")
        with gr.Row(equal_height=True):
            webui_import = gr.Textbox(label="Load a text-generation-webui preset (YAML) or a SillyTavern Text "
                                            "Completion preset (JSON)", lines=2, elem_id="import-webui",
                                      placeholder="temperature: 0.7\nmin_p: 0.05\nsampler_priority: ...")
            webui_load = gr.Button("Load preset", scale=0, min_width=140, elem_id="import-webui-button")
        preset = gr.Code(label="Preset JSON (a file for examples/; PlaygroundConfig.from_dict reads it)",
                         language="json", elem_id="export-preset")
    return SharePanel(tab, button, note, source, link, query, export_notes, python_code, generation_json,
                      openai_json, llamacpp_json, llamacpp_import, llamacpp_load, webui_yaml, sillytavern_json,
                      webui_import, webui_load, preset)


def wire_share(page: PageContext, panel: SharePanel, hub_id: Callable[[], str]) -> None:
    """Copy link and opening the tab fill the link and the exports (`hub_id()`: the model the exports name; the
    loaded model is read at each call, as the page's model picker may replace it)."""
    outputs = [panel.query, panel.python_code, panel.generation_json, panel.openai_json, panel.note,
               panel.export_notes, panel.preset, panel.source, panel.llamacpp_json, panel.webui_yaml,
               panel.sillytavern_json]
    inputs = {**page.form.widgets, "shown_run": page.run_id}

    @user_errors
    def share(shown_run: str, **settings: Any):
        try:
            config = config_from_form(settings)
            run = page.store.find(shown_run) if isinstance(shown_run, str) and shown_run else None
            branch = branch_config(run, config)
        except ParamError as exc:  # said beside the link (it stays), then once as a toast
            yield {panel.note: error_html(str(exc))}
            raise
        if branch is not None:
            source = (f"This link reproduces the branch shown in Generate (run {run.number} · {run.labels[0]}): its "
                      f"settings, forced start and sample. Run the settings to share them instead.")
            config = branch
        else:
            source = "This link reproduces the settings" + (" with their forced start." if config.forced else ".")
        query, model = config.to_query(), page.engine.loaded
        yield ("?" + query if query else "", generate_snippet(config, hub_id()),
               generation_config_json(config, model.tokenizer), openai_request_json(config, model.name), "",
               export_notes_text(config, model.tokenizer), preset_json(config), source, request_json(config),
               preset_yaml(config), sillytavern_preset_json(config))

    @user_errors
    def load_llamacpp(**settings: Any):
        text = settings.pop("llamacpp_text") or ""
        config, notes = read_request(text, config_from_form(settings))
        lines = ["Settings loaded from the llama.cpp request (DRY and order as llama.cpp runs them)."]
        lines += notes or ["Every field has an equivalent here."]
        note = '<div class="dp-status" role="status">' + "<br>".join(html.escape(n) for n in lines) + "</div>"
        return {**page.form.updates(config), panel.note: note}

    @user_errors
    def load_webui(**settings: Any):
        text = settings.pop("webui_text") or ""
        config, notes = read_preset(text, config_from_form(settings), page.engine.loaded.eos_token_ids)
        lines = ["Settings loaded from the preset (DRY and order as text-generation-webui runs them)."]
        lines += notes or ["Every key has an equivalent here."]
        note = '<div class="dp-status" role="status">' + "<br>".join(html.escape(n) for n in lines) + "</div>"
        return {**page.form.updates(config), panel.note: note}

    # the query is built on the server, then made whole in the page and, for the button, put on the clipboard
    panel.button.click(share, inputs_kwargs=inputs, outputs=outputs, preprocess=False,
                       show_progress="hidden", **PRIVATE).success(
        None, panel.query, [panel.link, panel.note], js=COPY_LINK_JS)
    panel.llamacpp_load.click(load_llamacpp, inputs_kwargs={**page.form.widgets, "llamacpp_text": panel.llamacpp_import},
                              outputs=[*page.form.components, panel.note], preprocess=False, **PRIVATE)
    panel.webui_load.click(load_webui, inputs_kwargs={**page.form.widgets, "webui_text": panel.webui_import},
                           outputs=[*page.form.components, panel.note], preprocess=False, **PRIVATE)
    panel.tab.select(share, inputs_kwargs=inputs, outputs=outputs, preprocess=False,
                     show_progress="hidden", **PRIVATE).success(None, panel.query, panel.link, js=SHARE_URL_JS)
