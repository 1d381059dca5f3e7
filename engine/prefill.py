"""The model's forwards for a batch of rows: prefill the prompt(s) once, then one new token per row per forward.

The sampling loop (engine/generate.py) and both beam searches (engine/beams.py, engine/group_beams.py) start
the same way: `prefill` runs each distinct prompt once, exactly as it would run alone, and gives every row its
own copy of the KV cache, its raw next-token logits and the processors' state of its prompt. After that,
`decode_one_token` feeds every row's newest token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import LoadedModel
from .rowstate import DecodeState


@dataclass
class RowCache:
    """The KV cache of a batch of rows, and what their forwards need when their prompts differ in length."""

    kv: object  # transformers Cache, one entry per row
    attention_mask: torch.Tensor | None  # [B, L] 1 = real token, 0 = left padding; None when the rows share a prompt
    next_positions: torch.Tensor | None  # [B] position of each row's next token; None when the rows share a prompt

    def keep(self, rows: torch.Tensor) -> None:
        """Only `rows` [b] stay: finished rows leave the batch."""
        self.kv.batch_select_indices(rows)
        if self.attention_mask is not None:
            self.attention_mask, self.next_positions = self.attention_mask[rows], self.next_positions[rows]

    def joined(self, new: "RowCache") -> "RowCache":
        """These rows, then `new`'s (rows that join a running batch: engine/joining.py), in one cache: the shorter
        side is left-padded with zeros, the mask hides the padding and each row keeps its own positions, as for
        prompts of different lengths (prefill)."""
        length = max(self.kv.get_seq_length(), new.kv.get_seq_length())
        mask = torch.cat([_pad_positions(self.mask(), length), _pad_positions(new.mask(), length)])  # [B + n, L]
        positions = torch.cat([self.positions(), new.positions()])  # [B + n]
        for layer, other in zip(self.kv.layers, new.kv.layers):  # the cache object of these rows, filled in place
            layer.keys = torch.cat([_pad_positions(layer.keys, length), _pad_positions(other.keys, length)])
            layer.values = torch.cat([_pad_positions(layer.values, length), _pad_positions(other.values, length)])
        return RowCache(self.kv, mask, positions)

    def mask(self) -> torch.Tensor:
        """[B, L] the attention mask (all ones when the rows share a prompt: no padding)."""
        if self.attention_mask is not None:
            return self.attention_mask
        keys = self.kv.layers[0].keys  # [B, heads, L, dim]
        return torch.ones(keys.shape[0], keys.shape[-2], dtype=torch.long, device=keys.device)

    def positions(self) -> torch.Tensor:
        """[B] position of each row's next token."""
        if self.next_positions is not None:
            return self.next_positions
        keys = self.kv.layers[0].keys  # [B, heads, L, dim]
        return torch.full((keys.shape[0],), keys.shape[-2], dtype=torch.long, device=keys.device)

    def crop(self, length: int) -> None:
        """Keep the first `length` positions of every row (assisted decoding drops rejected drafts and padding)."""
        removed = self.kv.get_seq_length() - length
        if removed > 0:
            self.kv.crop(-removed)  # a negative count removes that many positions (transformers 4.x and 5.x alike)
        if self.attention_mask is not None:
            self.next_positions = self.next_positions - (self.attention_mask.shape[1] - length)
            self.attention_mask = self.attention_mask[:, :length]

    def reorder(self, rows: torch.Tensor) -> None:
        """Row i continues from row `rows[i]` (beam search: every beam has the same prompt)."""
        self.kv.reorder_cache(rows)


@dataclass
class Prefill:
    """A batch of rows right after its prompt(s)."""

    logits: torch.Tensor  # [B, V] float32: every row's raw next-token logits
    cache: RowCache  # the B rows, then the extra rows (classifier-free guidance's companions)
    state: DecodeState  # every row's prompt as the processors see it (left-padded with -1 when prompts differ)
    extra_logits: torch.Tensor | None = None  # [E, V] float32: the extra rows' next-token logits


