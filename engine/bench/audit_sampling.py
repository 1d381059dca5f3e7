"""Audit: does the engine ever sample a token that its processors removed?

    python -m engine.bench.audit_sampling                    # 10^6 row-steps on the bundled model
    python -m engine.bench.audit_sampling --row-steps 20000  # a quick look
    python -m engine.bench.audit_sampling --model tiny       # a tiny random model with the same 49,152-token
                                                             # vocabulary: the same sampler work, cheap forwards

(`python -m engine.audit_sampling`, the name earlier notes cite, runs this same audit.)

Decodes sweeps of many knobs at once (truncation samplers, penalties, bad words, DRY, XTC, mirostat, ...) on the
bundled model, and checks every step of every row: the chosen token's final score is finite (the last processor
kept it), and no banned word's token sequence appears in an output. The same final scores are also handed to
the sampler as it was before the noise fix (24-bit uniforms that round to 1, noise added without masking), so
one run counts the violations before and after the fix on exactly the same row-steps.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from unittest import mock

import torch

from .. import sampling as sampling_module
from ..generate import Engine
from ..models import load_model, tiny_random_model
from ..params import SamplingParams
from ..tokens import word_variants
from ..sampling import _token_hashes, choose_next, hash32_int32

PROMPTS = ("Write a short story about a lighthouse keeper.", "Explain how vaccines work.",
           "List ten ideas for a birthday party.", "Describe the city of Paris in detail.")
BANNED = ("the", "and")
SETTINGS: tuple[dict, ...] = (
    dict(temperature=0.7, top_k=40),
    dict(temperature=1.0, top_p=0.9),
    dict(temperature=1.3, min_p=0.05),
    dict(temperature=0.2),
    dict(temperature=1.0, typical_p=0.8),
    dict(temperature=1.0, top_k=1),
    dict(temperature=1.0, bad_words=BANNED, repetition_penalty=1.2, no_repeat_ngram_size=3),
    dict(temperature=1.0, xtc_probability=0.5, xtc_threshold=0.1, top_p=0.95),
    dict(temperature=1.0, mirostat=2, mirostat_tau=4.0),
    dict(temperature=1.0, tfs=0.9, top_a=0.2),
    dict(temperature=1.0, epsilon_cutoff=3e-4, eta_cutoff=1e-3),
    dict(temperature=1.0, dry_multiplier=0.8, presence_penalty=0.5, frequency_penalty=0.5, min_p=0.02),
    dict(temperature=1.5, top_n_sigma=1.0),
    dict(dynatemp_low=0.5, dynatemp_high=1.5, top_k=100),
    dict(do_sample=False, bad_words=BANNED),
    dict(temperature=2.0, top_p=0.5, sequence_bias=(("the", float("-inf")),)),
)


@dataclass
class Counts:
    row_steps: int = 0
    sampled_row_steps: int = 0
    removed_chosen: int = 0  # the engine's choice had a final score of -inf (must stay 0)
    removed_chosen_before_fix: int = 0  # the same, for the sampler before the fix on the same scores
    infinite_noise_before_fix: int = 0  # row-steps where the old sampler drew some token with u = 1 (+inf noise)
    choice_differs_from_before_fix: int = 0
    banned_sequences_in_outputs: int = 0
    nan_logprobs: int = 0


def choose_before_fix(scores: torch.Tensor, greedy: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler before the fix: (choice [B], whether any token's uniform rounded to 1 [B])."""
    bits = hash32_int32(keys[:, None] ^ _token_hashes(scores.shape[1], keys.device)[None, :])  # [B, V]
    u = (((bits >> 8) & 0xFFFFFF).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    sampled = (scores + u.log_().neg_().log_().neg_()).argmax(dim=-1)
    infinite = (((bits >> 8) & 0xFFFFFF) == 0xFFFFFF).any(-1)
    return torch.where(greedy, scores.argmax(dim=-1), sampled), infinite & ~greedy


class AuditedChoice:
    """Stands in for `choose_next` inside the decode loop: chooses as the engine does, and counts."""

    def __init__(self, counts: Counts):
        self.counts = counts

    def __call__(self, scores: torch.Tensor, greedy: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        chosen = choose_next(scores, greedy, keys)
        before, infinite = choose_before_fix(scores, greedy, keys)
        removed = ~(scores > float("-inf"))  # [B, V]
        c = self.counts
        c.row_steps += len(chosen)
        c.sampled_row_steps += int((~greedy).sum())
        c.removed_chosen += int(removed.gather(1, chosen[:, None]).sum())
        c.removed_chosen_before_fix += int(removed.gather(1, before[:, None]).sum())
        c.infinite_noise_before_fix += int(infinite.sum())
        c.choice_differs_from_before_fix += int((before != chosen).sum())
        return chosen


def banned_sequences(token_ids: list[int], sequences: list[list[int]]) -> int:
    return sum(token_ids[i:i + len(s)] == s for s in sequences for i in range(len(token_ids) - len(s) + 1))


def audit(engine: Engine, row_steps: int, rows: int, steps: int, progress: bool = True, seed_offset: int = 0) -> Counts:
    counts = Counts()
    banned = [seq for word in BANNED for seq in word_variants(engine.loaded.tokenizer, word)]
    prompts = [engine.encode(p) for p in PROMPTS]
    batch = 0
    with mock.patch.object(sampling_module, "choose_next", AuditedChoice(counts)):
        while counts.row_steps < row_steps:
            params = [SamplingParams(**SETTINGS[i % len(SETTINGS)], seed=seed_offset + batch * rows + i,
                                     max_new_tokens=steps, min_new_tokens=steps) for i in range(rows)]
            result = engine.generate([prompts[i % len(prompts)] for i in range(rows)], params)
            for p, row in zip(params, result.rows):
                if p.bad_words:
                    counts.banned_sequences_in_outputs += banned_sequences(row.token_ids, banned)
                counts.nan_logprobs += sum(x != x for x in row.raw_logprobs + row.final_logprobs)
            batch += 1
            if progress:
                print(f"  {counts.row_steps:,} row-steps: {counts.removed_chosen} removed tokens chosen "
                      f"(before the fix: {counts.removed_chosen_before_fix}), {counts.banned_sequences_in_outputs} "
                      f"banned sequences, {counts.nan_logprobs} NaN logprobs", flush=True)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.bench.audit_sampling", description=__doc__.split("\n")[0])
    parser.add_argument("--row-steps", type=int, default=1_000_000, help="row-steps to check (default 10^6)")
    parser.add_argument("--rows", type=int, default=64, help="rows per batch (default 64)")
    parser.add_argument("--steps", type=int, default=256, help="tokens per row (default 256)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="first seed (default 0); runs with disjoint seed ranges split the audit over processes")
    parser.add_argument("--model", choices=("bundled", "tiny"), default="bundled",
                        help="the bundled model (default) or a tiny random one with its vocabulary")
    args = parser.parse_args(argv)
    engine = Engine(load_model() if args.model == "bundled" else tiny_random_model())
    start = time.perf_counter()
    counts = audit(engine, args.row_steps, args.rows, args.steps, seed_offset=args.seed_offset)
    print(json.dumps({**asdict(counts), "seconds": round(time.perf_counter() - start, 1),
                      "model": engine.loaded.name, "seed_offset": args.seed_offset, "rows": args.rows, "steps": args.steps, "settings": len(SETTINGS), "vocabulary": engine.loaded.vocab_size}, indent=2))


if __name__ == "__main__":
    main()
