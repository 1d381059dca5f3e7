"""Tests for engine.models: bundled GGUF loading, the converted-weights cache, prompt encoding."""

from pathlib import Path

import pytest
import torch

from engine.models import (
    BUNDLED_NAME, DTYPE_NAMES, LoadedModel, cpu_flags, cpu_has_native_bf16, load_model, pick_device, pick_dtype,
    tiny_random_model,
)

PROMPT = "Name three colours."


def _logits(lm: LoadedModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([ids], device=lm.device)).logits.float().cpu()


def test_bundled_loads(bundled: LoadedModel) -> None:
    assert bundled.name == BUNDLED_NAME
    assert not bundled.model.training
    assert bundled.dtype == torch.float32 and bundled.device.type == "cpu"
    assert bundled.vocab_size == len(bundled.tokenizer) == 49152
    assert bundled.context_length == 8192
    im_end = bundled.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in bundled.eos_token_ids
    assert len(set(bundled.eos_token_ids)) == len(bundled.eos_token_ids)
    assert bundled.has_chat_template()


@pytest.mark.model  # loads the bundled GGUF itself (twice), not through the `bundled` fixture
def test_cache_round_trip(tmp_path: Path) -> None:
    fresh = load_model(cache_dir=tmp_path)
    assert not fresh.from_cache
    cached = load_model(cache_dir=tmp_path)
    assert cached.from_cache
    # Only the finished entry remains: no temp dirs left behind by the atomic write.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert cached.tokenizer.chat_template == fresh.tokenizer.chat_template
    assert cached.eos_token_ids == fresh.eos_token_ids
    for raw in (False, True):
        assert cached.encode_prompt(PROMPT, raw=raw) == fresh.encode_prompt(PROMPT, raw=raw)
    ids = fresh.encode_prompt(PROMPT)
    torch.testing.assert_close(_logits(cached, ids), _logits(fresh, ids), atol=1e-5, rtol=0)


def test_encode_prompt_chat_vs_raw(bundled: LoadedModel) -> None:
    raw = bundled.encode_prompt(PROMPT, raw=True)
    chat = bundled.encode_prompt(PROMPT)
    assert raw == bundled.tokenizer(PROMPT)["input_ids"]
    assert chat != raw
    assert all(isinstance(i, int) for i in chat)
    gen_prompt = bundled.tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert chat[-len(gen_prompt):] == gen_prompt
    with_system = bundled.encode_prompt(PROMPT, system_prompt="Be terse.")
    assert "Be terse." in bundled.tokenizer.decode(with_system)
    assert bundled.decode(raw) == PROMPT


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_rejected(bundled: LoadedModel, prompt: str) -> None:
    with pytest.raises(ValueError, match=r"^prompt: must be a non-empty string"):
        bundled.encode_prompt(prompt)


def test_unknown_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^model: could not load"):
        load_model(str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match=r"^model: could not load"):
        load_model(str(tmp_path))  # exists but holds no model


def test_tiny_random_model(tiny: LoadedModel, bundled: LoadedModel) -> None:
    assert tiny.vocab_size == bundled.vocab_size == len(tiny.tokenizer)
    ids = tiny.encode_prompt(PROMPT)
    assert _logits(tiny, ids).shape == (1, len(ids), tiny.vocab_size)
    assert tiny.eos_token_ids == bundled.eos_token_ids


def test_tiny_random_model_seeded_and_rng_neutral(bundled: LoadedModel) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_random_model(vocab_from=bundled, seed=1)
    assert torch.equal(torch.rand(3), expected)  # global RNG stream untouched
    b = tiny_random_model(vocab_from=bundled, seed=1)
    c = tiny_random_model(vocab_from=bundled, seed=2)
    wa, wb, wc = (m.model.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_pick_device_and_dtype() -> None:
    cpu = pick_device("cpu")
    assert cpu == torch.device("cpu")
    assert pick_dtype(cpu, "auto") == torch.float32
    assert pick_dtype(cpu, "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match=r"^dtype:"):
        pick_dtype(cpu, "int8")
    if not torch.cuda.is_available():
        assert pick_device() == cpu
        with pytest.raises(ValueError, match=r"^device:"):
            pick_device("cuda")


X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(X86_AVX2, False), (X86_BF16, True), (ARM_BF16, True), (None, False)])
def test_auto_dtype_is_fp32_on_every_cpu_native_bf16_or_not(tmp_path, monkeypatch, cpuinfo, native):
    """The native-bf16 flags are read (AVX512-BF16 / AMX-BF16 on x86, BF16 on Arm; none on AVX2 or without
    /proc/cpuinfo), and `auto` on a CPU is fp32 either way (at bf16 the engine's promises do not all hold: README);
    an explicit dtype always wins."""
    import engine.models as models

    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert cpu_has_native_bf16(cpu_flags(path)) is native
    monkeypatch.setattr(models, "cpu_flags", lambda: cpu_flags(path))
    monkeypatch.delenv("PLAYGROUND_DTYPE", raising=False)
    cpu = torch.device("cpu")
    expected = torch.float32
    assert pick_dtype(cpu) == pick_dtype(cpu, "auto") == expected
    monkeypatch.setenv("PLAYGROUND_DTYPE", "float16")  # no dtype given: the environment's (the tests set float32)
    assert pick_dtype(cpu) == torch.float16 and pick_dtype(cpu, "auto") == expected
    assert pick_dtype(cpu, "float32") == torch.float32 and pick_dtype(cpu, "bfloat16") == torch.bfloat16


def test_app_dtype_flag_parses_without_torch_and_refuses_unknown_names(monkeypatch, capsys):
    import app

    assert app.DTYPE_NAMES == DTYPE_NAMES  # spelled twice so that parsing the flags imports no torch
    monkeypatch.delenv("PLAYGROUND_DTYPE", raising=False)
    assert app.parse_args([]).dtype == "auto"
    assert app.parse_args(["--dtype", "bfloat16"]).dtype == "bfloat16"
    monkeypatch.setenv("PLAYGROUND_DTYPE", "float32")
    assert app.parse_args([]).dtype == "float32"
    with pytest.raises(SystemExit):
        app.parse_args(["--dtype", "int8"])
    assert "expected one of auto, float32, bfloat16, float16 (--dtype or $PLAYGROUND_DTYPE), got 'int8'" in (
        capsys.readouterr().err)
