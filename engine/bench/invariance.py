"""`python -m engine.bench.invariance`: does every cell decoded alone equal the same cell inside the whole sweep?

    python -m engine.bench.invariance --dtype bfloat16 --tokens 48     # the reference sweep, each cell alone too
    python -m engine.bench.invariance --arch smollm2-1.7b --device cuda

The engine's noise is a pure function of (seed, sample index, step, token), so a row's tokens can only change with
the batch if the model's logits do: matrix kernels may pick another blocking (another summation order) for another
batch size, which in fp32 changes nothing that decides a token and in bf16 might. This decodes the reference sweep
(temperature x top_p, --samples per cell) once whole and then cell by cell, and prints, per row, whether the
tokens are equal and the first step where they differ. Exit status 1 when any row differs.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..generate import Engine
from ..models import load_model
from ..params import SamplingParams
from .archs import ARCHS, random_model
from .reference import GRIDS, PROMPT, log


def first_differences(engine: Engine, prompt: list[int], cells: list[tuple[float, float]], samples: int,
                      tokens: int) -> list[int | None]:
    """Per row of the sweep: None when the row alone equals the row in the sweep, else the first differing step."""
    params = [SamplingParams(temperature=t, top_p=p, max_new_tokens=tokens, seed=0) for t, p in cells
              for _ in range(samples)]
    indices = [i for _ in cells for i in range(samples)]
    whole = engine.generate(prompt, params, sample_indices=indices).rows
    firsts: list[int | None] = []
    for c in range(len(cells)):
        part = slice(c * samples, (c + 1) * samples)
        alone = engine.generate(prompt, params[part], sample_indices=indices[part]).rows
        for a, w in zip(alone, whole[part]):
            differ = [i for i, (x, y) in enumerate(zip(a.token_ids, w.token_ids)) if x != y]
            if not differ and len(a.token_ids) != len(w.token_ids):
                differ = [min(len(a.token_ids), len(w.token_ids))]
            firsts.append(differ[0] if differ else None)
        log(f"cell {c + 1}/{len(cells)}: {sum(f is None for f in firsts[part])}/{samples} rows equal")
    return firsts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.invariance", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model name/path (default: the bundled SmolLM2)")
    ap.add_argument("--arch", default=None, choices=sorted(ARCHS), help="instead of --model: random weights")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, help="auto, float32, bfloat16, float16 (default: $PLAYGROUND_DTYPE, else auto)")
    ap.add_argument("--grid", default="3x3", choices=sorted(GRIDS))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args(argv)
    if args.samples < 1 or args.tokens < 1:
        ap.error("--samples and --tokens must be >= 1")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    loaded = (random_model(args.arch, device=args.device, dtype=args.dtype) if args.arch
              else load_model(args.model, device=args.device, dtype=args.dtype))
    engine = Engine(loaded)
    temperatures, top_ps = GRIDS[args.grid]
    cells = [(t, p) for t in temperatures for p in top_ps]
    firsts = first_differences(engine, engine.encode(PROMPT), cells, args.samples, args.tokens)
    equal = sum(f is None for f in firsts)
    print(json.dumps({"model": loaded.name, "device": str(loaded.device), "dtype": str(loaded.dtype),
                      "rows": len(firsts), "equal_rows": equal, "tokens": args.tokens,
                      "first_difference_step": firsts}))
    return 0 if equal == len(firsts) else 1


if __name__ == "__main__":
    sys.exit(main())
