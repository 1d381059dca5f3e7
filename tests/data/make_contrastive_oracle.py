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

import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

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
    config = AutoConfig.from_pretrained(model_dir)
    # transformers 5 writes rope_theta inside rope_parameters; 4.x would silently fall back to 10000
    config.rope_theta = config.rope_parameters["rope_theta"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=config).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)  # the saved class name is transformers 5's
    pad = tok.eos_token_id
    records = []
    for prompt, raw, fields in CASES:
        params = SamplingParams(do_sample=False, **fields)
        if raw:
            ids = tok(prompt)["input_ids"]
        else:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 **params.generate_kwargs(tok), pad_token_id=pad,
                                 return_dict_in_generate=True, output_scores=True)
        tokens = out.sequences[0, len(ids):].tolist()
        logprobs = [float(torch.log_softmax(s[0].float(), -1)[t]) for s, t in zip(out.scores, tokens)]
        records.append({"prompt": prompt, "raw": raw, "prompt_ids": list(ids), "params": params.to_dict(),
                        "tokens": tokens, "final_logprobs": logprobs, "text": tok.decode(tokens)})
        print(fields, repr(records[-1]["text"][:80]), len(tokens), file=sys.stderr)
    target = Path(__file__).with_name("contrastive_oracle.json")
    target.write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                                  "cases": records}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
