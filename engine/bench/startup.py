"""How long `python app.py` takes to print its URL: `python -m engine.bench.startup`.

Starts `python app.py --host 127.0.0.1 --port N` as its own process (cached weights: run the app once first so
the bundled model's cache exists), times from just before the process starts to the line on its stdout that
names the URL, checks that the page and /v1/models then answer, and stops it. Repeats and prints the median.
A benchmark, not a test: the figure depends on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .app_process import ROOT, free_port

URL_LINE = "Decoding Playground running at"


def time_to_url(model: str | None = None, timeout: float = 300, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """(seconds to the printed URL, seconds until /v1/models answered 200) for one fresh `python app.py`."""
    port = free_port()
    command = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), *extra]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
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
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.startup", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="as app.py's --model (default: the bundled model)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    to_url, to_api = [], []
    for i in range(args.repeats):
        url_s, api_s = time_to_url(args.model)
        to_url.append(url_s)
        to_api.append(api_s)
        print(f"run {i + 1}: URL printed after {url_s:.2f} s, /v1/models answered after {api_s:.2f} s", flush=True)
    print(f"python app.py, {Path(sys.executable).name}: URL printed median {statistics.median(to_url):.2f} s, "
          f"/v1/models answered median {statistics.median(to_api):.2f} s (n={args.repeats})")


if __name__ == "__main__":
    main()
