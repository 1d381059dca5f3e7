"""One input row computed as two: matrix products that do not depend on the batch size, at bf16 / fp16 on a CPU.

The engine promises that a row's tokens do not depend on the rows decoding beside it (a cell alone equals the
same cell inside a sweep; a request alone equals the same request joined to a batch). Its noise is keyed per row,
so only the model's logits could break that, through kernels that sum in another order for another batch size.
At fp32 they do not change a token in any test. At bf16 on a CPU with native bf16, a linear layer's product for a
single input row (M = 1, a one-row run or the last row left of a batch) goes to another kernel than for two or
more rows: measured on an AVX512-BF16 CPU with SmolLM2's 1536 -> 576 `down_proj`, 1 random input in 20 gave other
bf16 bits for 1 row than inside 300 rows, while 2, 3, 4, 7, 8, 16, 17, 36, 64, 128 and 256 rows never did; a
greedy row alone then left the same row inside a 4-row batch at its third token.

So every `nn.Linear` of a CPU model at a half dtype computes a single row as two copies of it and keeps the first
(`TwoRowLinear`): the second copy costs little, a one-row product being bound by reading the weights. The class of
each module is swapped in place, so transformers' own generate() on the same model object (the exactness tests'
oracle) runs through the same products.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class TwoRowLinear(torch.nn.Linear):
    """nn.Linear whose product for one input row is taken as that row twice (the kernel of two or more rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        if x.numel() != x.shape[-1]:  # two rows or more (or none): the plain product
            return super().forward(x)
        row = x.reshape(1, -1)  # [1, in]
        out = F.linear(torch.cat([row, row]), self.weight, self.bias)[:1]  # [2, out] -> [1, out]
        return out.reshape(*x.shape[:-1], out.shape[-1])


def needs_two_rows(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a model on this device at this dtype gets `TwoRowLinear` (CPU at bf16 or fp16; GPUs untested)."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16)


def use_two_row_linears(model: torch.nn.Module) -> int:
    """Swap every plain nn.Linear of `model` to TwoRowLinear, in place; returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = TwoRowLinear
            swapped += 1
    return swapped
