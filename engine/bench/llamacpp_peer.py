"""The reference benchmark's peer: llama.cpp (through llama-cpp-python's C API bindings) on the same GGUF file.

Optional: `llama_cpp` is no dependency of the project. `available()` says whether it imports; the benchmark then
adds the method "llama.cpp", else it prints one line naming the missing module and goes on.

What it does, as a CPU user of llama.cpp would for a sweep of many rows on one prompt (DESIGN.md, "Reference
benchmark"): the engine's prompt token ids (the same chat template, so both decode from identical tokens) are
prefilled once in sequence 0, that sequence's KV is copied to every row's sequence (`llama_memory_seq_cp`), each
row gets its own sampler chain (temperature, top_p, dist, seeded), and every step is ONE `llama_decode` of all
rows. End-of-generation tokens get a -inf logit bias, as the engine's min_new_tokens masks them, so every row
runs to the full length: rows x tokens generated tokens, counted as the engine counts them (the first token
sampled from the prefill's logits, then tokens - 1 decode steps).
"""
from __future__ import annotations

import ctypes
import importlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

NAME = "llama.cpp"
MODULE = "llama_cpp"  # pip install llama-cpp-python (../shared/wheels/ holds a wheel built for these machines)


def available() -> bool:
    try:
        importlib.import_module(MODULE)
    except ImportError:  # absent, or its shared library does not load on this machine
        return False
    return True


def missing_line() -> str:
    """The one line the benchmark prints when the peer cannot run."""
    return (f"llama.cpp: not measured (module {MODULE!r} not importable; pip install llama-cpp-python, "
            f"or the wheel in ../shared/wheels/)")


def probe_failure(gguf: Path, prompt_ids: list[int], n_threads: int, timeout: float = 300.0) -> str | None:
    """Run two rows of two tokens in a child process first: a library built for another CPU dies of an illegal
    instruction (SIGILL) inside llama_decode, which would take the whole benchmark down. None when it worked, else
    the line the benchmark prints instead of the column."""
    command = [sys.executable, "-m", __name__, str(gguf), ",".join(map(str, prompt_ids)), str(n_threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"llama.cpp: not measured (a 2-row probe in a child process took over {timeout:.0f} s)"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        why = f"it died of {signal.Signals(-done.returncode).name}"
        if done.returncode == -signal.SIGILL:
            why += (" (an instruction this CPU lacks: a wheel built for another CPU; build it here with "
                    "`pip install --no-binary llama-cpp-python llama-cpp-python`)")
    else:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        why = f"it exited with status {done.returncode}: {last}"
    return f"llama.cpp: not measured (a 2-row probe in a child process failed: {why})"


def _quiet(llama: Any) -> None:
    """Drop llama.cpp's log lines (model metadata, per-context notices) so the benchmark's own lines stay readable."""
    @llama.llama_log_callback
    def drop(level, text, user_data):  # noqa: ARG001 - the C signature
        return None
    _quiet.callback = drop  # type: ignore[attr-defined]  # keep a reference: C holds only the pointer
    llama.llama_log_set(drop, ctypes.c_void_p())


class LlamaCppPeer:
    """One llama.cpp model and context sized for `rows` sequences of `prompt_tokens + tokens` positions."""

    def __init__(self, gguf: Path, rows: int, prompt_tokens: int, tokens: int, n_threads: int):
        import llama_cpp as llama

        self.llama, self.rows, self.n_threads = llama, rows, n_threads
        _quiet(llama)
        llama.llama_backend_init()
        model_params = llama.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self.model = llama.llama_model_load_from_file(str(gguf).encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp: could not load {gguf}")
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = llama.llama_vocab_n_tokens(self.vocab)
        self.eog_ids = [t for t in range(self.n_vocab) if llama.llama_vocab_is_eog(self.vocab, t)]
        per_seq = prompt_tokens + tokens + 8
        ctx_params = llama.llama_context_default_params()
        # One KV stream per sequence (kv_unified off, llama.cpp's default): each row attends to its own cells only,
        # n_ctx is split evenly between the sequences, so it is rows x the positions one row needs.
        ctx_params.n_seq_max = rows
        ctx_params.n_ctx = rows * (-(-per_seq // 256) * 256)
        ctx_params.n_batch = max(rows, prompt_tokens)
        ctx_params.n_ubatch = ctx_params.n_batch
        ctx_params.n_threads = ctx_params.n_threads_batch = n_threads
        ctx_params.no_perf = True
        self.ctx = llama.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp: could not create a context for {rows} sequences")
        self.memory = llama.llama_get_memory(self.ctx)
        self.batch = llama.llama_batch_init(ctx_params.n_batch, 0, 1)

    def _fill(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]) -> None:
        b = self.batch
        for i, (token, pos, seq, want) in enumerate(zip(tokens, positions, seqs, logits)):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, want
            b.seq_id[i][0] = seq
        b.n_tokens = len(tokens)

    def _decode(self) -> None:
        status = self.llama.llama_decode(self.ctx, self.batch)
        if status != 0:
            raise RuntimeError(f"llama.cpp: llama_decode returned {status}")

    def _chain(self, temperature: float, top_p: float, seed: int) -> Any:
        """Temperature before top_p: the order of the engine and transformers, so both sample the same law."""
        llama = self.llama
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        bias = (llama.llama_logit_bias * len(self.eog_ids))(*[(t, float("-inf")) for t in self.eog_ids])
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_logit_bias(self.n_vocab, len(self.eog_ids),
                                                                                 bias))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(temperature))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(top_p, 1))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed))
        return chain

    def run(self, prompt_ids: list[int], settings: list[tuple[float, float]], tokens: int, seed: int = 0) -> int:
        """Decode len(settings) rows (temperature, top_p each) of `tokens` new tokens; returns the tokens generated."""
        llama, n, p = self.llama, len(settings), len(prompt_ids)
        if n > self.rows:
            raise ValueError(f"llama.cpp: {n} rows, the context holds {self.rows}")
        llama.llama_memory_clear(self.memory, True)
        chains = [self._chain(t, top_p, seed + row) for row, (t, top_p) in enumerate(settings)]
        try:
            self._fill(prompt_ids, list(range(p)), [0] * p, [False] * (p - 1) + [True])
            self._decode()
            for row in range(1, n):  # the prompt's KV, computed once, copied to every row's sequence
                llama.llama_memory_seq_cp(self.memory, 0, row, -1, -1)
            # first token of every row from the prompt's last logits (batch index -1: the last output)
            current = [llama.llama_sampler_sample(chain, self.ctx, -1) for chain in chains]
            generated = n
            for step in range(tokens - 1):
                self._fill(current, [p + step] * n, list(range(n)), [True] * n)
                self._decode()  # one decode of every row
                current = [llama.llama_sampler_sample(chain, self.ctx, row) for row, chain in enumerate(chains)]
                generated += n
            return generated
        finally:
            for chain in chains:
                llama.llama_sampler_free(chain)

    def close(self) -> None:
        llama = self.llama
        llama.llama_batch_free(self.batch)
        llama.llama_free(self.ctx)
        llama.llama_model_free(self.model)


if __name__ == "__main__":  # the probe's child: python -m engine.bench.llamacpp_peer FILE.gguf 1,2,3 THREADS
    _gguf, _ids, _threads = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3])
    _peer = LlamaCppPeer(Path(_gguf), 2, len(_ids), 2, _threads)
    assert _peer.run(_ids, [(1.0, 0.9), (0.7, 1.0)], 2) == 4
    _peer.close()
