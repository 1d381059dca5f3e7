"""Command line: run a parameter sweep as one batch and save every sample, or score a given text.

    python -m engine sweep --prompt "Tell me a story." --axis temperature=0.3,1.0 --axis top_p=0.5,1.0 \\
        --samples 2 --max-new-tokens 32 --out runs/story.json
    python -m engine score --prompt "Tell me a story." --text "Once upon a time" --set top_k=1 (engine/score_cli.py)

Everything is validated (and bad input answered with `error: ...`, exit status 2) before the model loads.
Heavy imports (torch, transformers, pandas) happen only once the input is known to be good.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .decoding_modes import MODE_NAMES
from .errors import ParamError
from .params import FIELD_NAMES, from_dict

from .score_cli import add_score_parser, load_for_command, run_score_command
from .sweepspec import AXIS_NAMES, Axis, SweepSpec
from .values import parse_axis_values, parse_value

OUT_FORMATS = (".json", ".csv", ".parquet")
TABLE_METRICS = ("num_tokens", "distinct_2", "mean_logprob", "perplexity")
TEXT_WIDTH = 60

EPILOG = """\
values:
  --set NAME=VALUE   VALUE is parsed as JSON when it parses (0.7, 40, true, ["a","b"], {"the": -5}),
                     otherwise taken as a plain string. stop / bad_words take a JSON list or one string
                     (--set stop=.  or  --set 'stop=["\\n", "."]'); order takes "a>b>c" or a JSON list
                     (a partial order permutes just the named processors). Repeat --set or give several.
  --axis NAME=V1,V2  values split on commas outside brackets and quotes; each is parsed like --set;
                     numeric ranges START:STOP:STEP (stop included) may stand for values.
                     --axis temperature=0.3,0.7,1.0     --axis top_p=0.5:1.0:0.25
                     --axis order=temperature>min_p,min_p>temperature
                     --axis 'stop=["\\n"],["."]'   (one JSON list per value)
                     --axis 'prompt="Write a story, please.","Explain how vaccines work."'
                     (prompt and system_prompt are axes too: quote a prompt that holds a comma; with a
                     prompt axis, --prompt may be left out)
                     --axis decoding_mode=greedy,beam_search,contrastive   (named groups of knobs,
                     engine/decoding_modes.py: """ + ", ".join(MODE_NAMES) + """;
                     each cell lays its mode's knobs over the --set values; constrained_beams takes
                     force_words from them; another axis may not vary a knob a mode decides)
                     At most 3 axes; every cell decodes `--samples` times, all rows in one batch.
  --max-new-tokens / --seed are short for --set max_new_tokens= / --set seed=.
  Seeds: every cell uses the base seed, so sample i of every cell draws the same random numbers and cells
  often start alike (differences come from the parameters). --independent-seeds gives each cell its own
  seed, a hash of the base seed and the cell's axis values (reproducible; records carry each cell's seed).
  Values are never clamped or rounded: one outside its field's range (temperature=-1, top_p=2, top_k=2.7),
  a name given twice with different values, or an unknown name is refused with `error: FIELD: ...` and exit 2.

fields: prompt, system_prompt, decoding_mode (axes only), """ + ", ".join(FIELD_NAMES) + """

output:
  --out FILE.json     {"spec", "model", ..., "samples": [one record per sample: cell, axis_* values, every
                      parameter, sample, seed, text, finish_reason, token_ids, logprobs (raw model, nats),
                      metrics]}; no NaN (undefined metrics are null). --trace-top-n N adds a per-step trace.
  --out FILE.csv      the same records as a table; list/dict values (token_ids, logprobs, stop, order, ...)
  --out FILE.parquet  are JSON strings.
  no --out            a compact table on stdout.

examples:
  python -m engine sweep --prompt "Write a haiku." --axis temperature=0.5,1.0 --samples 3
  python -m engine sweep --prompt "Once upon a time" --raw --set top_k=40 --set min_p=0.05 --out run.csv
