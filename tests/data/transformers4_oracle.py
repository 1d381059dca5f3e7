"""What the scripts that record transformers 4.x's decoding modes share (make_group_beam_oracle.py,
make_contrastive_oracle.py, make_constrained_oracle.py): the bundled model loaded as 4.x reads it, a case's
prompt ids, one generate() call with our SamplingParams' arguments, and the JSON file they write.

Run by those scripts with transformers 4.55.4 (see their docstrings); nothing here runs in the test suite.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from engine.params import SamplingParams


def load(model_dir: str) -> tuple[Any, Any]:
    """(model, tokenizer) from the bundled model's cached weights, as transformers 4.x must read them."""
    config = AutoConfig.from_pretrained(model_dir)
    # transformers 5 writes rope_theta inside rope_parameters; 4.x would silently fall back to 10000
    config.rope_theta = config.rope_parameters["rope_theta"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=config).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(model_dir)  # the saved class name is transformers 5's


def prompt_ids(tok: Any, prompt: str, raw: bool) -> list[int]:
    """The prompt as the engine encodes it: as written, or in the chat template."""
    if raw:
        return list(tok(prompt)["input_ids"])
    return list(tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True))


def generate(model: Any, tok: Any, ids: list[int], params: SamplingParams) -> Any:
    """model.generate(**params.generate_kwargs(tok)) on one prompt, with its scores (pad = EOS)."""
    with torch.no_grad():
        return model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              **params.generate_kwargs(tok), pad_token_id=tok.eos_token_id,
                              return_dict_in_generate=True, output_scores=True)


def beam_sequences(out: Any, prompt_len: int, pad: int) -> list[list[int]]:
    """The returned sequences' generated parts, without the padding after the EOS that ended each."""
    sequences = []
    for row in out.sequences[:, prompt_len:].tolist():
        while row and row[-1] == pad and row.count(pad) > 1:
            row.pop()
        sequences.append(row)
    return sequences


def write(name: str, records: list[dict[str, Any]]) -> None:
    """tests/data/<name>, with the versions that recorded it."""
    target = Path(__file__).with_name(name)
    target.write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                                  "cases": records}, indent=1) + "\n")
