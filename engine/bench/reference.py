"""Reference benchmark: the engine against transformers' `generate` and against the bare model forwards.

    python -m engine.bench                 # 36 rows x 64 tokens, median of 3 interleaved repeats
    python -m engine.bench --quick         # 16 tokens, 1 repeat: a smoke test
    python -m engine.bench --arch llama-8b --grid 4x4 --samples 16   # random 8B weights, 256 rows (GPU)

Same process, same model, same tokens per row (min_new_tokens = max_new_tokens = N). Grid: temperature
{0.3, 0.7, 1.0} x top_p {0.5, 0.9, 1.0}, --samples per cell. Methods, measured in interleaved order:
  baseline       model.generate(..., num_return_sequences=samples) once per cell, sequentially
  generate-batch one model.generate(...) of all rows at once, with one cell's settings (temperature 0.7,
                 top_p 0.9): what transformers' batching gives when every row is alike
  engine         Engine.generate of all rows in one batch, trace off
  engine+trace   the same with trace_top_n > 0
  llama.cpp      the peer a CPU user would pick: the same GGUF, the same prompt tokens, one llama_decode per step
                 of every row (engine/bench/llamacpp_peer.py); only when `llama_cpp` is importable and the model
                 is the bundled GGUF (or a --model FILE.gguf)
  forward        the floor: prefill once, copy the cache to every row, N-1 decode forwards, nothing else
--methods limits the run to some of them, e.g. --methods engine,engine+trace,llama.cpp,forward.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..generate import Engine
from ..models import LoadedModel, bundled_gguf_path, cpu_has_native_bf16, load_model
from ..params import SamplingParams
from . import llamacpp_peer
from .archs import ARCHS, random_model

PROMPT = "Explain how blockchain works in simple terms."
GRIDS = {  # --grid: temperatures x top_ps
    "3x3": ((0.3, 0.7, 1.0), (0.5, 0.9, 1.0)),  # the reference sweep
    "4x4": ((0.3, 0.5, 0.7, 1.0), (0.5, 0.8, 0.9, 1.0)),  # with --samples 16: 256 rows
}
METHODS = ("baseline", "generate-batch", "engine", "engine+trace", llamacpp_peer.NAME, "forward")
TORCH_METHODS = tuple(m for m in METHODS if m != llamacpp_peer.NAME)  # what any model (random weights too) runs


@dataclass
class Setup:
    loaded: LoadedModel
    engine: Engine
    prompt_ids: list[int]
    samples: int
    trace_top_n: int
    grid: str = "3x3"
    methods: tuple[str, ...] = TORCH_METHODS  # measured, in this order (a subset of METHODS)
    peer: "llamacpp_peer.LlamaCppPeer | None" = None  # the llama.cpp runner, when "llama.cpp" is measured
    peer_note: str | None = None  # why llama.cpp was not measured, when it was asked for and could not be

    @property
    def cells(self) -> list[tuple[float, float]]:
        temperatures, top_ps = GRIDS[self.grid]
        return [(t, p) for t in temperatures for p in top_ps]

    @property
    def rows(self) -> int:
        return len(self.cells) * self.samples


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0  # generated tokens of one run (checked equal across runs)
    inner_share: list[float] = field(default_factory=list)  # engine only: forward_seconds / seconds


def sync(loaded: LoadedModel) -> None:
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)


def run_baseline(s: Setup, tokens: int) -> tuple[int, float | None]:
    """transformers' sampling, one generate call per cell as the tutorials do; returns generated tokens."""
    model, eos = s.loaded.model, s.loaded.eos_token_ids[0]
    input_ids = torch.tensor([s.prompt_ids], device=s.loaded.device)
    attention_mask = torch.ones_like(input_ids)
    torch.manual_seed(0)
    total = 0
    for t, p in s.cells:
        out = model.generate(input_ids, attention_mask=attention_mask, do_sample=True, temperature=t, top_p=p,
                             top_k=0, num_return_sequences=s.samples, min_new_tokens=tokens,
                             max_new_tokens=tokens, pad_token_id=eos)
        total += out.shape[0] * (out.shape[1] - input_ids.shape[1])
    return total, None


