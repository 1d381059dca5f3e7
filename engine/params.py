"""Sampling parameters: every knob of one configuration, validated (sweeps over them: engine/sweepspec.py).

Names follow transformers' GenerationConfig where transformers has the knob, OpenAI's API for
presence_penalty / frequency_penalty, and text-generation-webui / llama.cpp's server for the community samplers
(DRY, XTC, mirostat, dynamic temperature, top-nσ, top-a, tail-free sampling), so settings carry over.
Every "disabled" value is an exact no-op for its processor.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from .assist_checks import check_assisted
from .errors import ParamError, check_flag, check_text
from .dola_rules import check_dola_modes
from .field_readers import (bias_tuple, breakers_tuple, dola_layers_value, force_words_ids, force_words_tuple,
                            keys_tuple, logit_bias_tuple, str_tuple, token_tuple)
from .knobs import (DRY_MODES, DRY_SEQUENCE_BREAKERS, KNOBS, NO_TOKEN, PROCESSORS, WATERMARK_HASHING_KEY,
                    WATERMARK_SCHEMES, Range)
from .knobs import fmt_number as _fmt
from .order import DEFAULT_ORDER, normalize_order
from .tokens import token_ids, word_variants

# Processors that only act when sampling (transformers' former "warpers"); greedy rows skip them.
SAMPLING_ONLY = frozenset(spec.name for spec in PROCESSORS if spec.sampling_only)
# Knobs transformers has no processor for: the field that switches each one on -> (its off value, its processor).
# Other fields of those samplers (dry_base, xtc_threshold, mirostat_tau, ...) only matter while the switch is on.
NO_TRANSFORMERS_EQUIVALENT: dict[str, tuple[float, str]] = {
    name: (KNOBS[name].default, spec.name) for spec in PROCESSORS if spec.transformers is None
    for name in spec.switch_names()}
# Every field of each processor transformers lacks (the processor's name -> its fields, the switch first).
SAMPLER_FIELDS: dict[str, tuple[str, ...]] = {
    spec.name: tuple(k.name for k in spec.fields) for spec in PROCESSORS if spec.transformers is None}


# Every bound is finite and within float32 (the row tensors' type) and int64 (torch's long). The floors of the
# divisors (temperature, dynamic temperature, repetition_penalty) keep logits finite in float32: dividing a
# logit by 1e-38 overflows to inf, and inf - inf is NaN. Biases are bounded so that no sum of them overflows.
MAX_DECAY_GROWTH = 1e20  # exponential decay: |logit| x 1e20 stays far inside float32 (3.4e38)
# Token lists given as texts or token ids (transformers' suppress_tokens / begin_suppress_tokens take ids).
TOKEN_LIST_FIELDS: tuple[str, ...] = ("suppress_tokens", "begin_suppress_tokens")
FORCED_TOKEN_FIELDS: tuple[str, ...] = ("forced_bos_token_id", "forced_eos_token_id")
BOOL_FIELDS: tuple[str, ...] = tuple(knob.name for knob in KNOBS.values() if knob.kind is bool)
# Numeric fields: (type, range). Ints must be whole numbers.
NUMERIC_FIELDS: dict[str, tuple[type, Range]] = {
    knob.name: (knob.kind, knob.range) for knob in KNOBS.values() if knob.range is not None}


@dataclass(frozen=True)
class SamplingParams:
    """Every decoding knob of one configuration. Defaults are the disabled (no-op) values."""

    do_sample: bool = True
    # classifier-free guidance (transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor): 1 = off
    guidance_scale: float = 1.0
    negative_prompt: str = ""  # the unconditional context as raw text; "" = the prompt's last token (transformers)
    token_healing: bool = False  # transformers' token healing of the prompt's last token (engine/healing.py)
    temperature: float = 1.0  # 0 means greedy, as in the OpenAI API
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    typical_p: float = 1.0  # 1 = off
    epsilon_cutoff: float = 0.0  # 0 = off
    eta_cutoff: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off; transformers semantics (prompt + output)
    encoder_repetition_penalty: float = 1.0  # 1 = off; > 1 favours the prompt's tokens (transformers semantics)
    presence_penalty: float = 0.0  # OpenAI semantics (generated tokens only)
    frequency_penalty: float = 0.0  # OpenAI semantics (generated tokens only)
    no_repeat_ngram_size: int = 0  # 0 = off
    bad_words: tuple[str, ...] = ()  # each banned as written and with a leading space
    sequence_bias: tuple[tuple[str, float], ...] = ()  # (text, additive logit bias)
    logit_bias: tuple[tuple[int, float], ...] = ()  # OpenAI: (token id, additive bias in [-100, 100])
    # Community samplers (text-generation-webui / llama.cpp names and defaults); see README "Parameters".
    dry_multiplier: float = 0.0  # DRY: 0 = off
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_sequence_breakers: tuple[str, ...] = DRY_SEQUENCE_BREAKERS
    dry_mode: str = DRY_MODES[0]  # "webui" (text-generation-webui's rules) or "llama.cpp" (llama.cpp's)
    xtc_threshold: float = 0.1
    xtc_probability: float = 0.0  # XTC: 0 = off
    mirostat: int = 0  # 0 = off, 2 = mirostat v2 (v1 is not supported)
    mirostat_tau: float = 5.0  # target surprise, bits
    mirostat_eta: float = 0.1  # learning rate
    adaptive_target: float = 0.0  # adaptive-P: the probability the chosen tokens should average; 0 = off
    adaptive_decay: float = 0.9  # adaptive-P: decay of its moving average
    dynatemp_low: float = 1.0  # dynamic temperature: off while dynatemp_low == dynatemp_high == 1
    dynatemp_high: float = 1.0
    dynatemp_exponent: float = 1.0
    top_n_sigma: float = 0.0  # 0 = off
    top_a: float = 0.0  # 0 = off
    tfs: float = 1.0  # tail-free sampling: 1 = off
    smoothing_factor: float = 0.0  # quadratic sampling (text-generation-webui): 0 = off
    smoothing_curve: float = 1.0
    top_h: float = 0.0  # top-H (transformers' TopHLogitsWarper): 0 = off
    # transformers' WatermarkingConfig (green-list watermark, Kirchenbauer et al. 2023): bias 0 = off
    watermark_bias: float = 0.0
    watermark_greenlist_ratio: float = 0.25
    watermark_hashing_key: int = WATERMARK_HASHING_KEY
    watermark_seeding_scheme: str = WATERMARK_SCHEMES[0]  # "lefthash" or "selfhash"
    watermark_context_width: int = 1
    # transformers' SynthIDTextWatermarkingConfig (SynthID Text): no keys = off
    synthid_keys: tuple[int, ...] = ()
    synthid_ngram_len: int = 5
    synthid_sampling_table_size: int = 2**16
    synthid_sampling_table_seed: int = 0
    synthid_context_history_size: int = 1024
    synthid_skip_first_ngram_calls: bool = False
    renormalize_logits: bool = False  # log-softmax of the final scores (transformers' LogitNormalization)
    # transformers' suppress_tokens / begin_suppress_tokens: texts (every token of each spelling) or token ids
    suppress_tokens: tuple[str | int, ...] = ()
    begin_suppress_tokens: tuple[str | int, ...] = ()  # at the first new token only
    forced_bos_token_id: int = NO_TOKEN  # the first new token; -1 = off (None is taken too)
    forced_eos_token_id: int = NO_TOKEN  # the last new token (at max_new_tokens); -1 = off
    min_new_tokens: int = 0
    max_new_tokens: int = 64
    # transformers' prompt-inclusive lengths, turned into min_new_tokens / max_new_tokens by `for_prompt`
    min_length: int = 0  # 0 = off
    max_length: int = 0  # 0 = unset (max_new_tokens decides)
    max_time: float = 0.0  # seconds of the run after which a row stops (finish_reason "time"); 0 = no limit
    # transformers' exponential_decay_length_penalty = (start, factor): factor 1 = off
    exponential_decay_factor: float = 1.0
    exponential_decay_start: int = 0
    stop: tuple[str, ...] = ()  # stop strings; the text is cut before the first match
    seed: int = 0
    # beams (transformers' semantics); num_beams 1 = no beam search
    num_beams: int = 1
    num_beam_groups: int = 1
    diversity_penalty: float = 0.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never"
    num_return_sequences: int = 1
    # assisted decoding (engine/assisted.py): drafts verified exactly, so no token changes; 0 = off
    prompt_lookup_num_tokens: int = 0
    max_matching_ngram_size: int = 2
    assistant_model: str = ""  # a draft model (id or local directory) whose drafts are verified; "" = off
    num_assistant_tokens: int = 20  # tokens the draft model drafts per round (transformers' default)
    # contrastive search (engine/contrastive.py): greedy, among the top_k tokens; 0 = off
    penalty_alpha: float = 0.0
    # constrained beam search (engine/constrained_beams.py): per constraint its texts (alternatives; one text is a
    # phrase to include); each text as written and with a leading space (tokens.word_variants)
    force_words: tuple[tuple[str, ...], ...] = ()
    dola_layers: str | tuple[int, ...] = ""  # DoLa (engine/dola.py): "low", "high" or layer numbers; "" = off
    order: tuple[str, ...] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        # Normalise list-ish inputs so that the dataclass stays hashable and JSON round-trips.
        object.__setattr__(self, "bad_words", str_tuple("bad_words", self.bad_words))
        object.__setattr__(self, "stop", str_tuple("stop", self.stop))
        object.__setattr__(self, "dry_sequence_breakers", breakers_tuple(self.dry_sequence_breakers))
        object.__setattr__(self, "sequence_bias", bias_tuple(self.sequence_bias))
        object.__setattr__(self, "logit_bias", logit_bias_tuple(self.logit_bias))
        object.__setattr__(self, "order", normalize_order(self.order))
        if self.negative_prompt is None:  # transformers' None: the default unconditional context
            object.__setattr__(self, "negative_prompt", "")
        check_text("negative_prompt", self.negative_prompt, allow_empty=True)
        object.__setattr__(self, "force_words", force_words_tuple(self.force_words))
        object.__setattr__(self, "dola_layers", dola_layers_value(self.dola_layers))
        if not (isinstance(self.dry_mode, str) and self.dry_mode in DRY_MODES):
            raise ParamError("dry_mode", f"one of {', '.join(repr(m) for m in DRY_MODES)}", self.dry_mode)
        if not (isinstance(self.watermark_seeding_scheme, str) and self.watermark_seeding_scheme in WATERMARK_SCHEMES):
            raise ParamError("watermark_seeding_scheme", f"one of {', '.join(repr(m) for m in WATERMARK_SCHEMES)}",
                             self.watermark_seeding_scheme)
        object.__setattr__(self, "synthid_keys", keys_tuple(self.synthid_keys))
        for name in TOKEN_LIST_FIELDS:
            object.__setattr__(self, name, token_tuple(name, getattr(self, name)))
        for name in FORCED_TOKEN_FIELDS:  # transformers' None means off
            if getattr(self, name) is None:
                object.__setattr__(self, name, NO_TOKEN)
        for name in BOOL_FIELDS:
            check_flag(name, getattr(self, name))
        for name, (kind, allowed) in NUMERIC_FIELDS.items():
            object.__setattr__(self, name, _check_number(name, getattr(self, name), kind, allowed))
        if self.mirostat == 1:
            raise ParamError("mirostat", "0 (off) or 2 (mirostat v2; mirostat v1 is not supported)", self.mirostat)
        self._check_lengths()
        self._check_beams()
        self._check_modes()
        check_dola_modes(self)
        check_assisted(self)

    def _check_lengths(self) -> None:
        """max_length replaces max_new_tokens (one of the two, never a silent choice); the checks that need the
        number of new tokens wait for `for_prompt` when max_length is set."""
        default_max_new = KNOBS["max_new_tokens"].default
        if self.max_length and self.max_new_tokens != default_max_new:
            raise ParamError("max_length", f"0 (unset) when max_new_tokens is set ({self.max_new_tokens}; give one "
                             f"of the two: max_length counts the prompt, max_new_tokens does not)", self.max_length)
        if self.max_length and self.min_length > self.max_length:
            raise ParamError("min_length", f"<= max_length ({self.max_length})", self.min_length)
        if self.max_length:
            return
        if self.min_new_tokens > self.max_new_tokens:
            raise ParamError("min_new_tokens", f"<= max_new_tokens ({self.max_new_tokens})", self.min_new_tokens)
        self._check_decay()

    def for_prompt(self, prompt_len: int) -> "SamplingParams":
        """What runs after a prompt of `prompt_len` tokens: transformers' prompt-inclusive min_length / max_length
        as min_new_tokens / max_new_tokens (both minimums hold, as both processors would in transformers), the two
        then unset. Unchanged when neither is set."""
        if not (self.min_length or self.max_length):
            return self
        max_new = self.max_length - prompt_len if self.max_length else self.max_new_tokens
        if max_new < 1:
            raise ParamError("max_length", f"more than the prompt's {prompt_len} tokens (room for a new token)",
                             self.max_length)
        min_new = max(self.min_new_tokens, self.min_length - prompt_len)
        if min_new > max_new:
            name, value = ("min_length", self.min_length) if min_new > self.min_new_tokens else ("min_new_tokens", self.min_new_tokens)
            allowed = (f"<= {max_new + prompt_len} (the prompt's {prompt_len} tokens + {max_new} new)" if name == "min_length"
                       else f"<= {max_new} (max_length {self.max_length} - the prompt's {prompt_len} tokens)")
            raise ParamError(name, allowed, value)
        return self.replace(min_new_tokens=min_new, max_new_tokens=max_new, min_length=0, max_length=0)

    def _check_decay(self) -> None:
        """The length penalty's factor^(tokens past start) must stay finite in float32 times any logit."""
        past_start = self.max_new_tokens - self.exponential_decay_start
        growth = past_start * math.log(self.exponential_decay_factor) if self.exponential_decay_factor > 0 else 0
        if growth > math.log(MAX_DECAY_GROWTH):
            raise ParamError("exponential_decay_factor", f"small enough that factor^(max_new_tokens - "
                             f"exponential_decay_start) <= {MAX_DECAY_GROWTH:g} (here {past_start} tokens past "
                             f"the start)", self.exponential_decay_factor)

    def _check_beams(self) -> None:
        """The beam knobs, with transformers' rules (its GenerationConfig.validate), named field by field."""
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "never"):
            raise ParamError("early_stopping", 'true, false or "never"', self.early_stopping)
        if self.num_return_sequences > self.num_beams:
            raise ParamError("num_return_sequences", f"<= num_beams ({self.num_beams})", self.num_return_sequences)
        if self.num_beam_groups > 1:
            if self.num_beam_groups > self.num_beams:
                raise ParamError("num_beam_groups", f"<= num_beams ({self.num_beams})", self.num_beam_groups)
            if self.num_beams % self.num_beam_groups:
                raise ParamError("num_beams", f"divisible by num_beam_groups ({self.num_beam_groups})", self.num_beams)
            if self.diversity_penalty <= 0.0:
                raise ParamError("diversity_penalty", "> 0 with num_beam_groups > 1 (else every group is the same)",
                                 self.diversity_penalty)
            if not self.greedy:
                raise ParamError("do_sample", "false with num_beam_groups > 1 (diverse beam search does not sample)",
                                 self.do_sample)
        elif self.diversity_penalty != 0.0:
            raise ParamError("diversity_penalty", "0 without num_beam_groups > 1", self.diversity_penalty)
        if self.num_beams > 1 and self.stop:
            raise ParamError("stop", "empty with num_beams > 1 (beam search has no stop strings here)", list(self.stop))
        if self.num_beams > 1 and self.token_healing:
            raise ParamError("token_healing", "false with num_beams > 1 (beam search reads the prompt as given here)",
                             self.token_healing)
        if self.num_beams > 1 and self.guidance_scale != 1.0:
            raise ParamError("guidance_scale", "1 (off) with num_beams > 1 (the unconditional context of classifier-free "
                             "guidance does not follow the beams: transformers' processor keeps one cache per input row "
                             "and never reorders it as beams are chosen)", self.guidance_scale)
        if self.num_beams > 1 and self.synthid_keys:  # transformers' SynthID state would not follow the beams
            raise ParamError("synthid_keys", "empty with num_beams > 1 (SynthID keeps a context per sequence, which "
                                             "beam search reorders)", list(self.synthid_keys))
        if self.num_beams > 1 and self.max_time:
            raise ParamError("max_time", "0 with num_beams > 1 (beam search has no time limit here)", self.max_time)

    def _check_modes(self) -> None:
        """Contrastive search and constrained beam search: the combinations transformers 4.x runs (its
        GenerationConfig.get_generation_mode / validate), the others refused with the reason."""
        if self.penalty_alpha > 0.0:
            if self.top_k < 2:
                raise ParamError("top_k", "> 1 with penalty_alpha > 0 (contrastive search picks among the top_k "
                                          "tokens)", self.top_k)
            if not self.greedy:
                raise ParamError("do_sample", "false with penalty_alpha > 0 (contrastive search does not sample)",
                                 self.do_sample)
            if self.num_beams > 1:
                raise ParamError("num_beams", "1 with penalty_alpha > 0 (contrastive search keeps one sequence)",
                                 self.num_beams)
            if self.stop:
                raise ParamError("stop", "empty with penalty_alpha > 0 (contrastive search has no stop strings here)",
                                 list(self.stop))
            if self.token_healing:
                raise ParamError("token_healing", "false with penalty_alpha > 0 (contrastive search reads the prompt "
                                                  "as given here)", self.token_healing)
            if self.max_time:
                raise ParamError("max_time", "0 with penalty_alpha > 0 (contrastive search has no time limit here)",
                                 self.max_time)
        if self.force_words:
            if self.num_beams < 2:
                raise ParamError("num_beams", "> 1 with force_words (constrained beam search)", self.num_beams)
            if not self.greedy:
                raise ParamError("do_sample", "false with force_words (constrained beam search does not sample)",
                                 self.do_sample)
            if self.num_beam_groups > 1:
                raise ParamError("num_beam_groups", "1 with force_words (constrained beam search has no groups)",
                                 self.num_beam_groups)

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0.0

    def replace(self, **changes: Any) -> "SamplingParams":
        return from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bad_words"] = list(self.bad_words)
        d["stop"] = list(self.stop)
        d["dry_sequence_breakers"] = list(self.dry_sequence_breakers)
        d["sequence_bias"] = {text: bias for text, bias in self.sequence_bias}
        d["logit_bias"] = {str(token): bias for token, bias in self.logit_bias}
        d["order"] = list(self.order)
        d["force_words"] = [list(texts) for texts in self.force_words]
        for name in TOKEN_LIST_FIELDS:
            d[name] = list(getattr(self, name))
        d["synthid_keys"] = list(self.synthid_keys)
        d["dola_layers"] = self.dola_layers if isinstance(self.dola_layers, str) else list(self.dola_layers)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "SamplingParams":
        return from_dict(json.loads(text))

    def without_transformers_equivalent(self) -> dict[str, Any]:
        """The switches set here of samplers transformers has no processor for: {field: value}.

        A sampling-only sampler on a greedy row is skipped (as transformers skips its warpers), so it is
        not listed there: the greedy run is still exactly what transformers does.
        """
        return {name: getattr(self, name) for name, (off, processor) in NO_TRANSFORMERS_EQUIVALENT.items()
                if getattr(self, name) != off and not (self.greedy and processor in SAMPLING_ONLY)}

    @property
    def watermarked(self) -> bool:
        """Whether a watermark is on: the green list (watermark_bias > 0) or SynthID (synthid_keys)."""
        return self.watermark_bias != 0 or bool(self.synthid_keys)

    def watermarking_config(self) -> tuple[str, dict[str, Any]] | None:
        """transformers' watermarking_config: (its class, "WatermarkingConfig" or "SynthIDTextWatermarkingConfig",
        and that class's arguments), None when neither watermark is on. transformers takes one watermark per run:
        both on is refused by name."""
        if self.watermark_bias and self.synthid_keys:
            raise ParamError("synthid_keys", "empty while watermark_bias is set to convert to transformers (its "
                                             "generate() takes one watermarking_config)", list(self.synthid_keys))
        if self.watermark_bias:
            return "WatermarkingConfig", {
                "greenlist_ratio": self.watermark_greenlist_ratio, "bias": self.watermark_bias,
                "hashing_key": self.watermark_hashing_key, "seeding_scheme": self.watermark_seeding_scheme,
                "context_width": self.watermark_context_width}
        if self.synthid_keys:
            return "SynthIDTextWatermarkingConfig", {
                "ngram_len": self.synthid_ngram_len, "keys": list(self.synthid_keys),
                "context_history_size": self.synthid_context_history_size,
                "sampling_table_seed": self.synthid_sampling_table_seed,
                "sampling_table_size": self.synthid_sampling_table_size,
                "skip_first_ngram_calls": self.synthid_skip_first_ngram_calls}
        return None

    def generate_kwargs(self, tokenizer: Any = None) -> dict[str, Any]:
        """Keyword arguments for transformers' `model.generate()` for the knobs transformers has.

        presence/frequency penalties and the community samplers (DRY, XTC, mirostat, dynamic temperature,
        top-nσ, top-a, tail-free) have no transformers processor, and a custom `order` cannot be expressed:
        those raise if switched on. Stop strings need `tokenizer=` in generate.
        """
        for name, value in self.without_transformers_equivalent().items():
            off = NO_TRANSFORMERS_EQUIVALENT[name][0]
            raise ParamError(name, f"{_fmt(off)} to convert to transformers (it has no such processor)", value)
        if self.order != DEFAULT_ORDER:
            raise ParamError("order", "the default order to convert to transformers", list(self.order))
        kw: dict[str, Any] = {"do_sample": not self.greedy}
        if self.max_length:  # transformers' own prompt-inclusive form, as given
            kw["max_length"] = self.max_length
        else:
            kw["max_new_tokens"] = self.max_new_tokens
        if self.min_length:
            kw["min_length"] = self.min_length
        if self.max_time:
            kw["max_time"] = self.max_time
        if self.token_healing:  # transformers also needs generate(..., tokenizer=tokenizer)
            kw["token_healing"] = True
        if self.exponential_decay_factor != 1.0:
            kw["exponential_decay_length_penalty"] = (self.exponential_decay_start, self.exponential_decay_factor)
        for spec in PROCESSORS:  # the knobs that map one to one onto a generate() argument
            if spec.sampling_only and self.greedy:  # transformers warns about sampling knobs on greedy configs
                continue
            for knob in spec.fields:
                value = getattr(self, knob.name)
                if knob.hf_arg and not (knob.hf_only_if_set and value == knob.default):
                    kw[knob.hf_arg] = value
        if self.guidance_scale != 1.0 and self.negative_prompt:  # generate(negative_prompt_ids=torch.tensor(...))
            if tokenizer is None:
                raise ParamError("tokenizer", "given to convert negative_prompt", None)
            kw["negative_prompt_ids"] = [negative_prompt_ids(tokenizer, self.negative_prompt)]
        if self.stop:
            kw["stop_strings"] = list(self.stop)
        if self.prompt_lookup_num_tokens:  # transformers' prompt lookup decoding (it needs a batch of one there)
            kw.update(prompt_lookup_num_tokens=self.prompt_lookup_num_tokens,
                      max_matching_ngram_size=self.max_matching_ngram_size)
        if self.num_beams > 1:
            kw.update(num_beams=self.num_beams, length_penalty=self.length_penalty,
                      early_stopping=self.early_stopping, num_return_sequences=self.num_return_sequences)
        if self.num_beam_groups > 1:  # transformers 4.x; transformers 5 needs custom_generate (see group_beams.py)
            kw.update(num_beam_groups=self.num_beam_groups, diversity_penalty=self.diversity_penalty)
        if self.penalty_alpha > 0:  # transformers 4.x; transformers 5 needs custom_generate (engine/contrastive.py)
            kw.update(penalty_alpha=self.penalty_alpha, top_k=self.top_k)
        if self.force_words:  # transformers 4.x; transformers 5 needs custom_generate (engine/constrained_beams.py)
            if tokenizer is None:
                raise ParamError("tokenizer", "given to convert the texts of force_words", None)
            kw["force_words_ids"] = force_words_ids(tokenizer, self.force_words)
        if self.dola_layers:  # transformers 4.x; transformers 5 needs custom_generate (engine/dola.py)
            kw["dola_layers"] = self.to_dict()["dola_layers"]
        if self.logit_bias:
            kw["sequence_bias"] = {(token,): bias for token, bias in self.logit_bias}
        watermarking = self.watermarking_config()
        if watermarking is not None:  # transformers' own config object (imported only when needed)
            import transformers
            kind, arguments = watermarking
            kw["watermarking_config"] = getattr(transformers, kind)(**arguments)
        if tokenizer is not None:
            if self.bad_words:
                kw["bad_words_ids"] = [ids for w in self.bad_words for ids in word_variants(tokenizer, w)]
            if self.sequence_bias:
                kw["sequence_bias"] = {**kw.get("sequence_bias", {}),
                                       **{tuple(ids): b for t, b in self.sequence_bias for ids in word_variants(tokenizer, t)}}
        elif self.bad_words or self.sequence_bias:
            raise ParamError("tokenizer", "given to convert bad_words / sequence_bias", None)
        for name in TOKEN_LIST_FIELDS:
            items = getattr(self, name)
            if items and tokenizer is None and not all(isinstance(t, int) for t in items):
                raise ParamError("tokenizer", f"given to convert the texts of {name}", None)
            if items:
                kw[name] = token_ids(tokenizer, items)
        return {k: v for k, v in kw.items() if v is not None}


