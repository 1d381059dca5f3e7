"""Random-weight models built from named architecture configs, so a GPU machine benchmarks without downloads.

Throughput does not depend on the weights' values (the benchmarks force every row's length with
min_new_tokens), only on the shapes. Every architecture here keeps the bundled SmolLM2 tokenizer's vocabulary
(49152 tokens), so prompts are encoded and outputs decoded with that tokenizer; `llama-8b` is Llama-3.1-8B's
layer stack with that vocabulary (the real one has 128256 tokens: its embedding and lm_head are 2.6x larger).

    loaded = random_model("smollm2-1.7b", device="cuda", dtype="bfloat16")
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..models import LoadedModel, finish_loading, pick_device, pick_dtype

VOCAB = 49152  # SmolLM2's tokenizer

# name -> LlamaConfig fields (shapes only; published configs of these models)
ARCHS: dict[str, dict] = {
    # HuggingFaceTB/SmolLM2-135M-Instruct: the bundled model's own shapes
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, tie_word_embeddings=True, rope_theta=100000.0,
                         max_position_embeddings=8192),
    # HuggingFaceTB/SmolLM2-1.7B-Instruct
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32, head_dim=64, tie_word_embeddings=True, rope_theta=130000.0,
                         max_position_embeddings=8192),
    # meta-llama/Llama-3.1-8B-Instruct's layers (grouped-query attention, 8 KV heads), SmolLM2's vocabulary
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=False, rope_theta=500000.0,
                     max_position_embeddings=8192),
}


def kv_bytes_per_token(arch: str, dtype: torch.dtype) -> int:
    """KV-cache bytes one row holds per token: layers x (K and V) x KV heads x head dim x element size."""
    a = ARCHS[arch]
    element = torch.empty((), dtype=dtype).element_size()
    return a["num_hidden_layers"] * 2 * a["num_key_value_heads"] * a["head_dim"] * element


def load_tokenizer(directory: str | None):
    """A tokenizer directory (tokenizer.json + tokenizer_config.json), or the bundled model's tokenizer."""
    from transformers import AutoTokenizer

    from ..models import _bundled_tokenizer

    if directory is None:
        return _bundled_tokenizer()
    if not (Path(directory) / "tokenizer.json").is_file():
        raise ValueError(f"tokenizer: no tokenizer.json in {directory!r}")
    return AutoTokenizer.from_pretrained(directory)


def random_model(arch: str, device: str | None = None, dtype: str | None = None, tokenizer_dir: str | None = None,
                 seed: int = 0) -> LoadedModel:
    """A Llama of the named shapes with random weights, built directly on the device in the target dtype."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
    start = time.perf_counter()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    tokenizer = load_tokenizer(tokenizer_dir)
    fields = dict(ARCHS[arch])
    rope_theta = fields.pop("rope_theta")
    config = LlamaConfig(vocab_size=VOCAB, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "default", "rope_theta": rope_theta}, **fields)
    previous = torch.get_default_dtype()
    # fork_rng keeps the caller's CPU RNG stream untouched; building on the device in the target dtype keeps an
    # 8B model from passing through 32 GB of float32 host memory.
    with torch.random.fork_rng(devices=[]), dev:
        torch.manual_seed(seed)
        torch.set_default_dtype(dt)
        try:
            model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig.from_model_config(config)
    return finish_loading(model, tokenizer, f"random {arch}", dev, dt, start, from_cache=False)
