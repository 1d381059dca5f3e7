"""DoLa's contrast of layers, one step at a time: the candidate layers of a model, the Jensen-Shannon choice of
the premature layer and transformers 4.55's relative-top filter (engine/dola.py runs the loop; engine/replay.py
replays a step with dola_logits). No engine import here, so the replay can use it without a cycle.

Shapes: n rows, U candidate layers, V vocabulary.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .dola_rules import candidate_layers
from .errors import ParamError
from .models import LoadedModel
from .params import SamplingParams

RELATIVE_TOP = 0.1  # transformers' _relative_top_filter: keep tokens with p >= 0.1 x the top p
BASE_FILTER_VALUE = -1e-3  # ... and the premature layer's score of the others


def model_layers(loaded: LoadedModel, value: Any = "set") -> tuple[int, bool, Any]:
    """(number of layers, tied word embeddings, lm_head) of the model, or a ParamError when DoLa cannot read
    them (as transformers 4.55 refuses encoder-decoder models, stateful ones and models without output
    embeddings)."""
    model = loaded.model
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", None)
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if getattr(model, "_is_stateful", False):
        raise ParamError("dola_layers", "empty for this model (DoLa was not designed for stateful models, such as "
                                        f"{type(model).__name__}; transformers 4.55 refuses them too)", value)
    if getattr(model.config, "is_encoder_decoder", False) or not isinstance(layers, int) or lm_head is None:
        raise ParamError("dola_layers", "empty for this model (DoLa needs a decoder-only model whose layer count "
                                        "and lm_head are readable)", value)
    return layers, bool(getattr(model.config, "tie_word_embeddings", False)), lm_head


def layer_table(loaded: LoadedModel, configs: Sequence[SamplingParams]) -> tuple[list[int], torch.Tensor]:
    """The candidate layers of every row together (in the order they are first named) and [B, U] bool: which of
    them are each row's. Refuses rows without dola_layers and layer numbers beyond the model's."""
    final_layer, tied, _ = model_layers(loaded, configs[0].dola_layers if configs else "set")
    per_row = []
    for p in configs:
        if not p.dola_layers:
            raise ParamError("dola_layers", "set in every row of a DoLa batch", p.dola_layers)
        per_row.append(candidate_layers(p.dola_layers, final_layer, tied))
    union = list(dict.fromkeys(layer for layers in per_row for layer in layers))
    allowed = torch.tensor([[layer in layers for layer in union] for layers in per_row], device=loaded.device)
    return union, allowed


def premature_logits(lm_head: Any, hidden_states: Sequence[torch.Tensor], layers: list[int]) -> torch.Tensor:
    """[U, n, V] the lm_head applied to each candidate layer's hidden state at the last position (model dtype)."""
    return torch.stack([lm_head(hidden_states[layer][:, -1, :]) for layer in layers])


def js_divergences(final_logits: torch.Tensor, premature: torch.Tensor) -> torch.Tensor:
    """transformers' _dola_select_contrast, its divergences: final [n, V], premature [U, n, V] -> [U, n], the
    Jensen-Shannon divergence (a mean over the vocabulary, as 4.55 takes it) of each layer from the final one."""
    softmax_mature = F.softmax(final_logits, dim=-1)  # [n, V]
    softmax_premature = F.softmax(premature, dim=-1)  # [U, n, V]
    avg_dist = 0.5 * (softmax_mature[None, :, :] + softmax_premature)
    log_softmax_mature = F.log_softmax(final_logits, dim=-1)
    log_softmax_premature = F.log_softmax(premature, dim=-1)
    kl1 = F.kl_div(log_softmax_mature[None, :, :], avg_dist, reduction="none").mean(-1)
    kl2 = F.kl_div(log_softmax_premature, avg_dist, reduction="none").mean(-1)
    return 0.5 * (kl1 + kl2)


def relative_top_contrast(final_logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """transformers' _relative_top_filter, then final - base: [n, V] each -> [n, V] the DoLa scores (-inf for
    tokens below 0.1 x the final layer's top probability)."""
    scores_normalized = final_logits.log_softmax(dim=-1)
    base_normalized = base_logits.log_softmax(dim=-1)
    min_thresh = scores_normalized.amax(dim=-1)  # 4.55: the first of the sorted scores (min_tokens_to_keep 1)
    probs_thresh = torch.min(min_thresh, min_thresh + math.log(RELATIVE_TOP)).unsqueeze(-1)  # [n, 1]
    below = scores_normalized < probs_thresh
    base_normalized[below] = BASE_FILTER_VALUE
    scores_normalized[below] = float("-inf")
    return scores_normalized - base_normalized


def contrast(final_logits: torch.Tensor, premature: torch.Tensor, allowed: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """final [n, V] float32, premature [U, n, V], allowed [n, U] -> (the DoLa scores [n, V], each row's premature
    layer as an index into the U layers [n]). A row with one candidate takes it (4.55 skips the divergences)."""
    js = js_divergences(final_logits, premature).T  # [n, U]
    picked = js.masked_fill(~allowed, float("-inf")).argmax(dim=-1)  # [n] the first of equal ones, as 4.55
    base = premature[picked, torch.arange(final_logits.shape[0], device=final_logits.device)]  # [n, V]
    return relative_top_contrast(final_logits, base), picked


def dola_logits(loaded: LoadedModel, ids: torch.Tensor, dola_layers: str | tuple[int, ...], keep: int
                ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """One forward of ids [1, L] -> at its last `keep` positions: the final layer's logits [keep, V] float32, the
    DoLa scores [keep, V] and the premature layer of each (a replay of DoLa steps: engine/replay.py)."""
    final_layer, tied, lm_head = model_layers(loaded)
    layers = candidate_layers(dola_layers, final_layer, tied)
    out = loaded.model(input_ids=ids, output_hidden_states=True, logits_to_keep=keep)
    final = out.logits[0].float()  # [keep, V]
    premature = torch.stack([lm_head(out.hidden_states[layer][0, -keep:, :]) for layer in layers])  # [U, keep, V]
    allowed = torch.ones(keep, len(layers), dtype=torch.bool, device=final.device)
    scores, picked = contrast(final, premature, allowed)
    return final, scores, [layers[i] for i in picked.tolist()]
