"""Record transformers 4.x's diverse beam search on the bundled model, as the oracle of tests/test_group_beams.py.

transformers 5 no longer ships group beam search (generate() would fetch it from a hub repository), so the
reference outputs come from the last transformers that had it in the library, run once and stored here:

    python -m venv --system-site-packages /tmp/venv-tf4
    /tmp/venv-tf4/bin/pip install transformers==4.55.4
    PYTHONPATH=. /tmp/venv-tf4/bin/python tests/data/make_group_beam_oracle.py \\
        ~/.cache/decoding-playground/<entry>   # the bundled model's cached weights (written on first load)

It writes tests/data/group_beam_oracle.json: per case the prompt ids, our SamplingParams, and the sequences
(generated part, padding removed) and sequence scores of `model.generate(**params.generate_kwargs())`.
"""
from __future__ import annotations

import sys

from transformers4_oracle import beam_sequences, generate, load, prompt_ids, write

from engine.params import SamplingParams

SEA = "Write a short poem about the sea."
CAPITAL = "What is the capital of France? Answer in one word."
# (prompt, raw, params): every early_stopping mode, length penalties of both signs, processors inside the beams,
# groups of 1, 2 and 3 beams, 2 to 4 groups, and prompts where EOS ends hypotheses early
CASES = [
    (SEA, False, dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, num_return_sequences=4, max_new_tokens=16)),
    (SEA, False, dict(num_beams=6, num_beam_groups=3, diversity_penalty=0.5, length_penalty=0.5, early_stopping=True,
                      num_return_sequences=3, max_new_tokens=16)),
    (SEA, False, dict(num_beams=4, num_beam_groups=4, diversity_penalty=2.0, early_stopping="never",
                      repetition_penalty=1.3, num_return_sequences=4, max_new_tokens=16)),
    (SEA, False, dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.7, no_repeat_ngram_size=2,
                      num_return_sequences=2, max_new_tokens=16)),
    (CAPITAL, False, dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.5, num_return_sequences=4,
                          max_new_tokens=20)),
    (CAPITAL, False, dict(num_beams=6, num_beam_groups=2, diversity_penalty=0.8, early_stopping=True,
                          length_penalty=-1.0, min_new_tokens=3, num_return_sequences=6, max_new_tokens=20)),
    (CAPITAL, False, dict(num_beams=6, num_beam_groups=3, diversity_penalty=1.0, early_stopping="never",
                          length_penalty=2.0, logit_bias={"7042": -3.0}, num_return_sequences=2, max_new_tokens=20)),
    (CAPITAL, False, dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.3, early_stopping="never",
                          length_penalty=-0.5, num_return_sequences=3, max_new_tokens=20)),
    ("The capital of France is", True, dict(num_beams=4, num_beam_groups=2, diversity_penalty=3.0,
                                            bad_words=["Paris"], num_return_sequences=4, max_new_tokens=12)),
]


def main(model_dir: str) -> None:
    model, tok = load(model_dir)
    pad = tok.eos_token_id
    records = []
    for prompt, raw, fields in CASES:
        params = SamplingParams(do_sample=False, **fields)
        ids = prompt_ids(tok, prompt, raw)
        out = generate(model, tok, ids, params)
        sequences = beam_sequences(out, len(ids), pad)
        records.append({"prompt": prompt, "raw": raw, "prompt_ids": list(ids), "params": params.to_dict(),
                        "sequences": sequences, "scores": out.sequences_scores.tolist(),
                        "texts": [tok.decode(s, skip_special_tokens=True) for s in sequences]})
        print(fields, [t[:40] for t in records[-1]["texts"]], file=sys.stderr)
    write("group_beam_oracle.json", records)


if __name__ == "__main__":
    main(sys.argv[1])
