"""Choosing the next token: greedy argmax, or seeded sampling with counter-based noise.

A row's random numbers are a pure function of (seed, sample index, step, token id): no torch.multinomial,
no global RNG, nothing that depends on the batch size or on the neighbouring rows. Sampling uses the
Gumbel-max trick: argmax(log p + Gumbel noise) is a draw from p. Because the noise of a (seed, sample, step)
is the same whatever the settings, two configurations with the same seed are "coupled": they pick the same
token whenever it is still the winner after their processors, so differences in a sweep come from the
parameters, not from the dice.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 for int64 tensors holding 32-bit values, with no int64 overflow.

    Splitting the constant into 16-bit halves keeps every product below 2**48, so the result is the same on
    every device and backend (signed int64 overflow would not be).
    """
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (Wellons' lowbias32) on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_keys(seeds: torch.Tensor, sample_indices: torch.Tensor, step: int) -> torch.Tensor:
    """One 32-bit key per row from (seed, sample index, step). seeds, sample_indices: [B] long -> [B] long."""
    seeds = seeds.to(torch.long)
    key = hash32((seeds & _MASK32) ^ hash32((seeds >> 32) & _MASK32))
    key = hash32(key ^ (sample_indices.to(torch.long) & _MASK32))
    return hash32(key ^ (step & _MASK32))


def uniform_noise(keys: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform numbers in (0, 1), [B, V] float32, one per (row key, token id)."""
    token_ids = torch.arange(vocab_size, device=keys.device, dtype=torch.long)
    bits = hash32(keys[:, None] ^ hash32(token_ids + 0x9E3779B9)[None, :])  # [B, V]
    # 24 bits fit a float32 exactly; the half offset keeps u strictly inside (0, 1), so the logs stay finite
    return ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def gumbel_noise(keys: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Standard Gumbel noise [B, V]: -log(-log(u))."""
    return -torch.log(-torch.log(uniform_noise(keys, vocab_size)))


def choose_next(scores: torch.Tensor, greedy: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Next token per row. scores: [B, V] final (processed) logits; greedy: [B] bool; keys: [B] -> [B] long.

    Sampled rows take argmax(scores + Gumbel): the softmax of the scores is the distribution sampled from
    (temperature is already inside the scores as a processor).
    """
    chosen = scores.argmax(dim=-1)
    if bool(greedy.all()):
        return chosen
    sampled = (scores + gumbel_noise(keys, scores.shape[1])).argmax(dim=-1)
    return torch.where(greedy, chosen, sampled)
