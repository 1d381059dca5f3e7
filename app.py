"""Decoding Playground: load the model, build the UI, launch.

    python app.py                      # the bundled SmolLM2-135M-Instruct on http://127.0.0.1:7860
    python app.py --model DIR_OR_ID --port 8000 --share

`demo` is set by main() (hosted Spaces read it); importing this module builds nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

demo = None  # the gr.Blocks page, set by main()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python app.py", description="Decoding Playground web app.")
    ap.add_argument("--model", default=None, metavar="ID_OR_DIR",
                    help="HF id, local directory or .gguf file (default: the bundled SmolLM2-135M-Instruct)")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                    help="port (default 7860)")
    ap.add_argument("--share", action="store_true", help="also create a public share link")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    global demo
    args = parse_args(argv)

    from engine.generate import Engine
    from engine.models import load_model
    from playground import build_demo

    print(f"loading model {args.model or 'bundled'} ...", file=sys.stderr, flush=True)
    try:
        loaded = load_model(args.model)
    except (RuntimeError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    print(f"{loaded.name} on {loaded.device} ({loaded.dtype}), loaded in {loaded.load_seconds:.1f} s",
          file=sys.stderr, flush=True)
    demo = build_demo(Engine(loaded))
    _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                                          prevent_thread_lock=True, quiet=True)
    print(f"Decoding Playground running at {local_url}", flush=True)
    if share_url:
        print(f"public link: {share_url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
