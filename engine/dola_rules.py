"""DoLa's rules without torch: which settings it runs with (SamplingParams checks them) and which layers are its
candidates on a model of N layers (transformers 4.55's `_dola_decoding`, its layer selection, line for line).

The loop itself is engine/dola.py.
"""
from __future__ import annotations

from typing import Any

from .errors import ParamError


def check_dola_modes(p: Any) -> None:
    """A SamplingParams with dola_layers set: the combinations DoLa runs with (greedy search or sampling, as
    transformers 4.55's get_generation_mode), the others refused with the reason."""
    if not p.dola_layers:
        return
    why = "with dola_layers (DoLa runs with greedy search and sampling only, as in transformers 4.55)"
    if p.num_beams > 1:
        raise ParamError("num_beams", f"1 {why}", p.num_beams)
    if p.penalty_alpha > 0:
        raise ParamError("penalty_alpha", f"0 {why}: contrastive search is another decoding mode", p.penalty_alpha)
    if p.prompt_lookup_num_tokens:
        raise ParamError("prompt_lookup_num_tokens", f"0 {why}: transformers 4.55 would ignore dola_layers in "
                         "assisted decoding", p.prompt_lookup_num_tokens)
    if p.assistant_model:
        raise ParamError("assistant_model", f"empty {why}: transformers 4.55 would ignore dola_layers in assisted "
                         "decoding", p.assistant_model)
    if p.guidance_scale != 1.0:
        raise ParamError("guidance_scale", "1 (off) with dola_layers (the unconditional context of classifier-free "
                         "guidance would need a layer contrast of its own; not ported)", p.guidance_scale)
    if p.token_healing:
        raise ParamError("token_healing", "false with dola_layers (DoLa reads the prompt as given here)",
                         p.token_healing)


def candidate_layers(dola_layers: str | tuple[int, ...], final_layer: int, tied_embeddings: bool) -> list[int]:
    """The candidate premature layers of a model with `final_layer` layers (hidden state i is layer i's output,
    0 the embeddings, final_layer the last layer's after the final norm), as transformers 4.55 chooses them.

    With tied word embeddings the embeddings (0) are skipped for "low": reading them through the lm_head that is
    their own transpose would say little. N <= 40 layers: "low" = range(start, N // 2, 2), "high" =
    range(N // 2, N, 2); N > 40: range(start, 20, 2) and range(N - 20, N, 2). A list is taken as given (the
    engine refuses numbers >= N, which transformers would drop silently)."""
    if not tied_embeddings:
        start = 0
    elif final_layer > 2:
        start = 2
    elif final_layer == 2:
        start = 1
    else:
        start = 0
    if dola_layers == "low":
        if start == final_layer // 2:
            return [start]
        return list(range(start, final_layer // 2, 2)) if final_layer <= 40 else list(range(start, 20, 2))
    if dola_layers == "high":
        return list(range(final_layer // 2, final_layer, 2)) if final_layer <= 40 else list(range(final_layer - 20, final_layer, 2))
    if isinstance(dola_layers, tuple) and dola_layers:
        too_high = [i for i in dola_layers if i >= final_layer]
        if too_high:
            raise ParamError("dola_layers", f"layer numbers in [0, {final_layer - 1}] (this model has {final_layer} "
                             f"layers; {final_layer} is the final one, which the others are contrasted with)",
                             list(dola_layers))
        return list(dola_layers)
    raise ParamError("dola_layers", '"low", "high" or a list of layer numbers', dola_layers)
