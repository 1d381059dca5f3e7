"""`python -m engine score`: how likely each token of a given text is after a prompt, under the raw model and
under one configuration (engine/scoring.py), as a table or a JSON file.

    python -m engine score --prompt "Tell me a story." --text "Once upon a time" --set temperature=0.7 --set top_k=5

Input is checked before the model loads (ParamError naming the field: exit status 2 from engine/__main__.py).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import ParamError, check_text
from .params import SamplingParams, from_dict

SCORE_EPILOG = """\
Each token of --text is decoded as the row's own step after the prompt (forced), so the processors see the
context they would have seen had the row written the text. Printed per token: the raw model's probability and
rank, the final probability and rank under the settings (--set, as for `sweep`), and "removed" where the
settings leave the token no probability at all (they could never have produced it).

examples:
  python -m engine score --prompt "Tell me a story." --text "Once upon a time, a dragon" --set top_k=1
  python -m engine score --prompt "The capital of France is" --raw --text " Paris." --set top_p=0.5 --out s.json
"""


def add_score_parser(sub: Any) -> None:
    """The `score` subcommand's arguments (the sampling flags are those of `sweep`)."""
    p = sub.add_parser("score", help="score a given text under the raw model and a configuration",
                       description="Score every token of a text after a prompt: raw and final probability, rank, "
                                   "and whether the settings removed it.",
                       epilog=SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", required=True, help="the prompt (user message, or raw text with --raw)")
    p.add_argument("--text", required=True, help="the text to score, as the reply that follows the prompt")
    p.add_argument("--raw", action="store_true", help="feed the prompt as is, without the chat template")
    p.add_argument("--system", metavar="TEXT", help="system message for the chat template")
    p.add_argument("--set", action="extend", nargs="+", metavar="NAME=VALUE",
                   help="a parameter of the configuration, e.g. top_k=40 (repeatable)")
    p.add_argument("--seed", type=int, metavar="N", help="seed (default 0; XTC's decisions depend on it)")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="sample index (default 0)")
    p.add_argument("--out", metavar="FILE.json", help="write every token's scores and the totals as JSON")
    p.add_argument("--model", metavar="ID_OR_DIR", help="HF id, local directory or .gguf (default: bundled SmolLM2)")


def checked_inputs(args: argparse.Namespace, base: dict[str, Any]) -> tuple[SamplingParams, Path | None]:
    """The configuration and the output path, or a ParamError naming the flag or field (before any load)."""
    check_text("prompt", args.prompt)
    if not args.prompt.strip():
        raise ParamError("prompt", "a non-empty string", args.prompt)
    check_text("text", args.text)
    if args.raw and args.system:
        raise ParamError("--system", "left out with --raw (the raw prompt has no chat template)", args.system)
    if args.sample < 0:
        raise ParamError("--sample", "a whole number >= 0", args.sample)
    params = from_dict(base)
    if params.num_beams > 1:
        raise ParamError("num_beams", "1 to score a text (beam search keeps beams, not one distribution)",
                         params.num_beams)
    out = Path(args.out) if args.out else None
    if out is not None and (out.suffix.lower() != ".json" or not out.parent.is_dir()):
        raise ParamError("--out", "a .json file in an existing directory", args.out)
    return params, out


def load_for_command(model: str | None) -> Any:
    """The command line's model (a LoadedModel), or None after saying on stderr why it cannot load."""
    from . import models  # looked up at call time: tests put the session's model in its place

    print(f"loading model {model or 'bundled'} ...", file=sys.stderr)
    try:
        return models.load_model(model)
    except RuntimeError as exc:  # an environment problem (e.g. the bundled model's package is missing)
        print(f"error: {exc}", file=sys.stderr)
        return None


def run_score_command(args: argparse.Namespace, base: dict[str, Any]) -> int:
    params, out = checked_inputs(args, base)
    from .generate import Engine
    from .scoring import score_text

    loaded = load_for_command(args.model)
    if loaded is None:
        return 1
    engine = Engine(loaded)
    prompt_ids = engine.encode(args.prompt, raw=args.raw, system_prompt=args.system or None)
    scored = score_text(engine, prompt_ids, args.text, params, args.sample)
    print_scores(scored.records(), scored.summary())
    if out is not None:
        data = score_json(loaded.name, args, scored)
        try:
            out.write_text(json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"error: --out: could not write {str(out)!r}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {len(scored.token_ids)} token scores to {out}", file=sys.stderr)
    return 0


def score_json(model: str, args: argparse.Namespace, scored: Any) -> dict[str, Any]:
    from .metrics import json_safe

    return json_safe({"model": model, "prompt": args.prompt, "raw": args.raw, "system_prompt": args.system,
                      "text": args.text, "sample": args.sample, "params": scored.params.to_dict(),
                      "prompt_tokens": len(scored.prompt_ids), "summary": scored.summary(),
                      "tokens": scored.records()})


def print_scores(records: list[dict], summary: dict[str, Any]) -> None:
    """One line per token, then the totals."""
    print(f"{'#':>4}  {'token':<20} {'raw p':>9} {'final p':>9} {'raw rank':>9} {'final rank':>10}  removed")
    for i, r in enumerate(records):
        final = "0" if r["final_logprob"] is None else f"{math.exp(r['final_logprob']):.4g}"
        token = json.dumps(r["token"], ensure_ascii=False)[1:-1]
        print(f"{i:>4}  {token[:20]:<20} {math.exp(r['raw_logprob']):>9.4g} {final:>9} {r['raw_rank']:>9} "
              f"{r['final_rank']:>10}  {'removed' if r['removed'] else ''}")
    print(summary_line(summary))


def summary_line(summary: dict[str, Any]) -> str:
    """Totals in one line: log-likelihoods (nats), perplexities, removed tokens ("-inf" / "inf" when removed)."""
    final = "-inf" if summary["final_logprob"] is None else f"{summary['final_logprob']:.3f}"
    final_ppl = "inf" if summary["final_perplexity"] is None else f"{summary['final_perplexity']:.3f}"
    return (f"{summary['tokens']} tokens: log-likelihood raw {summary['raw_logprob']:.3f}, final {final} nats; "
            f"perplexity raw {summary['raw_perplexity']:.3f}, final {final_ppl}; "
            f"{summary['removed']} removed by the settings")