"""


# -- parsing ---------------------------------------------------------------------------------------------

def split_assignment(text: str, flag: str, example: str, names: tuple[str, ...] = FIELD_NAMES) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParamError(flag, f"NAME=VALUE (e.g. {flag} {example})", text)
    if name not in names:
        raise ParamError(f"{flag} {name}", f"one of the known fields ({', '.join(names)})", name)
    return name, value


def base_values(args: argparse.Namespace) -> dict[str, Any]:
    """The --set NAME=VALUE assignments (and --max-new-tokens / --seed), each name at most one value."""
    base: dict[str, Any] = {}
    for item in args.set or []:
        name, value = split_assignment(item, "--set", "temperature=0.7")
        given = parse_value(name, value)
        if name in base and base[name] != given:  # neither value silently wins
            raise ParamError(f"--set {name}", "given once (or twice with the same value)", [base[name], given])
        base[name] = given
    for flag, name, given in (("--max-new-tokens", "max_new_tokens", getattr(args, "max_new_tokens", None)),
                              ("--seed", "seed", args.seed)):
        if given is not None:
            if name in base and base[name] != given:
                raise ParamError(flag, f"the same as --set {name} when both are given", [base[name], given])
            base[name] = given
    return base


def build_spec(args: argparse.Namespace) -> SweepSpec:
    """The validated SweepSpec of the command line (raises ParamError naming the field)."""
    base = base_values(args)
    axes = []
    for item in args.axis or []:
        name, values = split_assignment(item, "--axis", "temperature=0.3,1.0", AXIS_NAMES)
        axes.append(Axis(name, parse_axis_values(name, values)))
    if args.raw and args.system:
        raise ParamError("--system", "left out with --raw (the raw prompt has no chat template)", args.system)
    return SweepSpec(prompt=args.prompt, base=from_dict(base), axes=tuple(axes), samples=args.samples,
                     raw=args.raw, system_prompt=args.system or None, independent_seeds=args.independent_seeds,
                     prefix=cli_prefixes(args.prefix, args.samples))


def cli_prefixes(given: list[str] | None, samples: int) -> tuple[str | tuple[int, ...], ...]:
    """--prefix, once for every sample or once per sample: a text, or token ids written `ids:1,2,3`."""
    if not given:
        return ()
    if len(given) not in (1, samples):
        raise ParamError("--prefix", f"given once (every sample) or once per sample ({samples})", len(given))
    items: list[str | tuple[int, ...]] = []
    for item in given:
        if item.startswith("ids:"):
            try:
                items.append(tuple(int(t) for t in item[len("ids:"):].split(",") if t.strip()))
            except ValueError:
                raise ParamError("--prefix", "token ids written ids:1,2,3", item) from None
        else:
            items.append(item)
    return tuple(items) * (samples if len(items) == 1 else 1)


def check_out(path: str | None) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() not in OUT_FORMATS:
        raise ParamError("--out", f"a file name ending in {', '.join(OUT_FORMATS)}", path)
    if not out.parent.is_dir():
        raise ParamError("--out", "a file in an existing directory", path)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Decoding playground engine.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("sweep", help="run a grid of decoding parameters as one batch",
                       description="Decode every cell of a parameter grid (x samples) in one batch and save "
                                   "text, tokens, logprobs and metrics per sample.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="", help="the prompt (user message, or raw text with --raw); "
                                                "required unless a prompt axis gives the prompts")
    p.add_argument("--raw", action="store_true", help="feed the prompt as is, without the chat template")
    p.add_argument("--system", metavar="TEXT", help="system message for the chat template")
    p.add_argument("--set", action="extend", nargs="+", metavar="NAME=VALUE",
                   help="a base parameter, e.g. temperature=0.7 (repeatable)")
    p.add_argument("--axis", action="extend", nargs="+", metavar="NAME=V1,V2,...",
                   help="a sweep axis, e.g. top_p=0.5,0.9,1.0 (repeatable, at most 3)")
    p.add_argument("--samples", type=int, default=1, metavar="N", help="samples per cell (default 1)")
    p.add_argument("--prefix", action="append", metavar="TEXT",
                   help="forced first tokens (branch / edit and continue): a text, or ids:1,2,3; once for every "
                        "sample, or once per sample in order")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="new tokens per sample (default 64)")
    p.add_argument("--seed", type=int, metavar="N", help="base seed (default 0)")
    p.add_argument("--independent-seeds", action="store_true",
                   help="give each cell its own seed, derived from --seed and the cell's axis values (default: every "
                        "cell uses --seed, so sample i of every cell draws the same random numbers)")
    p.add_argument("--out", metavar="FILE", help="write FILE.json, FILE.csv or FILE.parquet")
    p.add_argument("--model", metavar="ID_OR_DIR", help="HF id, local directory or .gguf (default: bundled SmolLM2)")
    p.add_argument("--trace-top-n", type=int, default=0, metavar="N",
                   help="keep a per-step, per-processor trace with the top N tokens (JSON output; default 0 = off)")
    p.add_argument("--max-rows", type=int, metavar="N", help="refuse runs with more rows (default: engine limit)")
    p.add_argument("--max-total-tokens", type=int, metavar="N",
                   help="refuse runs asking for more new tokens in all (default: engine limit)")
    add_score_parser(sub)
    return parser


# -- output ----------------------------------------------------------------------------------------------

def print_table(df: "Any") -> None:
    import pandas as pd

    cols = ["cell", *[c for c in df.columns if c.startswith("axis_")], "sample",
            *[c for c in TABLE_METRICS if c in df.columns], *(["beam_score"] if "beam_score" in df.columns else []),
            *[c for c in ("acceptance_rate", "target_forwards") if c in df.columns],
            "finish_reason", "text"]
    table = df[cols].copy()
    table["text"] = table["text"].map(lambda t: _short(t, TEXT_WIDTH))
    for col in cols:
        if col.startswith("axis_"):
            table[col] = table[col].map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250,
                           "display.float_format", "{:.3f}".format, "display.max_colwidth", TEXT_WIDTH + 5):
        print(table.to_string(index=False, na_rep="-"))


def _short(text: str, width: int) -> str:
    text = text.replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def write_output(result: Any, out: Path, model_name: str, trace_top_n: int) -> None:
    from .metrics import flat_frame, json_safe

    if out.suffix.lower() == ".json":
        data = result.to_json_dict()
        data = {"model": model_name, **data}
        trace = result.generation.trace
        if trace is not None:
            for i, record in enumerate(data["samples"]):
                record["trace"] = {"stages": ["raw", *result.rows[i].params.order],
                                   **trace.row(i, len(record["token_ids"]))}
        text = json.dumps(json_safe(data), ensure_ascii=False, indent=1, allow_nan=False)
        out.write_text(text + "\n", encoding="utf-8")
        return
    if trace_top_n > 0:
        print("note: the trace is only written to JSON output", file=sys.stderr)
    df = flat_frame(result.dataframe())
    if out.suffix.lower() == ".csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, engine="pyarrow", index=False)


# -- running ---------------------------------------------------------------------------------------------

def run_sweep_command(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    out = check_out(args.out)
    if args.trace_top_n < 0:
        raise ParamError("--trace-top-n", "a whole number >= 0", args.trace_top_n)

    from tqdm import tqdm

    from .events import BeamProgress
    from .generate import Engine, EngineLimits
    from .sweep import progress_steps, stream_sweep

    defaults = EngineLimits()
    max_rows = args.max_rows if args.max_rows is not None else defaults.max_rows
    max_total_tokens = args.max_total_tokens if args.max_total_tokens is not None else defaults.max_total_tokens
    for flag, value in (("--max-rows", max_rows), ("--max-total-tokens", max_total_tokens)):
        if value < 1:  # named by its flag here (EngineLimits would name its field)
            raise ParamError(flag, "a whole number >= 1", value)
    limits = EngineLimits(max_rows=max_rows, max_total_tokens=max_total_tokens,
                          hints={"max_rows": "max_rows; raise it with --max-rows",
                                 "max_total_tokens": "max_total_tokens; raise it with --max-total-tokens"})
    limits.check([r.params for r in spec.rows()])
    rows = spec.rows()

    loaded = load_for_command(args.model)
    if loaded is None:
        return 1
    if args.trace_top_n > loaded.vocab_size:
        raise ParamError("--trace-top-n", f"a whole number in [0, {loaded.vocab_size}] (the vocabulary size)",
                         args.trace_top_n)
    print(f"{loaded.name} on {loaded.device} ({loaded.load_seconds:.1f} s); {len(spec.cells())} cells x "
          f"{spec.samples} samples = {len(rows)} rows in one batch", file=sys.stderr)
    engine = Engine(loaded, limits)

    running = len(rows)
    result = None
    with tqdm(total=progress_steps(rows), file=sys.stderr, desc="decoding",
              unit="step", dynamic_ncols=True) as bar:
        bar.set_postfix(running=running)
        for update, result in stream_sweep(engine, spec, trace_top_n=args.trace_top_n):
            beam_step = isinstance(update, BeamProgress)  # a step of a beam batch (its outputs come at the end)
            if beam_step:
                bar.set_description("beam search", refresh=False)
            running = 0 if result is not None else running if beam_step else running - len(update.finished)
            bar.set_postfix(running=running, refresh=False)
            if result is None or update.rows:  # the mixed sweep's last update carries the result, not a step
                bar.update(1)
    assert result is not None
    gen = result.generation
    print(f"{gen.generated_tokens} tokens in {gen.seconds:.2f} s "
          f"({gen.generated_tokens / max(gen.seconds, 1e-9):.1f} tokens/s)", file=sys.stderr)

    if out is None:
        print_table(result.dataframe())
        print("hint: add --out FILE.json (or .csv, .parquet) to keep every sample's tokens, logprobs and metrics",
              file=sys.stderr)
    else:
        try:
            write_output(result, out, loaded.name, args.trace_top_n)
        except OSError as exc:
            print(f"error: --out: could not write {str(out)!r}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {len(rows)} samples to {out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse errors exit 2 with a usage line
    try:
        if args.command == "sweep":
            return run_sweep_command(args)
        if args.command == "score":
            return run_score_command(args, base_values(args))
        parser.error(f"unknown command {args.command!r}")
    except (ParamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
