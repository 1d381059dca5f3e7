"""Scoring a given text: how likely each of its tokens is, under the raw model and under a configuration.

    scores = score_tokens(engine, token_ids, top_n=5)           # the raw model over a whole sequence
    scored = score_text(engine, prompt_ids, "Once upon a time", SamplingParams(top_k=1, temperature=0.7))
    scored.final_logprobs      # -inf where the settings removed the token: they could never have produced it

`score_tokens` is what log-likelihood evaluation needs (the OpenAI API's `echo` with logprobs): one forward
over the sequence (in chunks of CHUNK positions, with the KV cache, so the [T, V] logits never exist at once)
and, at each position, the log-probability of the token given the tokens before it (the first token has no
context: None).

`score_text` decodes the text as the row's own steps after the prompt (engine/forcing.py): the processors see
exactly the context they would have seen had the row produced the text, the penalties and mirostat's mu are
updated by it, and the noise stream stays aligned. Each token gets its log-probability under the raw model and
under the final distribution the row would have sampled from (-inf where a processor removed it), and its rank
under both (from the trace). Bad input is a ParamError naming the field, before any work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .generate import Engine
from .errors import ParamError, check_text
from .params import SamplingParams

CHUNK = 1024  # positions per forward in score_tokens: [CHUNK, V] float32 logits (~200 MB at V = 49,152)


@dataclass
class TokenScores:
    """The raw model over one token sequence."""

    token_ids: list[int]  # [T]
    logprobs: list[float | None]  # [T] log p(token t | tokens < t); None for the first token
    ranks: list[int | None]  # [T] 1 + the number of tokens more likely than it (None for the first)
    top: list[list[tuple[int, float]]]  # [T][top_n] the likeliest (id, log p) at each position ([] for the first)


@dataclass
class TextScore:
    """A text decoded as a row's own steps after a prompt, under one configuration."""

    prompt_ids: list[int]  # [P]
    token_ids: list[int]  # [T] the text's tokens
    pieces: list[str]  # [T] the text each token adds
    params: SamplingParams  # the configuration scored against
    raw_logprobs: list[float]  # [T] under the unmodified model
    final_logprobs: list[float]  # [T] under the distribution the row would have sampled from; -inf: removed
    raw_ranks: list[int]  # [T] 1 = the raw model's likeliest token
    final_ranks: list[int]  # [T] under the final distribution (a removed token: 1 + the tokens left)

    @property
    def removed(self) -> list[bool]:
        """[T] whether the settings removed the token (it could never have been produced)."""
        return [lp == -math.inf for lp in self.final_logprobs]

    def summary(self) -> dict[str, float | int | None]:
        """Totals in nats and perplexities; the final ones are None when a token was removed (-inf, infinite)."""
        raw, final = sum(self.raw_logprobs), sum(self.final_logprobs)
        count = len(self.token_ids)
        finite = math.isfinite(final)
        return {"tokens": count, "removed": sum(self.removed),
                "raw_logprob": raw, "final_logprob": final if finite else None,
                "raw_perplexity": math.exp(-raw / count), "final_perplexity": math.exp(-final / count) if finite else None}

    def records(self) -> list[dict]:
        """One JSON-safe dict per token (None for -inf)."""
        return [{"token_id": t, "token": piece, "raw_logprob": raw, "final_logprob": None if fin == -math.inf else fin,
                 "raw_rank": rr, "final_rank": fr, "removed": fin == -math.inf}
                for t, piece, raw, fin, rr, fr in zip(self.token_ids, self.pieces, self.raw_logprobs,
                                                      self.final_logprobs, self.raw_ranks, self.final_ranks)]


def check_tokens(engine: Engine, token_ids: Sequence[int], field: str = "prompt") -> list[int]:
    """A non-empty list of token ids in the vocabulary that fits the model's context, or a ParamError."""
    if not isinstance(token_ids, (list, tuple)) or not token_ids:
        raise ParamError(field, "a non-empty list of token ids", token_ids)
    vocab = engine.loaded.vocab_size
    for token in token_ids:
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < vocab:
            raise ParamError(field, f"token ids in [0, {vocab - 1}]", token)
    context = engine.loaded.context_length
    if len(token_ids) > context:
        raise ParamError(field, f"at most {context} tokens (the model's context)", f"{len(token_ids)} tokens")
    return list(token_ids)


