"""Assisted decoding with a draft model (engine/draft_model.py): the draft's greedy tokens are verified exactly as
prompt lookup's, so every row's output is plain decoding's, token for token, whatever the draft; a draft that
agrees with the target saves forwards; a draft with another tokenizer is refused before any work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.draft_model as draft_model
from engine.errors import ParamError
from engine.generate import Engine
from engine.models import LoadedModel, tiny_random_model
from engine.params import SamplingParams
from engine.sweep import run_sweep
from engine.sweepspec import Axis, SweepSpec
from test_assisted import KNOBS, MIXED, PARAGRAPH, assert_same_rows

UNIVERSAL = "universal assisted decoding, which re-tokenizes drafts, is not implemented"


def saved(loaded: LoadedModel, folder: Path) -> str:
    """A model written as a directory, so that assistant_model can name it."""
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return str(folder)


def drafting(params: list[SamplingParams], draft: str, tokens: int = 6) -> list[SamplingParams]:
    return [p.replace(assistant_model=draft, num_assistant_tokens=tokens) for p in params]


@pytest.fixture(scope="module")
def tiny() -> Engine:
    """The target: a tiny model spread like a trained one (no near-ties decided by the last bit of a forward)."""
    return Engine(tiny_random_model(seed=1, init_std=1.0))


@pytest.fixture(scope="module")
def drafts(tmp_path_factory, tiny) -> dict[str, str]:
    """Draft directories: another random model (it rarely agrees: the lower bound) and the target's own weights
    (it always agrees on greedy rows: the upper bound)."""
    root = tmp_path_factory.mktemp("drafts")
    return {"random": saved(tiny_random_model(seed=7, init_std=1.0), root / "random"),
            "same": saved(tiny.loaded, root / "same")}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> dict[str, str]:
    """Tiny models whose tokenizers are not the target's: one token more, and two tokens' ids swapped."""
    root = tmp_path_factory.mktemp("foreign")
    bigger = tiny_random_model(seed=3)
    bigger.tokenizer = bigger.tokenizer.__class__.from_pretrained(saved(bigger, root / "base"))
    bigger.tokenizer.add_tokens(["<not-in-the-target>"])
    bigger.model.resize_token_embeddings(len(bigger.tokenizer))
    swapped_dir = Path(saved(tiny_random_model(seed=4), root / "swapped"))
    spec = json.loads((swapped_dir / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["the"], vocab["and"] = vocab["and"], vocab["the"]
    (swapped_dir / "tokenizer.json").write_text(json.dumps(spec))
    return {"bigger": saved(bigger, root / "bigger"), "swapped": str(swapped_dir)}


def test_fields_are_named_with_range_and_value() -> None:
    with pytest.raises(ParamError, match=r"^num_assistant_tokens: must be a whole number in \[1, 128\], got 0"):
        SamplingParams(num_assistant_tokens=0)
    with pytest.raises(ParamError, match=r"^assistant_model: must be a string, got 3"):
        SamplingParams(assistant_model=3)
    with pytest.raises(ParamError, match=r"^assistant_model: must be empty with num_beams > 1 .*, got 'x'"):
        SamplingParams(assistant_model="x", num_beams=2)
    with pytest.raises(ParamError, match=r"^assistant_model: must be empty with penalty_alpha > 0"):
        SamplingParams(assistant_model="x", penalty_alpha=0.5, top_k=4, do_sample=False)
    with pytest.raises(ParamError, match=r"^assistant_model: must be empty with guidance_scale != 1"):
        SamplingParams(assistant_model="x", guidance_scale=2.0)
    with pytest.raises(ParamError, match=r"^prompt_lookup_num_tokens: must be 0 with assistant_model set"):
        SamplingParams(assistant_model="x", prompt_lookup_num_tokens=4)
    with pytest.raises(ParamError, match=r"^prompt_lookup_num_tokens: must be 0 with guidance_scale != 1"):
        SamplingParams(prompt_lookup_num_tokens=4, guidance_scale=2.0)  # was a RuntimeError mid-run
    assert SamplingParams().num_assistant_tokens == 20  # transformers' default
    assert SamplingParams.from_json(SamplingParams(assistant_model="d").to_json()).assistant_model == "d"


def test_unloadable_draft_is_refused_by_name(tiny, tmp_path) -> None:
    prompt = tiny.encode("one two three", raw=True)
    for missing in (str(tmp_path / "nowhere"), str(tmp_path)):  # no such directory; a directory with no model
        with pytest.raises(ParamError, match=r"^assistant_model: must be a model id or local directory that loads "
                                             r"\(empty = off; here: .+\), got '" + missing):
            tiny.generate(prompt, [SamplingParams(assistant_model=missing, max_new_tokens=4)])


def test_a_hub_id_that_does_not_load_is_tried_once(tiny, monkeypatch) -> None:
    calls = []

    def unreachable(name, **kwargs):
        calls.append(name)
        raise ValueError(f"model: could not load {name!r}: We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(draft_model, "load_model", unreachable)
    prompt = tiny.encode("one two three", raw=True)
    for _ in range(2):
        with pytest.raises(ParamError, match=r"^assistant_model: .*here: could not load 'org/absent': We couldn't "
                                             r"connect to 'https://huggingface.co'\), got 'org/absent'"):
            tiny.generate(prompt, [SamplingParams(assistant_model="org/absent", max_new_tokens=4)])
    assert calls == ["org/absent"]


@pytest.mark.parametrize("which, how", [("bigger", r"49153 tokens against the target's 49152"),
                                        ("swapped", r"token '(the|and)' is id \d+ there, \d+ in the target")])
def test_a_draft_with_another_tokenizer_is_refused_before_any_work(tiny, foreign, which, how, monkeypatch) -> None:
    prompt = tiny.encode("one two three", raw=True)

    def no_forward(*args, **kwargs):
        raise AssertionError("the target ran a forward before the draft was refused")

    monkeypatch.setattr(tiny.loaded.model, "forward", no_forward)
    with pytest.raises(ParamError, match=rf"^assistant_model: must be a model with the target's tokenizer \({how}; "
                                         rf"{UNIVERSAL}\), got '{foreign[which]}'"):
        tiny.generate(prompt, [SamplingParams(max_new_tokens=4), SamplingParams(assistant_model=foreign[which])])


def test_draft_equals_plain_for_every_row_on_tiny_models(tiny, drafts, monkeypatch) -> None:
    loads = []
    real_load = draft_model.load_model
    monkeypatch.setattr(draft_model, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    prompt = tiny.encode("one two three four one two three four one two three five " * 3, raw=True)
    eos = tiny.loaded.eos_token_ids[0]
    params = [p.replace(max_new_tokens=24) for p in MIXED] + [  # a row that ends at an end-of-text token
        SamplingParams(temperature=0.9, seed=4, logit_bias={eos: 100.0}, min_new_tokens=7, max_new_tokens=24)]
    forced = [[], [], list(prompt[:5]), [], [], [], [], [], []]  # a branch: its forced tokens are drafts first
    indices = list(range(len(params)))
    plain = tiny.generate(prompt, params, indices, forced=forced, trace_top_n=3)
    assert plain.rows[-1].finish_reason == "stop" and len(plain.rows[-1].token_ids) < 24
    for name, tokens in (("random", 20), ("same", 5)):  # the property test below varies the count
        fast = tiny.generate(prompt, drafting(params, drafts[name], tokens), indices, forced=forced, trace_top_n=3)
        assert_same_rows(plain, fast)
        steps = plain.trace.chosen_rank.shape[0]
        for field in ("chosen_rank", "support", "top_ids"):
            assert torch.equal(getattr(plain.trace, field), getattr(fast.trace, field)[:steps]), field
        greedy = fast.rows[0]
        if name == "same":  # the target's own weights: every greedy draft is the target's choice
            assert greedy.accepted_tokens == greedy.drafted_tokens > 0
            assert greedy.target_forwards <= 1 + -(-len(greedy.token_ids) // (tokens + 1))
    assert len(loads) == 2 and set(drafts.values()) <= set(tiny.draft_models)  # one load per distinct draft


def test_rows_mix_draft_models_prompt_lookup_and_plain(tiny, drafts) -> None:
    prompts = [tiny.encode(t, raw=True) for t in ("a b c a b c a b", "x y z", "a b c a b c a b", "hello there " * 4)]
    params = [SamplingParams(temperature=0.0, max_new_tokens=20), SamplingParams(temperature=0.9, seed=1, max_new_tokens=12),
              SamplingParams(temperature=0.8, top_k=5, seed=2, max_new_tokens=16), SamplingParams(temperature=0.0, max_new_tokens=20)]
    plain = tiny.generate(prompts, params, [0, 1, 2, 3])
    mixed = [params[0].replace(assistant_model=drafts["same"], num_assistant_tokens=4), params[1],
             params[2].replace(prompt_lookup_num_tokens=8), params[3].replace(assistant_model=drafts["random"])]
    fast = tiny.generate(prompts, mixed, [0, 1, 2, 3])
    assert_same_rows(plain, fast)
    assert fast.rows[1].drafted_tokens == 0 and fast.rows[1].target_forwards == len(fast.rows[1].token_ids)
    assert fast.rows[0].target_forwards < len(fast.rows[0].token_ids)


def test_a_sweep_with_a_draft_model_is_the_plain_sweep(tiny, drafts) -> None:
    axes = (Axis("temperature", (0.0, 0.7, 1.2)), Axis("repetition_penalty", (1.0, 1.3)))
    base = SamplingParams(max_new_tokens=16, top_p=0.9, seed=5)
    plain = run_sweep(tiny, SweepSpec("one two one two one two", base, axes, samples=2, raw=True))
    spec = SweepSpec("one two one two one two", base.replace(assistant_model=drafts["same"], num_assistant_tokens=8),
                     axes, samples=2, raw=True)
    fast = run_sweep(tiny, spec)
    assert [r.token_ids for r in fast.generation.rows] == [r.token_ids for r in plain.generation.rows]
    records = fast.records()
    assert all(r["target_forwards"] is not None for r in records)
    assert sum(r["target_forwards"] for r in records) < sum(len(r["token_ids"]) for r in records)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(KNOBS, st.sampled_from(["random", "same", ""]), st.integers(1, 12), st.integers(1, 18)),
                     min_size=1, max_size=5),
       text=st.sampled_from(["the cat sat on the mat and the cat sat on the hat", "a b a b a b a b a b", "1 2 3 1 2 3"]))
def test_property_draft_equals_plain(tiny, drafts, rows, text) -> None:
    prompt = tiny.encode(text, raw=True)
    params = [SamplingParams(**{**knobs, "min_new_tokens": min(knobs.get("min_new_tokens", 0), length)},
                             max_new_tokens=length) for knobs, _, _, length in rows]
    # rows without a draft ("") decode one token per forward among the others; the first row always drafts
    fast_params = [p.replace(assistant_model=drafts[which or ("random" if k == 0 else "")] if which or k == 0 else "",
                             num_assistant_tokens=tokens) for k, (p, (_, which, tokens, _)) in enumerate(zip(params, rows))]
    indices = list(range(len(params)))
    assert_same_rows(tiny.generate(prompt, params, indices), tiny.generate(prompt, fast_params, indices))


def test_the_bundled_model_with_a_tiny_draft_and_with_itself(engine, drafts) -> None:
    prompts = [engine.encode("Rewrite this paragraph: " + PARAGRAPH)] * len(MIXED) + [
        engine.encode("What is the capital of France? Answer in one word.")] * 3
    params = [p.replace(max_new_tokens=32) for p in MIXED] + [SamplingParams(temperature=0.0, max_new_tokens=32),
                                                             SamplingParams(temperature=0.7, seed=2, max_new_tokens=32),
                                                             SamplingParams(temperature=0.0, stop=["Paris"], max_new_tokens=32)]
    indices = list(range(len(params)))
    plain = engine.generate(prompts, params, indices)
    assert plain.rows[-3].finish_reason == "stop" and plain.rows[-3].token_ids[-1] in engine.loaded.eos_token_ids
    assert plain.rows[-1].finish_reason == "stop" and plain.rows[-1].text == "The capital of France is "
    tiny_draft = engine.generate(prompts, drafting(params, drafts["random"], 4), indices)
    assert_same_rows(plain, tiny_draft)
    itself = engine.generate(prompts, drafting(params, "bundled", 8), indices)
    assert_same_rows(plain, itself)
    assert "bundled" not in engine.draft_models  # the target drafts for itself with its own weights
    for row in (itself.rows[0], itself.rows[-3]):  # greedy rows without processors: the draft is the target itself
        assert row.acceptance_rate >= 0.95, (row.accepted_tokens, row.drafted_tokens)
        assert row.target_forwards <= 3 + len(row.token_ids) // 9, (row.target_forwards, len(row.token_ids))
    stopped = itself.rows[-1]  # the stop string ends it inside a draft: the drafts after it are never verified
    assert stopped.target_forwards == 2 and stopped.accepted_tokens == len(stopped.token_ids) - 1
