"""The knobs of assisted decoding (engine/assisted.py), checked on one SamplingParams: prompt lookup and a draft
model, and the decoding modes neither can run with.

Both verify drafted tokens against the row's own choice at each step, so they need a row that takes one token per
step with its whole pipeline on one forward's logits: not beam search (several hypotheses per row, reordered), not
contrastive search (its own loop, which reads hidden states), not classifier-free guidance (its unconditional
context is a second row of the batch that this loop does not feed). A draft model and prompt lookup are two
sources of drafts for the same row: one at a time.
"""
from __future__ import annotations

from typing import Any

from .errors import ParamError, check_text


def check_assisted(p: Any) -> None:
    """Refuse, by field, a SamplingParams whose assisted decoding cannot run as asked (before any work)."""
    check_text("assistant_model", p.assistant_model, allow_empty=True)
    if p.assistant_model and p.assistant_model != p.assistant_model.strip():
        raise ParamError("assistant_model", "a model id or local directory without surrounding spaces (empty = off)",
                         p.assistant_model)
    if p.assistant_model and p.prompt_lookup_num_tokens:
        raise ParamError("prompt_lookup_num_tokens", "0 with assistant_model set (a row drafts from one source: "
                         "the draft model or prompt lookup)", p.prompt_lookup_num_tokens)
    for name, on in (("prompt_lookup_num_tokens", bool(p.prompt_lookup_num_tokens)),
                     ("assistant_model", bool(p.assistant_model))):
        if not on:
            continue
        value = getattr(p, name)
        if p.num_beams > 1:
            raise ParamError(name, f"{'0' if name.startswith('prompt') else 'empty'} with num_beams > 1 (drafts "
                             "are verified against one row's own choice at each step; beam search keeps several "
                             "and reorders them)", value)
        if p.penalty_alpha > 0:
            raise ParamError(name, f"{'0' if name.startswith('prompt') else 'empty'} with penalty_alpha > 0 "
                             "(contrastive search runs its own loop, which does not verify drafts)", value)
        if p.guidance_scale != 1.0:
            raise ParamError(name, f"{'0' if name.startswith('prompt') else 'empty'} with guidance_scale != 1 "
                             "(classifier-free guidance's unconditional context is not fed while drafts are "
                             "verified)", value)
