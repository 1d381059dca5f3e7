"""engine.cached_weights: the bundled model's cache loaded without from_pretrained is the same model."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from engine.cached_weights import load_cached_causal_lm
from engine.models import _WEIGHTS_FILE, _cache_key, bundled_gguf_path, default_cache_dir, load_model


def assert_same_model(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Every parameter and buffer equal (values, dtype, requires_grad), ties kept, same config and mode."""
    ours_params, ref_params = dict(ours.named_parameters()), dict(reference.named_parameters())
    assert ours_params.keys() == ref_params.keys()
    for name, param in ref_params.items():
        assert isinstance(ours_params[name], torch.nn.Parameter), name
        assert ours_params[name].dtype == param.dtype and ours_params[name].requires_grad == param.requires_grad, name
        assert torch.equal(ours_params[name], param), name
    ours_buffers, ref_buffers = dict(ours.named_buffers()), dict(reference.named_buffers())
    assert ours_buffers.keys() == ref_buffers.keys()
    for name, buffer in ref_buffers.items():
        assert ours_buffers[name].dtype == buffer.dtype and torch.equal(ours_buffers[name], buffer), name
    tied = reference.lm_head.weight.data_ptr() == reference.model.embed_tokens.weight.data_ptr()
    assert (ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()) == tied
    assert ours.config.to_dict() == reference.config.to_dict()
    assert ours.config._attn_implementation == reference.config._attn_implementation
    assert ours.generation_config.to_dict() == reference.generation_config.to_dict()
    assert ours.training == reference.training is False
    ids = torch.tensor([[1, 5, 17, 30, 2]])  # [1, 5], inside every vocabulary tested
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, reference(ids).logits)


@pytest.mark.model
def test_bundled_cache_equals_from_pretrained() -> None:
    load_model()  # makes sure the cache entry exists
    entry = default_cache_dir() / _cache_key(bundled_gguf_path())
    ours = load_cached_causal_lm(entry, _WEIGHTS_FILE)
    assert ours is not None
    assert_same_model(ours, AutoModelForCausalLM.from_pretrained(entry))
    assert load_model().model.__class__ is ours.__class__  # load_model takes this path


@pytest.mark.parametrize("tie", [True, False])
def test_tiny_saved_model_equals_from_pretrained(tmp_path: Path, tie: bool) -> None:
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tie)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    ours = load_cached_causal_lm(tmp_path, _WEIGHTS_FILE)
    assert ours is not None
    assert_same_model(ours, AutoModelForCausalLM.from_pretrained(tmp_path))


def test_unexpected_tensor_falls_back(tmp_path: Path) -> None:
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / _WEIGHTS_FILE))
    save_file({**state, "extra.weight": torch.zeros(2)}, str(tmp_path / _WEIGHTS_FILE), metadata={"format": "pt"})
    assert load_cached_causal_lm(tmp_path, _WEIGHTS_FILE) is None  # the caller then uses from_pretrained
    del state["model.norm.weight"]
    save_file(state, str(tmp_path / _WEIGHTS_FILE), metadata={"format": "pt"})
    assert load_cached_causal_lm(tmp_path, _WEIGHTS_FILE) is None
