"""Record transformers 4.x's constrained beam search on the bundled model, as the oracle of
tests/test_constrained_beams.py.

transformers 5 no longer ships constrained beam search (generate() would fetch it from a hub repository), so the
reference outputs come from the last transformers that had it in the library, run once and stored here:

    python -m venv --system-site-packages /tmp/venv-tf4
    /tmp/venv-tf4/bin/pip install transformers==4.55.4
    PYTHONPATH=. /tmp/venv-tf4/bin/python tests/data/make_constrained_oracle.py \\
        ~/.cache/decoding-playground/<entry>   # the bundled model's cached weights (written on first load)

It writes tests/data/constrained_oracle.json: per case the prompt ids, our SamplingParams, the force_words_ids
they become (engine.params.force_words_ids), and the sequences (generated part, padding removed) and sequence
scores of `model.generate(**params.generate_kwargs(tokenizer))`.
"""
from __future__ import annotations

import sys

from transformers4_oracle import beam_sequences, generate, load, prompt_ids, write

from engine.params import SamplingParams, force_words_ids

SEA = "Write a short poem about the sea."
CAPITAL = "What is the capital of France? Answer in one word."
STORY = "Once upon a time, in a small village by the mountains,"
# (prompt, raw, params): one word, two words, a disjunctive list, a phrase of several tokens, several returned
# sequences, length penalties, early_stopping modes, a processor inside the beams, chat and raw prompts
CASES = [
    (SEA, False, dict(num_beams=4, force_words=["moon"], max_new_tokens=20)),
    (SEA, False, dict(num_beams=4, force_words=["moon", "silver"], num_return_sequences=3, max_new_tokens=20)),
    (SEA, False, dict(num_beams=6, force_words=[["storm", "whale", "sailor"]], num_return_sequences=2,
                      length_penalty=0.5, max_new_tokens=20)),
    (CAPITAL, False, dict(num_beams=4, force_words=["Paris"], max_new_tokens=16)),
    (CAPITAL, False, dict(num_beams=4, force_words=["Eiffel Tower"], num_return_sequences=4, length_penalty=2.0,
                          early_stopping=True, max_new_tokens=16)),
    (CAPITAL, False, dict(num_beams=4, force_words=[["London", "Rome"]], length_penalty=-0.5,
                          early_stopping="never", max_new_tokens=16)),
    (STORY, True, dict(num_beams=4, force_words=["dragon"], no_repeat_ngram_size=3, max_new_tokens=20)),
    (STORY, True, dict(num_beams=5, force_words=["dragon", ["gold", "silver"]], num_return_sequences=2,
                       repetition_penalty=1.2, max_new_tokens=20)),
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
                        "force_words_ids": force_words_ids(tok, params.force_words),
                        "sequences": sequences, "scores": out.sequences_scores.tolist(),
                        "texts": [tok.decode(s, skip_special_tokens=True) for s in sequences]})
        print(fields, [t[:60] for t in records[-1]["texts"]], file=sys.stderr)
    write("constrained_oracle.json", records)


if __name__ == "__main__":
    main(sys.argv[1])
