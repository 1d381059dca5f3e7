"""Load test of the whole app over HTTP: `python -m engine.bench.load` (a script, not a timed unit test).

Starts the app as its own process (app_process.py) and, as its clients would:
1. concurrency: `--clients` clients at once, each sending `--rounds` requests mixed over the page's /generate
   and /v1 (chat and completions), streamed and not, seeded and not; one of them is a long run. Every seeded
   request was first sent alone (serially): its text under load must be the same.
2. disconnect: a streamed /v1 request whose client leaves after the first chunk, then at once a short request;
   its time is compared with the same request on an idle server (a batch only admits new requests when it ends,
   so a row that kept decoding after its client left would delay the next request by the whole long run).
3. memory: the app process's resident memory (VmRSS of /proc/<pid>/status) before, during and after
   `--requests` short requests and `--sweeps` page sweeps, as a series that shows any growth trend.

Prints progress to stderr and one JSON summary to stdout; exits 1 when any request failed or a seeded text
differed from its serial run.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .app_process import AppNotServing, app_process
from .load_clients import SURFACES, Outcome, Request, first_chunk_then_leave, page_sweep, send

PROMPTS = ["What is deep learning?", "Name three rivers.", "Why is the sky blue?", "What does a compiler do?"]
RSS_POINTS = 10  # points of the memory series over the requests (and as many over the sweeps)


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """The process's resident memory in MiB (Linux: VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list; NaN for an empty one."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def client_plans(clients: int, rounds: int, short_tokens: int, long_tokens: int) -> list[list[Request]]:
    """Each client's requests: every (surface, streamed, seeded) mix in turn across clients and rounds, seeds
    distinct per request; client 0's first request is the long run (streamed /v1 chat, seeded)."""
    kinds = itertools.cycle(itertools.product(SURFACES, (True, False), (True, False)))
    plans: list[list[Request]] = []
    for client in range(clients):
        plan = []
        for round_ in range(rounds):
            surface, stream, seeded = next(kinds)
            index = client * rounds + round_
            seed = 1000 + index if seeded else None
            plan.append(Request(surface, PROMPTS[index % len(PROMPTS)], short_tokens, stream, seed))
        plans.append(plan)
    plans[0][0] = Request("chat", "Tell me a long story about a lighthouse.", long_tokens, True, 7)
    return plans


def run_together(url: str, plans: list[list[Request]]) -> tuple[list[Outcome], float]:
    """Every client on its own thread, started together; each sends its plan in order. (outcomes, wall s)"""
    outcomes: list[list[Outcome]] = [[] for _ in plans]
    barrier = threading.Barrier(len(plans))

    def client(i: int) -> None:
        barrier.wait()
        outcomes[i] = [send(url, request) for request in plans[i]]

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [o for client_outcomes in outcomes for o in client_outcomes], time.perf_counter() - started


def concurrency(url: str, args: argparse.Namespace) -> dict[str, Any]:
    plans = client_plans(args.clients, args.rounds, args.short_tokens, args.long_tokens)
    seeded = [r for plan in plans for r in plan if r.seed is not None]
    log(f"serial reference runs of the {len(seeded)} seeded requests")
    serial = {r: send(url, r) for r in seeded}
    log(f"{args.clients} clients x {args.rounds} requests at once")
    outcomes, wall = run_together(url, plans)
    failed = [o for o in [*outcomes, *serial.values()] if o.error is not None or not o.text]
    mismatched = [o for o in outcomes if o.request.seed is not None and o.error is None
                  and o.text != serial[o.request].text]
    short = [o.seconds for o in outcomes if o.request.max_tokens == args.short_tokens and o.error is None]
    long_run = next(o for o in outcomes if o.request.max_tokens == args.long_tokens)
    return {"requests": len(outcomes), "errors": len(failed), "error_examples": [o.error for o in failed[:3]],
            "seeded": len(seeded), "seeded_mismatches": len(mismatched),
            "mismatch_examples": [[o.text, serial[o.request].text] for o in mismatched[:2]],
            "short_tokens": args.short_tokens, "short_p50_s": round(percentile(short, 50), 3),
            "short_p95_s": round(percentile(short, 95), 3), "long_tokens": args.long_tokens,
            "long_run_s": round(long_run.seconds, 3), "wall_s": round(wall, 3)}


