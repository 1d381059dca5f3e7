"""DRY in llama.cpp mode (`dry_mode="llama.cpp"`): against a plain one-row transcription of llama.cpp's
llama_sampler_dry_apply on random histories, and against llama.cpp itself (outputs recorded by
tests/data/make_llamacpp_oracle.py, so the tests need no llama.cpp). The default mode ("webui") is unchanged,
bit for bit.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.knobs import DRY_SEQUENCE_BREAKERS
from engine.errors import ParamError
from engine.params import SamplingParams
from engine.processors import apply_pipeline
from engine.rowstate import DecodeState, RowParams
from engine.tokens import RestartSequences, restart_sequences
from assertions import assert_same_scores
from synthetic import B, EOS, PROMPT_LEN, V, pipeline, state_of

ORACLE = json.loads((Path(__file__).parent / "data" / "llamacpp_oracle.json").read_text())


def ref_dry_llama_cpp(tokens: list[int], row: torch.Tensor, multiplier: float, base: float, allowed: int,
                      restarts: RestartSequences) -> torch.Tensor:
    """llama.cpp's llama_sampler_dry_apply for one row, step by step as it is written (float32 knobs, the
    repeat counts from the end, the restart-sequence scan, the exponent cap), with loops."""
    out = row.clone()
    multiplier, base = float(np.float32(multiplier)), float(np.float32(base))
    sequences: dict[int, list[tuple[int, ...]]] = {t: [()] for t in restarts.single}
    for tail, heads in restarts.tails:
        for head in heads:
            sequences.setdefault(head, []).append(tuple(tail))
    n = len(tokens)
    rat = lambda i: tokens[n - 1 - i]  # noqa: E731  (llama.cpp's ring_buffer.rat: i tokens back from the end)
    if n <= allowed:
        return out
    rep_limit = n
    for i in range(n):  # the most recent head whose tail follows it
        longest = -1
        for tail in sequences.get(rat(i), []):
            if longest < len(tail) <= i and all(tail[k] == rat(i - k - 1) for k in range(len(tail))):
                longest = len(tail)
        if longest >= 0:
            rep_limit = i - longest
            break
    if rep_limit < allowed:
        return out
    repeat = {}
    for k in range(1, n):  # the text ending k tokens back against the text ending now
        length = 0
        while length + k < n and rat(length) == rat(length + k):
            length += 1
        repeat[k] = min(length, rep_limit)
    longest_of: dict[int, int] = {}
    for k, length in repeat.items():
        if length >= allowed:
            token = rat(k - 1)
            longest_of[token] = max(longest_of.get(token, 0), length)
    top = int(np.float32(88.7228391) / np.log(np.float32(base))) if base > np.float32(1.000001) else 0
    for token, length in longest_of.items():
        if () in sequences.get(token, []):
            continue  # a single-token breaker is never penalized
        exponent = min(length - allowed, top) if top > 0 else length - allowed
        out[token] = float(np.float32(np.float32(out[token]) - np.float32(multiplier * math.pow(base, exponent))))
    return out


def random_restarts(rng: random.Random) -> RestartSequences:
    single = tuple(rng.sample(range(12), rng.choice([0, 1, 2])))
    tails = tuple(((rng.randrange(12),) * rng.choice([1, 2]), tuple(rng.sample(range(12), 2)))
                  for _ in range(rng.choice([0, 0, 1, 2])))
    return RestartSequences(single, tails)


def repetitive(rng: random.Random, rows: int, length: int) -> torch.Tensor:
    out = []
    for _ in range(rows):
        phrase = [rng.randrange(12) for _ in range(rng.randrange(2, 9))]
        out.append([t if rng.random() > 0.1 else rng.randrange(12) for t in (phrase * length)[:length]])
    return torch.tensor(out)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("generated", [0, 9, 70])
def test_llama_cpp_mode_matches_the_reference(seed: int, generated: int) -> None:
    rng = random.Random(1000 * seed + generated)
    tokens = repetitive(rng, B, PROMPT_LEN + generated)
    values = [(rng.choice([0.3, 0.8, 2.0]), rng.choice([1.0, 1.2, 1.75, 3.0]), rng.choice([1, 2, 3, 4]))
              if row not in (5, 7) else None for row in range(B)]
    restarts = [random_restarts(rng) for _ in range(B)]
    restarts[0] = RestartSequences(())  # a clean repeat, no breakers: long matches (no 50-token cap)
    tokens[0] = torch.tensor([1, 2, 3, 4, 5] * 30)[:tokens.shape[1]]
    params = [SamplingParams(dry_multiplier=v[0], dry_base=v[1], dry_allowed_length=v[2], dry_mode="llama.cpp")
              if v else SamplingParams(dry_mode="llama.cpp") for v in values]
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * 3
    out = pipeline(params, logits, state_of(tokens), restart_sequences=restarts)
    changed = 0
    for row, value in enumerate(values):
        if value is None:
            assert torch.equal(out[row], logits[row])
            continue
        expected = ref_dry_llama_cpp(tokens[row].tolist(), logits[row], *value, restarts[row])
        assert_same_scores(out[row], expected, f"row {row}, {value}")
        changed += not torch.equal(out[row], logits[row])
    assert changed >= 2


def test_the_modes_differ_where_llama_cpp_says_so() -> None:
    """No 50-token cap in llama.cpp mode: a repeat of 80 tokens is penalized for 80, not 50."""
    tokens = torch.tensor([list(range(1, 11)) * 9])  # 90 tokens: the text ending now repeats 80 tokens back
    params = [SamplingParams(dry_multiplier=1.0, dry_base=1.1, dry_allowed_length=2, dry_mode=mode)
              for mode in ("webui", "llama.cpp")]
    state = DecodeState.start(tokens.expand(2, -1), 16)
    out = apply_pipeline(torch.zeros(2, 16), state, RowParams.build(params, EOS, 16, sequence_breakers=[[], []]))
    assert out[0, 1] == pytest.approx(-(1.1 ** (50 - 2)), rel=1e-6)
    assert out[1, 1] == pytest.approx(-(np.float32(1.1) ** (80 - 2)), rel=1e-6)


def test_webui_mode_is_the_default_and_unchanged_in_a_mixed_batch() -> None:
    """The same rows alone (all webui) and beside llama.cpp rows: the webui rows bit for bit the same."""
    rng = random.Random(3)
    tokens = repetitive(rng, B, PROMPT_LEN + 20)
    webui = [SamplingParams(dry_multiplier=0.8, dry_allowed_length=rng.choice([1, 2, 3])) for _ in range(B)]
    assert all(p.dry_mode == "webui" for p in webui)
    mixed = [p.replace(dry_mode="llama.cpp") if row % 3 == 0 else p for row, p in enumerate(webui)]
    breakers = [[rng.randrange(12)] for _ in range(B)]
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(3))
    alone = pipeline(webui, logits, state_of(tokens), sequence_breakers=breakers)
    beside = pipeline(mixed, logits, state_of(tokens), sequence_breakers=breakers)
    for row in range(B):
        if row % 3:
            assert torch.equal(alone[row], beside[row])


def test_dry_mode_is_validated_by_name() -> None:
    for bad in ("llamacpp", "", None, 1):
        with pytest.raises(ParamError, match=r"dry_mode: must be one of 'webui', 'llama.cpp', got"):
            SamplingParams(dry_mode=bad)


# ------------------------------------------------------------------------------------------------------------
# llama.cpp itself (recorded)


def test_breakers_are_the_tokens_llama_cpp_breaks_on(tiny) -> None:
    """Every token whose text contains \\n, :, \" or * (401 of the bundled vocabulary): what llama.cpp's DRY
    treats as a breaker on its own, asked token by token."""
    ours = restart_sequences(tiny.tokenizer, DRY_SEQUENCE_BREAKERS, ORACLE["n_vocab"])
    assert ours.tails == ()
    assert sorted(set(ours.single) - {ORACLE["breaker_probe_token"]}) == ORACLE["breakers"]


@pytest.mark.parametrize("case", range(len(ORACLE["dry"])))
def test_dry_equals_llama_cpp(tiny, case: int) -> None:
    recorded = ORACLE["dry"][case]
    params = SamplingParams(dry_multiplier=recorded["dry_multiplier"], dry_base=recorded["dry_base"],
                            dry_allowed_length=recorded["dry_allowed_length"],
                            dry_sequence_breakers=recorded["dry_sequence_breakers"], dry_mode="llama.cpp")
    vocab = ORACLE["n_vocab"]
    restarts = restart_sequences(tiny.tokenizer, params.dry_sequence_breakers, vocab)
    tokens = torch.tensor([recorded["tokens"]])
    out = apply_pipeline(torch.zeros(1, vocab), DecodeState.start(tokens, vocab),
                         RowParams.build([params], EOS, vocab, restart_sequences=[restarts]))[0]
    penalized = out.nonzero()[:, 0].tolist()
    assert penalized == recorded["penalized"]
    assert penalized, "the case should penalize something"
    torch.testing.assert_close(out[penalized], torch.tensor(recorded["logits"]), rtol=1e-6, atol=0)
