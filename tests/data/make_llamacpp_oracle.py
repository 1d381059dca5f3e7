"""Record llama.cpp's own samplers on fixed inputs, as the oracle of tests/test_llamacpp.py.

llama.cpp is not a dependency of the playground or its tests; its outputs are recorded once, here, with the
low-level sampler API of llama-cpp-python (a prebuilt wheel, or `CMAKE_ARGS="-DGGML_NATIVE=ON" pip install
llama-cpp-python==0.3.36`, which builds llama.cpp from source):

    PYTHONPATH=. python tests/data/make_llamacpp_oracle.py

It writes tests/data/llamacpp_oracle.json:
- "chain": llama.cpp's sampler chain in its server's default order (penalties, dry, top_n_sigma, top_k, typ_p,
  top_p, min_p, xtc, temperature; only the samplers a case switches on) applied to fixed random logits
  (logits(seed) below, which the test rebuilds), several settings; per row the kept token ids (final logit
  above -inf) and their final logits. XTC runs with probability 1, so that its draw never decides.
- "dry": llama.cpp's DRY (llama_sampler_init_dry, with the bundled model's vocabulary: the GGUF file loaded
  vocabulary-only) on token histories drawn from the real vocabulary; per case the tokens it penalized and their
  logits after the penalty (every logit 0 before).
- "breakers": the tokens llama.cpp treats as single-token sequence breakers for the default breakers
  ("\\n", ":", "\\"", "*"), found by asking DRY itself: after the history [a, x, a], x that followed the repeat
  of "a" is penalized unless it is a breaker.
"""
from __future__ import annotations

import ctypes
import json
import random
import sys
from pathlib import Path

import llama_cpp as L
import numpy as np

from engine.knobs import DRY_SEQUENCE_BREAKERS
from engine.models import bundled_gguf_path

OUT = Path(__file__).with_name("llamacpp_oracle.json")
VOCAB = 8192  # the chain cases' vocabulary (the samplers need no model)
ROWS = 4


def logits(seed: int) -> np.ndarray:
    """[ROWS, VOCAB] float32: a few likely tokens and a long tail (normal logits with standard deviation 4)."""
    return (np.random.default_rng(seed).standard_normal((ROWS, VOCAB)) * 4.0).astype(np.float32)


def history(seed: int, length: int) -> list[int]:
    """A token history for the penalties: a small alphabet, so tokens repeat."""
    rng = random.Random(seed)
    return [rng.randrange(40) for _ in range(length)]


# Our SamplingParams of each case (run in order="llama.cpp"); the test builds the same from these.
CHAIN_CASES = [
    dict(temperature=1.5, min_p=0.1, top_p=0.9),
    dict(temperature=0.8, top_k=40, typical_p=0.9),
    dict(temperature=1.2, top_n_sigma=1.5, top_k=100),
    dict(temperature=1.0, xtc_probability=1.0, xtc_threshold=0.05, min_p=0.02),
    dict(temperature=1.0, dynatemp_low=0.5, dynatemp_high=1.5, dynatemp_exponent=1.0, top_k=50),
    dict(temperature=0.7, top_p=0.95, min_p=0.05, top_k=200, typical_p=0.95),
    dict(temperature=1.1, repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.2, top_k=60),
]
PENALTY_HISTORY = 200  # tokens the penalties see (all of them generated, as our presence/frequency count)