def negative_prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """The unconditional context of classifier-free guidance: the negative prompt tokenized as raw text, as
    `tokenizer(text).input_ids` gives it (special tokens as the tokenizer adds them to any raw prompt)."""
    ids = [int(i) for i in tokenizer(text)["input_ids"]]
    if not ids:
        raise ParamError("negative_prompt", "a text with at least one token (or empty: the prompt's last token)", text)
    return ids


def check_vocabulary(params: Sequence[SamplingParams], vocab_size: int) -> None:
    """Refuse token ids beyond the model's vocabulary (logit_bias, the forced and suppressed tokens), by field."""
    for p in params:
        for token, _ in p.logit_bias:
            if token >= vocab_size:
                raise ParamError("logit_bias", f"token ids in [0, {vocab_size - 1}]", token)
        for name in FORCED_TOKEN_FIELDS:
            if getattr(p, name) >= vocab_size:
                raise ParamError(name, f"-1 (off) or a token id in [0, {vocab_size - 1}]", getattr(p, name))
        for name in TOKEN_LIST_FIELDS:
            for item in getattr(p, name):
                if isinstance(item, int) and item >= vocab_size:
                    raise ParamError(name, f"token ids in [0, {vocab_size - 1}] (or texts)", item)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SamplingParams))


def from_dict(values: dict[str, Any]) -> SamplingParams:
    """Build SamplingParams from a plain dict (JSON, CLI, HTTP), rejecting unknown fields by name."""
    if not isinstance(values, dict):
        raise ParamError("params", "an object of field: value", values)
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        if not str(unknown[0]).strip():  # a blank key cannot name the field: the message names the object instead
            raise ParamError("params", f"an object whose keys are field names ({', '.join(FIELD_NAMES)})",
                             {unknown[0]: values[unknown[0]]})
        raise ParamError(unknown[0], f"one of the known fields ({', '.join(FIELD_NAMES)})", values[unknown[0]])
    return SamplingParams(**values)


def _check_number(name: str, value: Any, kind: type, allowed: Range) -> Any:
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and ok_type and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not ok_type or (kind is int and not isinstance(value, int)):
        raise ParamError(name, allowed.describe("a whole number" if kind is int else "a number"), value)
    # every range is finite, so this also refuses inf, NaN and whole numbers beyond int64 / float32
    if isinstance(value, float) and not math.isfinite(value) or not allowed.contains(value):
        raise ParamError(name, allowed.describe("a whole number" if kind is int else "a number"), value)
    return kind(value)
