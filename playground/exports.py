"""What the current settings look like elsewhere: a transformers script, a GenerationConfig, an OpenAI request.

The playground has knobs the others lack (OpenAI-style presence/frequency penalties and the community samplers
such as DRY, XTC or mirostat in transformers, a custom processor order anywhere). Those are left out and said so, never a crash: an export is a starting point for
reproducing a setting, not a promise of identical text (every library draws its own random numbers).
"""
from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from dataclasses import dataclass
from typing import Any

from engine.knobs import PROCESSORS
from engine.order import DEFAULT_ORDER
from engine.params import (NO_TRANSFORMERS_EQUIVALENT, SAMPLER_FIELDS, TOKEN_LIST_FIELDS, SamplingParams,
                           force_words_ids, token_ids, word_variants)
from engine.values import changed_params, order_text

from .config import PlaygroundConfig
from .presets import Preset

# Why transformers cannot take a knob, by field name (from the processors' specs).
_TRANSFORMERS_LACKS = {"order": "transformers applies its processors in a fixed order",
                       "synthid_keys": "transformers' generate() takes one watermarking_config: the green-list "
                                       "watermark (watermark_bias) is kept, SynthID is left out",
                       **{knob.name: spec.lacks_reason() for spec in PROCESSORS if spec.transformers is None
                          for knob in spec.fields}}
_DEFAULTS = SamplingParams()
# Where transformers 5's generate() fetches group (diverse) beam search from; 4.x had it in the library.
GROUP_BEAM_REPO = "transformers-community/group-beam-search"
# ... and contrastive search and constrained beam search (engine/contrastive.py, engine/constrained_beams.py)
CONTRASTIVE_REPO = "transformers-community/contrastive-search"
DOLA_REPO = "transformers-community/dola"  # DoLa (dola_layers) in transformers 5
CONSTRAINED_BEAM_REPO = "transformers-community/constrained-beam-search"
# OpenAI request fields that carry an engine knob under another name or meaning; the rest go by engine name.
_OPENAI_STANDARD = ("temperature", "top_p", "max_new_tokens", "seed", "stop", "presence_penalty",
                    "frequency_penalty", "do_sample")


@dataclass(frozen=True)
class TransformersSettings:
    """The part of a config transformers can run, and what it cannot."""

    kwargs: dict[str, Any]  # model.generate() keyword arguments, token-id knobs excluded
    num_return_sequences: int
    banned_words: tuple[str, ...]  # bad_words plus sequence_bias texts biased by -inf (the same ban)
    biases: tuple[tuple[str, float], ...]  # finite sequence_bias entries
    token_biases: tuple[tuple[int, float], ...]  # logit_bias: (token id, bias), one-token sequence biases
    # suppress_tokens / begin_suppress_tokens that hold texts (token ids only: they are in kwargs)
    token_lists: tuple[tuple[str, tuple[str | int, ...]], ...]
    left_out: dict[str, Any]  # field -> value, for knobs transformers has no equivalent of
    notes: tuple[str, ...]
    # classifier-free guidance's negative prompt (generate()'s negative_prompt_ids, tokenized in the script);
    # "" when guidance is off or its context is transformers' default (the prompt's last token)
    negative_prompt: str = ""
    # transformers' watermarking_config: ("WatermarkingConfig" or "SynthIDTextWatermarkingConfig", its arguments)
    watermarking: tuple[str, dict[str, Any]] | None = None
    force_words: tuple[tuple[str, ...], ...] = ()  # constrained beam search: texts, token ids with a tokenizer


