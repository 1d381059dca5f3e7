"""The app as its own process, for benchmarks that measure it over real HTTP (the engine never imports the UI).

    with running_app() as url:      # `python app.py --host 127.0.0.1 --port N` on a free port N
        httpx.get(url + "v1/models")
"""
from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

import httpx

ROOT = Path(__file__).resolve().parents[2]  # the repository root, where app.py lives


class AppNotServing(RuntimeError):
    """The app exited, or did not answer in time; the message ends with the tail of its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RunningApp:
    url: str  # "http://127.0.0.1:N/"
    pid: int  # the app's process, for what only the operating system sees (its memory: /proc/<pid>/status)


@contextmanager
def running_app(model: str | None = None, start_timeout: float = 600, flags: Sequence[str] = ()) -> Iterator[str]:
    """Start `python app.py` on a free port, wait until its page and its /v1 API both answer, yield its URL
    ("http://127.0.0.1:N/"), and stop it afterwards. flags: more of app.py's flags (e.g. --no-join)."""
    with app_process(model, start_timeout, flags) as app:
        yield app.url


@contextmanager
def app_process(model: str | None = None, start_timeout: float = 600, flags: Sequence[str] = ()) -> Iterator[RunningApp]:
    """running_app, yielding the URL and the process id. The app's own output goes to a temporary log, shown
    when the app does not come up."""
    port = free_port()
    command = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)]
    if model:
        command += ["--model", model]
    command += list(flags)
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        print(f"[bench] starting {' '.join(command[1:])}", file=sys.stderr, flush=True)
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_until_serving(process, url, start_timeout, log)
            print(f"[bench] app ready at {url} after {time.perf_counter() - started:.1f} s", file=sys.stderr,
                  flush=True)
            yield RunningApp(url, process.pid)
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """Terminate, give it 30 s to exit cleanly, then kill."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_serving(process: subprocess.Popen, url: str, timeout: float, log: IO[str]) -> None:
    """Poll the page and /v1/models until both answer 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AppNotServing(f"the app exited with status {process.returncode} before serving:\n{_tail(log)}")
        try:
            if all(httpx.get(url + path, timeout=5).status_code == 200 for path in ("", "v1/models")):
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise AppNotServing(f"the app did not answer at {url} within {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.5)  # polling interval between two checks, not a wait for anything in particular


def _tail(log: IO[str], lines: int = 30) -> str:
    log.flush()
    log.seek(0)
    return "".join(log.readlines()[-lines:])