def chain_for(case: dict) -> "L.llama_sampler_p":
    """The llama.cpp chain of common_sampler_init for these settings (samplers that are off left out)."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = lambda s: L.llama_sampler_chain_add(chain, s)  # noqa: E731
    if case.get("repetition_penalty", 1.0) != 1.0 or case.get("presence_penalty") or case.get("frequency_penalty"):
        add(L.llama_sampler_init_penalties(VOCAB, PENALTY_HISTORY, case.get("repetition_penalty", 1.0),
                                           case.get("frequency_penalty", 0.0), case.get("presence_penalty", 0.0)))
    if case.get("top_n_sigma"):
        add(L.llama_sampler_init_top_n_sigma(case["top_n_sigma"]))
    if case.get("top_k"):
        add(L.llama_sampler_init_top_k(case["top_k"]))
    if case.get("typical_p", 1.0) < 1.0:
        add(L.llama_sampler_init_typical(case["typical_p"], 1))
    if case.get("top_p", 1.0) < 1.0:
        add(L.llama_sampler_init_top_p(case["top_p"], 1))
    if case.get("min_p"):
        add(L.llama_sampler_init_min_p(case["min_p"], 1))
    if case.get("xtc_probability"):
        add(L.llama_sampler_init_xtc(case["xtc_probability"], case["xtc_threshold"], 1, 0))
    if "dynatemp_low" in case:  # llama.cpp's temp_ext: temperature t +- delta; ours: low / high with temperature 1
        t = (case["dynatemp_low"] + case["dynatemp_high"]) / 2
        add(L.llama_sampler_init_temp_ext(t, (case["dynatemp_high"] - case["dynatemp_low"]) / 2,
                                          case["dynatemp_exponent"]))
    else:
        add(L.llama_sampler_init_temp(case["temperature"]))
    return chain


def apply(sampler, row: np.ndarray, ids: list[int] | None = None) -> list[tuple[int, float]]:
    """llama_sampler_apply on one row of logits (all tokens, or `ids` only): the candidates left, by id."""
    ids = list(range(len(row))) if ids is None else ids
    data = (L.llama_token_data * len(ids))(*(L.llama_token_data(i, float(row[i]), 0.0) for i in ids))
    array = L.llama_token_data_array(data=ctypes.cast(data, ctypes.POINTER(L.llama_token_data)), size=len(ids),
                                     selected=-1, sorted=False)
    L.llama_sampler_apply(sampler, ctypes.byref(array))
    return sorted((array.data[i].id, array.data[i].logit) for i in range(array.size))


def record_chain() -> list[dict]:
    cases = []
    for number, case in enumerate(CHAIN_CASES):
        x = logits(number)
        rows = []
        for r in range(ROWS):
            chain = chain_for(case)
            for token in history(100 * number + r, PENALTY_HISTORY):
                L.llama_sampler_accept(chain, token)
            # a sampler may leave removed candidates in the array at -inf (top_n_sigma does): they are not kept
            kept = [(i, v) for i, v in apply(chain, x[r]) if v != -np.inf]
            rows.append({"ids": [i for i, _ in kept], "logits": [v for _, v in kept]})
            L.llama_sampler_free(chain)
        cases.append({"params": case, "seed": number, "history_seed": 100 * number, "rows": rows})
        print(f"chain {case}: kept {[len(row['ids']) for row in rows]}", file=sys.stderr)
    return cases


# DRY: (multiplier, base, allowed_length, breakers, history builder seed, history length, phrase length)
DRY_CASES = [
    (0.8, 1.75, 2, list(DRY_SEQUENCE_BREAKERS), 11, 300, 6),
    (0.8, 1.75, 2, list(DRY_SEQUENCE_BREAKERS), 1, 300, 3),
    (1.0, 2.0, 1, list(DRY_SEQUENCE_BREAKERS), 2, 120, 5),
    (0.5, 1.5, 3, ["\n\n", "###", " the", ":"], 13, 300, 5),
    (0.5, 1.5, 2, ["\n\n", "###", " the", ":"], 14, 300, 4),
    (2.0, 3.0, 2, ["\n"], 5, 260, 130),  # one long repeat: beyond text-generation-webui's 50, to the exponent clamp
    (0.3, 1.1, 4, ['"'], 6, 400, 9),
]


def dry_history(vocab_tokens: list[int], seed: int, length: int, phrase_length: int) -> list[int]:
    """A phrase of real tokens (breakers among them) repeated with a few changes: repeats of many lengths."""
    rng = random.Random(seed)
    phrase = [rng.choice(vocab_tokens) for _ in range(phrase_length)]
    return [t if rng.random() > 0.08 else rng.choice(vocab_tokens) for t in (phrase * length)[:length]]


def record_dry(vocab, n_vocab: int, alphabet: list[int]) -> list[dict]:
    cases = []
    for multiplier, base, allowed, breakers, seed, length, phrase in DRY_CASES:
        tokens = dry_history(alphabet, seed, length, phrase)
        sampler = dry_sampler(vocab, multiplier, base, allowed, breakers, length + 8)
        for token in tokens:
            L.llama_sampler_accept(sampler, token)
        after = apply(sampler, np.zeros(n_vocab, dtype=np.float32))
        L.llama_sampler_free(sampler)
        penalized = [(i, v) for i, v in after if v != 0.0]
        cases.append({"dry_multiplier": multiplier, "dry_base": base, "dry_allowed_length": allowed,
                      "dry_sequence_breakers": breakers, "tokens": tokens,
                      "penalized": [i for i, _ in penalized], "logits": [v for _, v in penalized]})
        print(f"dry seed {seed}: {len(penalized)} tokens penalized", file=sys.stderr)
    return cases


def dry_sampler(vocab, multiplier: float, base: float, allowed: int, breakers: list[str], last_n: int):
    texts = (ctypes.c_char_p * len(breakers))(*(b.encode("utf-8") for b in breakers))
    return L.llama_sampler_init_dry(vocab, multiplier, base, allowed, last_n, texts, len(breakers))


def record_breakers(vocab, n_vocab: int, a: int) -> list[int]:
    """Every x with [a, x, a] unpenalized at x (allowed_length 1): llama.cpp's single-token breakers."""
    sampler = dry_sampler(vocab, 1.0, 1.75, 1, list(DRY_SEQUENCE_BREAKERS), 16)
    breakers = []
    for x in range(n_vocab):
        if x == a:
            continue
        L.llama_sampler_reset(sampler)
        for token in (a, x, a):
            L.llama_sampler_accept(sampler, token)
        if apply(sampler, np.zeros(n_vocab, dtype=np.float32), [x])[0][1] == 0.0:
            breakers.append(x)
    L.llama_sampler_free(sampler)
    return breakers


def main() -> None:
    L.llama_backend_init()
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(bundled_gguf_path()).encode(), params)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    a = 64  # "a" alone: no breaker in it
    singles = record_breakers(vocab, n_vocab, a)
    rng = random.Random(7)
    alphabet = rng.sample(range(300, n_vocab), 25) + rng.sample(singles, 4) + [198, 271, 1116, 260]  # and "\n", ...
    data = {"llama_cpp_python": L.__version__, "vocab": VOCAB, "rows": ROWS, "penalty_history": PENALTY_HISTORY,
            "n_vocab": n_vocab, "breaker_probe_token": a, "breakers": singles,
            "chain": record_chain(), "dry": record_dry(vocab, n_vocab, alphabet)}
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); {len(singles)} single-token breakers", file=sys.stderr)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