def transformers_settings(config: PlaygroundConfig) -> TransformersSettings:
    """Split a config into what transformers' generate() takes and what it cannot express."""
    params = config.params
    switched_on = params.without_transformers_equivalent()
    left_out: dict[str, Any] = {}
    for name, value in switched_on.items():  # each switch, with the other fields of its sampler that were set
        sampler = NO_TRANSFORMERS_EQUIVALENT[name][1]
        left_out[name] = value
        left_out.update({field: _plain(getattr(params, field)) for field in SAMPLER_FIELDS.get(sampler, ())
                         if getattr(params, field) != getattr(_DEFAULTS, field) and field not in left_out})
    if params.order != DEFAULT_ORDER:
        left_out["order"] = order_text(params.order)
    if params.watermark_bias and params.synthid_keys:  # one watermarking_config per generate(): the green list stays
        left_out["synthid_keys"] = list(params.synthid_keys)
        params = params.replace(synthid_keys=[])
    switched_off = {name: off for name, (off, _) in NO_TRANSFORMERS_EQUIVALENT.items()}
    token_lists = tuple((name, getattr(params, name)) for name in TOKEN_LIST_FIELDS
                        if not all(isinstance(item, int) for item in getattr(params, name)))
    expressible = params.replace(**switched_off, order=list(DEFAULT_ORDER), bad_words=[], sequence_bias=[],
                                 logit_bias={}, negative_prompt="", force_words=[], **{name: [] for name, _ in token_lists})
    notes = [] if params.greedy else [
        "transformers draws its own random numbers: the texts differ from the playground's even with the same "
        "seed, but come from the same distributions"]
    samples = config.samples
    if params.num_beams > 1:  # a beam config returns its num_return_sequences best beams, whatever `samples` says
        samples = params.num_return_sequences
    elif params.greedy and samples > 1:
        notes.append(f"greedy decoding gives the same text every time, so one sequence stands for the "
                     f"playground's {samples} identical samples")
        samples = 1
    if params.stop:
        notes.append("transformers keeps the stop string in the text; the playground cuts the text before it")
    if params.forced_bos_token_id >= 0:
        notes.append("transformers' generate() forces forced_bos_token_id only when its input is one token long "
                     "(the first new token of an encoder-decoder model); after a longer prompt it leaves the first "
                     "token free, the playground forces it after any prompt")
    if params.num_beam_groups > 1:
        notes.append(f"transformers 5 runs diverse beam search from the hub repository {GROUP_BEAM_REPO} "
                     "(custom_generate=..., trust_remote_code=True); transformers 4.x up to 4.55 has it built in")
    if params.penalty_alpha > 0:
        notes.append(f"transformers 5 runs contrastive search from the hub repository {CONTRASTIVE_REPO} "
                     "(custom_generate=..., trust_remote_code=True); transformers 4.x up to 4.55 has it built in")
    if params.dola_layers:
        notes.append(f"transformers 5 runs DoLa from the hub repository {DOLA_REPO} (custom_generate=..., "
                     "trust_remote_code=True); transformers 4.x up to 4.55 has it built in")
    if params.force_words:
        notes.append(f"transformers 5 runs constrained beam search from the hub repository {CONSTRAINED_BEAM_REPO} "
                     "(custom_generate=..., trust_remote_code=True); transformers 4.x up to 4.55 has it built in")
    banned, biases = bans_and_biases(params)
    kwargs = expressible.generate_kwargs()
    kwargs.pop("num_return_sequences", None)  # one place for it: TransformersSettings.num_return_sequences
    kwargs.pop("watermarking_config", None)  # a config object: TransformersSettings.watermarking
    return TransformersSettings(kwargs=kwargs, num_return_sequences=samples,
                                banned_words=banned, biases=biases, token_biases=params.logit_bias,
                                token_lists=token_lists, left_out=left_out, notes=tuple(notes),
                                negative_prompt=params.negative_prompt if params.guidance_scale != 1.0 else "",
                                watermarking=expressible.watermarking_config(), force_words=params.force_words)


def _plain(value: Any) -> Any:
    """A tuple-valued knob (dry_sequence_breakers) as the list that JSON and the other views show."""
    return list(value) if isinstance(value, tuple) else value


