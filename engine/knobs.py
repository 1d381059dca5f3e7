"""Every knob, declared once: the processors in the order they run, each with its fields, and the knobs of
generation itself (length, seed, beams).

A processor's spec says what its fields are (type, allowed range, off value, row tensor), whether it acts only
when sampling, what transformers calls it (or why transformers cannot run it), where its controls sit on the
page and what it does in one line. Everything else is derived from these specs: the default order and the
numeric validation (engine/params.py), the per-row tensors and which rows a processor acts on
(engine/rowstate.py, engine/processors.py), the page's controls (playground/controls.py) and the exports
(playground/exports.py). `SamplingParams` stays an explicit dataclass, the public surface; a test checks that
it and these specs agree field by field.

Adding a processor: its function (named after it, in engine/processors.py or engine/samplers.py), one
`ProcessorSpec` below (where in the order it runs), and its rows in the tests.

This module imports nothing from the engine, and not torch: dtypes are named by string.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIN_TEMPERATURE = 1e-4  # positive temperatures below this (and dynatemp_low / high) are refused; 0 is greedy
MAX_TOP_K = 1_000_000  # above any vocabulary; a top_k larger than the vocabulary keeps every token
NO_TOKEN = -1  # forced_bos_token_id / forced_eos_token_id: off (transformers' None)
MAX_TOKEN_ID = MAX_TOP_K - 1  # above any vocabulary; the engine refuses ids beyond the model's own vocabulary
MAX_LENGTH = 100_000  # min_length / max_length (prompt-inclusive) and max_new_tokens
MAX_TIME = 86_400.0  # max_time: a day, in seconds
MAX_GUIDANCE_SCALE = 100.0  # guidance_scale x (a difference of log-probs) stays far inside float32
MAX_DRAFT_TOKENS = 128  # prompt_lookup_num_tokens / num_assistant_tokens: tokens drafted per round
MAX_MATCHING_NGRAM = 32  # max_matching_ngram_size
MAX_SEQUENCE_BIAS = 1e9  # |bias| of sequence_bias (-inf bans); OpenAI's logit_bias keeps its [-100, 100]
# text-generation-webui's default DRY sequence breakers: a repeat never extends across these.
DRY_SEQUENCE_BREAKERS: tuple[str, ...] = ("\n", ":", "\"", "*")
# DRY's two rule sets: text-generation-webui's (a breaker is the last token of "a" + breaker text, matches capped
# at 50 tokens) and llama.cpp's (any token whose text contains a breaker text breaks, no cap); see samplers.dry.
DRY_MODES: tuple[str, ...] = ("webui", "llama.cpp")
GROUPS = ("Sampling", "Penalties", "Length and stopping", "Guidance", "Beams", "Seed", "More samplers",
          "Watermarking")
# transformers' WatermarkingConfig (Kirchenbauer et al. 2023): its seeding schemes and defaults
WATERMARK_SCHEMES: tuple[str, ...] = ("lefthash", "selfhash")
WATERMARK_HASHING_KEY = 15485863  # transformers' default hashing_key (the millionth prime)
MAX_SYNTHID_KEYS = 64  # SynthID's depth: one key per tournament layer
MAX_KEY = 2**63 - 1  # hashing keys, SynthID keys and seeds are int64
MAX_LAYER = 10_000  # dola_layers: a layer number above any model's; the engine checks it against the model's layers
DOLA_PRESETS: tuple[str, ...] = ("low", "high")  # transformers 4.55's named sets of DoLa's candidate layers


@dataclass(frozen=True)
class Range:
    """Allowed numeric range of one field; bounds are inclusive unless marked open. `or_zero`: 0 is allowed
    too, below `low` (temperature: 0 means greedy, and tiny positive values would overflow float32)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    or_zero: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below or (self.or_zero and x == 0)

    def describe(self, noun: str = "a number") -> str:
        lo = f"{'(' if self.low_open else '['}{fmt_number(self.low)}"
        hi = f"{fmt_number(self.high)}{')' if self.high_open else ']'}"
        return f"{'0 or ' if self.or_zero else ''}{noun} in {lo}, {hi}"


