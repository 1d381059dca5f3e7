"""`python -m engine.bench.sizes`: the reference benchmark at several model sizes, with random weights.

    python -m engine.bench.sizes --device cuda --out bench-gpu        # README's GPU table
    python -m engine.bench.sizes --archs smollm2-135m --sweeps 3x3:4 --quick

For each architecture of engine/bench/archs.py (built on the device, nothing downloaded) and each sweep
(GRID:SAMPLES; default the reference 3x3:4 = 36 rows and 4x4:16 = 256 rows), the methods of engine/bench/reference.py
are measured interleaved: transformers generate() once per cell, one generate() batch, the engine with the trace
off and on, and the bare forwards. Also per architecture:
  invariance  every cell decoded alone equals the same cell inside the sweep, token for token (at the dtype in
              use: matrix kernels may change with the batch size)
  memory      peak device memory of the largest engine run, and the KV-cache bytes per row per token
After each sweep, every number so far is written to OUT/summaries.json and a Markdown table to OUT/table.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
from pathlib import Path

import torch

from ..generate import Engine
from .archs import ARCHS, kv_bytes_per_token, random_model
from .invariance import first_differences
from .reference import PROMPT, GRIDS, Setup, log, measure, report, summarize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.sizes", description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated, from {', '.join(ARCHS)}")
    ap.add_argument("--sweeps", default="3x3:4,4x4:16", help="GRID:SAMPLES, comma-separated")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    ap.add_argument("--dtype", default=None, help="default: bf16 on cuda, fp32 on cpu")
    ap.add_argument("--tokenizer", default=None, metavar="DIR", help="tokenizer directory (default: the bundled one)")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per row (min = max)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved measured runs per method")
    ap.add_argument("--trace-top-n", type=int, default=10)
    ap.add_argument("--out", default="bench-sizes", help="folder for the JSON files and table.md")
    ap.add_argument("--quick", action="store_true", help="smoke test: --tokens 8 --repeats 1")
    args = ap.parse_args(argv)
    if args.quick:
        args.tokens, args.repeats = 8, 1
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for arch in args.archs:
        if arch not in ARCHS:
            ap.error(f"--archs: {arch!r} is not one of {', '.join(ARCHS)}")
    sweeps = []
    for item in args.sweeps.split(","):
        grid, _, samples = item.strip().partition(":")
        if grid not in GRIDS or not samples.isdigit() or int(samples) < 1:
            ap.error(f"--sweeps: expected GRID:SAMPLES with GRID one of {', '.join(GRIDS)}, got {item!r}")
        sweeps.append((grid, int(samples)))
    args.sweeps = sweeps
    return args


def batch_invariance(setup: Setup, tokens: int) -> dict:
    """Every cell decoded alone vs inside the whole sweep: equal token ids per row? (engine/bench/invariance.py)"""
    firsts = first_differences(setup.engine, setup.prompt_ids, setup.cells, setup.samples, tokens)
    return {"rows": len(firsts), "equal_rows": sum(f is None for f in firsts), "first_difference_step": firsts}


def memory(arch: str, loaded) -> dict:
    out = {"kv_bytes_per_row_per_token": kv_bytes_per_token(arch, loaded.dtype)}
    if loaded.device.type == "cuda":
        out["peak_allocated_gib"] = torch.cuda.max_memory_allocated(loaded.device) / 2**30
        out["weights_gib"] = sum(p.numel() * p.element_size() for p in loaded.model.parameters()) / 2**30
    return out


def run_arch(arch: str, args: argparse.Namespace, summaries: list[dict], out: Path) -> None:
    """Measure every sweep on one architecture, appending to `summaries` and rewriting OUT's files after each."""
    log(f"building random {arch}")
    loaded = random_model(arch, device=args.device, dtype=args.dtype, tokenizer_dir=args.tokenizer)
    log(f"built in {loaded.load_seconds:.1f} s on {loaded.device} ({loaded.dtype})")
    engine = Engine(loaded)
    prompt = engine.encode(PROMPT)
    for grid, samples in args.sweeps:
        setup = Setup(loaded, engine, prompt, samples, args.trace_top_n, grid)
        if loaded.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(loaded.device)
        log(f"{arch}: {setup.rows} rows x {args.tokens} tokens")
        ns = argparse.Namespace(tokens=args.tokens, repeats=args.repeats)
        summary = summarize(setup, measure(setup, args.tokens, args.repeats), ns)
        summary["arch"], summary["params"] = arch, sum(p.numel() for p in loaded.model.parameters())
        summary["command"] = "python -m engine.bench.sizes " + shlex.join(sys.argv[1:])
        summary["memory"] = memory(arch, loaded)
        summary["invariance"] = batch_invariance(setup, args.tokens)
        print(f"\n## {arch}, {setup.rows} rows\n" + report(summary), flush=True)
        print(f"invariance: {summary['invariance']}; memory: {summary['memory']}", flush=True)
        summaries.append(summary)
        (out / "summaries.json").write_text(json.dumps(summaries, indent=2))
        (out / "table.md").write_text(table(summaries))
    del engine, loaded
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def table(summaries: list[dict]) -> str:
    lines = ["| model (random weights) | rows | generate() per cell | one generate() batch | engine | engine + trace "
             "| forward floor | engine / per cell | engine / batch | cell alone = in sweep |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        m = {k: v["tokens_per_s"] for k, v in s["methods"].items()}
        inv = s["invariance"]
        lines.append(f"| {s['arch']} ({s['params'] / 1e9:.2f} B) | {s['rows']} | {m['baseline']:.0f} | "
                     f"{m['generate-batch']:.0f} | {m['engine']:.0f} | {m['engine+trace']:.0f} | {m['forward']:.0f} | "
                     f"{m['engine'] / m['baseline']:.1f}x | {m['engine'] / m['generate-batch']:.2f}x | "
                     f"{inv['equal_rows']}/{inv['rows']} |")
    return "\n".join(lines) + "\n\ntokens/s, medians; " + (summaries[0]["command"] if summaries else "") + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries: list[dict] = []
    for arch in args.archs:
        run_arch(arch, args, summaries, out)
    print("\n" + table(summaries), flush=True)


if __name__ == "__main__":
    main()