def bans_and_biases(params: SamplingParams) -> tuple[tuple[str, ...], tuple[tuple[str, float], ...]]:
    """Banned words (bad_words plus texts biased by -inf, which is the same ban) and the finite biases.

    JSON has no -inf, and every target can ban words, so a -inf bias travels as a banned word.
    """
    banned = params.bad_words + tuple(text for text, bias in params.sequence_bias if bias == -math.inf)
    biases = tuple(pair for pair in params.sequence_bias if pair[1] != -math.inf)
    return banned, biases


def sweep_cells(config: PlaygroundConfig) -> list[tuple[dict[str, Any], PlaygroundConfig]]:
    """One (axis values, config without axes) per cell of the sweep, first axis slowest; no axes: one cell.

    Cells carry their own parameters (and, with independent seeds, their own seed), as the engine runs them.
    """
    if not config.axes:
        return [({}, config)]
    return [({name: _plain(value) for name, value in values}, config.replace(params=params, axes=()))
            for values, params in config.replace(prompt="cells").sweep_spec().cells()]  # any prompt: cells only


def _generation_config(config: PlaygroundConfig, tokenizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """GenerationConfig keyword arguments of one cell, and {field: {value, reason}} for what it cannot hold."""
    settings = transformers_settings(config)
    data: dict[str, Any] = {**settings.kwargs, "num_return_sequences": settings.num_return_sequences}
    reasons = {name: {"value": value, "reason": _TRANSFORMERS_LACKS[name]} for name, value in settings.left_out.items()}
    if tokenizer is not None:
        if settings.banned_words:
            data["bad_words_ids"] = [ids for word in settings.banned_words for ids in word_variants(tokenizer, word)]
        if settings.biases:
            data["sequence_bias"] = [[ids, bias] for text, bias in settings.biases
                                     for ids in word_variants(tokenizer, text)]
        data.update((name, token_ids(tokenizer, items)) for name, items in settings.token_lists)
        if settings.force_words:
            data["force_words_ids"] = force_words_ids(tokenizer, settings.force_words)
    else:
        needs_ids = "needs a tokenizer to become token ids"
        if settings.banned_words:
            reasons["bad_words"] = {"value": list(settings.banned_words), "reason": needs_ids}
        if settings.biases:
            reasons["sequence_bias"] = {"value": _bias_json(settings.biases), "reason": needs_ids}
        reasons.update((name, {"value": list(items), "reason": needs_ids}) for name, items in settings.token_lists)
        if settings.force_words:
            reasons["force_words"] = {"value": [list(texts) for texts in settings.force_words], "reason": needs_ids}
    if settings.negative_prompt:
        reasons["negative_prompt"] = {"value": settings.negative_prompt, "reason": "a generate() argument "
                                      "(negative_prompt_ids), not a GenerationConfig field: the script passes it"}
    if settings.token_biases:  # logit_bias is a bias on one-token sequences
        data["sequence_bias"] = [*data.get("sequence_bias", []), *([[token], bias] for token, bias in settings.token_biases)]
    if settings.watermarking is not None:
        kind, arguments = settings.watermarking
        if kind == "WatermarkingConfig":  # GenerationConfig reads a watermarking_config object as this class
            data["watermarking_config"] = arguments
        else:
            reasons["synthid_keys"] = {"value": list(config.params.synthid_keys), "reason": _SYNTHID_JSON}
    return data, reasons


_SYNTHID_JSON = ("GenerationConfig JSON reads a watermarking_config object as WatermarkingConfig (the green list); "
                 "SynthID goes in as SynthIDTextWatermarkingConfig(...) in code, as the script does")


def generation_config_json(config: PlaygroundConfig, tokenizer: Any = None) -> str:
    """GenerationConfig JSON that loads as it is: GenerationConfig(**json.loads(text)); with a sweep, a list with
    one such object per cell (in the sweep's order). Nothing else is in it: what it cannot hold, and why, is in
    export_notes.

    bad_words / sequence_bias become token ids with a tokenizer (each word as written and with a leading
    space, as the engine bans it); without one they are left out (and listed in export_notes).
    """
    configs = [_generation_config(cell, tokenizer)[0] for _, cell in sweep_cells(config)]
    data: Any = configs if config.axes else configs[0]
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)


