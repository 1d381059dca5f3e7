"""Latency and throughput of the OpenAI-compatible API: `python -m engine.bench.api`.

Starts the app as its own process (`python app.py --port N`, see app_process.py) and waits until it answers,
then streams chat completions over real HTTP: one client alone, then 8 clients
started together (same prompt, different seeds: one engine batch), then 8 clients with 8 different prompts
(consecutive batches). Prints, per scenario, the median time to first token, the median total time per request
and the total generated tokens per second over the scenario's wall time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import httpx

from .app_process import AppNotServing, running_app

PROMPTS = ["What is deep learning?", "Explain how blockchain works.", "Name three rivers.", "What is a prime number?",
           "Describe the sea in one sentence.", "Why is the sky blue?", "Give me a tip for sleeping well.",
           "What does a compiler do?"]


def stream_once(url: str, prompt: str, seed: int, max_tokens: int) -> tuple[float, float, int, int]:
    """(seconds to the first content chunk, total seconds, completion tokens, rows of its batch) of one request."""
    body = {"model": "any", "messages": [{"role": "user", "content": prompt}], "stream": True, "seed": seed,
            "temperature": 0.8, "max_tokens": max_tokens, "min_tokens": max_tokens,
            "stream_options": {"include_usage": True}}
    started, first, tokens = time.perf_counter(), None, 0
    with httpx.stream("POST", url + "v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        batch_rows = int(response.headers.get("X-Batch-Rows", 0))
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return first or 0.0, time.perf_counter() - started, tokens, batch_rows


def scenario(url: str, prompts: list[str], max_tokens: int) -> dict[str, float]:
    results: list[tuple[float, float, int, int]] = [None] * len(prompts)  # type: ignore[list-item]
    barrier = threading.Barrier(len(prompts))

    def client(i: int) -> None:
        barrier.wait()
        results[i] = stream_once(url, prompts[i], seed=i, max_tokens=max_tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"clients": len(prompts), "ttft_ms": statistics.median(r[0] for r in results) * 1000,
            "latency_s": statistics.median(r[1] for r in results), "tokens": sum(r[2] for r in results),
            "tokens_per_s": sum(r[2] for r in results) / wall, "wall_s": wall,
            "batch_rows": statistics.median(r[3] for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.api", description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="passed to app.py --model (default: the app's own default)")
    args = ap.parse_args()
    try:
        measure(args)
    except AppNotServing as exc:
        sys.exit(f"error: {exc}")


def measure(args: argparse.Namespace) -> None:
    with running_app(args.model) as url:
        stream_once(url, PROMPTS[0], 0, 4)  # warm-up
        rows = {"1 client": [], "8 clients, same prompt": [], "8 clients, 8 prompts": []}
        for _ in range(args.repeats):
            rows["1 client"].append(scenario(url, PROMPTS[:1], args.max_tokens))
            rows["8 clients, same prompt"].append(scenario(url, PROMPTS[:1] * 8, args.max_tokens))
            rows["8 clients, 8 prompts"].append(scenario(url, PROMPTS, args.max_tokens))
        print(f"streamed chat completions, {args.max_tokens} tokens each, medians of {args.repeats} runs")
        print(f"{'scenario':26} {'first token':>12} {'per request':>12} {'tokens/s (all)':>15} {'batch rows':>11}")
        for name, runs in rows.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{name:26} {med['ttft_ms']:>9.0f} ms {med['latency_s']:>10.2f} s {med['tokens_per_s']:>15.1f} "
                  f"{med['batch_rows']:>11.0f}")


if __name__ == "__main__":
    main()
