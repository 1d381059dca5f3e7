"""Record transformers 4.x's contrastive search on the bundled model, as the oracle of tests/test_contrastive.py.

transformers 5 no longer ships contrastive search (generate() would fetch it from a hub repository), so the
reference outputs come from the last transformers that had it in the library, run once and stored here:

    python -m venv --system-site-packages /tmp/venv-tf4
    /tmp/venv-tf4/bin/pip install transformers==4.55.4
    PYTHONPATH=. /tmp/venv-tf4/bin/python tests/data/make_contrastive_oracle.py \\
        ~/.cache/decoding-playground/<entry>   # the bundled model's cached weights (written on first load)

It writes tests/data/contrastive_oracle.json: per case the prompt ids, our SamplingParams, the generated tokens
of `model.generate(**params.generate_kwargs())` and, per step, the processed log-probability of the chosen token
(log-softmax of transformers' `scores`, the processed logits).
"""
from __future__ import annotations

import sys

import torch

from transformers4_oracle import generate, load, prompt_ids, write

from engine.params import SamplingParams

SEA = "Write a short poem about the sea."
CAPITAL = "What is the capital of France? Answer in one word."
STORY = "Once upon a time, in a small village by the mountains,"
# (prompt, raw, params): alpha 0.6 / top_k 4 and 0.3 / 8, processors before the candidates (repetition penalty,
# no-repeat n-grams, min_new_tokens, a logit bias), chat and raw prompts, and one that EOS ends early
CASES = [
    (SEA, False, dict(penalty_alpha=0.6, top_k=4, max_new_tokens=24)),
    (SEA, False, dict(penalty_alpha=0.3, top_k=8, max_new_tokens=24)),
    (SEA, False, dict(penalty_alpha=0.6, top_k=4, repetition_penalty=1.3, max_new_tokens=24)),
    (CAPITAL, False, dict(penalty_alpha=0.6, top_k=4, max_new_tokens=20)),
    (CAPITAL, False, dict(penalty_alpha=0.3, top_k=8, min_new_tokens=4, max_new_tokens=20)),
    (STORY, True, dict(penalty_alpha=0.6, top_k=4, max_new_tokens=24)),
    (STORY, True, dict(penalty_alpha=0.3, top_k=8, no_repeat_ngram_size=2, max_new_tokens=24)),
    (STORY, True, dict(penalty_alpha=0.8, top_k=4, no_repeat_ngram_size=3, logit_bias={"28": -2.0}, max_new_tokens=16)),
]


def main(model_dir: str) -> None:
    model, tok = load(model_dir)
    records = []
    for prompt, raw, fields in CASES:
        params = SamplingParams(do_sample=False, **fields)
        ids = prompt_ids(tok, prompt, raw)
        out = generate(model, tok, ids, params)
        tokens = out.sequences[0, len(ids):].tolist()
        logprobs = [float(torch.log_softmax(s[0].float(), -1)[t]) for s, t in zip(out.scores, tokens)]
        records.append({"prompt": prompt, "raw": raw, "prompt_ids": list(ids), "params": params.to_dict(),
                        "tokens": tokens, "final_logprobs": logprobs, "text": tok.decode(tokens)})
        print(fields, repr(records[-1]["text"][:80]), len(tokens), file=sys.stderr)
    write("contrastive_oracle.json", records)


if __name__ == "__main__":
    main(sys.argv[1])
