"""DoLa, decoding by contrasting layers (dola_layers), with transformers 4.x semantics, several rows in one batch.

Chuang et al. 2023, "DoLa: Decoding by Contrasting Layers Improves Factuality in Large Language Models"
(arXiv:2309.03883): at each step the next-token scores are

    log p_final(token) - log p_premature(token)     for tokens with p_final >= 0.1 x max p_final, else -inf

where p_premature is the distribution an earlier layer gives when its hidden state goes straight through the
lm_head (no final norm: "early exit"), and the premature layer is, of the row's candidate layers, the one whose
distribution is furthest from the final layer's (Jensen-Shannon divergence) at this step.

transformers 5 moved DoLa out of the library; this is a port of transformers 4.55's `GenerationMixin._dola_decoding`,
`_dola_select_contrast` and `_relative_top_filter`:
  - the candidate layers: engine/dola_rules.py (4.55's choice for "low" / "high", incl. its tied-embeddings rule);
    one step's contrast (the divergences, the premature layer, the relative-top filter): engine/dola_contrast.py;
  - the final layer's logits (after the model's final norm) in float32; a premature layer's logits are
    lm_head(its hidden state) in the model's dtype, as 4.55 computes them;
  - the processors run on the contrasted scores (transformers' logits_processor), then greedy takes the argmax
    and a sampled row samples from them (the engine's counter-based noise: a row's draw depends only on its seed,
    sample index and step, so a sampled DoLa row does not reproduce torch.multinomial's draw);
  - two differences, on purpose: 4.55 picks one premature layer for its whole batch (the JS divergence averaged
    over the batch), here each row picks its own, which is what 4.55 does for a batch of one; and when the
    processors remove every token the contrast kept (it keeps only those with p >= 0.1 x the top p, so a
    no-repeat n-gram ban can empty it), 4.55's argmax of all -inf takes token 0 and goes on, while the row here
    ends with finish_reason "no_candidates", as every loop of the engine does.
Tokens and per-step scores equal transformers 4.55's `generate(dola_layers=...)` (tests/test_dola.py, against
outputs recorded with it: tests/data/make_dola_oracle.py).

Shapes: n rows still running, U candidate layers of all rows together, V vocabulary, H hidden size.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generator, Sequence

import torch

from . import sampling  # sampling.choose_next looked up at every step, as the sampling loop does
from .dola_contrast import contrast, layer_table, model_layers, premature_logits
from .errors import ParamError
from .events import RunningBeam
from .params import SamplingParams
from .processors import apply_pipeline, plan_stages
from .results import RowResult
from .rowstate import DecodeState
from .sampling import row_keys
from .steps import Endings, Rows, run_to_end

if TYPE_CHECKING:
    from .generate import Engine

# What dola_steps yields after each step (per row, its output so far) and returns.
DolaSteps = Generator[tuple[int, list[RunningBeam]], None, list[RowResult]]


def dola_decode(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                sample_indices: Sequence[int] | None = None, cancel: threading.Event | None = None) -> list[RowResult]:
    """Decode every row (dola_layers set) as one batch; one RowResult each."""
    return run_to_end(dola_steps(engine, prompt_ids, configs, sample_indices, cancel))


def dola_steps(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
               sample_indices: Sequence[int] | None = None, cancel: threading.Event | None = None) -> DolaSteps:
    """dola_decode step by step: yields (steps done, each row's output so far), returns the results. Refused
    before any work when a row cannot run DoLa on this model. Once `cancel` is set, the step after it is the last
    (finish_reason "cancelled")."""
    configs = [p.for_prompt(len(prompt_ids)) for p in configs]  # min_length / max_length count the prompt
    sample_indices = list(sample_indices) if sample_indices is not None else [0] * len(configs)
    if len(sample_indices) != len(configs):
        raise ParamError("sample_indices", f"one per row ({len(configs)})", len(sample_indices))
    engine.check(list(prompt_ids), configs)
    layers, allowed = layer_table(engine.loaded, configs)
    return (yield from engine.turns.taking_turns(_steps(engine, prompt_ids, configs, sample_indices, layers,
                                                        allowed, cancel)))


@torch.inference_mode()
def _steps(engine: Engine, prompt_ids: Sequence[int], configs: list[SamplingParams], sample_indices: list[int],
           layers: list[int], allowed: torch.Tensor, cancel: threading.Event | None) -> DolaSteps:
    loaded = engine.loaded
    model, device, b = loaded.model, loaded.device, len(configs)
    lm_head = model_layers(loaded)[2]

    # the prompt once, with every layer's hidden state; its cache copied to every row
    prompt = torch.tensor([list(prompt_ids)], device=device)  # [1, P]
    out = model(input_ids=prompt, use_cache=True, output_hidden_states=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(b)
    final = out.logits[:, -1, :].float().expand(b, -1)  # [b, V]
    premature = premature_logits(lm_head, out.hidden_states, layers).expand(-1, b, -1)  # [U, b, V]
    del out
    rows = Rows(torch.arange(b, device=device), engine.row_params(configs, sample_indices),
                DecodeState.start(prompt.expand(b, -1), loaded.vocab_size))
    plans = plan_stages(rows.params)
    endings = Endings(loaded, configs)
    # per row, per step: token, raw log p, final log p, raw entropy, premature layer, p at adaptive-P's input
    records: list[list[tuple[int, float, float, float, int, float]]] = [[] for _ in range(b)]

    for step in range(max(p.max_new_tokens for p in configs)):
        # 1. the contrast of the final layer with each row's premature layer, then the row's processors
        raw_log_probs = torch.log_softmax(final, dim=-1)  # [n, V]
        raw_entropy = -(raw_log_probs.exp() * raw_log_probs).sum(-1)  # [n]
        contrasted, picked = contrast(final, premature, allowed)  # [n, V], [n]
        scores = apply_pipeline(contrasted, rows.state, rows.params, plans)  # [n, V]
        empty = scores.amax(-1) == float("-inf")  # [n] the processors removed every token
        any_empty = bool(empty.any())
        if any_empty:  # the contrast keeps at least the final layer's top token: finite stand-ins
            scores = torch.where(empty[:, None], contrasted, scores)

        # 2. the next token: argmax for greedy rows, the row's seeded Gumbel-max for the others
        chosen = sampling.choose_next(scores, rows.params.greedy,
                                      row_keys(rows.params.seed, rows.params.sample_index, step))  # [n]
        final_logp = scores.gather(1, chosen[:, None])[:, 0] - scores.logsumexp(dim=-1)  # [n]
        adaptive_p = rows.state.chosen_adaptive_probs(chosen)
        rows.state.append(chosen, final_logp, adaptive_p)
        done = endings.after_step(rows, chosen, empty if any_empty else None, cancel, None)  # [n]

        # 3. record (a row with nothing left emits no token), stream
        columns = torch.stack([chosen.double(), raw_log_probs.gather(1, chosen[:, None])[:, 0].double(),
                               final_logp.double(), raw_entropy.double(),
                               torch.tensor(layers, device=device)[picked].double(),
                               adaptive_p if adaptive_p is not None else torch.zeros_like(final_logp, dtype=torch.float64)],
                              dim=-1).tolist()
        for row, values, nothing in zip(rows.ids.tolist(), columns, empty.tolist()):
            if not nothing:
                records[row].append((int(values[0]), *values[1:4], int(values[4]), values[5]))
        yield step + 1, [RunningBeam([r[0] for r in rec], [r[1] for r in rec], [r[2] for r in rec]) for rec in records]
        if bool(done.all()):
            break

        # 4. finished rows leave the batch; the others feed their token, with every layer's hidden state
        if bool(done.any()):
            keep = (~done).nonzero()[:, 0]
            cache.batch_select_indices(keep)
            rows, allowed, chosen = rows.select(keep), allowed[keep], chosen[keep]
            plans = plan_stages(rows.params)
        out = model(input_ids=chosen[:, None], past_key_values=cache, use_cache=True, output_hidden_states=True)
        final = out.logits[:, -1, :].float()
        premature = premature_logits(lm_head, out.hidden_states, layers)
        del out

    reasons = endings.reasons_of(list(range(b)))
    return [RowResult([r[0] for r in rec], engine.text_of([r[0] for r in rec], configs[i].stop),
                      [r[1] for r in rec], [r[2] for r in rec], [r[3] for r in rec], reasons[i],
                      adaptive_probs=[r[5] for r in rec] if configs[i].adaptive_target > 0 else None,
                      premature_layers=[r[4] for r in rec])
            for i, rec in enumerate(records)]
