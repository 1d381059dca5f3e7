"""A KV cache that writes each step's keys and values into room reserved ahead, instead of copying the whole cache.

transformers' DynamicCache grows by `torch.cat` at every forward: each step copies every layer's keys and values
[B, heads, L, dim] once more, so a run of N steps copies the cache N times. `reserve(cache, tokens)` turns the
cache's layers into ReservedLayer: each keeps a buffer [B, heads, capacity, dim] and its `keys` / `values` are the
views [:, :, :L] of it, so a step writes only the new position. The attention reads those views: the same values
in the same order as the contiguous tensors DynamicCache would pass (tests/test_step_shortcuts.py checks the logits
bit for bit against DynamicCache).

Whatever replaces a layer's `keys` / `values` from outside (rows joining: engine/prefill.py RowCache.joined; crop,
reorder and repeat from transformers) is adopted at the next write: copied once into a new buffer.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose keys / values are views into buffers with room for `reserve` more positions."""

    reserve: int = 64  # positions of room made each time the buffer is (re)built
    key_buffer: torch.Tensor | None = None  # [B, heads, capacity, dim]
    value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions key_states / value_states [B, heads, n, dim] after the cached ones ->
        (keys, values) [B, heads, L + n, dim], views of the buffers."""
        if not self.is_initialized or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if not (self._owns(self.keys, self.key_buffer) and self._owns(self.values, self.value_buffer)
                and length + new <= self.key_buffer.shape[-2]):
            self.key_buffer = _with_room(self.keys, length + new + self.reserve)
            self.value_buffer = _with_room(self.values, length + new + self.reserve)
        self.key_buffer[:, :, length:length + new].copy_(key_states)
        self.value_buffer[:, :, length:length + new].copy_(value_states)
        self.keys = self.key_buffer[:, :, :length + new]
        self.values = self.value_buffer[:, :, :length + new]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Only the rows `indices` [b] stay: their cached positions are gathered once into new buffers of the same
        capacity (not the buffers' unused room)."""
        if not (self.get_seq_length() > 0 and self._owns(self.keys, self.key_buffer)
                and self._owns(self.values, self.value_buffer)):
            return super().batch_select_indices(indices)
        length = self.keys.shape[-2]
        self.key_buffer = _gathered(self.keys, indices, self.key_buffer.shape[-2])
        self.value_buffer = _gathered(self.values, indices, self.value_buffer.shape[-2])
        self.keys, self.values = self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]

    @staticmethod
    def _owns(view: torch.Tensor, buffer: torch.Tensor | None) -> bool:
        """Whether `view` is still the front of `buffer` (nothing replaced it from outside)."""
        return (buffer is not None and view.data_ptr() == buffer.data_ptr() and view.shape[:2] == buffer.shape[:2]
                and view.stride() == buffer.stride())


def _with_room(t: torch.Tensor, capacity: int) -> torch.Tensor:
    """[B, heads, L, dim] -> a buffer [B, heads, capacity, dim] holding t at its front (the rest unwritten)."""
    buffer = t.new_empty(t.shape[0], t.shape[1], capacity, t.shape[3])
    buffer[:, :, :t.shape[2]].copy_(t)
    return buffer


def _gathered(view: torch.Tensor, rows: torch.Tensor, capacity: int) -> torch.Tensor:
    """The rows `rows` [b] of view [B, heads, L, dim] at the front of a new buffer [b, heads, capacity, dim]."""
    buffer = view.new_empty(rows.shape[0], view.shape[1], capacity, view.shape[3])
    torch.index_select(view, 0, rows, out=buffer[:, :, :view.shape[2]])
    return buffer


_MOST_ROOM = 512  # positions reserved at most per rebuild: a long run that ends early leaves little unused room


def reserve(cache: object, tokens: int) -> None:
    """Make the plain DynamicLayer layers of a transformers cache ReservedLayer with room for `tokens` more positions
    at each rebuild (the steps a run may still take, at most 512: a run builds its buffers once per 512 steps). Other layer kinds
    (sliding windows, ...) are left as they are."""
    for i, layer in enumerate(getattr(cache, "layers", ())):
        if type(layer) is DynamicLayer:
            reserved = ReservedLayer.__new__(ReservedLayer)
            reserved.__dict__.update(layer.__dict__)
            reserved.reserve = min(max(1, tokens), _MOST_ROOM)
            cache.layers[i] = reserved
