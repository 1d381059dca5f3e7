"""Assisted decoding that changes no token: drafts (prompt lookup's or a draft model's), verified against the row's
own choices.

A row's next token is fixed by its prefix: its processors read only its tokens so far, and its noise is a pure
function of (seed, sample index, step, token) (engine/sampling.py). So a drafted token can be checked exactly:
it is accepted when it is the very token plain decoding would choose at that step, greedy or sampled alike.

Drafts come from the row's own text, as transformers' prompt lookup decoding does (PromptLookupCandidateGenerator;
Saxena 2023, "Prompt Lookup Decoding"): the last n-gram of prompt + output (n from max_matching_ngram_size down
to 1) is searched for from the start, and the tokens that followed its first earlier occurrence are the draft
(at most prompt_lookup_num_tokens, cut before an end-of-text token and at the row's length). Or from a draft
model (assistant_model, engine/draft_model.py): its greedy continuation of the row's text, num_assistant_tokens
long (cut at the row's length, ended by an end-of-text token). A row with forced first tokens (a branch) drafts
those.

One round is one forward of the model over every unfinished row: the row's tokens that the cache does not hold
yet, then its draft, right-padded to the longest row. Then, at each drafted position in turn, the row's whole
pipeline runs on the logits there with its decode state advanced by exactly the tokens accepted so far, and the
row chooses with the key of that step (its token index), as plain decoding does; the draft is accepted while the
choice equals it, and the choice at the first mismatch (or after the last draft) is the round's last token: it is
correct too. Rows accept different numbers of drafts, so the cache is cropped back to the shortest valid length
of all rows (padding and rejected drafts go with it) and each row feeds the accepted tokens it is missing again
at the next round. Endings (EOS, stop strings, max_new_tokens, max_time, cancel) are checked after every token,
as in the plain loop, so rows end exactly where plain decoding ends them.

Rows at the same step share one DecodeState while they choose (processors read one step count per batch); a
row's state is its own between rounds. The result is plain decoding's, token for token; log-probabilities and
entropies agree to float rounding (a forward over several tokens rounds differently from one over one).
Each RowResult says how many tokens were drafted, how many accepted and how many forwards the row took.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator, Sequence

import torch

from .events import StepUpdate
from .draft_model import DraftRows
from .forcing import ForcedTokens
from .order import DEFAULT_ORDER
from .prefill import decode_tokens, prefill
from .processors import plan_stages
from .results import GenerationResult
from .rowstate import DecodeState, RowParams
from .sampling import row_keys
from .steps import Endings, Rows, choose, step_update, synced_time
from .trace import Trace, TraceRecorder

PAD = 0  # what fills a row's input after its last token; its cache entries are cropped before they are read


def lookup_draft(tokens: Sequence[int], num_tokens: int, max_ngram: int) -> list[int]:
    """transformers' prompt lookup for one row: the tokens that followed the first earlier occurrence of the row's
    last n-gram (n = max_ngram down to 1; the first size with a match that has a continuation wins), at most
    `num_tokens` of them; [] when nothing matches."""
    length = len(tokens)
    if num_tokens <= 0:
        return []
    for n in range(min(max_ngram, length - 1), 0, -1):
        tail = list(tokens[-n:])
        last = tail[-1]
        for end in range(n - 1, length - 1):  # the window tokens[end - n + 1 : end + 1], followed by tokens[end + 1]
            if tokens[end] == last and list(tokens[end - n + 1:end + 1]) == tail:
                return list(tokens[end + 1:end + 1 + num_tokens])
    return []


@dataclass
class _Row:
    """One row between rounds: its state, its text for the lookup, and what the cache holds of it."""

    id: int
    state: DecodeState  # [1, ...] the processors' view of the row
    text: list[int]  # prompt (unpadded) + generated: where drafts are looked up
    generated: list[int] = field(default_factory=list)
    valid: int = 0  # positions of the cache (padded-prompt coordinates) that hold this row's right entries
    logits: torch.Tensor | None = None  # [n + 1, V] this round's logits at the row's draft positions
    drafts: list[int] = field(default_factory=list)
    at: int = 0  # drafts accepted so far this round (the next position to verify)
    verifying: bool = True
    finished: bool = False
    drafted: int = 0
    accepted: int = 0
    forwards: int = 1  # the prefill


def _merged(states: list[DecodeState]) -> DecodeState:
    """The states of rows at the same step as one batch."""
    if len(states) == 1:
        return states[0]
    return DecodeState(torch.cat([s.tokens for s in states]), states[0].prompt_len,
                       torch.cat([s.seen for s in states]), torch.cat([s.counts for s in states]),
                       torch.cat([s.surprise_bits for s in states]),
                       adaptive_probs=torch.cat([s.adaptive_probs for s in states]))


class _Groups:
    """RowParams and stage plans of each set of rows that chose together (the same sets recur round after round)."""

    def __init__(self, params: RowParams):
        self.params, self.memo = params, {}

    def of(self, ids: tuple[int, ...]) -> tuple[RowParams, list]:
        if ids not in self.memo:
            if len(self.memo) > 4096:
                self.memo.clear()
            index = torch.tensor(ids, device=self.params.greedy.device)
            rows = self.params.select(index)
            self.memo[ids] = (rows, plan_stages(rows))
        return self.memo[ids]


@torch.inference_mode()
def assisted_decode(engine: Any, prompt_ids: Sequence[int] | Sequence[Sequence[int]],
                    params: Sequence, sample_indices: Sequence[int] | None, trace_top_n: int,
                    cancel: threading.Event | None, cancel_rows: Callable[[], Collection[int]] | None,
                    forced: Sequence[Sequence[int]] | None = None) -> Iterator[StepUpdate]:
    """Engine.stream's loop when a row drafts: the same updates and result as the plain loop, in fewer forwards.

    An update is yielded per set of rows that chose a token at the same step (several per round)."""
    loaded = engine.loaded
    params, sample_indices, row_prompts, shared = engine._checked(prompt_ids, params, sample_indices)
    forcing = ForcedTokens.build(forced, params, loaded.vocab_size, loaded.device)
    started = time.perf_counter()
    device, batch = loaded.device, len(params)
    max_steps = max(p.max_new_tokens for p in params)
    recorder = TraceRecorder(Trace(batch, max_steps, 1 + len(DEFAULT_ORDER), trace_top_n) if trace_top_n > 0 else None)
    endings = Endings(loaded, params)
    eos = set(loaded.eos_token_ids)
    drafters = DraftRows(engine, params) if DraftRows.wanted(params) else None  # loaded and checked before any work

    t0 = synced_time(device)
    start = prefill(loaded, row_prompts[:1] if shared else row_prompts, batch)
    forward_seconds = prefill_seconds = synced_time(device) - t0
    cache = start.cache
    width = start.state.tokens.shape[1]  # the padded prompt: cache positions before it hold prompts
    groups = _Groups(engine.row_params(params, sample_indices))
    rows = [_Row(i, start.state.select(torch.tensor([i], device=device)), list(row_prompts[i]), valid=width,
                 logits=start.logits[i:i + 1]) for i in range(batch)]
    in_cache = list(rows)  # the cache's batch order
    history: list[tuple[torch.Tensor, ...]] = []
    held: StepUpdate | None = None
    last_step = 0

    while True:
        # 1. verify: the rows at the lowest step choose together, until every row has taken its round's last token
        verifying = [r for r in in_cache if not r.finished]
        for r in verifying:
            r.at, r.verifying = 0, True
        while verifying:
            step = min(len(r.generated) for r in verifying)
            group = [r for r in verifying if len(r.generated) == step]
            update = _choose(group, step, groups, forcing, recorder, endings, history, cancel, cancel_rows)
            last_step = max(last_step, step)
            if held is not None:
                yield held
            held = update
            verifying = [r for r in verifying if r.verifying]

        # 2. finished rows leave; the cache keeps what every row still has right, and each row feeds the rest
        alive = [r for r in in_cache if not r.finished]
        if not alive:
            break
        if len(alive) < len(in_cache):
            cache.keep(torch.tensor([k for k, r in enumerate(in_cache) if not r.finished], device=device))
            in_cache = alive
        common = min(r.valid for r in alive)
        if common < cache.kv.get_seq_length():
            cache.crop(common)
        inputs = []
        for r in alive:
            r.drafts = _draft(r, params[r.id], forcing, eos, drafters)
            r.drafted += len(r.drafts)
            r.forwards += 1
            inputs.append(r.generated[common - width:] + r.drafts)
        longest = max(len(i) for i in inputs)
        tokens = torch.tensor([i + [PAD] * (longest - len(i)) for i in inputs], device=device)  # [b, T]
        t0 = synced_time(device)
        logits = decode_tokens(loaded.model, tokens, cache)  # [b, T, V]
        forward_seconds += synced_time(device) - t0
        for k, (r, fed) in enumerate(zip(alive, inputs)):
            pending = len(fed) - len(r.drafts)  # tokens before the draft; the last one's logits choose first
            r.logits = logits[k, pending - 1:len(fed)]
            r.valid = common + pending  # the drafts it accepts this round are added once verified

    if recorder.trace is not None:
        recorder.trace.trim(last_step + 1)
    results = engine._row_results(history, endings.reasons_of(list(range(batch))), params)
    for row, out in zip(rows, results):
        out.drafted_tokens, out.accepted_tokens, out.target_forwards = row.drafted, row.accepted, row.forwards
    result = GenerationResult(
        prompt_ids=list(row_prompts[0]), row_prompt_ids=None if shared else row_prompts, params=params,
        sample_indices=sample_indices, rows=results, trace=recorder.trace, seconds=time.perf_counter() - started,
        forward_seconds=forward_seconds, prefill_seconds=prefill_seconds, trace_seconds=recorder.seconds)
    assert held is not None
    yield dataclasses.replace(held, result=result)


def _draft(row: _Row, p, forcing: ForcedTokens | None, eos: set[int], drafters: DraftRows | None) -> list[int]:
    """The row's draft for this round: its forced tokens while it has some, else the draft model's or the prompt
    lookup's; never past the row's length (the round's own choice comes after the drafts) nor past an end-of-text
    token."""
    per_round = p.num_assistant_tokens if p.assistant_model else p.prompt_lookup_num_tokens
    room = min(per_round, p.max_new_tokens - len(row.generated) - 1)
    if room <= 0:
        return []
    step = len(row.generated)
    if forcing is not None and step < forcing.tokens.shape[1] and int(forcing.tokens[row.id, step]) >= 0:
        ahead = forcing.tokens[row.id, step:step + room].tolist()
        return ahead[:ahead.index(-1)] if -1 in ahead else ahead
    if p.assistant_model:
        assert drafters is not None
        return drafters.draft(row.id, p.assistant_model, row.text, room, eos)
    draft = lookup_draft(row.text, room, p.max_matching_ngram_size)
    for k, token in enumerate(draft):
        if token in eos:
            return draft[:k]
    return draft


def _choose(group: list[_Row], step: int, groups: _Groups, forcing: ForcedTokens | None, recorder: TraceRecorder,
            endings: Endings, history: list, cancel: threading.Event | None,
            cancel_rows: Callable[[], Collection[int]] | None) -> StepUpdate:
    """One step of the rows in `group` (all at `step`), exactly as the plain loop takes it; then each row either
    accepts its draft at this position and goes on verifying, or ends its round (or its output)."""
    device = group[0].state.tokens.device
    ids_list = tuple(r.id for r in group)
    ids = torch.tensor(ids_list, device=device)
    params, plans = groups.of(ids_list)
    state = _merged([r.state for r in group])
    logits = torch.stack([r.logits[r.at] for r in group])  # [g, V]

    forced_now = forcing.at(ids, step) if forcing is not None else None
    choice = choose(logits, ids, state, params, plans, row_keys(params.seed, params.sample_index, step), forced_now,
                    recorder)
    chosen, emitted = choice.chosen, choice.emitted
    history.append(emitted)
    recorder.record(step, ids, chosen)
    state.append(chosen, choice.final_logp, choice.adaptive_p)

    done = endings.after_step(Rows(ids, params, state), chosen, choice.empty, cancel, cancel_rows)
    finished = ids[done].tolist()
    update = step_update(step, emitted, finished, endings.reasons_of(finished), recorder)

    tokens, done_list = chosen.tolist(), done.tolist()
    empty_list = choice.empty.tolist() if choice.empty is not None else [False] * len(group)
    for k, r in enumerate(group):
        r.state = state if len(group) == 1 else state.select(torch.tensor([k], device=device))
        if not empty_list[k]:
            r.generated.append(tokens[k])
            r.text.append(tokens[k])
        accepted = not empty_list[k] and r.at < len(r.drafts) and tokens[k] == r.drafts[r.at]
        r.accepted += accepted  # a draft that ends the row (end-of-text, a stop string) counts as accepted too
        if done_list[k]:
            r.finished, r.verifying = True, False
        elif accepted:
            r.at += 1
            r.valid += 1  # the accepted draft's cache entry was computed from the right prefix
        else:
            r.verifying = False
    return update
