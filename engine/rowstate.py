"""What the logits processors read: every row's parameters as tensors, and every row's decoding state.

RowParams turns B SamplingParams into per-row tensors ([B, 1] floats broadcast against [B, V] scores), so one
batch can mix settings; DecodeState holds each row's tokens so far and the counts derived from them, and is
rebuilt exactly from the tokens for a replay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import torch

from .knobs import PROCESSORS
from .order import DEFAULT_ORDER
from .params import SamplingParams
from .tokens import RestartSequences
from .watermark import SynthIDTable

NEG_INF = float("-inf")


@dataclass
class BiasTable:
    """Per-row additive biases on token sequences (transformers' SequenceBiasLogitsProcessor, batched).

    single: [B, V] bias for one-token sequences, applied at every step.
    groups: for each prefix length P, the entries (row, prefix [P], last token, bias) whose prefix must match
            the end of that row's tokens for the bias to apply to the last token.
    """

    single: torch.Tensor  # [B, V] float32
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # (rows [M], prefixes [M,P], last [M], bias [M])
    active: torch.Tensor  # [B] bool

    @staticmethod
    def build(per_row: Sequence[Sequence[tuple[Sequence[int], float]]], vocab_size: int,
              device: torch.device | str = "cpu") -> "BiasTable":
        single = torch.zeros(len(per_row), vocab_size, dtype=torch.float32, device=device)
        by_len: dict[int, list[tuple[int, list[int], int, float]]] = {}
        for r, entries in enumerate(per_row):
            # transformers keys its dict by the sequence, so a repeated sequence keeps its last bias
            for seq, bias in dict((tuple(s), b) for s, b in entries).items():
                if len(seq) == 1:
                    single[r, seq[0]] = bias
                else:
                    by_len.setdefault(len(seq) - 1, []).append((r, list(seq[:-1]), seq[-1], bias))
        groups = [
            (torch.tensor([e[0] for e in g], device=device), torch.tensor([e[1] for e in g], device=device),
             torch.tensor([e[2] for e in g], device=device),
             torch.tensor([e[3] for e in g], dtype=torch.float32, device=device))
            for g in by_len.values()
        ]
        active = torch.tensor([bool(entries) for entries in per_row], dtype=torch.bool, device=device)
        return BiasTable(single, groups, active)

    def select(self, keep: torch.Tensor) -> "BiasTable":
        """Keep rows `keep` (indices into the current rows), renumbering the multi-token entries."""
        new_index = torch.full((self.single.shape[0],), -1, dtype=torch.long, device=keep.device)
        new_index[keep] = torch.arange(keep.numel(), device=keep.device)
        groups = []
        for rows, prefixes, last, bias in self.groups:
            mapped = new_index[rows]
            kept = mapped >= 0
            if kept.any():
                groups.append((mapped[kept], prefixes[kept], last[kept], bias[kept]))
        return BiasTable(self.single[keep], groups, self.active[keep])

    def bias(self, tokens: torch.Tensor) -> torch.Tensor:
        """The [B, V] bias to add given each row's tokens so far [B, L]."""
        bias = self.single.clone()
        for rows, prefixes, last, seq_bias in self.groups:
            prefix_len = prefixes.shape[1]
            if prefix_len > tokens.shape[1]:  # the prefix is longer than the context: it cannot match
                continue
            matches = (tokens[rows, -prefix_len:] == prefixes).all(dim=-1)  # [M]
            bias.index_put_((rows, last), torch.where(matches, seq_bias, 0.0), accumulate=True)
        return bias


@dataclass
class RestartTable:
    """DRY's breakers for the rows in llama.cpp mode (engine.tokens.RestartSequences), one table per distinct
    breaker list: single [U, V + 1] bool (the last column, for prompt padding, is True), and per distinct tail
    [T] long the heads [U, V + 1] bool that start a breaker with it; `row` [B] picks each row's table."""

    llama: torch.Tensor  # [B] bool: the row's dry_mode is "llama.cpp"
    row: torch.Tensor  # [B] long
    single: torch.Tensor  # [U, V + 1] bool
    tails: tuple[torch.Tensor, ...]
    heads: tuple[torch.Tensor, ...]

    @staticmethod
    def build(llama: Sequence[bool], per_row: Sequence[RestartSequences | None], vocab_size: int,
              device: torch.device | str = "cpu") -> "RestartTable":
        distinct = list(dict.fromkeys(seq for on, seq in zip(llama, per_row) if on and seq is not None))
        tails = list(dict.fromkeys(tail for seq in distinct for tail, _ in seq.tails))
        single = torch.zeros(max(1, len(distinct)), vocab_size + 1, dtype=torch.bool, device=device)
        single[:, vocab_size] = True
        heads = [torch.zeros_like(single) for _ in tails]
        for u, seq in enumerate(distinct):
            single[u, [t for t in seq.single if t < vocab_size]] = True
            for tail, ids in seq.tails:
                heads[tails.index(tail)][u, [t for t in ids if t < vocab_size]] = True
        row = [distinct.index(seq) if on and seq is not None else 0 for on, seq in zip(llama, per_row)]
        return RestartTable(torch.tensor(list(llama), dtype=torch.bool, device=device),
                            torch.tensor(row, dtype=torch.long, device=device), single,
                            tuple(torch.tensor(t, dtype=torch.long, device=device) for t in tails), tuple(heads))

    def select(self, keep: torch.Tensor) -> "RestartTable":
        return replace(self, llama=self.llama[keep], row=self.row[keep])


@dataclass
class TokenSet:
    """Per-row sets of token ids (suppress_tokens, begin_suppress_tokens): ids [B, K] long, padded with -1."""

    ids: torch.Tensor  # [B, K] long
    active: torch.Tensor  # [B] bool: the row's set is not empty

    @staticmethod
    def build(per_row: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> "TokenSet":
        width = max([1, *(len(ids) for ids in per_row)])
        ids = torch.tensor([list(row) + [-1] * (width - len(row)) for row in per_row], dtype=torch.long, device=device)
        return TokenSet(ids, (ids >= 0).any(dim=1))

    def select(self, keep: torch.Tensor) -> "TokenSet":
        return TokenSet(self.ids[keep], self.active[keep])

    def mask(self, vocab_size: int) -> torch.Tensor:
        """[B, V] bool: True at each row's tokens (padding goes to a spare column that is dropped)."""
        index = torch.where(self.ids >= 0, self.ids, vocab_size)  # [B, K]
        spare = torch.zeros(self.ids.shape[0], vocab_size + 1, dtype=torch.bool, device=self.ids.device)
        return spare.scatter_(1, index, True)[:, :vocab_size]


_DTYPES = {"float32": torch.float32, "float64": torch.float64, "long": torch.long, "bool": torch.bool}


@dataclass
class RowParams:
    """SamplingParams of B rows as tensors, so one batch can mix settings.

    Every processor field with a dtype in engine/knobs.py becomes `rows.<field>`: [B, 1] when the spec says
    column (to broadcast against [B, V] scores), else [B]; e.g. rows.temperature [B, 1] float32, rows.top_k [B]
    long, rows.top_p [B, 1] float64 (thresholds are derived in float64, then cast like Python floats),
    rows.mirostat [B] bool (v2 on). Greedy rows hold the default of every sampling-only processor's field, so
    they skip those processors, as transformers does when do_sample=False. The texts are tokenized into tables.
    """

    greedy: torch.Tensor  # [B] bool
    knobs: dict[str, torch.Tensor]  # field -> its row tensor, as engine/knobs.py declares it
    eos_mask: torch.Tensor  # [V] bool
    eos_ids: torch.Tensor  # [E] long: the same ids, listed (a processor that writes only their columns)
    sequence_bias: BiasTable  # sequence_bias and logit_bias together
    bad_words: BiasTable
    suppress_tokens: TokenSet
    begin_suppress_tokens: TokenSet
    max_new_tokens: torch.Tensor  # [B] long: the row's length (forced_eos acts at its last token)
    order: torch.Tensor  # [B, S] long: index into DEFAULT_ORDER of each row's stage s
    dry_breakers: torch.Tensor  # [B, K] long: sequence-breaker token ids, padded with -1 (padding is a breaker)
    dry_restarts: RestartTable  # DRY's breakers for the rows in llama.cpp mode
    seed: torch.Tensor  # [B] long: the row's seed and sample index key its random decisions (XTC)
    sample_index: torch.Tensor  # [B] long
    watermark_selfhash: torch.Tensor  # [B] bool: the green list's seeding scheme is "selfhash"
    synthid_keys: SynthIDTable  # each row's SynthID config (active: keys given)

    def __getattr__(self, name: str) -> torch.Tensor:
        knobs = self.__dict__.get("knobs")
        if knobs is not None and name in knobs:
            return knobs[name]
        raise AttributeError(f"RowParams has no {name!r}")

    @staticmethod
    def build(params: Sequence[SamplingParams], eos_token_ids: Sequence[int], vocab_size: int,
              device: torch.device | str = "cpu",
              sequence_bias: Sequence[Sequence[tuple[Sequence[int], float]]] | None = None,
              bad_words: Sequence[Sequence[Sequence[int]]] | None = None,
              sequence_breakers: Sequence[Sequence[int]] | None = None,
              sample_indices: Sequence[int] | None = None,
              suppress_tokens: Sequence[Sequence[int]] | None = None,
              begin_suppress_tokens: Sequence[Sequence[int]] | None = None,
              restart_sequences: Sequence[RestartSequences | None] | None = None) -> "RowParams":
        """`sequence_bias` / `bad_words` are per-row token-id sequences, `sequence_breakers` per-row token ids
        of DRY's breakers, `suppress_tokens` / `begin_suppress_tokens` per-row token ids (the engine tokenizes the
        texts; without them, the token ids the params list are taken as they are); `sample_indices` default to 0.
        `restart_sequences`: per row, DRY's breakers made the llama.cpp way (engine.tokens.restart_sequences), for
        the rows whose dry_mode is "llama.cpp"; without them such a row's `sequence_breakers` ids are its
        single-token breakers."""
        eos_mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        eos_mask[list(eos_token_ids)] = True
        no_bias: list[list[tuple[list[int], float]]] = [[] for _ in params]
        breakers = [list(ids) for ids in sequence_breakers] if sequence_breakers else [[] for _ in params]
        width = max([1, *(len(ids) for ids in breakers)])
        return RowParams(
            greedy=torch.tensor([p.greedy for p in params], dtype=torch.bool, device=device),
            knobs=knob_tensors(params, device),
            eos_mask=eos_mask,
            eos_ids=eos_mask.nonzero()[:, 0],
            sequence_bias=BiasTable.build(sequence_bias or no_bias, vocab_size, device),
            bad_words=BiasTable.build(
                [[(ids, NEG_INF) for ids in row] for row in bad_words] if bad_words else no_bias, vocab_size, device),
            suppress_tokens=TokenSet.build(
                suppress_tokens if suppress_tokens is not None else _given_ids(params, "suppress_tokens"), device),
            begin_suppress_tokens=TokenSet.build(begin_suppress_tokens if begin_suppress_tokens is not None
                                                 else _given_ids(params, "begin_suppress_tokens"), device),
            max_new_tokens=torch.tensor([p.max_new_tokens for p in params], dtype=torch.long, device=device),
            order=torch.tensor([[DEFAULT_ORDER.index(n) for n in p.order] for p in params], device=device),
            dry_breakers=torch.tensor([ids + [-1] * (width - len(ids)) for ids in breakers], dtype=torch.long,
                                      device=device),
            dry_restarts=RestartTable.build(
                [p.dry_mode == "llama.cpp" and bool(p.dry_multiplier) for p in params],
                list(restart_sequences) if restart_sequences is not None
                else [RestartSequences(tuple(ids)) for ids in breakers], vocab_size, device),
            seed=torch.tensor([p.seed for p in params], dtype=torch.long, device=device),
            sample_index=torch.tensor(list(sample_indices) if sample_indices is not None else [0] * len(params),
                                      dtype=torch.long, device=device),
            watermark_selfhash=torch.tensor([p.watermark_seeding_scheme == "selfhash" for p in params],
                                            dtype=torch.bool, device=device),
            synthid_keys=SynthIDTable.build(params, device),
        )

    def select(self, keep: torch.Tensor) -> "RowParams":
        """The same parameters for the rows `keep` only (finished rows leave the batch)."""
        changes: dict = {"knobs": {name: value[keep] for name, value in self.knobs.items()}}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("eos_mask", "eos_ids", "knobs"):
                continue
            changes[f.name] = (value.select(keep) if isinstance(value, (BiasTable, TokenSet, RestartTable, SynthIDTable))
                               else value[keep])
        return replace(self, **changes)


def _given_ids(params: Sequence[SamplingParams], name: str) -> list[list[int]]:
    """The token ids a token-list knob names directly (its texts need a tokenizer: engine/row_tensors.py)."""
    return [[item for item in getattr(p, name) if isinstance(item, int)] for p in params]


def knob_tensors(params: Sequence[SamplingParams], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Every processor field that has a row tensor: {field: [B, 1] or [B] tensor}."""
    tensors = {}
    for spec in PROCESSORS:
        for knob in spec.fields:
            if knob.dtype is None:
                continue
            # a greedy row holds the off value of every sampling-only knob: those processors skip it
            values = [knob.default if spec.sampling_only and p.greedy else getattr(p, knob.name) for p in params]
            tensor = torch.tensor(values, dtype=_DTYPES[knob.dtype], device=device)
            tensors[knob.name] = tensor.unsqueeze(1) if knob.column else tensor
    return tensors


@dataclass
class DecodeState:
    """What the processors need to know about each row's tokens so far; rebuilt exactly by `start` for replays."""

    tokens: torch.Tensor  # [B, L] prompt + generated tokens
    prompt_len: int
    seen: torch.Tensor  # [B, V] bool: token occurs in prompt or output (repetition penalty)
    counts: torch.Tensor  # [B, V] float32: occurrences in the generated output (presence/frequency)
    # [B] float64: total surprise (bits) of the generated tokens under the final distributions they were drawn
    # from; mirostat's mu is a function of it. None means zeros (no token recorded with its log-probability).
    surprise_bits: torch.Tensor | None = field(default=None)
    # [B, V] float32, diverse beam search only: how many beams of the earlier groups of the row's beam search
    # chose each token at this step (transformers' current_tokens, counted). None outside a group step.
    peer_counts: torch.Tensor | None = field(default=None)
    # [B, G] float64, adaptive-P's feedback: each generated token's probability under the distribution adaptive-P
    # received at its step (0 for rows without adaptive-P). Its moving average is a function of these.
    adaptive_probs: torch.Tensor | None = field(default=None)
    # [B, V] float32: the distribution adaptive-P received at this step, set while the processors run and read
    # once the token is chosen (`chosen_adaptive_probs`). None when no row ran adaptive-P this step.
    adaptive_input: torch.Tensor | None = field(default=None)
    # [B, V] float32: classifier-free guidance's input, the raw next-token logits of each row's unconditional
    # companion at this step (rows without guidance: anything finite, never read). Set before the processors run.
    unconditional_logits: torch.Tensor | None = field(default=None)
    # [B] long: the batch step at which each row took its first step, for rows that joined a running batch
    # (engine/joining.py); None when every row started together (the common case: no per-row work)
    begun: torch.Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        if self.surprise_bits is None:
            self.surprise_bits = torch.zeros(self.tokens.shape[0], dtype=torch.float64, device=self.tokens.device)
        if self.adaptive_probs is None:
            self.adaptive_probs = torch.zeros(self.tokens.shape[0], 0, dtype=torch.float64, device=self.tokens.device)

    @property
    def step(self) -> int:
        """Number of tokens generated so far."""
        return self.tokens.shape[1] - self.prompt_len

    @property
    def row_step(self) -> int | torch.Tensor:
        """Tokens each row has generated so far: an int when the rows started together, else [B] long (a row that
        joined a running batch counts from its own first step, so it decodes as it would alone)."""
        return self.step if self.begun is None else self.step - self.begun

    @staticmethod
    def start(prompt: torch.Tensor, vocab_size: int, generated: torch.Tensor | None = None,
              final_logprobs: torch.Tensor | None = None, adaptive_probs: torch.Tensor | None = None
              ) -> "DecodeState":
        """State before the next token, given prompt [B, P] and optionally generated tokens [B, G] with the
        log-probabilities [B, G] each had under its final distribution (a run's `final_logprobs`, which
        mirostat's state is rebuilt from: the same float32 values summed in the same order as the run did) and
        their probabilities [B, G] at adaptive-P's input (a run's `adaptive_probs`, adaptive-P's state).

        A prompt may be left-padded with -1 (rows with prompts of different lengths): padding is never "seen".
        """
        batch = prompt.shape[0]
        seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=prompt.device)
        if bool((prompt < 0).any()):
            hits = torch.zeros(batch, vocab_size, dtype=torch.int32, device=prompt.device)
            hits.scatter_add_(1, prompt.clamp(min=0), (prompt >= 0).to(torch.int32))
            seen = hits > 0
        else:
            seen.scatter_(1, prompt, True)
        counts = torch.zeros(batch, vocab_size, dtype=torch.float32, device=prompt.device)
        state = DecodeState(prompt, prompt.shape[1], seen, counts)
        if generated is not None:
            for t in range(generated.shape[1]):
                state.append(generated[:, t], None if final_logprobs is None else final_logprobs[:, t],
                             None if adaptive_probs is None else adaptive_probs[:, t])
        return state

    def chosen_adaptive_probs(self, chosen: torch.Tensor) -> torch.Tensor | None:
        """[B] float64: the chosen tokens' probabilities under the distribution adaptive-P received at this step
        (0 where a row's was not a distribution: it had nothing left); None when no row ran adaptive-P."""
        if self.adaptive_input is None:
            return None
        p = self.adaptive_input.gather(1, chosen[:, None])[:, 0].to(torch.float64)
        return torch.nan_to_num(p, nan=0.0)

    def append(self, next_tokens: torch.Tensor, final_logprobs: torch.Tensor | None = None,
               adaptive_probs: torch.Tensor | None = None) -> None:
        """Record the tokens [B] just chosen, and their log-probabilities [B] under the final distribution
        (nats; mirostat's feedback: without them its mu stays at 2 * tau) and their probabilities [B] at
        adaptive-P's input (its feedback: zeros when none is given)."""
        if adaptive_probs is None:
            adaptive_probs = torch.zeros(next_tokens.shape[0], dtype=torch.float64, device=next_tokens.device)
        self.adaptive_probs = torch.cat([self.adaptive_probs, adaptive_probs[:, None]], dim=1)
        self.adaptive_input = None
        self.tokens = torch.cat([self.tokens, next_tokens[:, None]], dim=1)
        self.seen.scatter_(1, next_tokens[:, None], True)
        self.counts.scatter_add_(1, next_tokens[:, None], torch.ones_like(next_tokens[:, None], dtype=torch.float32))
        if final_logprobs is not None:
            self.surprise_bits = self.surprise_bits - final_logprobs.to(torch.float64) / math.log(2)

    def select(self, keep: torch.Tensor) -> "DecodeState":
        return DecodeState(self.tokens[keep], self.prompt_len, self.seen[keep], self.counts[keep],
                           self.surprise_bits[keep], adaptive_probs=self.adaptive_probs[keep],
                           begun=None if self.begun is None else self.begun[keep])

    def joined(self, new: "DecodeState") -> "DecodeState":
        """These rows, then `new`'s rows (their prompts only: engine/joining.py) starting their first step now.

        Both sides are left-padded with -1 to one width, with the new rows' prompts ending at the last column, so
        every row's newest tokens stay at the end (where stop strings, n-grams, DRY and sequence biases look)."""
        assert new.step == 0, "joining rows have generated nothing yet"
        width = max(self.tokens.shape[1], new.tokens.shape[1])
        pad = width - self.tokens.shape[1]
        now = torch.full((new.tokens.shape[0],), self.step, dtype=torch.long, device=self.tokens.device)  # [n]
        begun = self.begun if self.begun is not None else torch.zeros_like(self.surprise_bits, dtype=torch.long)
        return DecodeState(
            torch.cat([_left_pad(self.tokens, width), _left_pad(new.tokens, width)]), self.prompt_len + pad,
            torch.cat([self.seen, new.seen]), torch.cat([self.counts, new.counts]),
            torch.cat([self.surprise_bits, new.surprise_bits]),
            # adaptive-P never joins; its columns stay rectangular with zeros for the steps before a row began
            adaptive_probs=torch.cat([self.adaptive_probs, torch.zeros(
                new.tokens.shape[0], self.adaptive_probs.shape[1], dtype=torch.float64, device=now.device)]),
            begun=torch.cat([begun, now]))


def as_column(value: int | bool | torch.Tensor) -> int | bool | torch.Tensor:
    """A per-row value [B] as a column [B, 1] to broadcast against [B, V]; a value shared by every row as it is."""
    return value[:, None] if isinstance(value, torch.Tensor) else value


def _left_pad(tokens: torch.Tensor, width: int) -> torch.Tensor:
    """[B, L] -> [B, width], left-padded with -1 (the padding no processor counts)."""
    return torch.nn.functional.pad(tokens, (width - tokens.shape[1], 0), value=-1)
