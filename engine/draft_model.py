"""Drafts from a draft model (transformers' `assistant_model`) for assisted decoding (engine/assisted.py).

A smaller model with the target's tokenizer proposes the next `num_assistant_tokens` tokens of a row by its own
argmax (greedy, raw logits, as transformers' assistant drafts with its default generation config); the target then
verifies them exactly as it verifies prompt lookup's drafts, so the draft model changes how many forwards the
target takes, never a token.

Each row has its own draft cache holding a prefix of the row's text (prompt + output) and the drafts fed after it.
At the next round the cache is cropped to the longest prefix it shares with the row's text (rejected drafts go)
and the rest of the text is fed: the tokens accepted since, and the row's own choice. Rows with the same text when
they first draft (a sweep's rows share a prompt) share one prefill: its cache is copied.

A draft whose tokenizer differs from the target's (its vocabulary or any token's text) is refused before any
work: drafted ids would mean other texts (universal assisted decoding, which re-tokenizes drafts, is not
implemented). The draft loads once per engine and name (Engine.draft_models).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import ParamError
from .models import BUNDLED_NAME, DEFAULT_MODEL, LoadedModel, load_model


def draft_model_for(engine: Any, name: str) -> LoadedModel:
    """The loaded draft model `name` for this engine's target (loaded once per engine and name), refused by
    assistant_model when it does not load or its tokenizer is not the target's."""
    target: LoadedModel = engine.loaded
    if name in (DEFAULT_MODEL, target.name) and (name != DEFAULT_MODEL or target.name == BUNDLED_NAME):
        draft = target  # the target drafting for itself: the same weights, its own caches
    elif name in engine.draft_models:
        draft = engine.draft_models[name]
        if isinstance(draft, ParamError):  # a hub id that did not load: its retries take a minute, paid once
            raise draft
    else:
        dtype = str(target.dtype).removeprefix("torch.")
        try:
            draft = load_model(name, device=str(target.device), dtype=dtype)
        except Exception as exc:  # a missing directory, a hub id out of reach, a config that is not a causal LM
            reason = str(exc).removeprefix("model: ").splitlines()[0] if str(exc) else type(exc).__name__
            error = ParamError("assistant_model", f"a model id or local directory that loads (empty = off; here: "
                               f"{reason})", name)
            if not Path(name).expanduser().exists():  # a path may be written later; a hub id stays out of reach
                engine.draft_models[name] = error
            raise error from None
        engine.draft_models[name] = draft
    check_same_tokenizer(target, draft, name)
    return draft


def check_same_tokenizer(target: LoadedModel, draft: LoadedModel, name: str) -> None:
    """The draft's token ids must mean the target's: the same vocabulary, token for token."""
    if draft is target:
        return
    ours, theirs = target.tokenizer.get_vocab(), draft.tokenizer.get_vocab()
    if ours == theirs:
        return
    if len(ours) != len(theirs):
        how = f"{len(theirs)} tokens against the target's {len(ours)}"
    else:
        token = next(t for t in sorted(ours) if theirs.get(t) != ours[t])
        how = f"token {token!r} is id {theirs.get(token)} there, {ours[token]} in the target"
    raise ParamError("assistant_model", f"a model with the target's tokenizer ({how}; universal assisted decoding, "
                     "which re-tokenizes drafts, is not implemented)", name)


@dataclass
class _RowDraftCache:
    """What one row's draft cache holds: the KV of `tokens` (a prefix of the row's text, then drafts)."""

    kv: Any
    tokens: list[int] = field(default_factory=list)


class DraftRows:
    """The draft models of a run's rows and each row's draft cache."""

    def __init__(self, engine: Any, params: Sequence[Any]):
        names = sorted({p.assistant_model for p in params if p.assistant_model})
        self.models = {name: draft_model_for(engine, name) for name in names}  # refused here, before any work
        self.vocab = engine.loaded.vocab_size  # a draft's extra logit columns (padding rows) are never proposed
        self.rows: dict[int, _RowDraftCache] = {}
        self.first: dict[tuple[str, tuple[int, ...]], tuple[Any, torch.Tensor]] = {}  # text -> (cache, logits)
        self.forwards = 0

    @staticmethod
    def wanted(params: Sequence[Any]) -> bool:
        return any(p.assistant_model for p in params)

    def draft(self, row: int, name: str, text: list[int], room: int, eos: set[int]) -> list[int]:
        """Up to `room` tokens the draft model `name` takes greedily after `text`; ends after an end-of-text
        token (the row would end there if the target agrees)."""
        model = self.models[name].model
        device = self.models[name].device
        logits = self._catch_up(row, name, model, device, text)  # [V]
        held = self.rows[row]
        drafts: list[int] = []
        while True:
            token = int(logits[:self.vocab].argmax())
            drafts.append(token)
            if len(drafts) == room or token in eos:
                return drafts
            output = model(input_ids=torch.tensor([[token]], device=device), past_key_values=held.kv, use_cache=True)
            self.forwards += 1
            held.kv = output.past_key_values
            held.tokens.append(token)
            logits = output.logits[0, -1]

    def _catch_up(self, row: int, name: str, model: torch.nn.Module, device: torch.device,
                  text: list[int]) -> torch.Tensor:
        """Bring the row's draft cache to `text` -> the draft's next-token logits after it [V]."""
        held = self.rows.get(row)
        if held is None:
            key = (name, tuple(text))
            if key in self.first:  # another row started from this text: copy its prefill
                kv, logits = self.first[key]
                self.rows[row] = _RowDraftCache(copy.deepcopy(kv), list(text))
                return logits
            output = model(input_ids=torch.tensor([text], device=device), use_cache=True, logits_to_keep=1)
            self.forwards += 1
            logits = output.logits[0, -1]
            self.first[key] = (copy.deepcopy(output.past_key_values), logits)
            self.rows[row] = _RowDraftCache(output.past_key_values, list(text))
            return logits
        common = 0
        limit = min(len(held.tokens), len(text) - 1)  # at least one token is fed: its logits draft the next
        while common < limit and held.tokens[common] == text[common]:
            common += 1
        removed = held.kv.get_seq_length() - common
        if removed > 0:
            held.kv.crop(-removed)  # a negative count removes that many positions (transformers 4.x and 5.x alike)
        fed = text[common:]  # [n]: the accepted drafts the cache lacks, and the row's own last choice
        output = model(input_ids=torch.tensor([fed], device=device), past_key_values=held.kv, use_cache=True,
                       logits_to_keep=1)
        self.forwards += 1
        held.kv, held.tokens = output.past_key_values, list(text)
        return output.logits[0, -1]
