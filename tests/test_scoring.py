"""Scoring a given text (engine/scoring.py and `python -m engine score`) against a plain transformers forward and
against what generation itself recorded."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import engine.scoring as scoring
from engine.__main__ import main
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.scoring import score_text, score_tokens

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The capital of France is Paris, and the capital of Spain is Madrid."


def plain_logprobs(bundled, ids: list[int]) -> torch.Tensor:
    """[T, V] log_softmax of a plain forward of the whole sequence."""
    with torch.inference_mode():
        return bundled.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)


def test_prompt_logprobs_equal_a_plain_forward(engine, bundled):
    ids = bundled.tokenizer(TEXT)["input_ids"]
    scores = score_tokens(engine, ids, top_n=3)
    ref = plain_logprobs(bundled, ids)
    assert scores.logprobs[0] is None and scores.ranks[0] is None and scores.top[0] == []
    expected = [ref[t - 1, ids[t]].item() for t in range(1, len(ids))]
    assert scores.logprobs[1:] == pytest.approx(expected, abs=1e-5)
    for t in range(1, len(ids)):
        values, indices = ref[t - 1].topk(3)
        assert [i for i, _ in scores.top[t]] == indices.tolist()
        assert scores.ranks[t] == int((ref[t - 1] > ref[t - 1, ids[t]]).sum()) + 1


def test_prompt_logprobs_in_chunks_equal_one_forward(engine, bundled, monkeypatch):
    ids = bundled.tokenizer(TEXT)["input_ids"]
    whole = score_tokens(engine, ids).logprobs
    monkeypatch.setattr(scoring, "CHUNK", 4)  # several forwards through the cache
    assert score_tokens(engine, ids).logprobs[1:] == pytest.approx(whole[1:], abs=1e-4)


def test_top_k_1_removes_exactly_the_tokens_that_are_not_the_argmax(engine, bundled):
    prompt = engine.encode("Tell me a story.")
    scored = score_text(engine, prompt, "Once upon a time there was a purple dragon.",
                        SamplingParams(top_k=1, temperature=0.7))
    ref = plain_logprobs(bundled, prompt + scored.token_ids)
    argmax = ref[len(prompt) - 1:-1].argmax(-1).tolist()  # [T] the raw model's likeliest token at each step
    expected_removed = [a != t for a, t in zip(argmax, scored.token_ids)]
    assert any(expected_removed) and not all(expected_removed)
    assert scored.removed == expected_removed
    for removed, final in zip(scored.removed, scored.final_logprobs):
        assert final == (-math.inf if removed else 0.0)
    raw = [ref[len(prompt) - 1 + i, t].item() for i, t in enumerate(scored.token_ids)]
    assert scored.raw_logprobs == pytest.approx(raw, abs=1e-4)
    assert [r == 1 for r in scored.raw_ranks] == [not r for r in expected_removed]
    summary = scored.summary()
    assert summary["removed"] == sum(expected_removed) and summary["final_logprob"] is None
    assert summary["final_perplexity"] is None and summary["raw_perplexity"] > 1
    json.dumps(scored.records(), allow_nan=False)  # JSON-safe: -inf is null


SETTINGS = [
    SamplingParams(temperature=0.8, top_p=0.9),
    SamplingParams(temperature=0),  # greedy
    SamplingParams(temperature=1.2, top_k=20, repetition_penalty=1.3, presence_penalty=0.5),
    SamplingParams(min_p=0.05, frequency_penalty=0.8, no_repeat_ngram_size=2),
    SamplingParams(mirostat=2, mirostat_tau=3.0),
    SamplingParams(xtc_probability=0.5, xtc_threshold=0.05, dry_multiplier=0.8),
]


@pytest.mark.parametrize("case", range(len(SETTINGS)))
def test_a_scored_output_equals_what_its_generation_recorded(engine, case):
    """Property over random prompts, seeds and sample indices: scoring a generated output gives back the raw and
    final log-probabilities the generation reported, token for token (-inf nowhere: the row produced them)."""
    rng = random.Random(case)
    words = ["story", "river", "robot", "winter", "music", "garden", "ocean", "dream"]
    prompt = engine.encode(f"Write about a {rng.choice(words)} and a {rng.choice(words)}.")
    params = SETTINGS[case].replace(seed=rng.randrange(1000), max_new_tokens=12)
    sample = rng.randrange(4)
    row = engine.generate(prompt, [params], [sample]).rows[0]
    scored = score_text(engine, prompt, row.token_ids, params, sample)
    assert scored.token_ids == row.token_ids
    assert scored.raw_logprobs == pytest.approx(row.raw_logprobs, abs=1e-4)
    assert scored.final_logprobs == pytest.approx(row.final_logprobs, abs=1e-4)
    assert not any(scored.removed)


@pytest.mark.parametrize("text, params, field", [
    ("", SamplingParams(), "text"),
    ("hello " * 9000, SamplingParams(), "text"),
    ([1, 2, 49152], SamplingParams(), "text"),
    ([2, 2, 2], SamplingParams(), "text"),  # an end-of-sequence token before the end
    ("hello", SamplingParams(num_beams=2), "num_beams"),
])
def test_bad_input_is_refused_naming_the_field(engine, text, params, field):
    with pytest.raises(ParamError) as caught:
        score_text(engine, engine.encode("Hi."), text, params)
    assert caught.value.field == field and str(caught.value).startswith(field + ":")


def test_bad_prompt_ids_are_refused(engine):
    for ids in ([], [-1], [1.5]):
        with pytest.raises(ParamError, match="^prompt:"):
            score_tokens(engine, ids)


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_score_table_and_json(bundled, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("engine.models.load_model", lambda *a, **k: bundled)
    out = tmp_path / "score.json"
    args = ["score", "--prompt", "Tell me a story.", "--text", "Once upon a time, a dragon", "--set", "top_k=1"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:3] == ["#", "token", "raw"] and "removed" in printed[0]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["params"]["top_k"] == 1 and data["prompt"] == "Tell me a story."
    assert len(printed) == len(data["tokens"]) + 2  # header, one line per token, the summary
    removed = [r["removed"] for r in data["tokens"]]
    assert any(removed) and sum(removed) == data["summary"]["removed"]
    assert all((r["final_logprob"] is None) == r["removed"] for r in data["tokens"])
    assert f"{data['summary']['removed']} removed by the settings" in printed[-1]
    assert [line.split()[-1] == "removed" for line in printed[1:-1]] == removed


@pytest.mark.parametrize("args, field", [
    (["--prompt", "Hi", "--text", ""], "text"),
    (["--prompt", "", "--text", "x"], "prompt"),
    (["--prompt", "Hi", "--text", "x", "--set", "top_p=2"], "top_p"),
    (["--prompt", "Hi", "--text", "x", "--set", "num_beams=2"], "num_beams"),
    (["--prompt", "Hi", "--text", "x", "--out", "scores.csv"], "--out"),
    (["--prompt", "Hi", "--text", "x", "--sample", "-1"], "--sample"),
])
def test_cli_score_bad_input_exits_2_before_loading(args, field):
    proc = subprocess.run([sys.executable, "-m", "engine", "score", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"error: {field}") and "loading model" not in proc.stderr
    assert "Traceback" not in proc.stderr
