"""How fast the Distributions view answers a slider move: `python -m playground.bench`.

Runs one Generate-sized run (3 samples x 48 tokens, trace on), then times what the server does when the step
or output slider moves: the replay of that (row, step) at full vocabulary plus the figures and tables
(playground.views.distribution), first for steps never seen (a fresh replay each) and then for steps already
seen (cached replays). Prints medians and 90th percentiles in milliseconds.

The other benchmarks live in engine/bench/; this one stays beside the view it times. A slider move is a page-only
Gradio event whose run id is in the page session's state, so there is no HTTP call from outside that does this
work (the public /distribution endpoint returns the same distributions as JSON, without figures or tables);
timing it over HTTP would mean replaying the page's own protocol, or timing something cheaper.

`--browser` times the same move as a person perceives it instead: in Chromium, from the slider's input event to
the redrawn figure (playground/bench_browser.py), on `python app.py` started for it or on running apps (--url).
"""
from __future__ import annotations

import argparse
import statistics
import time

from engine.generate import Engine
from engine.models import load_model
from engine.params import SamplingParams
from engine.sweepspec import SweepSpec

from .runs import RunStore
from .views import distribution, stream_run


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(ordered) * 1000:.0f} ms · p90 {p90 * 1000:.0f} ms · n={len(ordered)}"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m playground.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="HF id or local dir (default: the bundled model)")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--browser", action="store_true", help="time slider moves in Chromium (3 x 48 tokens)")
    ap.add_argument("--url", action="append", default=[], help="with --browser: a running app (repeatable: "
                                                                "moves alternate between them)")
    ap.add_argument("--moves", type=int, default=20, help="with --browser: step-slider moves per app")
    args = ap.parse_args()
    if args.browser:
        from .bench_browser import run as run_in_browser

        run_in_browser(args.url, args.moves)
        return

    engine = Engine(load_model(args.model))
    store = RunStore(engine)
    params = SamplingParams(temperature=0.9, top_p=0.9, min_p=0.05, max_new_tokens=args.max_new_tokens,
                            min_new_tokens=args.max_new_tokens, seed=1)
    spec = SweepSpec("Explain how blockchain works in simple terms.", params, (), args.samples)
    run = None
    for frame in stream_run(engine, store, spec, "generate"):
        run = frame.run or run
    assert run is not None
    distribution(store, run, 0, 0)  # warm-up (first plotly figure build)

    fresh, cached, other_row = [], [], []
    for step in range(1, len(run.generation.rows[0].token_ids)):
        t0 = time.perf_counter()
        distribution(store, run, 0, step)
        fresh.append(time.perf_counter() - t0)
    for step in range(1, len(run.generation.rows[0].token_ids), 4):
        t0 = time.perf_counter()
        distribution(store, run, 0, step)
        cached.append(time.perf_counter() - t0)
    for row in range(1, run.row_count):
        t0 = time.perf_counter()
        distribution(store, run, row, len(run.generation.rows[row].token_ids) - 1)
        other_row.append(time.perf_counter() - t0)
    print(f"model {engine.loaded.name} on {engine.loaded.device}; run of {run.row_count} x "
          f"{args.max_new_tokens} tokens took {run.generation.seconds:.1f} s")
    print(f"step slider, new step (replay + figures): {_ms(fresh)}")
    print(f"step slider, step seen before (cached replay): {_ms(cached)}")
    if other_row:
        print(f"output slider, last step of another output: {_ms(other_row)}")


if __name__ == "__main__":
    main()
