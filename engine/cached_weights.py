"""Loading the bundled model's cache (plain safetensors + config, written by engine.models) without
AutoModelForCausalLM.from_pretrained.

from_pretrained in transformers 5 compiles its whole checkpoint-conversion table (~1,300 regular expressions for
every architecture) and initialises the random weights it then overwrites: about half a second on a 2-core CPU for
a 135M model. The cache holds exactly the model's own state dict (lm_head left out when tied to the embeddings), so
the model class built with initialisation skipped and this state dict loaded into it gives the same parameters and
buffers (tests/test_models.py compares them with from_pretrained's). Anything unexpected (an architecture the
causal-LM table does not name, a missing or extra tensor) returns None and the caller falls back to from_pretrained.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def load_cached_causal_lm(entry: Path, weights_file: str) -> "PreTrainedModel | None":
    """The causal LM saved in `entry` (config.json, generation_config.json, weights_file), or None if it cannot be
    rebuilt exactly this way."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, GenerationConfig
    from transformers.initialization import no_init_weights
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(entry)
    try:
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        return None
    # the weights are overwritten below: skip the random initialisation (torch's and transformers' own)
    with no_init_weights(), torch.device("cpu"):
        model = model_class(config)
    state = load_file(str(entry / weights_file))  # name -> tensor (cpu, the dtype saved: float32)
    # assign: the parameters become the file's tensors (memory-mapped, as from_pretrained's are) instead of copies
    # into the freshly allocated ones, which would touch every page of both (seconds for 540 MB)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        return None
    if tied:
        model.tie_weights()
    if (entry / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(entry)
    return model.eval()