def run_generate_batch(s: Setup, tokens: int) -> tuple[int, float | None]:
    """One transformers generate() call for every row, all with one cell's settings."""
    model, eos = s.loaded.model, s.loaded.eos_token_ids[0]
    input_ids = torch.tensor([s.prompt_ids], device=s.loaded.device)
    torch.manual_seed(0)
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True, temperature=0.7,
                         top_p=0.9, top_k=0, num_return_sequences=s.rows, min_new_tokens=tokens,
                         max_new_tokens=tokens, pad_token_id=eos)
    return out.shape[0] * (out.shape[1] - input_ids.shape[1]), None


def run_engine(s: Setup, tokens: int, trace_top_n: int) -> tuple[int, float | None]:
    params = [SamplingParams(temperature=t, top_p=p, min_new_tokens=tokens, max_new_tokens=tokens, seed=0)
              for t, p in s.cells for _ in range(s.samples)]
    samples = [i for _ in s.cells for i in range(s.samples)]
    result = s.engine.generate(s.prompt_ids, params, sample_indices=samples, trace_top_n=trace_top_n)
    return result.generated_tokens, result.forward_seconds / result.seconds


@torch.inference_mode()
def run_forward(s: Setup, tokens: int) -> tuple[int, float | None]:
    """Exactly the model forwards the engine does (prefill at batch 1, N-1 decode steps at full batch)."""
    model = s.loaded.model
    prompt = torch.tensor([s.prompt_ids], device=s.loaded.device)
    output = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    cache = output.past_key_values
    cache.batch_repeat_interleave(s.rows)
    next_ids = output.logits[:, -1, :].argmax(-1).expand(s.rows)
    for _ in range(tokens - 1):
        output = model(input_ids=next_ids[:, None], past_key_values=cache, use_cache=True)
        next_ids = output.logits[:, -1, :].argmax(-1)
    return s.rows * tokens, None


def run_llamacpp(s: Setup, tokens: int) -> tuple[int, float | None]:
    if s.peer is None:
        raise RuntimeError("llama.cpp: no runner (the benchmark builds one only when llama_cpp is importable)")
    settings = [cell for cell in s.cells for _ in range(s.samples)]  # rows in the engine's order
    return s.peer.run(s.prompt_ids, settings, tokens), None


def runners(s: Setup) -> dict[str, Callable[[int], tuple[int, float | None]]]:
    every = {
        "baseline": lambda n: run_baseline(s, n),
        "generate-batch": lambda n: run_generate_batch(s, n),
        "engine": lambda n: run_engine(s, n, 0),
        "engine+trace": lambda n: run_engine(s, n, s.trace_top_n),
        llamacpp_peer.NAME: lambda n: run_llamacpp(s, n),
        "forward": lambda n: run_forward(s, n),
    }
    return {name: every[name] for name in METHODS if name in s.methods}


