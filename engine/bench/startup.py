"""How long `python app.py` takes to print its URL: `python -m engine.bench.startup`.

Starts `python app.py --host 127.0.0.1 --port N` as its own process (cached weights: run the app once first so
the bundled model's cache exists), times from just before the process starts to the line on its stdout that
names the URL, checks that the page and /v1/models then answer, and stops it. Repeats and prints the median.
A benchmark, not a test: the figure depends on the machine and on what else runs on it.

    python -m engine.bench.startup --compare DIR   # also DIR/app.py (e.g. an earlier commit's files, from
                                                   # `git archive COMMIT | tar -x -C DIR`), runs interleaved
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .app_process import ROOT, free_port, stop_process

URL_LINE = "Decoding Playground running at"


def time_to_url(model: str | None = None, root: Path = ROOT, timeout: float = 300) -> tuple[float, float]:
    """(seconds to the printed URL, seconds until /v1/models answered 200) for one fresh `python ROOT/app.py`."""
    port = free_port()
    command = [sys.executable, str(root / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               bufsize=1)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the URL line is printed with flush=True
            if URL_LINE in line:
                to_url = time.perf_counter() - started
                break
        else:
            raise RuntimeError(f"app.py exited with status {process.wait()} before printing its URL")
        url = f"http://127.0.0.1:{port}/"
        while time.perf_counter() - started < timeout:
            if httpx.get(url + "v1/models", timeout=timeout).status_code == 200:
                return to_url, time.perf_counter() - started
            time.sleep(0.05)  # the model is still loading: poll again
        raise RuntimeError(f"/v1/models did not answer 200 within {timeout:.0f} s")
    finally:
        stop_process(process)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.startup", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="as app.py's --model (default: the bundled model)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", type=Path, default=None, metavar="DIR",
                    help="another checkout whose app.py runs too, alternating with this one")
    args = ap.parse_args()
    roots = {"this checkout": ROOT, **({f"{args.compare}": args.compare.resolve()} if args.compare else {})}
    to_url: dict[str, list[float]] = {name: [] for name in roots}
    to_api: dict[str, list[float]] = {name: [] for name in roots}
    for i in range(args.repeats):
        for name, root in roots.items():
            url_s, api_s = time_to_url(args.model, root)
            to_url[name].append(url_s)
            to_api[name].append(api_s)
            print(f"run {i + 1}, {name}: URL printed after {url_s:.2f} s, /v1/models answered after {api_s:.2f} s",
                  flush=True)
    for name in roots:
        print(f"{name}: python app.py printed its URL after median {statistics.median(to_url[name]):.2f} s, "
              f"/v1/models answered after median {statistics.median(to_api[name]):.2f} s (n={args.repeats})")
    if args.compare:
        ratio = statistics.median(to_url[str(args.compare)]) / statistics.median(to_url["this checkout"])
        print(f"{args.compare} / this checkout (time to URL): {ratio:.2f}x")


if __name__ == "__main__":
    main()