def disconnect(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """How long the next short request takes after a streamed client left mid-answer, against an idle server."""
    probe = Request("chat", PROMPTS[0], args.short_tokens, False, 3)
    alone = sorted(send(url, probe).seconds for _ in range(3))[1]  # the median of three on an idle server
    first_chunk = first_chunk_then_leave(url, "Tell me a long story.", args.long_tokens * 4)
    after = send(url, probe)  # may join the abandoned run's batch before the server has seen the client leave
    # by now the abandoned row must have left (it had most of its tokens to go): a probe alone in its batch
    later = send(url, probe)
    return {"abandoned_max_tokens": args.long_tokens * 4, "first_chunk_s": round(first_chunk, 3),
            "idle_request_s": round(alone, 3), "request_after_leaving_s": round(after.seconds, 3),
            "delay_s": round(after.seconds - alone, 3), "step_s": round(alone / args.short_tokens, 4),
            "delay_steps": round((after.seconds - alone) / (alone / args.short_tokens), 1),
            "next_batch_rows": after.batch_rows, "later_batch_rows": later.batch_rows,
            "error": after.error or later.error}


def memory(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """RSS before and after blocks of short requests (8 at a time), then of sweeps, as one series."""
    series = [{"requests": 0, "sweeps": 0, "rss_mb": round(rss_mb(pid), 1)}]
    requests = [Request(surface, PROMPTS[i % len(PROMPTS)], args.short_tokens, i % 2 == 0, i if i % 3 else None)
                for i, surface in zip(range(args.requests), itertools.cycle(args.memory_surfaces))]
    block = max(1, math.ceil(len(requests) / RSS_POINTS))
    errors = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, len(requests), block):
            errors += sum(o.error is not None for o in pool.map(lambda r: send(url, r), requests[start:start + block]))
            series.append({"requests": min(start + block, len(requests)), "sweeps": 0,
                           "rss_mb": round(rss_mb(pid), 1)})
            log(f"memory: {series[-1]}")
    sweep_block = max(1, math.ceil(args.sweeps / RSS_POINTS))
    for done in range(0, args.sweeps, sweep_block):
        for _ in range(min(sweep_block, args.sweeps - done)):
            try:
                page_sweep(url, PROMPTS[1], args.short_tokens)
            except Exception as exc:  # counted, like every other failure of the load test
                errors += 1
                log(f"sweep failed: {exc}")
        series.append({"requests": len(requests), "sweeps": min(done + sweep_block, args.sweeps),
                       "rss_mb": round(rss_mb(pid), 1)})
        log(f"memory: {series[-1]}")
    log("RSS MiB over (requests, sweeps): " + ", ".join(f"({p['requests']}, {p['sweeps']}) {p['rss_mb']:.0f}"
                                                       for p in series))
    return {"errors": errors, "rss_series": series,
            "rss_growth_mb": round(series[-1]["rss_mb"] - series[0]["rss_mb"], 1)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with app_process(args.model) as app:
        send(app.url, Request("chat", PROMPTS[0], 2, False, 0))  # warm-up: the first request pays one-time costs
        summary: dict[str, Any] = {"cpus": os.cpu_count(), "clients": args.clients, "rounds": args.rounds,
                                   "memory_surfaces": args.memory_surfaces}
        summary["concurrency"] = concurrency(app.url, args)
        summary["disconnect"] = disconnect(app.url, args)
        summary["memory"] = memory(app.url, app.pid, args)
    summary["errors"] = (summary["concurrency"]["errors"] + summary["memory"]["errors"]
                         + (summary["disconnect"]["error"] is not None))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.load", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16, help="clients at once in the concurrency phase")
    ap.add_argument("--rounds", type=int, default=3, help="requests each client sends in the concurrency phase")
    ap.add_argument("--requests", type=int, default=200, help="short requests of the memory phase")
    ap.add_argument("--sweeps", type=int, default=20, help="page sweeps (2 x 2 cells) of the memory phase")
    ap.add_argument("--short-tokens", type=int, default=16, help="tokens of each short request")
    ap.add_argument("--long-tokens", type=int, default=256, help="tokens of the one long run")
    ap.add_argument("--memory-surfaces", type=lambda text: text.split(","), default=list(SURFACES),
                    help="surfaces of the memory phase's requests, comma-separated (default: page,chat,completions); "
                         "one at a time tells which one any growth comes from")
    ap.add_argument("--model", default=None, help="passed to app.py --model (default: the app's own default)")
    args = ap.parse_args()
    if min(args.clients, args.rounds, args.short_tokens, args.long_tokens) < 1 or min(args.requests, args.sweeps) < 0:
        ap.error("--clients, --rounds and the token counts must be >= 1; --requests and --sweeps >= 0")
    if not args.memory_surfaces or set(args.memory_surfaces) - set(SURFACES):
        ap.error(f"--memory-surfaces: a comma-separated list of {', '.join(SURFACES)}")
    try:
        summary = measure(args)
    except AppNotServing as exc:
        sys.exit(f"error: {exc}")
    print(json.dumps(summary, indent=2))
    sys.exit(1 if summary["errors"] or summary["concurrency"]["seeded_mismatches"] else 0)


if __name__ == "__main__":
    main()
