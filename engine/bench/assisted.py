"""Plain against assisted decoding on the bundled model: `python -m engine.bench.assisted`.

Side by side in one run, the same rows decoded plainly and with drafts, on a prompt whose answer repeats its input
("Rewrite this paragraph: ...", greedy and sampled) and on one whose answer does not. Drafts come from prompt
lookup (prompt_lookup_num_tokens) and from a draft model (assistant_model): the bundled model drafting for itself
(its drafts are what a greedy row chooses: the upper bound of acceptance) and a tiny random model with the same
tokenizer (its drafts are almost never chosen: the lower bound; nothing in between is available offline).
Both sides give the same tokens (checked here too); prints median tokens/s over the repeats, the speed-up, and per
row the acceptance rate (accepted / drafted tokens) and the target's forwards against the tokens generated.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

from ..generate import Engine
from ..models import load_model, tiny_random_model
from ..params import SamplingParams

PARAGRAPH = ("The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of salt and "
             "wind. Every night the keeper climbed the narrow stairs to light the lamp, and every morning he wrote "
             "the weather in a worn leather book. Ships passed far out at sea, and none of their crews ever knew "
             "his name, but all of them trusted the light.")
REWRITE = "Rewrite this paragraph: " + PARAGRAPH
OPEN = "Write a short story about a robot who learns to paint."
Scenario = tuple[str, str, list[SamplingParams]]


def scenarios(tokens: int) -> list[Scenario]:
    greedy = SamplingParams(temperature=0.0, max_new_tokens=tokens)
    sampled = SamplingParams(temperature=0.7, top_p=0.9, seed=1, max_new_tokens=tokens)
    return [("rewrite, greedy", REWRITE, [greedy]), ("rewrite, sampled", REWRITE, [sampled]),
            ("rewrite, 4 rows (1 greedy, 3 sampled)", REWRITE, [greedy, sampled, sampled.replace(seed=2),
                                                             sampled.replace(temperature=1.0, seed=3)]),
            ("open-ended, greedy", OPEN, [greedy])]


def draft_scenarios(tokens: int) -> list[Scenario]:
    greedy = SamplingParams(temperature=0.0, max_new_tokens=tokens)
    sampled = SamplingParams(temperature=0.7, top_p=0.9, seed=1, max_new_tokens=tokens)
    return [("open-ended, greedy", OPEN, [greedy]), ("open-ended, sampled", OPEN, [sampled]),
            ("rewrite, greedy", REWRITE, [greedy])]


def compare(engine: Engine, name: str, prompt: str, rows: list[SamplingParams],
            assisted: Callable[[SamplingParams], SamplingParams], repeats: int) -> None:
    """Decode `rows` plainly and assisted, interleaved (the machine's load hits both); print one line."""
    prompt_ids = engine.encode(prompt)
    fast_rows = [assisted(p) for p in rows]
    indices = list(range(len(rows)))
    speeds: dict[str, list[float]] = {"plain": [], "assisted": []}
    results = {}
    for _ in range(repeats):
        for mode, params in (("plain", rows), ("assisted", fast_rows)):
            started = time.perf_counter()
            result = engine.generate(prompt_ids, params, indices)
            speeds[mode].append(result.generated_tokens / (time.perf_counter() - started))
            results[mode] = result
    same = all(a.token_ids == b.token_ids for a, b in zip(results["plain"].rows, results["assisted"].rows))
    plain, fast = statistics.median(speeds["plain"]), statistics.median(speeds["assisted"])
    per_row = "; ".join(f"{r.accepted_tokens}/{r.drafted_tokens} ({(r.acceptance_rate or 0):.0%}), "
                        f"{r.target_forwards}/{len(r.token_ids)}" for r in results["assisted"].rows)
    print(f"{name:52s} {plain:11.1f} {fast:13.1f} {fast / plain:7.2f}x  {per_row}"
          + ("" if same else "  TOKENS DIFFER"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.assisted", description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="max_new_tokens per row")
    ap.add_argument("--lookup", type=int, default=10, help="prompt_lookup_num_tokens")
    ap.add_argument("--ngram", type=int, default=2, help="max_matching_ngram_size")
    ap.add_argument("--assistant-tokens", type=int, default=8, help="num_assistant_tokens of the draft models")
    ap.add_argument("--only", choices=("lookup", "draft"), help="run one kind of scenario (default: both)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    engine = Engine(load_model())
    print(f"{'scenario':52s} {'plain tok/s':>11s} {'assisted tok/s':>13s} {'speed-up':>8s}  per row: "
          f"accepted/drafted (rate), target forwards/tokens")
    if args.only != "draft":
        for name, prompt, rows in scenarios(args.tokens):
            compare(engine, f"prompt lookup: {name}", prompt, rows,
                    lambda p: p.replace(prompt_lookup_num_tokens=args.lookup, max_matching_ngram_size=args.ngram),
                    args.repeats)
    if args.only == "lookup":
        return
    with tempfile.TemporaryDirectory() as folder:  # the tiny draft as a directory, as a person would name one
        tiny = tiny_random_model(vocab_from=engine.loaded)
        tiny.model.save_pretrained(folder)
        tiny.tokenizer.save_pretrained(folder)
        for label, draft in (("bundled drafts itself", "bundled"), ("tiny random draft", folder)):
            for name, prompt, rows in draft_scenarios(args.tokens):
                compare(engine, f"{label}: {name}", prompt, rows,
                        lambda p: p.replace(assistant_model=draft, num_assistant_tokens=args.assistant_tokens),
                        args.repeats)


if __name__ == "__main__":
    main()
