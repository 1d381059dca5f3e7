"""Batched beam configurations against one transformers `generate()` per configuration:
`python -m engine.bench.beams`.

Six beam-search configurations (num_beams 3, the same length, different length penalties, early stopping and
processors) on the reference prompt: once as ONE beam batch of 18 rows (engine/beams.py), once as six
`model.generate(num_beams=3, ...)` calls. Both give the same sequences (checked here too); prints medians.

`--groups G` (e.g. `--beams 4 --groups 2`) does the same for diverse beam search, each configuration with its
own diversity_penalty. transformers 5 has no group beam search in the library, so the sequential side is then
the engine itself, one configuration per call (engine/group_beams.py with a batch of one).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ..beams import beam_search
from ..generate import Engine
from ..models import load_model
from ..params import SamplingParams

PROMPT = "Explain how blockchain works in simple terms."
VARIANTS = [dict(), dict(length_penalty=0.5), dict(length_penalty=2.0), dict(early_stopping=True),
            dict(early_stopping="never"), dict(repetition_penalty=1.3, no_repeat_ngram_size=3)]
DIVERSITY = [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]  # per variant, with --groups


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.beams", description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--beams", type=int, default=3)
    ap.add_argument("--groups", type=int, default=1, help="num_beam_groups (> 1: diverse beam search)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    engine = Engine(load_model())
    model, tok = engine.loaded.model, engine.loaded.tokenizer
    prompt = engine.encode(PROMPT)
    groups = dict(num_beam_groups=args.groups) if args.groups > 1 else {}
    configs = [SamplingParams(do_sample=False, num_beams=args.beams, max_new_tokens=args.tokens, **groups, **v,
                              **(dict(diversity_penalty=d) if groups else {}))
               for v, d in zip(VARIANTS, DIVERSITY)]
    inputs = torch.tensor([prompt])
    mask = torch.ones_like(inputs)
    one_by_one = "engine, one config per call" if groups else "generate() per config"

    def sequential() -> list[list[int]]:
        if groups:
            return [beam_search(engine, prompt, [p])[0].sequences[0].token_ids for p in configs]
        outs = []
        for p in configs:
            out = model.generate(inputs, attention_mask=mask, **p.generate_kwargs(tok),
                                 pad_token_id=engine.loaded.eos_token_ids[0])
            outs.append(out[0, len(prompt):].tolist())
        return outs

    def batched() -> list[list[int]]:
        return [r.sequences[0].token_ids for r in beam_search(engine, prompt, configs)]

    times: dict[str, list[float]] = {one_by_one: [], "one beam batch": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for name, fn in ((one_by_one, sequential), ("one beam batch", batched)):
            t0 = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "one beam batch":
                ours = result
            else:
                ref = result
    same = all(a == b[:len(a)] for a, b in zip(ours, ref))
    print(f"{len(configs)} configs x num_beams {args.beams}" + (f" in {args.groups} groups" if groups else "")
          + f" x {args.tokens} tokens, medians of {args.repeats} (same best sequences: {same})")
    base = statistics.median(times[one_by_one])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:28} {med:7.2f} s   {base / med:5.2f}x")


if __name__ == "__main__":
    main()
