"""The load test (`python -m engine.bench.load`) run tiny: it starts the app, answers every request, and its
JSON summary holds every figure the README quotes. Not a timing test: only counts and orders of magnitude."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--clients", "3", "--rounds", "2", "--requests", "3", "--sweeps", "2", "--short-tokens", "3",
        "--long-tokens", "12"]


@pytest.mark.model  # the subprocess starts the app on the bundled model
def test_the_load_test_runs_tiny_without_errors():
    done = subprocess.run([sys.executable, "-m", "engine.bench.load", *TINY], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["errors"] == 0
    together = summary["concurrency"]
    assert together["requests"] == 6 and together["errors"] == 0
    assert together["seeded"] >= 1 and together["seeded_mismatches"] == 0
    assert 0 < together["short_p50_s"] <= together["short_p95_s"] and together["long_run_s"] > 0
    leaving = summary["disconnect"]
    # the first request after leaving may join the abandoned run's batch (rows join running batches) before the
    # server has noticed the client left; the next one must find that row gone, and run alone
    assert leaving["error"] is None and leaving["next_batch_rows"] in (1, 2) and leaving["later_batch_rows"] == 1
    # had the abandoned run kept decoding, the next request would have waited for all its 48 steps
    assert leaving["delay_s"] < leaving["abandoned_max_tokens"] * leaving["step_s"] / 2
    series = summary["memory"]["rss_series"]
    assert series[0] == {"requests": 0, "sweeps": 0, "rss_mb": series[0]["rss_mb"]} and series[0]["rss_mb"] > 0
    assert series[-1]["requests"] == 3 and series[-1]["sweeps"] == 2
    assert summary["memory"]["rss_growth_mb"] == pytest.approx(series[-1]["rss_mb"] - series[0]["rss_mb"], abs=0.11)