def measure(s: Setup, tokens: int, repeats: int) -> dict[str, Timing]:
    fns = runners(s)
    for name, fn in fns.items():  # one short warm-up of each
        log(f"warm-up {name}")
        fn(min(tokens, 4))
    timings = {name: Timing() for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            sync(s.loaded)
            start = time.perf_counter()
            generated, share = fn(tokens)
            sync(s.loaded)
            seconds = time.perf_counter() - start
            timing = timings[name]
            if timing.tokens and generated != timing.tokens:
                raise RuntimeError(f"{name}: generated {generated} tokens, earlier {timing.tokens}")
            timing.tokens = generated
            timing.seconds.append(seconds)
            if share is not None:
                timing.inner_share.append(share)
            log(f"repeat {r + 1}/{repeats} {name}: {seconds:.2f} s ({generated} tokens)")
    return timings


def summarize(s: Setup, timings: dict[str, Timing], args: argparse.Namespace) -> dict:
    return {
        "command": "python -m engine.bench " + shlex.join(sys.argv[1:]),
        "model": s.loaded.name, "device": str(s.loaded.device), "dtype": str(s.loaded.dtype).removeprefix("torch."),
        "torch": torch.__version__, "transformers": _transformers_version(), "python": platform.python_version(),
        "threads": torch.get_num_threads(), "prompt_tokens": len(s.prompt_ids), "rows": s.rows,
        "tokens_per_row": args.tokens, "repeats": args.repeats, "trace_top_n": s.trace_top_n, "grid": s.grid,
        "gpu": torch.cuda.get_device_name(s.loaded.device) if s.loaded.device.type == "cuda" else None,
        "native_bf16": cpu_has_native_bf16() if s.loaded.device.type == "cpu" else None,
        "llamacpp": _llamacpp_version() if s.peer is not None else None, "llamacpp_note": s.peer_note,
    } | figures(timings, s.rows * args.tokens)


def figures(timings: dict[str, Timing], expected_tokens: int) -> dict:
    """Medians, tokens/s and the ratios between the methods measured (a ratio is None when one side was not)."""
    med = {name: statistics.median(t.seconds) for name, t in timings.items()}
    tps = {name: timings[name].tokens / med[name] for name in timings}

    def ratio(a: str, b: str, of: dict[str, float] = tps) -> float | None:
        return of[a] / of[b] if a in of and b in of else None

    def share(key: str) -> float | None:
        return statistics.median(timings[key].inner_share) if key in timings and timings[key].inner_share else None

    return {
        "expected_tokens": expected_tokens,
        "methods": {name: {"median_s": med[name], "runs_s": timings[name].seconds, "tokens": timings[name].tokens,
                           "tokens_per_s": tps[name], "x_baseline": ratio(name, "baseline")}
                    for name in METHODS if name in timings},
        "engine_vs_baseline": ratio("engine", "baseline"),
        "engine_trace_vs_baseline": ratio("engine+trace", "baseline"),
        "engine_vs_llamacpp": ratio("engine", llamacpp_peer.NAME),
        "engine_trace_vs_llamacpp": ratio("engine+trace", llamacpp_peer.NAME),
        "forward_share": ratio("forward", "engine", med),
        "forward_share_trace": ratio("forward", "engine+trace", med),
        "inner_forward_share": share("engine"),
        "inner_forward_share_trace": share("engine+trace"),
    }


def _x(value: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def report(summary: dict) -> str:
    m = summary["methods"]
    lines = ["| method | median s | tokens/s | x baseline |", "|---|---:|---:|---:|"]
    for name, row in m.items():
        lines.append(f"| {name} | {row['median_s']:.3f} | {row['tokens_per_s']:.1f} | "
                     f"{_x(row['x_baseline'], '.2f', '')} |")
    bad = [n for n in m if m[n]["tokens"] != summary["expected_tokens"]]
    top = f"(top {summary['trace_top_n']})"
    lines.append("")
    if summary["engine_vs_baseline"] is not None or summary["engine_trace_vs_baseline"] is not None:
        lines.append(f"engine / baseline (tokens/s): {_x(summary['engine_vs_baseline'])} trace off, "
                     f"{_x(summary['engine_trace_vs_baseline'])} trace on {top}")
    if llamacpp_peer.NAME in m:
        lines.append(f"engine / llama.cpp (tokens/s): {_x(summary['engine_vs_llamacpp'])} trace off, "
                     f"{_x(summary['engine_trace_vs_llamacpp'])} trace on {top}; goal >= 1.50x off, >= 1.25x on"
                     + (f" (llama-cpp-python {summary['llamacpp']})" if summary.get("llamacpp") else ""))
    elif summary.get("llamacpp_note"):
        lines.append(summary["llamacpp_note"])
    if summary["forward_share"] is not None or summary["inner_forward_share"] is not None:
        lines.append(f"forward share of engine time: floor {_x(summary['forward_share'], '.0%', '')} trace off, "
                     f"{_x(summary['forward_share_trace'], '.0%', '')} trace on; engine's own "
                     f"forward_seconds/seconds {_x(summary['inner_forward_share'], '.0%', '')} trace off, "
                     f"{_x(summary['inner_forward_share_trace'], '.0%', '')} trace on")
    return "\n".join(lines + [
        f"{summary['rows']} rows x {summary['tokens_per_row']} tokens (prompt {summary['prompt_tokens']} tokens), "
        f"median of {summary['repeats']} interleaved repeats"
        + (f"; WARNING token counts differ from {summary['expected_tokens']}: {bad}" if bad else ""),
        "runs (s): " + "; ".join(f"{n} " + "/".join(f"{x:.2f}" for x in m[n]["runs_s"]) for n in m),
        f"model {summary['model']}, device {summary['device']}, dtype {summary['dtype']}, torch {summary['torch']}, "
        f"transformers {summary['transformers']}, python {summary['python']}, threads {summary['threads']}"
        + ("" if summary.get("native_bf16") is None else f", native bf16 {'yes' if summary['native_bf16'] else 'no'}"),
        f"command: {summary['command']}",
    ])


def _llamacpp_version() -> str:
    import llama_cpp
    return str(llama_cpp.__version__)


def _transformers_version() -> str:
    import transformers
    return transformers.__version__


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model name/path (default: the bundled SmolLM2)")
    ap.add_argument("--arch", default=None, choices=sorted(ARCHS),
                    help="instead of --model: random weights of these shapes (engine/bench/archs.py), built on the "
                         "device; needs no download")
    ap.add_argument("--tokenizer", default=None, metavar="DIR",
                    help="with --arch: a tokenizer directory (default: the bundled model's tokenizer)")
    ap.add_argument("--grid", default="3x3", choices=sorted(GRIDS),
                    help="temperature x top_p grid: 3x3 (the reference) or 4x4 (x --samples 16 = 256 rows)")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                    help="weights' dtype (default auto: bf16 on a GPU, fp32 on a CPU)")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per row (min = max)")
    ap.add_argument("--samples", type=int, default=4, help="samples per grid cell")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved measured runs per method")
    ap.add_argument("--trace-top-n", type=int, default=10, help="top-N kept by the trace in the traced run")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    ap.add_argument("--quick", action="store_true", help="smoke test: --tokens 16 --repeats 1")
    ap.add_argument("--methods", default=",".join(METHODS), metavar="A,B,...",
                    help=f"the methods to measure, of {', '.join(METHODS)} (default: all; llama.cpp only when "
                         f"llama_cpp is importable)")
    args = ap.parse_args(argv)
    args.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        ap.error(f"--methods: expected a comma-separated list of {', '.join(METHODS)}, got {unknown or 'nothing'}")
    if args.arch and args.model:
        ap.error("--arch and --model exclude each other")
    if args.tokenizer and not args.arch:
        ap.error("--tokenizer goes with --arch")
    if args.quick:
        args.tokens, args.repeats = 16, 1
    for name in ("tokens", "samples", "repeats", "trace_top_n"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def llamacpp_runner(args: argparse.Namespace, s: Setup) -> tuple["llamacpp_peer.LlamaCppPeer | None", str | None]:
    """llama.cpp on the model's GGUF file, sized for the sweep; else None and the line that says why not."""
    if args.arch or (args.model and not args.model.endswith(".gguf")):
        return None, "llama.cpp: not measured (it runs on a GGUF file: the bundled model or --model FILE.gguf)"
    if not llamacpp_peer.available():
        return None, llamacpp_peer.missing_line()
    gguf = Path(args.model).expanduser() if args.model else bundled_gguf_path()
    failure = llamacpp_peer.probe_failure(gguf, s.prompt_ids, torch.get_num_threads())
    if failure is not None:
        return None, failure
    log(f"llama.cpp on {gguf.name}, {s.rows} sequences, {torch.get_num_threads()} threads")
    return llamacpp_peer.LlamaCppPeer(gguf, s.rows, len(s.prompt_ids), args.tokens, torch.get_num_threads()), None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # one generation-config notice per cell would drown the progress lines
    log("loading model")
    if args.arch:
        loaded = random_model(args.arch, device=args.device, dtype=args.dtype, tokenizer_dir=args.tokenizer)
    else:
        loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    engine = Engine(loaded)
    setup = Setup(loaded, engine, engine.encode(PROMPT), args.samples, args.trace_top_n, args.grid,
                  methods=args.methods)
    if llamacpp_peer.NAME in setup.methods:
        setup.peer, setup.peer_note = llamacpp_runner(args, setup)
        if setup.peer is None:
            log(setup.peer_note or "")
            setup.methods = tuple(m for m in setup.methods if m != llamacpp_peer.NAME)
    log(f"{loaded.name} on {loaded.device} ({loaded.dtype}), {setup.rows} rows x {args.tokens} tokens")
    summary = summarize(setup, measure(setup, args.tokens, args.repeats), args)
    print(report(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
