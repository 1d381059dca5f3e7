"""A minimal single-configuration page: prompt, a few sliders, seed, Run -> text.

UI only: it turns the widget values into SamplingParams, calls Engine.generate and shows the text.
Bad input comes back as a gr.Error naming the field (never a traceback).
"""
from __future__ import annotations

import gradio as gr

from engine.generate import Engine
from engine.params import ParamError, SamplingParams

DEFAULT_PROMPT = "Write a short poem about the sea."


def generate_text(engine: Engine, prompt: str, temperature: float, top_p: float, top_k: float, min_p: float,
                  max_new_tokens: float, seed: float | None) -> str:
    """One configuration, one sample: the generated text (chat template applied)."""
    try:
        params = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                                max_new_tokens=max_new_tokens, seed=seed)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParamError("prompt", "a non-empty string", prompt)
        result = engine.generate(engine.encode(prompt), [params])
    except (ParamError, ValueError) as exc:
        raise gr.Error(str(exc)) from None
    return result.rows[0].text


def build_demo(engine: Engine) -> gr.Blocks:
    """The page for one loaded engine. Theme and css, if any, belong to launch() in Gradio 6."""
    name = engine.loaded.name

    def run(prompt: str, temperature: float, top_p: float, top_k: float, min_p: float,
            max_new_tokens: float, seed: float | None) -> str:
        return generate_text(engine, prompt, temperature, top_p, top_k, min_p, max_new_tokens, seed)

    with gr.Blocks(title="Decoding Playground") as demo:
        gr.Markdown(f"# Decoding Playground\nModel: `{name}` on {engine.loaded.device}")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="prompt", value=DEFAULT_PROMPT, lines=3)
                temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="temperature",
                                        info="0 = greedy")
                top_p = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="top_p", info="1 = off")
                top_k = gr.Slider(0, 200, value=0, step=1, label="top_k", info="0 = off")
                min_p = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="min_p", info="0 = off")
                max_new_tokens = gr.Slider(1, 512, value=64, step=1, label="max_new_tokens")
                seed = gr.Number(value=0, precision=0, label="seed", minimum=0)
                button = gr.Button("Run", variant="primary")
            with gr.Column():
                output = gr.Textbox(label="output", lines=12, interactive=False)
        # preprocess=False: Gradio's own slider check says "Value 2 is greater than maximum value 1.0" without
        # naming the field; the engine's validation names the field, the allowed range and the value.
        button.click(run, [prompt, temperature, top_p, top_k, min_p, max_new_tokens, seed], output,
                     api_name="generate", preprocess=False)
    return demo
