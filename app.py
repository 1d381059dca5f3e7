"""Decoding Playground: load the model, build the UI, launch.

    python app.py                      # the bundled SmolLM2-135M-Instruct on http://127.0.0.1:7860
    python app.py --model DIR_OR_ID --port 8000 --share
    python app.py --max-rows 64 --max-new-tokens 512 --run-slots 2      # a hosted Space's limits (or $PLAYGROUND_*)
    python app.py --dtype bfloat16      # the weights' dtype (default auto: bf16 on a GPU, fp32 on a CPU)
    python app.py --no-model-picker    # a hosted Space: visitors load no other model (or $PLAYGROUND_NO_MODEL_PICKER=1)

`app.app` is the FastAPI application: the page at /, the OpenAI-compatible API at /v1/... beside it (for a host
that runs its own ASGI server: `uvicorn app:app`). `app.demo` is the page (a gr.Blocks, what a hosted Space looks
for); launched by a host (`app.demo.launch()`) it serves /v1 beside it too. Both are built on first access, not at
import (importing this module loads no model and builds no UI), and share one engine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Sequence

_built: dict[str, Any] = {}  # "demo" and "app", once built (on the first access to `app.demo` or `app.app`)


# What one run or request may ask for, and how many go at once: (flag, environment variable, what it bounds).
# The environment variables are for a hosted Space, which starts `python app.py` without flags.
LIMITS = (
    ("--max-rows", "PLAYGROUND_MAX_ROWS", "rows (cells x samples, or n) per run or request (default 512)"),
    ("--max-new-tokens", "PLAYGROUND_MAX_NEW_TOKENS", "new tokens per row (max_new_tokens, max_tokens; default "
                                                      "100000)"),
    ("--max-total-tokens", "PLAYGROUND_MAX_TOTAL_TOKENS", "rows x max_new_tokens per run or request (default "
                                                          "131072)"),
    ("--run-slots", "PLAYGROUND_RUN_SLOTS", "page and API runs going at once, sharing the engine step by step; "
                                            "more wait in line (default 4)"),
)


def whole_at_least_one(flag: str, env: str) -> Callable[[str], int]:
    """argparse's type for a limit: a whole number >= 1, refused naming the flag and its variable (never clamped)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1 ({flag} or ${env}), got {text!r}")
        return value
    return parse


# engine.models.DTYPE_NAMES, spelled here so that parsing the flags imports no torch (tests/test_models.py checks)
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


def dtype_name(text: str) -> str:
    """argparse's type for --dtype: refused naming the allowed values (and the variable that may have set it)."""
    if text not in DTYPE_NAMES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DTYPE_NAMES)} (--dtype or $PLAYGROUND_DTYPE), "
                                         f"got {text!r}")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python app.py", description="Decoding Playground web app.")
    ap.add_argument("--model", default=os.environ.get("PLAYGROUND_MODEL") or None, metavar="ID_OR_DIR",
                    help="HF id, local directory or .gguf file (default: $PLAYGROUND_MODEL, else the bundled "
                         "SmolLM2-135M-Instruct)")
    ap.add_argument("--dtype", default=os.environ.get("PLAYGROUND_DTYPE") or "auto", type=dtype_name,
                    help="weights' dtype: auto (bf16 on a GPU, fp32 on a CPU), float32, "
                         "bfloat16, float16; default $PLAYGROUND_DTYPE, else auto")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                    help="port (default 7860)")
    ap.add_argument("--share", action="store_true", help="also create a public share link")
    ap.add_argument("--no-model-picker", action="store_true",
                    default=os.environ.get("PLAYGROUND_NO_MODEL_PICKER", "").lower() in ("1", "true", "yes"),
                    help="hide the page's model picker (Settings > Model) and refuse draft models other than the "
                         "bundled one (assistant_model), as a hosted Space should: visitors then cannot load other "
                         "models into the server; default $PLAYGROUND_NO_MODEL_PICKER")
    ap.add_argument("--no-join", action="store_true",
                    default=os.environ.get("PLAYGROUND_NO_JOIN", "").lower() in ("1", "true", "yes"),
                    help="/v1 and the page: a request or run arriving while a batch decodes forms a batch of its "
                         "own beside it instead of joining the running batch at its next step (continuous "
                         "batching, the default); for measuring the difference; default $PLAYGROUND_NO_JOIN")
    for flag, env, bounds in LIMITS:
        ap.add_argument(flag, type=whole_at_least_one(flag, env), default=os.environ.get(env) or None, metavar="N",
                        help=f"{bounds}; default ${env}")
    return ap.parse_args(argv)


def engine_limits(args: argparse.Namespace) -> Any:
    """The engine's limits from the flags (unset ones keep the engine's defaults); a refusal names the flag and the
    variable that raise the limit."""
    from engine.generate import EngineLimits

    given, hints = {}, {}
    for flag, env, _ in LIMITS[:3]:  # the engine's three; --run-slots is the page's
        name = flag[2:].replace("-", "_")
        hints[name] = f"this server's {name}; raise it with {flag} or ${env}"
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    hints["other_models"] = "started with --no-model-picker or $PLAYGROUND_NO_MODEL_PICKER"
    return EngineLimits(**given, other_models=not args.no_model_picker, hints=hints)