def fmt_number(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    if math.isinf(x):
        return "inf"
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class Widget:
    """Where a knob sits on the page. kind: "slider", "number", "checkbox", "text" or "choice"; a slider's
    minimum / maximum are its drag range (typed values may go to the field's whole range)."""

    group: str
    kind: str
    info: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    placeholder: str = ""
    choices: tuple[str, ...] = ()  # a "choice" widget's options (their text forms)


@dataclass(frozen=True)
class Knob:
    """One SamplingParams field.

    kind: float or int (numeric, checked against `range`), bool (true or false), or object (texts and choices,
          checked by SamplingParams).
    default: SamplingParams' default; for a processor's switch it is the off value (an exact no-op).
    dtype: the row tensor's type ("float32", "float64", "long", "bool"), [B, 1] when `column` (to broadcast
           against [B, V] scores) else [B]; None: no plain row tensor (texts are tokenized into tables).
    hf_arg: transformers' generate() argument of the same meaning; `hf_only_if_set` leaves it out at default.
    """

    name: str
    kind: type
    default: Any
    range: Range | None = None
    dtype: str | None = None
    column: bool = True
    hf_arg: str | None = None
    hf_only_if_set: bool = False
    widget: Widget | None = None


@dataclass(frozen=True)
class ProcessorSpec:
    """One logits processor: a stage of the pipeline, in the order of PROCESSORS.

    switches: the fields whose value turns it on (default: the first field); a row is acted on when any of
    them differs from its default. transformers: its transformers class, or None with `why_not` saying so.
    per_row_state: a sampling-only processor that reads a per-row part of the decode state (not only the step
    count) cannot run on a subset of the rows.
    """

    name: str
    title: str
    help: str
    fields: tuple[Knob, ...]
    sampling_only: bool = False
    transformers: str | None = None
    why_not: str = ""
    switches: tuple[str, ...] = ()
    per_row_state: bool = False

    def switch_names(self) -> tuple[str, ...]:
        return self.switches or (self.fields[0].name,)

    def lacks_reason(self) -> str:
        return self.why_not or f"transformers has no {self.title} sampler"


def _f32(name: str, default: float, rng: Range, widget: Widget | None, **kw: Any) -> Knob:
    return Knob(name, float, default, rng, "float32", widget=widget, **kw)


def _f64(name: str, default: float, rng: Range, widget: Widget | None, **kw: Any) -> Knob:
    return Knob(name, float, default, rng, "float64", widget=widget, **kw)


def _long(name: str, default: int, rng: Range, widget: Widget | None, column: bool = False, **kw: Any) -> Knob:
    return Knob(name, int, default, rng, "long", column=column, widget=widget, **kw)


S, P, L, G, B, M, W = ("Sampling", "Penalties", "Length and stopping", "Guidance", "Beams", "More samplers",
                         "Watermarking")

# The order in which transformers applies its processors (GenerationMixin._get_logits_processor: classifier-free
# guidance first, on the raw scores), with
# OpenAI's presence/frequency penalties placed right after transformers' repetition penalty. The community
# samplers join where text-generation-webui puts them: DRY with the penalties, dynamic temperature right after
# temperature, top-nσ / top-a / tail-free with the truncation samplers, XTC after every truncation (it removes
# the top choices, so it must see the final candidates), mirostat (it adapts to what is finally sampled), and
# adaptive-P last (in llama.cpp and text-generation-webui it picks the token itself). The watermarks come after every
# other processor and warper, as transformers appends its watermarking_config's processor ("Watermarking should be
# after all logits processing is finished", #34630), and only renormalize follows them.
PROCESSORS: tuple[ProcessorSpec, ...] = (
    # transformers puts classifier-free guidance first (before sequence_bias), on the raw scores
    ProcessorSpec("guidance", "classifier-free guidance",
                  "mix with an unconditional (or negative-prompt) context: g x (log p - log p_uncond) + log p_uncond",
                  transformers="UnbatchedClassifierFreeGuidanceLogitsProcessor", fields=(
        _f32("guidance_scale", 1.0, Range(0.0, MAX_GUIDANCE_SCALE), Widget(G, "slider", "Classifier-free guidance: g x (log p - log p_uncond) + log p_uncond, the unconditional context being the negative prompt (or the prompt's last token); > 1 follows the prompt more, < 1 follows the negative prompt; 1 = off.", 0.0, 5.0, 0.1), hf_arg="guidance_scale", hf_only_if_set=True),
        Knob("negative_prompt", object, "", widget=Widget(G, "text", "Classifier-free guidance: the unconditional context as raw text (no chat template); empty = the prompt's last token, as transformers does.", placeholder="e.g. A sad story.")))),
    ProcessorSpec("sequence_bias", "sequence bias", "add a bias to chosen token sequences", transformers="SequenceBiasLogitsProcessor", fields=(
        Knob("sequence_bias", object, (), widget=Widget(P, "text", "Add a bias to the logits of words: one `word: bias` per line (-inf bans).", placeholder="e.g. the: -5")),
        Knob("logit_bias", object, (), widget=Widget(P, "text", "OpenAI's logit_bias: add a bias to token ids, one `id: bias` per line (-100..100).", placeholder="e.g. 2: -100")))),
    ProcessorSpec("diversity_penalty", "diversity penalty", "diverse beams: penalize tokens earlier beam groups chose at this step",
                  transformers="HammingDiversityLogitsProcessor", fields=(
        _f32("diversity_penalty", 0.0, Range(0.0, 100.0), Widget(B, "slider", "Diverse beam search: subtracted from a token's log-prob once per beam of an earlier group that chose it at this step (needs groups > 1).", 0.0, 5.0, 0.1)),)),
    ProcessorSpec("encoder_repetition_penalty", "encoder repetition penalty",
                  "favour (> 1) or avoid (< 1) the prompt's tokens: their logits are multiplied by the penalty",
                  transformers="EncoderRepetitionPenaltyLogitsProcessor", fields=(
        _f64("encoder_repetition_penalty", 1.0, Range(0.01, 100.0), Widget(P, "slider", "Hallucination penalty: > 1 favours tokens that occur in the prompt (their logits grow by this factor), < 1 avoids them; 1 = off.", 0.5, 2.5, 0.05), hf_arg="encoder_repetition_penalty"),)),
    ProcessorSpec("repetition_penalty", "repetition penalty", "shrink logits of tokens already in prompt or output",
                  transformers="RepetitionPenaltyLogitsProcessor", fields=(
        _f32("repetition_penalty", 1.0, Range(0.01, 100.0), Widget(P, "slider", "Divide (or multiply, if negative) logits of tokens already seen in prompt or output; 1 = off.", 0.5, 2.5, 0.05), hf_arg="repetition_penalty"),)),
    ProcessorSpec("presence_penalty", "presence penalty", "subtract a flat penalty from tokens already generated",
                  why_not="transformers has no OpenAI-style presence penalty (repetition_penalty is multiplicative)", fields=(
        _f32("presence_penalty", 0.0, Range(-2.0, 2.0), Widget(P, "slider", "OpenAI: subtract this from every token already generated once; 0 = off.", -2.0, 2.0, 0.1)),)),
    ProcessorSpec("frequency_penalty", "frequency penalty", "subtract a penalty proportional to each token's count so far",
                  why_not="transformers has no OpenAI-style frequency penalty", fields=(
        _f32("frequency_penalty", 0.0, Range(-2.0, 2.0), Widget(P, "slider", "OpenAI: subtract this x the count of each generated token; 0 = off.", -2.0, 2.0, 0.1)),)),
    ProcessorSpec("dry", "DRY", "penalize the token that would extend a repeated sequence", fields=(
        _f64("dry_multiplier", 0.0, Range(0.0, 100.0), Widget(M, "slider", "DRY (p-e-w, text-generation-webui): penalize the token that would extend a repeat by multiplier x base^(length - allowed); 0 = off.", 0.0, 5.0, 0.05)),
        _f64("dry_base", 1.75, Range(1.0, 100.0), Widget(M, "slider", "DRY: how fast the penalty grows with each extra repeated token.", 1.0, 4.0, 0.05)),
        _long("dry_allowed_length", 2, Range(1, 64), Widget(M, "slider", "DRY: repeats up to this many tokens go unpenalized.", 1, 20, 1), column=True),
        Knob("dry_sequence_breakers", object, DRY_SEQUENCE_BREAKERS, widget=Widget(M, "text", "DRY: a repeat never extends across these, one per line (\\n for a newline).", placeholder="e.g. \\n")),
        Knob("dry_mode", object, DRY_MODES[0], widget=Widget(M, "choice", "DRY's rules: webui = text-generation-webui's (a breaker is the last token of \"a\" + breaker; repeats counted up to 50 tokens); llama.cpp = llama.cpp's (every token whose text contains a breaker breaks; no cap).", choices=DRY_MODES)))),
    ProcessorSpec("no_repeat_ngram", "no-repeat n-gram", "ban tokens that would repeat an n-gram",
                  transformers="NoRepeatNGramLogitsProcessor", fields=(
        _long("no_repeat_ngram_size", 0, Range(0, 64), Widget(P, "slider", "Forbid repeating any n-gram of this size; 0 = off.", 0, 10, 1), hf_arg="no_repeat_ngram_size"),)),
    ProcessorSpec("bad_words", "bad words", "ban the listed words", transformers="NoBadWordsLogitsProcessor", fields=(
        Knob("bad_words", object, (), widget=Widget(P, "text", "Words never generated (comma-separated; also banned with a leading space).", placeholder="e.g. very, really")),)),
    ProcessorSpec("min_new_tokens", "minimum length", "forbid EOS before the minimum length",
                  transformers="MinNewTokensLengthLogitsProcessor", fields=(
        _long("min_new_tokens", 0, Range(0, 100_000), Widget(L, "slider", "The end-of-text token is masked until this many tokens exist.", 0, 256, 1), hf_arg="min_new_tokens", hf_only_if_set=True),)),
    ProcessorSpec("forced_bos", "forced first token", "at the first new token, leave only forced_bos_token_id (score 0)",
                  transformers="ForcedBOSTokenLogitsProcessor", fields=(
        _long("forced_bos_token_id", NO_TOKEN, Range(NO_TOKEN, MAX_TOKEN_ID), Widget(L, "number", "Force this token id as the first new token (transformers' forced_bos_token_id); -1 = off.", NO_TOKEN, MAX_TOKEN_ID, 1), column=True, hf_arg="forced_bos_token_id", hf_only_if_set=True),)),
    ProcessorSpec("forced_eos", "forced last token", "at the last new token (max_new_tokens), leave only forced_eos_token_id (score 0)",
                  transformers="ForcedEOSTokenLogitsProcessor", fields=(
        _long("forced_eos_token_id", NO_TOKEN, Range(NO_TOKEN, MAX_TOKEN_ID), Widget(L, "number", "Force this token id as the last new token, the one that reaches max_new_tokens (transformers' forced_eos_token_id); -1 = off.", NO_TOKEN, MAX_TOKEN_ID, 1), column=True, hf_arg="forced_eos_token_id", hf_only_if_set=True),)),
    ProcessorSpec("exponential_decay", "exponential decay length penalty",
                  "raise the end-of-text logit by |logit| x (factor^(step - start) - 1) once past the start",
                  transformers="ExponentialDecayLengthPenalty", fields=(
        Knob("exponential_decay_factor", float, 1.0, Range(0.0, 10.0), "float64", widget=Widget(L, "slider", "Exponential decay length penalty (transformers): after `start` new tokens, end-of-text grows by |logit| x (factor^(tokens past start) - 1); > 1 ends texts sooner; 1 = off.", 0.9, 1.09, 0.01)),
        _long("exponential_decay_start", 0, Range(0, 100_000), Widget(L, "slider", "Exponential decay length penalty: new tokens before it starts.", 0, 256, 1)))),
    ProcessorSpec("suppress_tokens", "suppressed tokens", "never generate the listed tokens (-inf at every step)",
                  transformers="SuppressTokensLogitsProcessor", fields=(
        Knob("suppress_tokens", object, (), widget=Widget(P, "text", "Tokens never generated: comma-separated words (every token of each, also with a leading space); [id] for a token id.", placeholder="e.g. very, [42]")),)),
    ProcessorSpec("begin_suppress_tokens", "suppressed first tokens", "the listed tokens cannot be the first new token",
                  transformers="SuppressTokensAtBeginLogitsProcessor", fields=(
        Knob("begin_suppress_tokens", object, (), widget=Widget(P, "text", "Tokens the output may not start with: comma-separated words (every token of each, also with a leading space); [id] for a token id.", placeholder="e.g. The, [42]")),)),
    ProcessorSpec("temperature", "temperature", "divide logits by the temperature", sampling_only=True,
                  transformers="TemperatureLogitsWarper", fields=(
        _f32("temperature", 1.0, Range(MIN_TEMPERATURE, 100.0, or_zero=True), Widget(S, "slider", "Divides the logits: < 1 sharpens, > 1 flattens; 0 = greedy.", 0.0, 2.5, 0.05), hf_arg="temperature"),)),
    ProcessorSpec("dynatemp", "dynamic temperature", "divide logits by a temperature that follows the entropy", sampling_only=True,
                  switches=("dynatemp_low", "dynatemp_high"), fields=(
        _f32("dynatemp_low", 1.0, Range(MIN_TEMPERATURE, 100.0), Widget(M, "slider", "Dynamic temperature (text-generation-webui): the temperature of a certain step; off when low = high = 1.", 0.05, 5.0, 0.05)),
        _f32("dynatemp_high", 1.0, Range(MIN_TEMPERATURE, 100.0), Widget(M, "slider", "Dynamic temperature: the temperature of a maximally uncertain step.", 0.05, 5.0, 0.05)),
        _f32("dynatemp_exponent", 1.0, Range(0.0, 100.0), Widget(M, "slider", "Dynamic temperature: T = low + (high - low) x (entropy / max entropy)^exponent.", 0.0, 5.0, 0.05)))),
    ProcessorSpec("smoothing", "quadratic smoothing", "reshape logits around the top one along a quadratic (or cubic) curve",
                  sampling_only=True, fields=(
        _f32("smoothing_factor", 0.0, Range(0.0, 100.0), Widget(M, "slider", "Quadratic sampling (text-generation-webui): logit = max - factor x (max - logit)^2; small factors flatten, large ones sharpen; 0 = off.", 0.0, 5.0, 0.01)),
        _f32("smoothing_curve", 1.0, Range(1.0, 10.0), Widget(M, "slider", "Quadratic sampling: 1 = purely quadratic; higher adds a cubic term that punishes unlikely tokens more.", 1.0, 10.0, 0.1)))),
    ProcessorSpec("top_h", "top-H", "keep the top tokens until their entropy reaches top_h x the entropy of the top 100",
                  sampling_only=True, transformers="TopHLogitsWarper", fields=(
        _f32("top_h", 0.0, Range(0.0, 1.0, low_open=True, or_zero=True), Widget(S, "slider", "Top-H (arXiv 2509.02510): among the 100 most likely tokens, keep the top ones while their entropy stays within top_h x the entropy of those 100; 0 = off.", 0.0, 1.0, 0.01), hf_arg="top_h", hf_only_if_set=True),)),
    ProcessorSpec("top_k", "top-k", "keep the k most likely tokens", sampling_only=True, transformers="TopKLogitsWarper", fields=(
        _long("top_k", 0, Range(0, MAX_TOP_K), Widget(S, "slider", "Keep only the k most likely tokens; 0 = off.", 0, 200, 1), hf_arg="top_k"),)),
    ProcessorSpec("top_p", "top-p", "keep the smallest set with mass >= top_p", sampling_only=True, transformers="TopPLogitsWarper", fields=(
        _f64("top_p", 1.0, Range(0.0, 1.0, low_open=True), Widget(S, "slider", "Nucleus: keep the smallest set of tokens whose mass reaches p; 1 = off.", 0.01, 1.0, 0.01), hf_arg="top_p"),)),
    ProcessorSpec("min_p", "min-p", "drop tokens below min_p x the top probability", sampling_only=True, transformers="MinPLogitsWarper", fields=(
        _f32("min_p", 0.0, Range(0.0, 1.0), Widget(S, "slider", "Drop tokens less likely than min_p x the top token's probability; 0 = off.", 0.0, 1.0, 0.01), hf_arg="min_p", hf_only_if_set=True),)),
    ProcessorSpec("typical_p", "typical-p", "keep locally typical tokens up to mass typical_p", sampling_only=True,
                  transformers="TypicalLogitsWarper", fields=(
        _f32("typical_p", 1.0, Range(0.0, 1.0, low_open=True), Widget(S, "slider", "Keep tokens whose surprise is closest to the entropy, up to mass p; 1 = off.", 0.01, 1.0, 0.01), hf_arg="typical_p"),)),
    ProcessorSpec("top_n_sigma", "top-nσ", "keep logits within n standard deviations of the top one", sampling_only=True, fields=(
        _f64("top_n_sigma", 0.0, Range(0.0, 100.0), Widget(M, "slider", "Top-nσ (Tang et al. 2024): keep logits within n standard deviations of the top one; 0 = off.", 0.0, 5.0, 0.05)),)),
    ProcessorSpec("top_a", "top-a", "drop tokens below top_a x the top probability squared", sampling_only=True, fields=(
        _f32("top_a", 0.0, Range(0.0, 1.0), Widget(M, "slider", "Top-a (text-generation-webui): drop tokens below top_a x the top probability squared; 0 = off.", 0.0, 1.0, 0.01)),)),
    ProcessorSpec("tfs", "tail-free", "tail-free: cut where the sorted probabilities flatten out", sampling_only=True, fields=(
        _f32("tfs", 1.0, Range(0.0, 1.0), Widget(M, "slider", "Tail-free sampling (Bricken 2019): cut where the sorted probabilities flatten out; 1 = off.", 0.0, 1.0, 0.01)),)),
    ProcessorSpec("epsilon_cutoff", "epsilon cutoff", "drop tokens with probability below epsilon", sampling_only=True,
                  transformers="EpsilonLogitsWarper", fields=(
        _f32("epsilon_cutoff", 0.0, Range(0.0, 1.0, high_open=True), Widget(S, "slider", "Drop tokens with probability below epsilon; 0 = off.", 0.0, 0.01, 0.0001), hf_arg="epsilon_cutoff"),)),
    ProcessorSpec("eta_cutoff", "eta cutoff", "drop tokens below an entropy-adapted cutoff", sampling_only=True,
                  transformers="EtaLogitsWarper", fields=(
        _f32("eta_cutoff", 0.0, Range(0.0, 1.0, high_open=True), Widget(S, "slider", "Entropy-adaptive cutoff (eta sampling); 0 = off.", 0.0, 0.01, 0.0001), hf_arg="eta_cutoff"),)),
    ProcessorSpec("xtc", "XTC", "sometimes remove every top choice but the least likely", sampling_only=True, fields=(
        Knob("xtc_probability", float, 0.0, Range(0.0, 1.0), "float64", column=False, widget=Widget(M, "slider", "XTC (p-e-w, text-generation-webui / llama.cpp): chance per step of excluding the top choices; 0 = off.", 0.0, 1.0, 0.01)),
        _f32("xtc_threshold", 0.1, Range(0.0, 1.0), Widget(M, "slider", "XTC: tokens at least this likely are top choices; all but the least likely of them go.", 0.0, 0.5, 0.01)))),
    ProcessorSpec("mirostat", "mirostat", "keep tokens below a surprise cap that adapts toward tau", sampling_only=True,
                  per_row_state=True, fields=(
        Knob("mirostat", int, 0, Range(0, 2), "bool", column=False, widget=Widget(M, "slider", "Mirostat v2 (Basu et al. 2021, llama.cpp): 2 = on, 0 = off; caps surprise so it tracks tau.", 0, 2, 2)),
        _f64("mirostat_tau", 5.0, Range(0.0, 100.0), Widget(M, "slider", "Mirostat: the target surprise per token, in bits.", 0.0, 10.0, 0.1)),
        _f64("mirostat_eta", 0.1, Range(0.0, 1.0), Widget(M, "slider", "Mirostat: learning rate of the surprise cap.", 0.0, 1.0, 0.01)))),
    ProcessorSpec("adaptive_p", "adaptive-P", "favour tokens near a target probability that adapts so the chosen tokens average it",
                  sampling_only=True, per_row_state=True, fields=(
        _f64("adaptive_target", 0.0, Range(0.0, 1.0), Widget(M, "slider", "Adaptive-P (llama.cpp, text-generation-webui): favour tokens whose probability is near this target, adapting so the chosen ones average it; 0 = off.", 0.0, 1.0, 0.01)),
        _f64("adaptive_decay", 0.9, Range(0.0, 0.99), Widget(M, "slider", "Adaptive-P: how long its moving average of the chosen tokens' probabilities remembers (0.99 at most).", 0.0, 0.99, 0.01)))),
    ProcessorSpec("watermark", "green-list watermark",
                  "add bias to a pseudo-random green list of tokens seeded by the previous token(s) (Kirchenbauer et al.)",
                  transformers="WatermarkLogitsProcessor", switches=("watermark_bias",), fields=(
        _f32("watermark_bias", 0.0, Range(0.0, 100.0), Widget(W, "slider", "Green-list watermark (transformers' WatermarkingConfig bias, delta): added to the logits of a green list drawn from the previous token; 0 = off.", 0.0, 10.0, 0.1)),
        Knob("watermark_greenlist_ratio", float, 0.25, Range(0.0, 1.0, low_open=True, high_open=True), "float64", column=False, widget=Widget(W, "slider", "Green-list watermark: the share of the vocabulary that is green (gamma).", 0.05, 0.95, 0.05)),
        _long("watermark_hashing_key", WATERMARK_HASHING_KEY, Range(0, MAX_KEY), Widget(W, "number", "Green-list watermark: the secret key that seeds the green lists (detection needs the same key).", 0, 2**31 - 1, 1)),
        Knob("watermark_seeding_scheme", object, WATERMARK_SCHEMES[0], widget=Widget(W, "choice", "Green-list watermark: lefthash = the green list follows the previous token; selfhash = it also follows the candidate itself (40 candidates per step, slower).", choices=WATERMARK_SCHEMES)),
        _long("watermark_context_width", 1, Range(1, 64), Widget(W, "slider", "Green-list watermark: previous tokens that seed the green list (selfhash hashes them all; lefthash uses the last one and waits for this many tokens).", 1, 8, 1)))),
    ProcessorSpec("synthid", "SynthID watermark",
                  "reweight the distribution by tournament sampling over g-values of the last n-gram (SynthID Text)",
                  transformers="SynthIDTextWatermarkLogitsProcessor", per_row_state=True, fields=(
        Knob("synthid_keys", object, (), widget=Widget(W, "text", "SynthID Text (transformers' SynthIDTextWatermarkingConfig keys): one whole number per tournament layer, comma-separated; empty = off.", placeholder="e.g. 654, 400, 836, 123, 340")),
        _long("synthid_ngram_len", 5, Range(2, 64), Widget(W, "slider", "SynthID: n-gram length; the g-values of a token follow the n - 1 tokens before it.", 2, 10, 1)),
        _long("synthid_sampling_table_size", 2**16, Range(1, 2**24), Widget(W, "number", "SynthID: size of the random table that maps n-gram hashes to g-values (at most 2^24).", 1, 2**24, 1)),
        _long("synthid_sampling_table_seed", 0, Range(0, MAX_KEY), Widget(W, "number", "SynthID: seed of that random table.", 0, 2**31 - 1, 1)),
        _long("synthid_context_history_size", 1024, Range(0, 100_000), Widget(W, "number", "SynthID: how many earlier contexts are remembered; a repeated context is not watermarked again.", 0, 100_000, 1)),
        Knob("synthid_skip_first_ngram_calls", bool, False, widget=Widget(W, "checkbox", "SynthID: leave the first n - 1 tokens unwatermarked (their context still holds padding).")))),
    ProcessorSpec("renormalize", "renormalize", "log-softmax of the final scores (the distribution is unchanged)",
                  transformers="LogitNormalization", fields=(
        Knob("renormalize_logits", bool, False, dtype="bool", column=False, hf_arg="renormalize_logits", hf_only_if_set=True,
             widget=Widget(S, "checkbox", "Renormalize the final scores into log-probabilities (transformers' renormalize_logits); the distribution is the same.")),)),
)

# The knobs of generation itself: whether to sample, how long, when to stop, the seed and beam search.
GENERATION_KNOBS: tuple[Knob, ...] = (
    Knob("do_sample", bool, True, widget=Widget(S, "checkbox", "Sample from the distribution; off = greedy (always the most likely token).")),
    # a prompt transform (engine/healing.py), applied once per distinct prompt before the prefill
    Knob("token_healing", bool, False, widget=Widget(S, "checkbox", "Token healing (transformers): a raw prompt that ends mid-word ('http') gets its last token chosen again among the tokens that extend it ('https').")),
    _long("max_new_tokens", 64, Range(1, MAX_LENGTH), Widget(L, "slider", "Stop after this many new tokens.", 1, 512, 1)),
    # transformers' prompt-inclusive lengths; the engine turns them into min_new_tokens / max_new_tokens per row
    _long("min_length", 0, Range(0, MAX_LENGTH), Widget(L, "number", "transformers' min_length: end-of-text is masked until prompt + output has this many tokens; 0 = off.", 0, MAX_LENGTH, 1)),
    _long("max_length", 0, Range(1, MAX_LENGTH, or_zero=True), Widget(L, "number", "transformers' max_length: stop when prompt + output has this many tokens (instead of max_new_tokens: leave that at its default); 0 = unset.", 0, MAX_LENGTH, 1)),
    Knob("max_time", float, 0.0, Range(0.0, MAX_TIME, low_open=True, or_zero=True), widget=Widget(L, "number", "Stop a sample once the run has taken this many seconds (finish reason \"time\"); 0 = no limit.", 0.0, MAX_TIME, 0.5)),
    Knob("stop", object, (), widget=Widget(L, "text", "Stop strings, one per line (\\n for a newline); the output is cut before them.", placeholder="e.g. \\n\\n")),
    _long("seed", 0, Range(0, 2**63 - 1), Widget("Seed", "number", "A sample's randomness depends only on (seed, sample index, step): same seed, same text.", 0, 2**31 - 1, 1)),
    _long("num_beams", 1, Range(1, 64), Widget(B, "slider", "Beam search: keep this many best partial outputs each step; 1 = off (sampling or greedy).", 1, 8, 1)),
    _long("num_return_sequences", 1, Range(1, 64), Widget(B, "slider", "How many of the best beams to show (at most num_beams).", 1, 8, 1)),
    Knob("length_penalty", float, 1.0, Range(-10.0, 10.0), widget=Widget(B, "slider", "Beam score = sum of log-probs / length^penalty: > 0 favours longer outputs, < 0 shorter.", -2.0, 3.0, 0.1)),
    Knob("early_stopping", object, False, widget=Widget(B, "choice", "Stop when num_beams outputs are done (true), when no beam can do better (false), or only at the length limit (never).", choices=("false", "true", "never"))),
    _long("num_beam_groups", 1, Range(1, 64), Widget(B, "slider", "Diverse beam search (greedy, needs diversity_penalty > 0): split the beams into this many groups that choose in turn; 1 = off.", 1, 8, 1)),
    # assisted decoding (engine/assisted.py): how many tokens to draft per round from the row's own text; it
    # changes no token, only how many forwards of the model the row takes
    _long("prompt_lookup_num_tokens", 0, Range(0, MAX_DRAFT_TOKENS), Widget(L, "slider", "Prompt lookup decoding (transformers; Saxena 2023): draft up to this many tokens per forward by copying what followed the last n-gram earlier in the prompt or output, and keep the drafts the model itself would choose. Faster on texts that repeat their input; changes no token. 0 = off.", 0, 20, 1)),
    _long("max_matching_ngram_size", 2, Range(1, MAX_MATCHING_NGRAM), Widget(L, "slider", "Prompt lookup: the longest n-gram matched to find a draft (tried from this size down to 1).", 1, 8, 1)),
    # assisted decoding with a draft model (engine/draft_model.py): a smaller model with the same tokenizer drafts
    # greedily, and the row keeps the drafts it would have chosen itself; changes no token either
    Knob("assistant_model", object, "", widget=Widget(L, "text", "Assisted decoding (transformers' assistant_model): a draft model with the same tokenizer (a model id or local directory) drafts num_assistant_tokens tokens greedily per round, and the row keeps those it would choose itself. Changes no token; empty = off.", placeholder="e.g. HuggingFaceTB/SmolLM2-135M-Instruct")),
    _long("num_assistant_tokens", 20, Range(1, MAX_DRAFT_TOKENS), Widget(L, "slider", "Assisted decoding: tokens the draft model drafts per round (transformers' num_assistant_tokens, a fixed count).", 1, 40, 1)),
    # decoding modes ported from transformers 4.x (engine/contrastive.py, engine/constrained_beams.py)
    Knob("penalty_alpha", float, 0.0, Range(0.0, 1.0), widget=Widget(S, "slider", "Contrastive search (greedy, needs top_k > 1): of the top_k tokens take the one with the best (1 - alpha) x p - alpha x its hidden state's highest cosine similarity to the context's; 0 = off.", 0.0, 1.0, 0.05)),
    # DoLa (engine/dola.py): contrast the final layer with an earlier one; "" = off
    Knob("dola_layers", object, "", widget=Widget(S, "text", "DoLa (Chuang et al. 2023; transformers 4.55's dola_layers): the next-token scores are log p(final layer) - log p(premature layer), the premature layer being the candidate whose distribution differs most from the final one (Jensen-Shannon divergence) at that step; candidates: low = the lower half of the layers, high = the upper half, or layer numbers (0 = the embeddings), e.g. 16, 18; empty = off. Greedy or sampled, no beams, no contrastive search. transformers recommends repetition_penalty 1.2 with it (not set for you).", placeholder="low, high or e.g. 16, 18")),
    Knob("force_words", object, (), widget=Widget(B, "text", "Constrained beam search (num_beams > 1, greedy): every output must contain these; one per line, alternatives on a line separated by | (each as written and with a leading space).", placeholder="e.g. Paris | London")),
    Knob("order", object, ()),  # the processor order (a list of stage names); its default is DEFAULT_ORDER
)

SPEC_BY_NAME: dict[str, ProcessorSpec] = {spec.name: spec for spec in PROCESSORS}
PROCESSOR_OF: dict[str, ProcessorSpec] = {knob.name: spec for spec in PROCESSORS for knob in spec.fields}
KNOBS: dict[str, Knob] = {knob.name: knob for knob in (*GENERATION_KNOBS, *(k for s in PROCESSORS for k in s.fields))}


def page_knobs() -> tuple[Knob, ...]:
    """The knobs with a control on the page, group by group; in a group, generation's knobs first, then the
    processors' in the order they run."""
    processor_knobs = [k for spec in PROCESSORS for k in spec.fields]
    ordered = [k for group in GROUPS for k in (*GENERATION_KNOBS, *processor_knobs)
               if k.widget is not None and k.widget.group == group]
    return tuple(ordered)
