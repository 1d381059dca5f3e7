"""How far apart two next-token distributions are, and how spread out one is (nats), on probability vectors [V].

Used wherever two distributions over the same context are compared: two configurations' stages at one step, two
outputs' final distributions along their shared prefix. A removed token has probability exactly 0.
"""
from __future__ import annotations

import math

import torch


def entropy(p: torch.Tensor) -> float:
    """H(p) = -sum p log p over p's support."""
    kept = p[p > 0]
    return float(-(kept * kept.log()).sum())


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """TV(p, q) = 1/2 sum |p - q|, in [0, 1]."""
    return float(0.5 * (p - q).abs().sum())


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q) = sum p log(p / q) over p's support; inf where p keeps a token that q removed. Never below 0
    (rounding can make a near-zero sum slightly negative)."""
    kept = p > 0
    if bool((q[kept] == 0).any()):
        return math.inf
    return max(float((p[kept] * (p[kept].log() - q[kept].log())).sum()), 0.0)