def export_notes(config: PlaygroundConfig, tokenizer: Any = None) -> dict[str, Any]:
    """What the exports could not carry and why ({field: {value, reason}}, over every cell), notes on how they
    differ from the playground, and with a sweep the axis values of each cell in the exports' order."""
    cells = sweep_cells(config)
    reasons: dict[str, Any] = {}
    for _, cell in cells:
        reasons.update(_generation_config(cell, tokenizer)[1])
    notes = list(transformers_settings(cells[0][1]).notes)
    if config.axes:
        names = " x ".join(name for name, _ in config.axes)
        seeds = ("each cell with its own seed (independent seeds)" if config.independent_seeds
                 else f"every cell with seed {config.params.seed}")
        notes.append(f"the sweep ({names}, {len(cells)} cells) is a loop over its cells in the script, a list of "
                     f"GenerationConfig objects and a list of OpenAI requests, {seeds}")
        varying = _varying_token_fields(cells)
        if varying:
            notes.append(f"the script's token ids ({', '.join(varying)}) are those of the first cell: the axis "
                         f"over them is in the GenerationConfig list")
    reasons.update(_forced_start_reasons(config))
    if config.forced:
        notes.append("the script appends the forced start to the prompt's tokens: transformers counts it as prompt, "
                     "so its max_new_tokens go on after it (the playground counts it as new tokens) and its own "
                     "random numbers choose what follows")
    return {"not_expressible": reasons, "notes": notes, "cells": [values for values, _ in cells] if config.axes else []}


def _forced_start_reasons(config: PlaygroundConfig) -> dict[str, Any]:
    """A branch's forced start and sample index: neither GenerationConfig nor an OpenAI request holds them."""
    reasons: dict[str, Any] = {}
    for name, value in (("prefix", config.prefix), ("prefix_ids", list(config.prefix_ids))):
        if value:
            reasons[name] = {"value": value, "reason": "a forced start of the outputs (a branch or an edit) is no "
                                                       "GenerationConfig or OpenAI request field"}
    if config.first_sample:
        reasons["first_sample"] = {"value": config.first_sample,
                                   "reason": "the playground's noise of that sample index; other libraries draw "
                                             "their own random numbers"}
    return reasons


def preset_json(config: PlaygroundConfig, name: str = "My configuration",
                description: str = "Shared from the Decoding Playground.") -> str:
    """The configuration as a preset file (examples/*.json): everything a share link holds, a branch's forced
    start and first sample included."""
    return json.dumps(Preset(name, description, config).to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


def export_notes_text(config: PlaygroundConfig, tokenizer: Any = None) -> str:
    """export_notes as lines a person reads beside the exports."""
    notes = export_notes(config, tokenizer)
    lines = [f"Left out: {name} = {json.dumps(item['value'], ensure_ascii=False)}: {item['reason']}."
             for name, item in notes["not_expressible"].items()]
    lines += [f"Note: {note}." for note in notes["notes"]]
    lines += [f"Cell {i}: " + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in cell.items())
              for i, cell in enumerate(notes["cells"])]
    return "\n".join(lines) or "Nothing left out."


def _varying_token_fields(cells: list[tuple[dict[str, Any], PlaygroundConfig]]) -> list[str]:
    fields = ("bad_words", "sequence_bias", "logit_bias", *TOKEN_LIST_FIELDS)
    return [f for f in fields if len({repr(getattr(cell.params, f)) for _, cell in cells}) > 1]


