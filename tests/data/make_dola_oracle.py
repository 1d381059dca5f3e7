"""Record transformers 4.x's DoLa decoding on the bundled model, as the oracle of tests/test_dola.py.

transformers 5 no longer ships DoLa (generate() would fetch it from a hub repository), so the reference outputs
come from the last transformers that had it in the library, run once and stored here:

    python -m venv --system-site-packages /tmp/venv-tf4
    /tmp/venv-tf4/bin/pip install transformers==4.55.4
    PYTHONPATH=. /tmp/venv-tf4/bin/python tests/data/make_dola_oracle.py \\
        ~/.cache/decoding-playground/<entry>   # the bundled model's cached weights (written on first load)

It writes tests/data/dola_oracle.json: per case the prompt ids, our SamplingParams, the generated tokens of
`model.generate(**params.generate_kwargs())`, per step the processed log-probability of the chosen token
(log-softmax of transformers' `scores`: the contrast after the processors), the final layer's raw log-probability
(its `logits`) and the premature layer 4.55 contrasted with (read by wrapping its `_relative_top_filter`: the
premature logits it is given are one of the candidates').

Only greedy cases: a sampled DoLa row of the engine draws with its own counter-based noise (seed, sample index,
step), which cannot reproduce torch.multinomial's draws; tests/test_dola.py checks sampled rows otherwise.
"""
from __future__ import annotations

import sys

import torch
import transformers.generation.utils as generation_utils

from transformers4_oracle import load, prompt_ids, write

from engine.params import SamplingParams

SEA = "Write a short poem about the sea."
CAPITAL = "What is the capital of France? Answer in one word."
STORY = "Once upon a time, in a small village by the mountains,"
# (prompt, raw, params): "low" (tied embeddings: from layer 2), "high", lists (one with the embeddings, 0, and one
# single layer, where 4.55 skips the divergences), the recommended repetition penalty, other processors
CASES = [
    (CAPITAL, False, dict(dola_layers="low", max_new_tokens=16)),
    (CAPITAL, False, dict(dola_layers="high", repetition_penalty=1.2, max_new_tokens=16)),
    (CAPITAL, False, dict(dola_layers=[16, 18, 20], max_new_tokens=16)),
    (SEA, False, dict(dola_layers="high", max_new_tokens=16)),
    (SEA, False, dict(dola_layers=[0, 8, 14], repetition_penalty=1.2, max_new_tokens=16)),
    (STORY, True, dict(dola_layers="low", repetition_penalty=1.2, max_new_tokens=16)),
    (STORY, True, dict(dola_layers=[12], no_repeat_ngram_size=2, max_new_tokens=16)),
    (STORY, True, dict(dola_layers="high", repetition_penalty=1.2, min_new_tokens=4, max_new_tokens=12)),
]

chosen_layers: list[int] = []
_select, _filter = generation_utils._dola_select_contrast, generation_utils._relative_top_filter


def _recording_select(layers, logits_by_layer, final_logits):
    """4.55's _dola_select_contrast, noting which candidate's logits reach _relative_top_filter."""
    def recording_filter(scores, base_scores, *args, **kwargs):
        chosen_layers.append(next(k for k in layers if logits_by_layer[k] is base_scores))
        return _filter(scores, base_scores, *args, **kwargs)
    generation_utils._relative_top_filter = recording_filter
    try:
        return _select(layers, logits_by_layer, final_logits)
    finally:
        generation_utils._relative_top_filter = _filter


def main(model_dir: str) -> None:
    model, tok = load(model_dir)
    generation_utils._dola_select_contrast = _recording_select
    records = []
    for prompt, raw, fields in CASES:
        params = SamplingParams(do_sample=False, **fields)
        ids = prompt_ids(tok, prompt, raw)
        chosen_layers.clear()
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 **params.generate_kwargs(tok), pad_token_id=tok.eos_token_id,
                                 return_dict_in_generate=True, output_scores=True, output_logits=True)
        tokens = out.sequences[0, len(ids):].tolist()
        final = [float(torch.log_softmax(s[0].float(), -1)[t]) for s, t in zip(out.scores, tokens)]
        raw_lp = [float(torch.log_softmax(s[0].float(), -1)[t]) for s, t in zip(out.logits, tokens)]
        records.append({"prompt": prompt, "raw": raw, "prompt_ids": list(ids), "params": params.to_dict(),
                        "tokens": tokens, "final_logprobs": final, "raw_logprobs": raw_lp,
                        "premature_layers": list(chosen_layers), "text": tok.decode(tokens)})
        print(fields, repr(records[-1]["text"][:80]), len(tokens), chosen_layers, file=sys.stderr)
    write("dola_oracle.json", records)


if __name__ == "__main__":
    main(sys.argv[1])
