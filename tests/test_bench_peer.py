"""The reference benchmark's llama.cpp column: the report and JSON summary with and without a llama.cpp timing
(pure functions on made-up timings), and a run that names the missing module instead of failing. Nothing here
needs llama_cpp (no project dependency)."""
from __future__ import annotations

import json
import sys

import pytest

from engine.bench import llamacpp_peer
from engine.bench.reference import METHODS, Timing, figures, parse_args, report

ROWS, TOKENS = 36, 64
EXPECTED = ROWS * TOKENS


def fake_timings(names: tuple[str, ...]) -> dict[str, Timing]:
    """Made-up seconds: engine 8 s, engine+trace 10 s, llama.cpp 6 s, forward 5 s, baseline 40 s (medians)."""
    seconds = {"baseline": [40.0, 41.0, 39.0], "generate-batch": [12.0] * 3, "engine": [8.0, 7.0, 9.0],
               "engine+trace": [10.0] * 3, "llama.cpp": [6.0, 6.5, 5.5], "forward": [5.0] * 3}
    share = {"engine": [0.6] * 3, "engine+trace": [0.5] * 3}
    return {n: Timing(seconds[n], EXPECTED, share.get(n, [])) for n in names}


def summary_of(timings: dict[str, Timing], note: str | None = None) -> dict:
    info = {"command": "python -m engine.bench", "model": "m", "device": "cpu", "dtype": "float32", "torch": "t",
            "transformers": "x", "python": "3", "threads": 2, "prompt_tokens": 38, "rows": ROWS,
            "tokens_per_row": TOKENS, "repeats": 3, "trace_top_n": 10, "grid": "3x3", "gpu": None,
            "llamacpp": "0.3.36" if "llama.cpp" in timings else None, "llamacpp_note": note}
    return info | figures(timings, EXPECTED)


def test_llamacpp_column_and_ratios_in_the_summary_and_the_report():
    summary = summary_of(fake_timings(METHODS))
    assert list(summary["methods"]) == list(METHODS)
    assert summary["methods"]["llama.cpp"]["tokens_per_s"] == pytest.approx(EXPECTED / 6.0)
    assert summary["engine_vs_llamacpp"] == pytest.approx(6.0 / 8.0)  # tokens/s ratio = inverse seconds ratio
    assert summary["engine_trace_vs_llamacpp"] == pytest.approx(6.0 / 10.0)
    assert summary["engine_vs_baseline"] == pytest.approx(40.0 / 8.0)
    json.dumps(summary)  # what --json writes
    text = report(summary)
    assert "| llama.cpp | 6.000 | 384.0 | 6.67 |" in text.splitlines()
    assert ("engine / llama.cpp (tokens/s): 0.75x trace off, 0.60x trace on (top 10); goal >= 1.50x off, "
            ">= 1.25x on (llama-cpp-python 0.3.36)") in text.splitlines()
    assert "engine / baseline (tokens/s): 5.00x trace off, 4.00x trace on (top 10)" in text.splitlines()


def test_without_llamacpp_the_report_says_why_and_has_no_ratio():
    names = tuple(m for m in METHODS if m != "llama.cpp")
    summary = summary_of(fake_timings(names), llamacpp_peer.missing_line())
    assert "llama.cpp" not in summary["methods"]
    assert summary["engine_vs_llamacpp"] is None and summary["engine_trace_vs_llamacpp"] is None
    lines = report(summary).splitlines()
    assert not any(line.startswith("| llama.cpp") or line.startswith("engine / llama.cpp") for line in lines)
    assert llamacpp_peer.missing_line() in lines and "'llama_cpp'" in llamacpp_peer.missing_line()


def test_a_subset_without_baseline_leaves_its_ratios_out():
    summary = summary_of(fake_timings(("engine", "engine+trace", "llama.cpp", "forward")))
    assert summary["engine_vs_baseline"] is None
    assert all(row["x_baseline"] is None for row in summary["methods"].values())
    text = report(summary)
    assert "| engine | 8.000 | 288.0 | n/a |" in text.splitlines()
    assert "engine / baseline" not in text
    assert "forward share of engine time: floor 62% trace off, 50% trace on" in text


def test_methods_flag():
    assert parse_args([]).methods == METHODS
    assert parse_args(["--methods", "engine, llama.cpp"]).methods == ("engine", "llama.cpp")
    with pytest.raises(SystemExit):
        parse_args(["--methods", "engine,llamacpp"])


@pytest.mark.model  # the benchmark loads the bundled model itself
def test_the_benchmark_names_the_missing_module_and_goes_on(monkeypatch, capsys):
    from engine.bench import reference

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    assert not llamacpp_peer.available()
    reference.main(["--methods", "engine,llama.cpp", "--tokens", "2", "--repeats", "1", "--samples", "1"])
    out, err = capsys.readouterr()
    assert llamacpp_peer.missing_line() in out.splitlines() and llamacpp_peer.missing_line() in err
    assert "| engine |" in out and "| llama.cpp |" not in out


@pytest.mark.parametrize("script, expected", [
    ("exit 0", None),
    ("kill -ILL $$", "a 2-row probe in a child process failed: it died of SIGILL (an instruction this CPU lacks"),
    ("echo 'OSError: libllama.so: cannot open' >&2; exit 3",
     "failed: it exited with status 3: OSError: libllama.so: cannot open"),
])
def test_a_crashing_llamacpp_library_is_probed_in_a_child_process(tmp_path, monkeypatch, script, expected):
    """A llama.cpp wheel built for another CPU dies of SIGILL inside llama_decode: the benchmark probes it in a
    child process (here a stand-in interpreter that behaves like the three outcomes) and prints why, instead of
    dying with it."""
    child = tmp_path / "python"
    child.write_text(f"#!/bin/bash\n{script}\n")
    child.chmod(0o755)
    monkeypatch.setattr(llamacpp_peer.sys, "executable", str(child))
    failure = llamacpp_peer.probe_failure(tmp_path / "m.gguf", [1, 2, 3], 2)
    if expected is None:
        assert failure is None
    else:
        assert failure is not None and failure.startswith("llama.cpp: not measured (") and expected in failure
