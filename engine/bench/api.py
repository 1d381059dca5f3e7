"""Latency and throughput of the OpenAI-compatible API: `python -m engine.bench.api`.

Starts the app as its own process (`python app.py --port N`, see app_process.py) and waits until it answers,
then streams chat completions over real HTTP: one client alone, then 8 clients
started together (same prompt, different seeds: one engine batch), then 8 clients with 8 different prompts
(consecutive batches). Prints, per scenario, the median time to first token, the median total time per request
and the total generated tokens per second over the scenario's wall time.

`--arrivals`: continuous batching instead. 8 clients with 8 prompts arriving 200 ms apart, measured side by side
on two apps started together, the default one (a request joins the running batch at its next step) and one with
--no-join (it forms the next batch beside the running one), runs interleaved; prints p50 / p95 time to first
token, the median time per request and the total tokens per second, with the ratios. `--top-logprobs N`: every
request asks for logprobs with its N likeliest alternatives (requests then join batches of the same N: the batch
keeps a trace of the top N; with the default 0, none are asked).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Callable

import httpx

from .app_process import AppNotServing, running_app

PROMPTS = ["What is deep learning?", "Explain how blockchain works.", "Name three rivers.", "What is a prime number?",
           "Describe the sea in one sentence.", "Why is the sky blue?", "Give me a tip for sleeping well.",
           "What does a compiler do?"]


def stream_once(url: str, prompt: str, seed: int, max_tokens: int, top_logprobs: int = 0
                ) -> tuple[float, float, int, int]:
    """(seconds to the first content chunk, total seconds, completion tokens, rows of its batch) of one request;
    with top_logprobs > 0 it asks for logprobs and that many alternatives per token."""
    body = {"model": "any", "messages": [{"role": "user", "content": prompt}], "stream": True, "seed": seed,
            "temperature": 0.8, "max_tokens": max_tokens, "min_tokens": max_tokens,
            "stream_options": {"include_usage": True}}
    if top_logprobs:
        body.update(logprobs=True, top_logprobs=top_logprobs)
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


def run_clients(client: Callable[[int], None], count: int) -> float:
    """Run client(0) ... client(count - 1) in threads at once; the wall seconds until the last one ends."""
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def scenario(url: str, prompts: list[str], max_tokens: int) -> dict[str, float]:
    results: list[tuple[float, float, int, int]] = [None] * len(prompts)  # type: ignore[list-item]
    barrier = threading.Barrier(len(prompts))

    def client(i: int) -> None:
        barrier.wait()
        results[i] = stream_once(url, prompts[i], seed=i, max_tokens=max_tokens)

    wall = run_clients(client, len(prompts))
    return {"clients": len(prompts), "ttft_ms": statistics.median(r[0] for r in results) * 1000,
            "latency_s": statistics.median(r[1] for r in results), "tokens": sum(r[2] for r in results),
            "tokens_per_s": sum(r[2] for r in results) / wall, "wall_s": wall,
            "batch_rows": statistics.median(r[3] for r in results)}


def staggered(url: str, prompts: list[str], max_tokens: int, gap: float, top_logprobs: int = 0) -> dict[str, float]:
    """Client i starts `gap` x i seconds after the first -> p50 / p95 time to first token, median time per
    request, tokens per second from the first start to the last end."""
    results: list[tuple[float, float, int, int]] = [None] * len(prompts)  # type: ignore[list-item]

    def client(i: int) -> None:
        time.sleep(gap * i)
        results[i] = stream_once(url, prompts[i], seed=i, max_tokens=max_tokens, top_logprobs=top_logprobs)

    wall = run_clients(client, len(prompts))
    ttft = [r[0] * 1000 for r in results]
    return {"ttft_p50_ms": percentile(ttft, 50), "ttft_p95_ms": percentile(ttft, 95),
            "latency_s": statistics.median(r[1] for r in results),
            "tokens_per_s": sum(r[2] for r in results) / wall, "batch_rows": max(r[3] for r in results)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, interpolated linearly between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.api", description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="passed to app.py --model (default: the app's own default)")
    ap.add_argument("--arrivals", action="store_true",
                    help="8 clients arriving --gap seconds apart, joining vs --no-join side by side (see above)")
    ap.add_argument("--gap", type=float, default=0.2, help="seconds between arrivals with --arrivals (default 0.2)")
    ap.add_argument("--top-logprobs", type=int, default=0, choices=range(0, 21), metavar="N",
                    help="with --arrivals: every request asks for logprobs with N alternatives per token, 0-20 "
                         "(default 0: no logprobs)")
    args = ap.parse_args()
    try:
        measure_arrivals(args) if args.arrivals else measure(args)
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



def measure_arrivals(args: argparse.Namespace) -> None:
    """Both apps up at once; each repeat runs the scenario on one, then the other (the order alternates)."""
    with running_app(args.model) as joining, running_app(args.model, flags=["--no-join"]) as beside:
        urls = {"joining (default)": joining, "--no-join": beside}
        for url in urls.values():
            stream_once(url, PROMPTS[0], 0, 4)  # warm-up
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for repeat in range(args.repeats):
            for name in (list(urls) if repeat % 2 == 0 else list(urls)[::-1]):
                runs[name].append(staggered(urls[name], PROMPTS, args.max_tokens, args.gap, args.top_logprobs))
        asked = f", logprobs with top_logprobs {args.top_logprobs}" if args.top_logprobs else ""
        print(f"8 clients, 8 prompts, arriving {args.gap * 1000:.0f} ms apart, {args.max_tokens} tokens each{asked}, "
              f"medians of {args.repeats} interleaved runs")
        print(f"{'server':18} {'TTFT p50':>10} {'TTFT p95':>10} {'per request':>12} {'tokens/s (all)':>15} "
              f"{'max batch rows':>15}")
        med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}
        for name, m in med.items():
            print(f"{name:18} {m['ttft_p50_ms']:>7.0f} ms {m['ttft_p95_ms']:>7.0f} ms {m['latency_s']:>10.2f} s "
                  f"{m['tokens_per_s']:>15.1f} {m['batch_rows']:>15.0f}")
        j, b = med["joining (default)"], med["--no-join"]
        print(f"ratio joining / --no-join: TTFT p50 {j['ttft_p50_ms'] / b['ttft_p50_ms']:.2f}, p95 "
              f"{j['ttft_p95_ms'] / b['ttft_p95_ms']:.2f}, tokens/s {j['tokens_per_s'] / b['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