def score_tokens(engine: Engine, token_ids: Sequence[int], top_n: int = 0) -> TokenScores:
    """Log-probability of every token given the ones before it, under the raw model, with the top_n likeliest
    alternatives at each position. Each chunk's forward takes the engine's turn (engine/turns.py)."""
    ids = check_tokens(engine, token_ids)
    if not isinstance(top_n, int) or isinstance(top_n, bool) or not 0 <= top_n <= engine.loaded.vocab_size:
        raise ParamError("top_n", f"a whole number in [0, {engine.loaded.vocab_size}]", top_n)
    logprobs: list[float | None] = [None]
    ranks: list[int | None] = [None]
    top: list[list[tuple[int, float]]] = [[]]
    for logp, nxt in _next_token_logprobs(engine, ids):  # logp: [c, V] predicting nxt [c]
        chosen = logp.gather(1, nxt[:, None])  # [c, 1]
        logprobs += chosen[:, 0].tolist()
        ranks += ((logp > chosen).sum(-1) + 1).tolist()
        if top_n:
            values, indices = logp.topk(top_n, dim=-1)  # [c, top_n]
            top += [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
        else:
            top += [[] for _ in range(len(nxt))]
    return TokenScores(ids, logprobs, ranks, top)


def _next_token_logprobs(engine: Engine, ids: list[int]):
    """Yield (log_softmax of the logits [c, V] float32, the tokens they predict [c]) chunk by chunk: position t's
    distribution predicts token t + 1. One forward over the sequence, CHUNK positions at a time, with the cache."""
    model, device = engine.loaded.model, engine.loaded.device
    sequence = torch.tensor([ids], device=device)  # [1, T]
    cache = None
    for start in range(0, len(ids) - 1, CHUNK):
        end = min(start + CHUNK, len(ids) - 1)
        with engine.turns.turn(), torch.inference_mode():
            out = model(input_ids=sequence[:, start:end], past_key_values=cache, use_cache=True, logits_to_keep=0)
        cache = out.past_key_values
        yield torch.log_softmax(out.logits[0].float(), dim=-1), sequence[0, start + 1:end + 1]


def encode_text(engine: Engine, text: str, field: str = "text") -> list[int]:
    """A text to score as token ids, tokenized on its own (no special tokens added), as a /generate prefix is."""
    check_text(field, text)
    ids = list(engine.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ParamError(field, "a text of at least one token", text)
    return ids


def scoring_params(params: SamplingParams, prompt_len: int, length: int) -> SamplingParams:
    """The configuration that decodes exactly `length` given tokens as the row would have: max_new_tokens is the
    text's length (forced_eos kept only when it would act at the text's last token), min_new_tokens at most that
    (it acts the same over those steps), no stop strings and no time limit (they end a row; they change no
    distribution). Beams are refused: beam search ranks beams; it has no distribution of a given text."""
    if params.num_beams > 1:
        raise ParamError("num_beams", "1 to score a text (beam search keeps beams, not one distribution)",
                         params.num_beams)
    p = params.for_prompt(prompt_len)
    forced_eos = p.forced_eos_token_id if p.max_new_tokens == length else -1
    return p.replace(max_new_tokens=length, min_new_tokens=min(p.min_new_tokens, length), stop=[], max_time=0,
                     forced_eos_token_id=forced_eos)


def score_text(engine: Engine, prompt_ids: Sequence[int], text: str | Sequence[int], params: SamplingParams,
               sample_index: int = 0) -> TextScore:
    """Every token of `text` (a string, or token ids) after `prompt_ids`, under the raw model and under `params`.

    The text is decoded as the row's own first steps (forced, engine/forcing.py), so the final log-probabilities
    are those the row's settings gave each token in that very context; a token with -inf there is one the
    settings would never have produced. The text must not hold an end-of-sequence token before its end (the row
    would stop there)."""
    prompt = check_tokens(engine, prompt_ids, "prompt")
    ids = encode_text(engine, text) if isinstance(text, str) else check_tokens(engine, text, "text")
    _check_room(engine, prompt, ids)
    run = scoring_params(params, len(prompt), len(ids))
    result = engine.generate(prompt, [run], [sample_index], trace_top_n=1, forced=[ids])
    row = result.rows[0]
    assert row.token_ids == ids, "a forced row decodes exactly its given tokens"
    trace = result.trace
    assert trace is not None
    final_stage = len(run.order)  # stage 0 is raw; the last stage is the distribution the row samples from
    return TextScore(prompt, ids, engine.loaded.pieces(ids), params, row.raw_logprobs, row.final_logprobs,
                     trace.chosen_rank[:len(ids), 0, 0].tolist(), trace.chosen_rank[:len(ids), final_stage, 0].tolist())


def _check_room(engine: Engine, prompt: list[int], ids: list[int]) -> None:
    """The text fits after the prompt (context, the server's per-row limit) and holds no early end token."""
    loaded, limits = engine.loaded, engine.limits
    room = min(loaded.context_length - len(prompt), limits.max_new_tokens)
    if len(ids) > room:
        why = ("this server's per-row limit" if room == limits.max_new_tokens
               else f"the model's context of {loaded.context_length} after a {len(prompt)}-token prompt")
        raise ParamError("text", f"at most {room} tokens ({why})", f"{len(ids)} tokens")
    early = [i for i, t in enumerate(ids[:-1]) if t in loaded.eos_token_ids]
    if early:
        raise ParamError("text", "text without an end-of-sequence token before its end (the row would stop there)",
                         loaded.token_label(ids[early[0]]))