def gpu_scope() -> Callable[[Callable], Callable]:
    """`spaces.GPU` on a hosted Space with on-demand GPUs (the package exists there); elsewhere a no-op."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return lambda fn: fn
    return spaces.GPU


def load_engine(model: str | None = None, dtype: str = "auto") -> Any:
    """Load the model (exits with a readable message if it cannot be loaded)."""
    from engine.generate import Engine
    from engine.models import load_model

    print(f"loading model {model or 'bundled'} ...", file=sys.stderr, flush=True)
    try:
        loaded = load_model(model, dtype=dtype)
    except (RuntimeError, ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")
    print(f"{loaded.name} on {loaded.device} ({loaded.dtype}), loaded in {loaded.load_seconds:.1f} s",
          file=sys.stderr, flush=True)
    return Engine(loaded)


def server_engine(model: str | None, args: argparse.Namespace) -> Any:
    """The loaded engine with the server's limits (the flags, else the environment, else the engine's defaults)."""
    engine = load_engine(model, args.dtype)
    engine.limits = engine_limits(args)
    return engine


def loading_engine(model: str | None, args: argparse.Namespace) -> Any:
    """server_engine's engine, loading in a thread from now on: the page is built and served meanwhile (every use
    of the engine waits for the model). If the model cannot be loaded, the process exits as load_engine does: the
    message on stderr, status 1."""
    from engine.models import model_name
    from engine.switching import SwitchableEngine

    def failed(exc: Exception) -> None:
        message = str(exc)
        print(message if message.startswith("error: ") else f"error: {message}", file=sys.stderr, flush=True)
        os._exit(1)  # from the loading thread: sys.exit would end only the thread

    return SwitchableEngine.loading(model_name(model), lambda: server_engine(model, args), failed)


def build(model: str | None = None) -> Any:
    """The page, the /v1 routes of the same engine in it (served beside it however it is served); limits and run
    slots from the environment (a host that imports the module passes no flags)."""
    without_gradio_stub_writer()
    from playground.server import build_page

    scope = gpu_scope()  # first: the `spaces` package wants to be imported before torch touches a GPU
    args = parse_args([])
    return build_page(server_engine(model, args), device_scope=scope, model_picker=not args.no_model_picker,
                      join=not args.no_join, **run_slots(args))


def run_slots(args: argparse.Namespace) -> dict[str, int]:
    """build_page's run_slots when one was given (else its default)."""
    return {"run_slots": args.run_slots} if args.run_slots is not None else {}


def __getattr__(name: str) -> Any:
    """`app.demo` (the page) and `app.app` (FastAPI: the page at /, /v1 beside it), built on first access with the
    default model (or $PLAYGROUND_MODEL); both hold the same page, so one engine serves them."""
    if name not in ("demo", "app"):
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    if "demo" not in _built:
        _built["demo"] = build(os.environ.get("PLAYGROUND_MODEL"))
    if name == "app" and "app" not in _built:
        from playground.server import create_app

        _built["app"] = create_app(_built["demo"])
    return _built[name]


def without_ipython() -> None:
    """Gradio imports IPython (~0.3 s on a 2-core CPU) for its notebook magics, and its launch() asks IPython whether
    it runs in a notebook; `python app.py` never does. Marking IPython absent (as Python's import system reads a None
    entry) makes both find out at once. Not done when IPython is already loaded (e.g. `%run app.py` in IPython)."""
    sys.modules.setdefault("IPython", None)  # type: ignore[arg-type]


class _NoStubWriter:
    """A meta-path finder that loads gradio.component_meta as usual, then makes its create_or_modify_pyi a no-op.

    Gradio's ComponentMeta calls create_or_modify_pyi for every component class it defines at import: it reads the
    class's source file, parses it with ast, renders the type-stub template (Jinja) and compares it with the .pyi
    beside it, writing it when it differs. It keeps the stubs of Gradio's own source tree in step while Gradio is
    developed; an installed Gradio ships them, and nothing reads them at run time. It was about 35% of importing
    gradio (8.4-11.1 s before, 5.1-7.2 s after, three runs each at load 10 on 2 cores)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "gradio.component_meta":
            return None
        import importlib.machinery

        sys.meta_path.remove(self)  # once: the real finder from here on
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_skip(module: Any) -> None:
            exec_module(module)
            if hasattr(module, "create_or_modify_pyi"):
                module.create_or_modify_pyi = lambda *args, **kwargs: None

        spec.loader.exec_module = exec_then_skip  # type: ignore[method-assign]
        return spec


def without_gradio_stub_writer() -> None:
    """Install _NoStubWriter before gradio is first imported (not at all once it is: its classes are made)."""
    if "gradio.component_meta" not in sys.modules and not any(isinstance(f, _NoStubWriter) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoStubWriter())


def main(argv: Sequence[str] | None = None) -> None:
    started = time.perf_counter()
    args = parse_args(argv)
    without_ipython()
    without_gradio_stub_writer()
    from playground.server import launch_app

    # the page's own launch(), /v1 beside it: see playground/server.py for why launch() rather than uvicorn
    scope = gpu_scope()
    demo, local_url, share_url = launch_app(loading_engine(args.model, args), args.host, args.port, args.share,
                                            scope, model_picker=not args.no_model_picker, join=not args.no_join,
                                            **run_slots(args))
    print(f"Decoding Playground running at {local_url} (started in {time.perf_counter() - started:.1f} s); "
          f"OpenAI-compatible API at {local_url}v1", flush=True)
    if share_url:
        print(f"public link: {share_url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