def generate_snippet(config: PlaygroundConfig, model_id: str) -> str:
    """A runnable transformers script for these settings (a comment says what it leaves out); a sweep is a loop
    over its cells, each with the keyword arguments that differ from the others."""
    cells = sweep_cells(config)
    settings = transformers_settings(cells[0][1])
    left_out = {name: value for _, cell in cells for name, value in transformers_settings(cell).left_out.items()}
    comments = ["Decoding Playground settings as a transformers script.",
                *(f"Note: {note}." for note in export_notes(config)["notes"]),
                *(f"Left out: {name}={value!r}: {_TRANSFORMERS_LACKS[name]}." for name, value in left_out.items())]
    lines = [*(line for text in comments for line in textwrap.wrap(text, 100, initial_indent="# ",
                                                                    subsequent_indent="#   ")),
             "import torch",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             "",
             f"model_id = {model_id!r}",
             "tokenizer = AutoTokenizer.from_pretrained(model_id)",
             "model = AutoModelForCausalLM.from_pretrained(model_id)",
             "",
             f"prompt = {config.prompt!r}",
             *_prompt_lines(config),
             *_forced_start_lines(config),
             "",
             *(_single_lines(config, settings) if not config.axes else _sweep_lines(config, cells)),
             ""]
    if config.forced:  # print the outputs with their forced start, as the playground shows them
        lines = [line.replace('prompt_length = inputs["input_ids"].shape[1]',
                              'prompt_length = inputs["input_ids"].shape[1] - len(prefix_ids)') for line in lines]
    return "\n".join(lines)


def _forced_start_lines(config: PlaygroundConfig) -> list[str]:
    """A branch's forced start appended to the prompt's tokens (a text tokenized without special tokens)."""
    if not config.forced:
        return []
    ids = (f"prefix_ids = {list(config.prefix_ids)!r}" if config.prefix_ids else
           f'prefix_ids = tokenizer({config.prefix!r}, add_special_tokens=False)["input_ids"]')
    return ["# the outputs' forced start (a branch): appended to the prompt", ids,
            'inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([prefix_ids])], dim=-1)',
            'inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])']


def _kwargs_lines(kwargs: dict[str, Any], settings: TransformersSettings) -> list[str]:
    return ["kwargs = dict(", *(f"    {name}={value!r}," for name, value in kwargs.items()), ")",
            *_token_id_lines(settings), *_watermarking_lines(settings),
            *([f'kwargs["sequence_bias"] = {{**kwargs.get("sequence_bias", {{}}), '
               f'**{ {(t,): b for t, b in settings.token_biases}!r}}}  # logit_bias'] if settings.token_biases else []),
            *_negative_prompt_lines(settings)]


def _negative_prompt_lines(settings: TransformersSettings) -> list[str]:
    """Classifier-free guidance's unconditional context: the negative prompt as raw text (no chat template), one
    row per returned sequence (transformers' processor fails on a single row beside several sequences)."""
    if not settings.negative_prompt:
        return []
    repeat = f".repeat({settings.num_return_sequences}, 1)" if settings.num_return_sequences > 1 else ""
    return [f"negative_prompt = {settings.negative_prompt!r}  # classifier-free guidance's unconditional context",
            f'kwargs["negative_prompt_ids"] = tokenizer(negative_prompt, return_tensors="pt")["input_ids"]{repeat}']


def _watermarking_lines(settings: TransformersSettings) -> list[str]:
    """transformers' watermarking_config as its own class (a sweep's cells share the first cell's)."""
    if settings.watermarking is None:
        return []
    kind, arguments = settings.watermarking
    return [f"from transformers import {kind}",
            f"kwargs[\"watermarking_config\"] = {kind}("
            + ", ".join(f"{name}={value!r}" for name, value in arguments.items()) + ")"]


def _extra_generate_args(params: SamplingParams) -> str:
    return ((", tokenizer=tokenizer" if params.stop else "")
            + (f", custom_generate={GROUP_BEAM_REPO!r}, trust_remote_code=True" if params.num_beam_groups > 1 else "")
            + (f", custom_generate={CONTRASTIVE_REPO!r}, trust_remote_code=True" if params.penalty_alpha > 0 else "")
            + (f", custom_generate={CONSTRAINED_BEAM_REPO!r}, trust_remote_code=True" if params.force_words else "")
            + (f", custom_generate={DOLA_REPO!r}, trust_remote_code=True" if params.dola_layers else ""))


