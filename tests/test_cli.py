"""`python -m engine sweep` as a real subprocess on the bundled model (short outputs), plus its value parsing."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from engine.__main__ import main
from engine.values import parse_value, split_values
from engine.models import LoadedModel

from assertions import assert_logprobs

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Name three colours."
GRID = ["--prompt", PROMPT, "--axis", "temperature=0.7,1.2", "--axis", "top_p=0.5,1.0",
        "--samples", "2", "--max-new-tokens", "8", "--seed", "3"]
CELLS = [(0.7, 0.5), (0.7, 1.0), (1.2, 0.5), (1.2, 1.0)]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "sweep", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The 2x2 x 2-sample sweep through the real command line, written as JSON."""
    out = tmp_path_factory.mktemp("cli") / "grid.json"
    proc = cli(*GRID, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture
def in_process(bundled: LoadedModel, monkeypatch: pytest.MonkeyPatch):
    """main() in this process with the session's model (a subprocess per format would cost ~10 s each)."""
    monkeypatch.setattr("engine.models.load_model", lambda *a, **k: bundled)
    return lambda *args: main(["sweep", *args])


@pytest.mark.model  # json_run runs the real command line, which loads the bundled model
def test_json_records(json_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    path, proc = json_run
    raw_text = path.read_text(encoding="utf-8")
    assert "NaN" not in raw_text and "Infinity" not in raw_text
    data = json.loads(raw_text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["spec"]["prompt"] == PROMPT and data["spec"]["samples"] == 2
    samples = data["samples"]
    assert len(samples) == 8
    for i, rec in enumerate(samples):
        temp, top_p = CELLS[i // 2]
        assert rec["cell"] == i // 2 and rec["sample"] == i % 2
        assert rec["axis_temperature"] == rec["temperature"] == temp
        assert rec["axis_top_p"] == rec["top_p"] == top_p
        assert rec["seed"] == 3 and rec["max_new_tokens"] == 8
        assert isinstance(rec["text"], str) and rec["finish_reason"] in ("length", "stop")
        assert 1 <= len(rec["token_ids"]) <= 8
        assert len(rec["logprobs"]) == len(rec["token_ids"]) == rec["num_tokens"]
        assert_logprobs(rec["logprobs"], f"sample {i}")
        for key in ("distinct_1", "distinct_2", "repeated_4gram_rate", "mean_logprob", "perplexity",
                    "mean_entropy", "cell_diversity"):
            assert key in rec
        assert rec["mean_logprob"] == pytest.approx(sum(rec["logprobs"]) / len(rec["logprobs"]))
    # the progress bar and the summary went to stderr
    assert "decoding" in proc.stderr and "running=" in proc.stderr and "/8" in proc.stderr
    assert "wrote 8 samples" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_table_outputs_match_json(json_run: tuple, in_process, tmp_path: Path, ext: str) -> None:
    expected = pd.DataFrame(json.loads(json_run[0].read_text(encoding="utf-8"))["samples"])
    path = tmp_path / f"grid.{ext}"
    assert in_process(*GRID, "--out", str(path)) == 0
    df = pd.read_csv(path) if ext == "csv" else pd.read_parquet(path)
    assert len(df) == 8 and list(df["cell"]) == list(expected["cell"]) and list(df["sample"]) == list(expected["sample"])
    assert list(df["axis_temperature"]) == list(expected["axis_temperature"])
    assert list(df["axis_top_p"]) == list(expected["axis_top_p"])
    # same seeds, same tokens (another process, same result); lists round-trip as JSON strings
    assert [json.loads(t) for t in df["token_ids"]] == list(expected["token_ids"])
    for got, want in zip(df["logprobs"], expected["logprobs"]):
        assert json.loads(got) == pytest.approx(want, abs=1e-5)
    assert [json.loads(o) for o in df["order"]] == list(expected["order"])
    assert [json.loads(s) for s in df["stop"]] == [[]] * 8
    assert list(df["text"].fillna("")) == list(expected["text"])
    assert list(df["perplexity"]) == pytest.approx(list(expected["perplexity"]), rel=1e-4)


def test_raw_prompt_and_table(in_process, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--prompt", "The capital of France is", "--raw", "--set", "temperature=0", "--max-new-tokens", "4"]
    out = tmp_path / "raw.json"
    assert in_process(*args, "--out", str(out)) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["spec"]["raw"] is True
    assert data["prompt_token_count"] < 10  # the chat template would add a system prompt and markers
    assert len(data["samples"]) == 1 and data["samples"][0]["temperature"] == 0.0
    capsys.readouterr()
    # without --out: a compact table on stdout, the hint on stderr (same greedy text)
    assert in_process(*args) == 0
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0].split()
    assert header[:2] == ["cell", "sample"] and "perplexity" in header and header[-1] == "text"
    assert data["samples"][0]["text"].strip()[:20] in captured.out
    assert "--out" in captured.err


def test_prefix_branches_and_continues_an_edit(in_process, tmp_path: Path) -> None:
    base = ["--prompt", PROMPT, "--set", "temperature=1.3", "top_k=80", "--seed", "3", "--max-new-tokens", "10",
            "--samples", "2"]
    parent, branch, edited = (tmp_path / f"{name}.json" for name in ("parent", "branch", "edited"))
    assert in_process(*base, "--out", str(parent)) == 0
    samples = json.loads(parent.read_text(encoding="utf-8"))["samples"]
    kept = samples[1]["token_ids"][:4]
    # forcing sample 1's own first 4 tokens (sample 0 free) reproduces both samples exactly
    assert in_process(*base, "--prefix", "", "--prefix", "ids:" + ",".join(map(str, kept)), "--out", str(branch)) == 0
    again = json.loads(branch.read_text(encoding="utf-8"))["samples"]
    assert [s["token_ids"] for s in again] == [s["token_ids"] for s in samples]
    # a text prefix for every sample: each output starts with it
    assert in_process(*base, "--prefix", "Once upon a time", "--out", str(edited)) == 0
    for sample in json.loads(edited.read_text(encoding="utf-8"))["samples"]:
        assert sample["text"].startswith("Once upon a time")


@pytest.mark.parametrize("args, field", [
    (["--prompt", PROMPT, "--set", "top_p=2"], "top_p"),
    (["--prompt", PROMPT, "--set", "topp=0.5"], "topp"),
    (["--prompt", PROMPT, "--axis", "top_p=0.5,2"], "top_p"),
    (["--prompt", PROMPT, "--axis", "temperature=1", "--axis", "top_p=1", "--axis", "top_k=0",
      "--axis", "min_p=0"], "axes"),
    (["--prompt", ""], "prompt"),
    (["--prompt", PROMPT, "--out", "result.txt"], "--out"),
    (["--prompt", PROMPT, "--set", "order=temperature>top_z"], "order"),
    (["--prompt", PROMPT, "--axis", "temperature=0.5,1", "--samples", "3", "--max-rows", "4"], "rows"),
    # never clamped, rounded or read as another value; a name given twice with two values is refused
    (["--prompt", PROMPT, "--set", "temperature=-1"], "temperature: must be 0 or a number in [0.0001, 100], got -1"),
    (["--prompt", PROMPT, "--set", "top_k=2.7"], "top_k: must be a whole number"),
    (["--prompt", PROMPT, "--set", "do_sample=yes"], "do_sample: must be true or false, got 'yes'"),
    (["--prompt", PROMPT, "--set", "temperature=0.5", "--set", "temperature=0.7"], "--set temperature"),
    (["--prompt", PROMPT, "--set", "seed=1", "--seed", "2"], "--seed"),
    (["--prompt", PROMPT, "--max-new-tokens", "0"], "max_new_tokens"),
    (["--prompt", PROMPT, "--prefix", "ids:1,x"], "--prefix: must be token ids written ids:1,2,3"),
    (["--prompt", PROMPT, "--samples", "2", "--prefix", "a", "--prefix", "b", "--prefix", "c"], "--prefix"),
])
def test_bad_input_exits_2_without_traceback(args: list[str], field: str) -> None:
    proc = cli(*args, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and field in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one line
    assert "Traceback" not in proc.stderr and "loading model" not in proc.stderr  # refused before the load


def test_argparse_errors_exit_2() -> None:
    proc = cli("--samples", "two", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_parse_value() -> None:
    assert parse_value("temperature", "0.7") == 0.7
    assert parse_value("do_sample", "false") is False
    assert parse_value("stop", '["\\n", "."]') == ["\n", "."]
    assert parse_value("stop", "1") == "1" and parse_value("bad_words", "true") == "true"
    assert parse_value("stop", "END") == "END"
    assert parse_value("order", "min_p>temperature") == "min_p>temperature"
    assert parse_value("order", '["min_p", "temperature"]') == ["min_p", "temperature"]
    assert parse_value("sequence_bias", '{"the": -5}') == {"the": -5}


def test_split_values() -> None:
    assert split_values("0.3, 0.7,1") == ["0.3", "0.7", "1"]
    assert split_values("temperature>min_p,min_p>temperature") == ["temperature>min_p", "min_p>temperature"]
    assert split_values('["\\n"],[".", ","]') == ['["\\n"]', '[".", ","]']
    assert split_values('"a,b",c') == ['"a,b"', "c"]


def test_axis_ranges_expand_like_the_page_axis_boxes(tmp_path, capsys):
    """`--axis NAME=START:STOP:STEP` (stop included) is parsed by the same code as the page's axis boxes."""
    from engine.__main__ import build_parser, build_spec

    spec = build_spec(build_parser().parse_args(["sweep", "--prompt", "Hi", "--axis", "top_p=0.5:1.0:0.25",
                                  "--axis", "temperature=0.2,0.5:1.5:0.5"]))
    assert [a.values for a in spec.axes] == [(0.5, 0.75, 1.0), (0.2, 0.5, 1.0, 1.5)]
    assert main(["sweep", "--prompt", "Hi", "--axis", "top_p=1.0:0.5:0.25"]) == 2
    assert "axis top_p" in capsys.readouterr().err


def test_a_diverse_beam_sweep_prints_its_beams_with_scores(in_process, capsys) -> None:
    assert in_process("--prompt", PROMPT, "--set", "do_sample=false", "num_beams=4", "num_beam_groups=2",
                      "diversity_penalty=1", "num_return_sequences=2", "--axis", "diversity_penalty=0.5,3",
                      "--max-new-tokens", "6") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "beam_score" in lines[0] and "axis_diversity_penalty" in lines[0]
    assert len([line for line in lines[1:] if line.strip()[:1].isdigit()]) == 4  # 2 cells x 2 beams
    assert "beam search" in captured.err and "6/6" in captured.err  # the bar counts the beam batch's steps
