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

import math
import threading
from typing import TYPE_CHECKING, Any, Generator, Sequence

import torch
import torch.nn.functional as F

from . import sampling  # sampling.choose_next looked up at every step, as the sampling loop does
from .dola_rules import candidate_layers
from .errors import ParamError
from .events import RunningBeam
from .models import LoadedModel
from .params import SamplingParams
from .processors import apply_pipeline, plan_stages
from .results import RowResult
from .rowstate import DecodeState
from .sampling import row_keys
from .steps import Endings, Rows

if TYPE_CHECKING:  # engine/generate.py imports engine/replay.py, which imports this module
    from .generate import Engine

# What dola_steps yields after each step (per row, its output so far) and returns.
DolaSteps = Generator[tuple[int, list[RunningBeam]], None, list[RowResult]]
RELATIVE_TOP = 0.1  # transformers' _relative_top_filter: keep tokens with p >= 0.1 x the top p
BASE_FILTER_VALUE = -1e-3  # ... and the premature layer's score of the others


def model_layers(loaded: LoadedModel, value: Any = "set") -> tuple[int, bool, Any]:
    """(number of layers, tied word embeddings, lm_head) of the model, or a ParamError when DoLa cannot read
    them (as transformers 4.55 refuses encoder-decoder models, stateful ones and models without output
    embeddings)."""
    model = loaded.model
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", None)
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if getattr(model, "_is_stateful", False):
        raise ParamError("dola_layers", "empty for this model (DoLa was not designed for stateful models, such as "
                                        f"{type(model).__name__}; transformers 4.55 refuses them too)", value)
    if getattr(model.config, "is_encoder_decoder", False) or not isinstance(layers, int) or lm_head is None:
        raise ParamError("dola_layers", "empty for this model (DoLa needs a decoder-only model whose layer count "
                                        "and lm_head are readable)", value)
    return layers, bool(getattr(model.config, "tie_word_embeddings", False)), lm_head


def layer_table(loaded: LoadedModel, configs: Sequence[SamplingParams]) -> tuple[list[int], torch.Tensor]:
    """The candidate layers of every row together (in the order they are first named) and [B, U] bool: which of
    them are each row's. Refuses rows without dola_layers and layer numbers beyond the model's."""
    final_layer, tied, _ = model_layers(loaded, configs[0].dola_layers if configs else "set")
    per_row = []
    for p in configs:
        if not p.dola_layers:
            raise ParamError("dola_layers", "set in every row of a DoLa batch", p.dola_layers)
        per_row.append(candidate_layers(p.dola_layers, final_layer, tied))
    union = list(dict.fromkeys(layer for layers in per_row for layer in layers))
    allowed = torch.tensor([[layer in layers for layer in union] for layers in per_row], device=loaded.device)
    return union, allowed


def premature_logits(lm_head: Any, hidden_states: Sequence[torch.Tensor], layers: list[int]) -> torch.Tensor:
    """[U, n, V] the lm_head applied to each candidate layer's hidden state at the last position (model dtype)."""
    return torch.stack([lm_head(hidden_states[layer][:, -1, :]) for layer in layers])


def js_divergences(final_logits: torch.Tensor, premature: torch.Tensor) -> torch.Tensor:
    """transformers' _dola_select_contrast, its divergences: final [n, V], premature [U, n, V] -> [U, n], the
    Jensen-Shannon divergence (a mean over the vocabulary, as 4.55 takes it) of each layer from the final one."""
    softmax_mature = F.softmax(final_logits, dim=-1)  # [n, V]
    softmax_premature = F.softmax(premature, dim=-1)  # [U, n, V]
    avg_dist = 0.5 * (softmax_mature[None, :, :] + softmax_premature)
    log_softmax_mature = F.log_softmax(final_logits, dim=-1)
    log_softmax_premature = F.log_softmax(premature, dim=-1)
    kl1 = F.kl_div(log_softmax_mature[None, :, :], avg_dist, reduction="none").mean(-1)
    kl2 = F.kl_div(log_softmax_premature, avg_dist, reduction="none").mean(-1)
    return 0.5 * (kl1 + kl2)


def relative_top_contrast(final_logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """transformers' _relative_top_filter, then final - base: [n, V] each -> [n, V] the DoLa scores (-inf for
    tokens below 0.1 x the final layer's top probability)."""
    scores_normalized = final_logits.log_softmax(dim=-1)
    base_normalized = base_logits.log_softmax(dim=-1)
    min_thresh = scores_normalized.amax(dim=-1)  # 4.55: the first of the sorted scores (min_tokens_to_keep 1)
    probs_thresh = torch.min(min_thresh, min_thresh + math.log(RELATIVE_TOP)).unsqueeze(-1)  # [n, 1]
    below = scores_normalized < probs_thresh
    base_normalized[below] = BASE_FILTER_VALUE
    scores_normalized[below] = float("-inf")
    return scores_normalized - base_normalized


def contrast(final_logits: torch.Tensor, premature: torch.Tensor, allowed: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """final [n, V] float32, premature [U, n, V], allowed [n, U] -> (the DoLa scores [n, V], each row's premature
    layer as an index into the U layers [n]). A row with one candidate takes it (4.55 skips the divergences)."""
    js = js_divergences(final_logits, premature).T  # [n, U]
    picked = js.masked_fill(~allowed, float("-inf")).argmax(dim=-1)  # [n] the first of equal ones, as 4.55
    base = premature[picked, torch.arange(final_logits.shape[0], device=final_logits.device)]  # [n, V]
    return relative_top_contrast(final_logits, base), picked


def dola_logits(loaded: LoadedModel, ids: torch.Tensor, dola_layers: str | tuple[int, ...], keep: int
                ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """One forward of ids [1, L] -> at its last `keep` positions: the final layer's logits [keep, V] float32, the
    DoLa scores [keep, V] and the premature layer of each (a replay of DoLa steps: engine/replay.py)."""
    final_layer, tied, lm_head = model_layers(loaded)
    layers = candidate_layers(dola_layers, final_layer, tied)
    out = loaded.model(input_ids=ids, output_hidden_states=True, logits_to_keep=keep)
    final = out.logits[0].float()  # [keep, V]
    premature = torch.stack([lm_head(out.hidden_states[layer][0, -keep:, :]) for layer in layers])  # [U, keep, V]
    allowed = torch.ones(keep, len(layers), dtype=torch.bool, device=final.device)
    scores, picked = contrast(final, premature, allowed)
    return final, scores, [layers[i] for i in picked.tolist()]


def dola_decode(engine: Engine, prompt_ids: Sequence[int], configs: Sequence[SamplingParams],
                sample_indices: Sequence[int] | None = None, cancel: threading.Event | None = None) -> list[RowResult]:
    """Decode every row (dola_layers set) as one batch; one RowResult each."""
    steps = dola_steps(engine, prompt_ids, configs, sample_indices, cancel)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


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