def _single_lines(config: PlaygroundConfig, settings: TransformersSettings) -> list[str]:
    return [*_kwargs_lines(settings.kwargs, settings),
            "",
            f"torch.manual_seed({config.params.seed})",
            f"outputs = model.generate(**inputs, **kwargs, num_return_sequences={settings.num_return_sequences}"
            + _extra_generate_args(config.params) + ")",
            'prompt_length = inputs["input_ids"].shape[1]',
            "for i, sequence in enumerate(outputs):",
            '    print(f"--- sample {i}")',
            "    print(tokenizer.decode(sequence[prompt_length:], skip_special_tokens=True))"]


def _sweep_lines(config: PlaygroundConfig, cells: list[tuple[dict[str, Any], PlaygroundConfig]]) -> list[str]:
    """The sweep as a loop: keyword arguments every cell shares, then per cell what differs (and its seed)."""
    per_cell = []
    for _, cell in cells:
        cell_settings = transformers_settings(cell)
        per_cell.append({**cell_settings.kwargs, "num_return_sequences": cell_settings.num_return_sequences,
                         "seed": cell.params.seed,
                         **({"watermarking_config": cell_settings.watermarking} if cell_settings.watermarking else {})})
    shared = {k: v for k, v in per_cell[0].items() if k != "watermarking_config"
              and all(k in c and c[k] == v for c in per_cell)}
    differing = [{k: v for k, v in c.items() if k not in shared} for c in per_cell]
    seed = shared.pop("seed", config.params.seed)
    sequences = shared.pop("num_return_sequences", None)
    names = " x ".join(name for name, _ in config.axes)
    extra = _extra_generate_args(cells[0][1].params)
    guided = [transformers_settings(cell) for _, cell in cells if transformers_settings(cell).negative_prompt]
    # every cell has the same negative prompt (it is no axis); generate() ignores it in a cell with guidance_scale 1
    first = dataclasses.replace(transformers_settings(cells[0][1]),
                                negative_prompt=guided[0].negative_prompt if guided else "", watermarking=None)
    marked = any("watermarking_config" in c for c in per_cell)  # (class name, arguments) per cell
    return [*_kwargs_lines(shared, first),
            *(["import transformers"] if marked else []),
            "",
            f"cells = [  # the sweep over {names}: what differs between its {len(cells)} cells",
            *(f"    {c!r}," for c in differing), "]",
            'prompt_length = inputs["input_ids"].shape[1]',
            "for number, cell in enumerate(cells):",
            "    cell = dict(cell)",
            f'    torch.manual_seed(cell.pop("seed", {seed}))',
            *(['    if "watermarking_config" in cell:  # (class, arguments): transformers\' own config object',
               '        kind, arguments = cell["watermarking_config"]',
               '        cell["watermarking_config"] = getattr(transformers, kind)(**arguments)'] if marked else []),
            "    outputs = model.generate(**inputs, **kwargs, **cell"
            + (f", num_return_sequences={sequences}" if sequences is not None else "") + extra + ")",
            "    for i, sequence in enumerate(outputs):",
            '        print(f"--- cell {number} {cell} sample {i}")',
            "        print(tokenizer.decode(sequence[prompt_length:], skip_special_tokens=True))"]


def _prompt_lines(config: PlaygroundConfig) -> list[str]:
    if config.raw:
        return ['inputs = tokenizer(prompt, return_tensors="pt")']
    system = [f'    {{"role": "system", "content": {config.system_prompt!r}}},'] if config.system_prompt else []
    return ["messages = [", *system, '    {"role": "user", "content": prompt},', "]",
            'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",',
            "                                       return_dict=True)"]