def prefill(loaded: LoadedModel, prompts: list[list[int]], rows: int, extra: list[list[int]] | None = None) -> Prefill:
    """One prompt for all `rows` rows ([prompt]), or one prompt per row; `extra`: contexts of more rows that join
    the batch's cache after the `rows` rows (classifier-free guidance's unconditional companions), not its state.

    One prompt runs once and its cache [1, ...] is repeated into every row. Several (or any extra rows): each
    distinct context runs on its own, and the caches are left-padded with zeros to the longest and gathered per
    row; the attention mask hides the padding and each row keeps its own positions, so no row sees another's."""
    device = loaded.device
    if len(prompts) == 1 and not extra:
        prompt = torch.tensor([prompts[0]], device=device)  # [1, P]
        output = loaded.model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        cache = output.past_key_values
        cache.batch_repeat_interleave(rows)
        return Prefill(output.logits[:, -1, :].float().expand(rows, -1), RowCache(cache, None, None),
                       DecodeState.start(prompt.expand(rows, -1), loaded.vocab_size))
    assert len(prompts) in (1, rows), "one prompt for all rows or one per row"
    main = prompts * rows if len(prompts) == 1 else prompts
    everyone = main + list(extra or [])
    distinct = list(dict.fromkeys(tuple(p) for p in everyone))
    group = torch.tensor([distinct.index(tuple(p)) for p in everyone], device=device)  # [B + E] row -> its context
    longest = max(len(p) for p in distinct)
    outputs = [loaded.model(input_ids=torch.tensor([list(p)], device=device), use_cache=True, logits_to_keep=1)
               for p in distinct]
    cache = _left_padded([o.past_key_values for o in outputs], longest)
    cache.batch_select_indices(group)
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in distinct], device=device)[group]  # [B + E, L]
    logits = torch.cat([o.logits[:, -1, :].float() for o in outputs])[group]  # [B + E, V]
    positions = torch.tensor([len(p) for p in everyone], device=device)  # [B + E]
    return Prefill(logits[:rows], RowCache(cache, mask, positions), _prompt_state(main, loaded.vocab_size, device),
                   logits[rows:] if extra else None)


def _prompt_state(prompts: list[list[int]], vocab_size: int, device: torch.device) -> DecodeState:
    """The processors' state of rows with these prompts: left-padded with -1 to the longest of them."""
    longest = max(len(p) for p in prompts)
    distinct = list(dict.fromkeys(tuple(p) for p in prompts))
    group = torch.tensor([distinct.index(tuple(p)) for p in prompts], device=device)
    tokens = torch.tensor([[-1] * (longest - len(p)) + list(p) for p in distinct], device=device)[group]  # [B, L]
    return DecodeState.start(tokens, vocab_size)


def _left_padded(caches: list, length: int) -> object:
    """The caches of single prompts [1, heads, P_i, dim] -> one cache [n, heads, length, dim], left-padded with
    zeros (the first cache object, filled in place)."""
    merged = caches[0]
    for layer, parts in zip(merged.layers, zip(*(c.layers for c in caches))):
        pad = [length - part.keys.shape[-2] for part in parts]
        layer.keys = torch.cat([torch.nn.functional.pad(part.keys, (0, 0, p, 0)) for part, p in zip(parts, pad)])
        layer.values = torch.cat([torch.nn.functional.pad(part.values, (0, 0, p, 0)) for part, p in zip(parts, pad)])
    return merged


def _pad_positions(t: torch.Tensor, length: int) -> torch.Tensor:
    """Left-pad the positions axis with zeros to `length`: keys / values [B, heads, L, dim] (dim -2) or a mask
    [B, L] (dim -1)."""
    axis_from_end = 2 if t.dim() == 4 else 1
    missing = length - t.shape[-axis_from_end]
    if missing == 0:
        return t
    return torch.nn.functional.pad(t, (0, 0) * (axis_from_end - 1) + (missing, 0))


def decode_one_token(model: torch.nn.Module, tokens: torch.Tensor, cache: RowCache) -> torch.Tensor:
    """Feed every row's newest token [b] -> its next-token logits [b, V] (float32); the cache grows by one."""
    if cache.attention_mask is None:
        output = model(input_ids=tokens[:, None], past_key_values=cache.kv, use_cache=True)
    else:  # left-padded prompts: mask the padding, and give each row its own position
        cache.attention_mask = torch.cat([cache.attention_mask, torch.ones_like(cache.attention_mask[:, :1])], dim=1)
        output = model(input_ids=tokens[:, None], past_key_values=cache.kv, use_cache=True,
                       attention_mask=cache.attention_mask, position_ids=cache.next_positions[:, None])
        cache.next_positions = cache.next_positions + 1
    return output.logits[:, -1, :].float()


def decode_tokens(model: torch.nn.Module, tokens: torch.Tensor, cache: RowCache) -> torch.Tensor:
    """Feed T tokens per row [b, T] after the cache -> the next-token logits after each of them [b, T, V]
    (float32); the cache grows by T. A row's padding goes at its end: it sees nothing after itself, and the caller
    crops it out of the cache (assisted decoding)."""
    if cache.attention_mask is None:
        output = model(input_ids=tokens, past_key_values=cache.kv, use_cache=True)
    else:
        steps = torch.arange(tokens.shape[1], device=tokens.device)
        cache.attention_mask = torch.cat([cache.attention_mask, torch.ones_like(tokens)], dim=1)
        output = model(input_ids=tokens, past_key_values=cache.kv, use_cache=True,
                       attention_mask=cache.attention_mask, position_ids=cache.next_positions[:, None] + steps)
        cache.next_positions = cache.next_positions + tokens.shape[1]
    return output.logits.float()
