"""Playground configurations that stress every text form: every knob changed, markup, quotes, separators, huge
values. Shared by the share-link / preset tests (test_config.py) and the export tests (test_exports.py)."""
from __future__ import annotations

from engine.params import SamplingParams
from playground.config import PlaygroundConfig

XSS = "<img src=x onerror=alert(1)>"

EVERY_KNOB = SamplingParams(
    do_sample=False, temperature=0.1 + 0.2, top_k=40, top_p=0.95, min_p=0.05, typical_p=0.9, epsilon_cutoff=3e-4,
    eta_cutoff=1e-3, repetition_penalty=1.3, presence_penalty=-0.5, frequency_penalty=2.0, no_repeat_ngram_size=3,
    bad_words=["dragon", "a&b=c"], sequence_bias=[("the", -5.0), ("ban", float("-inf")), ("the", 1.0)],
    min_new_tokens=4, max_new_tokens=100_000, stop=["\n", "END#", "&"], seed=2**63 - 1,
    order=["top_p", "temperature", "top_k"])

TRICKY = [
    PlaygroundConfig("Tell me a story."),
    PlaygroundConfig(""),
    PlaygroundConfig("a & b = c # d ? e + f %20 g\nline 2\r\n\ttab  "),
    PlaygroundConfig(XSS, system_prompt=f'"></textarea>{XSS}', view="distributions", sample=5, step=17,
                     color_by="raw"),
    PlaygroundConfig("日本語 🚀 עברית ünïcødé \u200b\x00", raw=True, system_prompt="ignored when raw"),
    PlaygroundConfig("   ", params=EVERY_KNOB, samples=16),
    PlaygroundConfig("sweep", view="sweep", samples=1, params=SamplingParams(),
                     axes=(("temperature", "0.1, 0.5:1.0:0.25"), ("stop", '["\\n"], ["a,b"]'),
                           ("order", "temperature>min_p, min_p>temperature"))),
    PlaygroundConfig("axis text with a colon", axes=(("sequence_bias", '{"a:b": -5}, {}'),)),
    PlaygroundConfig("0.5", system_prompt="true", view="sweep"),
    PlaygroundConfig('"quoted"', system_prompt='["a list"]'),
    PlaygroundConfig("true", params=SamplingParams(temperature=0.0, stop=["true", "1"], bad_words=["[x]"])),
]
