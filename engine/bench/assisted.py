"""Plain against prompt lookup decoding on the bundled model: `python -m engine.bench.assisted`.

Side by side in one run, on a prompt whose answer repeats its input ("Rewrite this paragraph: ...", greedy and
sampled) and on one whose answer does not: the same rows decoded plainly and with prompt_lookup_num_tokens set.
Both give the same tokens (checked here too); prints median tokens/s over the repeats, the speed-up, and per row
the acceptance rate (accepted / drafted tokens) and the model forwards against the tokens generated.
"""
from __future__ import annotations

import argparse
import statistics
import time

from ..generate import Engine
from ..models import load_model
from ..params import SamplingParams

PARAGRAPH = ("The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of salt and "
             "wind. Every night the keeper climbed the narrow stairs to light the lamp, and every morning he wrote "
             "the weather in a worn leather book. Ships passed far out at sea, and none of their crews ever knew "
             "his name, but all of them trusted the light.")
REWRITE = "Rewrite this paragraph: " + PARAGRAPH
OPEN = "Write a short story about a robot who learns to paint."


def scenarios(tokens: int) -> list[tuple[str, str, list[SamplingParams]]]:
    greedy = SamplingParams(temperature=0.0, max_new_tokens=tokens)
    sampled = SamplingParams(temperature=0.7, top_p=0.9, seed=1, max_new_tokens=tokens)
    return [("rewrite, greedy", REWRITE, [greedy]), ("rewrite, sampled", REWRITE, [sampled]),
            ("rewrite, 4 rows (1 greedy, 3 sampled)", REWRITE, [greedy, sampled, sampled.replace(seed=2),
                                                             sampled.replace(temperature=1.0, seed=3)]),
            ("open-ended, greedy", OPEN, [greedy])]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.assisted", description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="max_new_tokens per row")
    ap.add_argument("--lookup", type=int, default=10, help="prompt_lookup_num_tokens")
    ap.add_argument("--ngram", type=int, default=2, help="max_matching_ngram_size")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    engine = Engine(load_model())
    print(f"{'scenario':40s} {'plain tok/s':>11s} {'lookup tok/s':>12s} {'speed-up':>8s}  per row: accepted/drafted "
          f"(rate), forwards/tokens")
    for name, prompt, rows in scenarios(args.tokens):
        prompt_ids = engine.encode(prompt)
        fast_rows = [p.replace(prompt_lookup_num_tokens=args.lookup, max_matching_ngram_size=args.ngram) for p in rows]
        indices = list(range(len(rows)))
        speeds: dict[str, list[float]] = {"plain": [], "lookup": []}
        results = {}
        for _ in range(args.repeats):
            for mode, params in (("plain", rows), ("lookup", fast_rows)):  # interleaved: the machine's load hits both
                started = time.perf_counter()
                result = engine.generate(prompt_ids, params, indices)
                speeds[mode].append(result.generated_tokens / (time.perf_counter() - started))
                results[mode] = result
        same = all(a.token_ids == b.token_ids for a, b in zip(results["plain"].rows, results["lookup"].rows))
        plain, fast = statistics.median(speeds["plain"]), statistics.median(speeds["lookup"])
        per_row = "; ".join(f"{r.accepted_tokens}/{r.drafted_tokens} ({(r.acceptance_rate or 0):.0%}), "
                            f"{r.target_forwards}/{len(r.token_ids)}" for r in results["lookup"].rows)
        print(f"{name:40s} {plain:11.1f} {fast:12.1f} {fast / plain:7.2f}x  {per_row}"
              + ("" if same else "  TOKENS DIFFER"), flush=True)


if __name__ == "__main__":
    main()
