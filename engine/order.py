"""Processor order: transformers' default, the named presets (llama.cpp's chain, text-generation-webui's
sampler_priority) and partial orders, normalized to one full order per row.
"""
from __future__ import annotations

from typing import Any

from .errors import ParamError
from .knobs import PROCESSORS

DEFAULT_ORDER: tuple[str, ...] = tuple(spec.name for spec in PROCESSORS)  # why this order: engine/knobs.py
_PRE_SAMPLING = DEFAULT_ORDER[:DEFAULT_ORDER.index("temperature")]  # penalties, bans, forced tokens, ...
_WATERMARKS: tuple[str, ...] = ("watermark", "synthid")  # after every sampler, before renormalize
LAST_STAGES: tuple[str, ...] = (*_WATERMARKS, "renormalize")  # after every sampler in every preset
# Named orders (`order="llama.cpp"`), so a setting carries over with its sampler chain (README "Order presets").
# llama.cpp: its server's default chain `penalties; dry; top_n_sigma; top_k; typ_p; top_p; min_p; xtc;
# temperature` (common/common.h), after logit_bias; the stages before sampling keep transformers' order (in which
# repetition/presence/frequency penalties and DRY already come in llama.cpp's order), the truncations llama.cpp
# lacks go with its truncations (before XTC, in transformers' order), dynamic temperature runs inside llama.cpp's
# temperature (temp_ext) and quadratic smoothing right after it, mirostat and renormalize last.
# text-generation-webui: its default sampler_priority (modules/presets.py); the processors the list does not name
# run before the listed ones, in transformers' order, as its sort puts them (key -1), except renormalize, which
# only rescales the final scores and stays last. In every preset the watermarks run after all the samplers (just
# before renormalize), as transformers runs its watermarking processor after every other processor.
LLAMA_CPP_SAMPLERS: tuple[str, ...] = ("top_n_sigma", "top_k", "typical_p", "top_p", "min_p", "xtc", "temperature")
WEBUI_SAMPLER_PRIORITY: tuple[str, ...] = (
    "repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "top_n_sigma", "temperature", "dynatemp",
    "smoothing", "top_k", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "tfs", "top_a", "min_p", "adaptive_p",
    "mirostat",
    "xtc", "encoder_repetition_penalty", "no_repeat_ngram")
ORDER_PRESETS: dict[str, tuple[str, ...]] = {
    "transformers": DEFAULT_ORDER,
    "llama.cpp": (*_PRE_SAMPLING, "top_n_sigma", "top_k", "typical_p", "top_p", "min_p",
                  "top_h", "top_a", "tfs", "epsilon_cutoff", "eta_cutoff",
                  "xtc", "temperature", "dynatemp", "smoothing", "mirostat", "adaptive_p", *_WATERMARKS, "renormalize"),
    "text-generation-webui": (*(n for n in DEFAULT_ORDER if n not in WEBUI_SAMPLER_PRIORITY and n not in LAST_STAGES),
                              *WEBUI_SAMPLER_PRIORITY, *_WATERMARKS, "renormalize"),
}
assert all(sorted(order) == sorted(DEFAULT_ORDER) for order in ORDER_PRESETS.values())


def normalize_order(order: Any) -> tuple[str, ...]:
    """A processor order: a preset's name (ORDER_PRESETS: "transformers", "llama.cpp", "text-generation-webui"),
    or processor names. A partial order permutes just the named processors among their own default slots.

    Example: ["min_p", "temperature"] moves min_p into temperature's slot and temperature into min_p's,
    so min_p runs before temperature and everything else keeps transformers' order.
    """
    if isinstance(order, str):
        order = [part.strip() for part in order.replace(">", ",").split(",") if part.strip()]
    if not isinstance(order, (list, tuple)) or not all(isinstance(n, str) for n in order):
        raise ParamError("order", f"a preset ({', '.join(ORDER_PRESETS)}) or a list of processor names from "
                                  f"{list(DEFAULT_ORDER)}", order)
    if len(order) == 1 and order[0] in ORDER_PRESETS:
        return ORDER_PRESETS[order[0]]
    bad = [n for n in order if n not in DEFAULT_ORDER]
    if bad:
        raise ParamError("order", f"a preset ({', '.join(ORDER_PRESETS)}) alone, or names from {list(DEFAULT_ORDER)}",
                         bad[0])
    if len(set(order)) != len(order):
        raise ParamError("order", "a list without repeated names", list(order))
    slots = sorted(DEFAULT_ORDER.index(n) for n in order)
    full = list(DEFAULT_ORDER)
    for slot, name in zip(slots, order):
        full[slot] = name
    return tuple(full)