def _token_id_lines(settings: TransformersSettings) -> list[str]:
    """Banned and biased words become token ids the way the engine makes them (engine.tokens.word_variants)."""
    if not settings.banned_words and not settings.biases and not settings.token_lists and not settings.force_words:
        return []
    lines = ["",
             "def word_variants(text):",
             '    """Token ids of a word as written and with a leading space (how it appears mid-sentence)."""',
             "    variants = []",
             '    for variant in (text, " " + text.lstrip(" ")):',
             '        ids = tokenizer(variant, add_special_tokens=False)["input_ids"]',
             "        if ids and ids not in variants:",
             "            variants.append(ids)",
             "    return variants",
             ""]
    if settings.banned_words:
        lines.append(f"banned_words = {list(settings.banned_words)!r}")
        lines.append('kwargs["bad_words_ids"] = [ids for word in banned_words for ids in word_variants(word)]')
    if settings.biases:
        lines.append(f"biases = {[list(pair) for pair in settings.biases]!r}")
        lines.append('kwargs["sequence_bias"] = {tuple(ids): bias for text, bias in biases '
                     "for ids in word_variants(text)}")
    if settings.force_words:  # per constraint every spelling of its texts: one a phrase, several alternatives
        lines.append(f"force_words = {[list(texts) for texts in settings.force_words]!r}")
        lines.append("spellings = [[ids for text in texts for ids in word_variants(text)] for texts in force_words]")
        lines.append('kwargs["force_words_ids"] = [s[0] if len(s) == 1 else s for s in '
                     "([ids for i, ids in enumerate(s) if ids not in s[:i]] for s in spellings)]")
    for name, items in settings.token_lists:  # a text stands for every token of each of its spellings
        lines.append(f"kwargs[{name!r}] = list(dict.fromkeys(token for item in {list(items)!r} for token in "
                     "([item] if isinstance(item, int) else [t for ids in word_variants(item) for t in ids])))")
    return lines


def openai_endpoint(config: PlaygroundConfig) -> str:
    """The endpoint openai_request_json's body is for: chat unless the prompt is raw text."""
    return "/v1/completions" if config.raw else "/v1/chat/completions"


def openai_request_json(config: PlaygroundConfig, model_name: str) -> str:
    """An OpenAI-style request body; the engine's other non-default knobs ride along by their engine names.
    With a sweep, a list with one body per cell (in the sweep's order).

    Servers such as vLLM read many of those extension fields (top_k, min_p, repetition_penalty, ...);
    OpenAI itself ignores or rejects them. temperature is 0 for greedy rows, as in the OpenAI API.
    """
    bodies = [_openai_body(cell, model_name) for _, cell in sweep_cells(config)]
    return json.dumps(bodies if config.axes else bodies[0], indent=2, ensure_ascii=False, allow_nan=False)


def _openai_body(config: PlaygroundConfig, model_name: str) -> dict[str, Any]:
    params = config.params
    body: dict[str, Any] = {"model": model_name}
    if config.raw:
        body["prompt"] = config.prompt
    else:
        system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
        body["messages"] = [*system, {"role": "user", "content": config.prompt}]
    searched = params.num_beams > 1 or params.penalty_alpha > 0  # /v1's n: the best beams; contrastive gives one
    body.update(temperature=0.0 if params.greedy else params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, n=params.num_return_sequences if searched else config.samples,
                seed=params.seed)
    if params.stop:
        body["stop"] = list(params.stop)
    body.update(presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty)
    body.update(_openai_extensions(params))
    return body


def _openai_extensions(params: SamplingParams) -> dict[str, Any]:
    """Non-default knobs without a standard field; a -inf sequence bias is a ban, so it joins bad_words."""
    extensions = {name: value for name, value in changed_params(params).items()
                  if name not in (*_OPENAI_STANDARD, "bad_words", "sequence_bias")}
    banned, biases = bans_and_biases(params)
    if banned:
        extensions["bad_words"] = list(banned)
    if biases:
        extensions["sequence_bias"] = _bias_json(biases)
    if "order" in extensions:
        extensions["order"] = extensions["order"].split(">")
    return extensions


def _bias_json(pairs: tuple[tuple[str, float], ...]) -> dict[str, float] | list[list[Any]]:
    """An object text -> bias, or [text, bias] pairs when a text repeats (an object would drop one)."""
    as_object = dict(pairs)
    return as_object if len(as_object) == len(pairs) else [list(pair) for pair in pairs]
