"""The text-valued knobs tokenized for one model, and the per-row tensors built from every row's SamplingParams."""
from __future__ import annotations

from typing import Sequence

from .models import LoadedModel
from .params import SamplingParams
from .tokens import restart_sequences, sequence_breaker_ids, token_ids, word_variants
from .rowstate import RowParams


def row_params(loaded: LoadedModel, params: Sequence[SamplingParams],
               sample_indices: Sequence[int] | None = None) -> RowParams:
    """bad_words, sequence_bias, DRY's sequence breakers and the suppressed tokens' texts as token ids (every
    spelling a word may take), the logit_bias entries as one-token biases, then RowParams: every knob as a per-row
    tensor on the model's device."""
    tok, eos = loaded.tokenizer, loaded.eos_token_ids
    # banning EOS as a "bad word" would make a row unable to end: a word that is only EOS is left out
    bad = [[ids for w in p.bad_words for ids in word_variants(tok, w) if not (len(ids) == 1 and ids[0] in eos)]
           for p in params]
    bias = [[(ids, b) for text, b in p.sequence_bias for ids in word_variants(tok, text)]
            + [([token], b) for token, b in p.logit_bias] for p in params]
    breakers = {p.dry_sequence_breakers: sequence_breaker_ids(tok, p.dry_sequence_breakers)
                for p in params if p.dry_multiplier}  # tokenized once per distinct list
    restarts = {p.dry_sequence_breakers: restart_sequences(tok, p.dry_sequence_breakers, loaded.vocab_size)
                for p in params if p.dry_multiplier and p.dry_mode == "llama.cpp"}  # llama.cpp's breakers
    suppressed = {items: token_ids(tok, items) for p in params for items in (p.suppress_tokens, p.begin_suppress_tokens)}
    return RowParams.build(params, eos, loaded.vocab_size, loaded.device, sequence_bias=bias, bad_words=bad,
                           sequence_breakers=[breakers.get(p.dry_sequence_breakers, []) for p in params],
                           restart_sequences=[restarts.get(p.dry_sequence_breakers) for p in params],
                           sample_indices=sample_indices,
                           suppress_tokens=[suppressed[p.suppress_tokens] for p in params],
                           begin_suppress_tokens=[suppressed[p.begin_suppress_tokens] for p in params])
