"""Share links and presets of a branch: the forced start (a branch's exact token ids, an edit's text), the first
sample and samples = 1 go into the link, come back as the same SweepSpec, and rerun the branch token for token.
A bad forced start in a link names its key; nothing is dropped or clamped."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweepspec import SweepSpec
from playground.branching import branch_config, branch_run, edit_run
from playground.config import PlaygroundConfig, check_prefix_tokens
from playground.exports import export_notes, generate_snippet, openai_request_json, preset_json
from playground.panels.form import NAMES, config_from_form, form_values
from playground.runs import BranchLink, RunStore
from playground.views import stream_run

PARAMS = SamplingParams(temperature=1.1, top_p=0.9, repetition_penalty=1.2, seed=7, max_new_tokens=12)
BRANCHES = [
    SweepSpec("Tell me a joke.", PARAMS, samples=1, prefix=((504, 2213, 30),), first_sample=2),
    SweepSpec("Tell me a joke.", PARAMS, samples=1, prefix=(" Why did the chicken",), first_sample=1),
    SweepSpec("Once upon a time", PARAMS.replace(top_k=5), samples=1, raw=True, prefix=((0,),)),
    SweepSpec("Hi", PARAMS, samples=1, system_prompt="Be brief.", prefix=((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12),),
              first_sample=15),
]


@pytest.mark.parametrize("spec", BRANCHES)
def test_a_branch_spec_survives_its_link_and_its_preset(spec):
    config = PlaygroundConfig.from_spec(spec)
    assert config.samples == 1 and config.first_sample == spec.first_sample
    query = config.to_query()
    assert ("prefix_ids=" in query) == (not isinstance(spec.prefix[0], str))
    assert PlaygroundConfig.from_query(query).sweep_spec() == spec
    assert PlaygroundConfig.from_query("https://host/app/?" + query) == config
    assert PlaygroundConfig.from_dict(config.to_dict()).sweep_spec() == spec
    assert PlaygroundConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # the page's form holds it too (the ids out of sight, their text in the box), and gives it back
    assert config_from_form(dict(zip(NAMES, form_values(config, lambda ids: "shown text")))) == config


def test_a_text_prefix_is_carried_as_typed():
    text = "  Line one,\n& more: [1, 2] ?=#"
    config = PlaygroundConfig(prompt="Hi", samples=1, prefix=text)
    assert PlaygroundConfig.from_query(config.to_query()).prefix == text


@pytest.mark.parametrize("query, field", [
    ("prefix_ids=1,x", "prefix_ids"),
    ("prefix_ids=1.5", "prefix_ids"),
    ("prefix_ids=1,,2", "prefix_ids"),
    ("prefix_ids=", "prefix_ids"),
    ("prefix_ids=-3", "prefix_ids"),
    ("prefix_ids=[1,2]", "prefix_ids"),
    ("prefix_ids=99999999999999999999", "prefix_ids"),
    ("prefix_ids=" + "9" * 5000, "prefix_ids"),
    ("max_new_tokens=2&prefix_ids=1,2,3", "prefix_ids"),  # longer than max_new_tokens
    ("max_new_tokens=8&prefix_ids=1,2,3&axis=max_new_tokens:8,2", "prefix_ids"),
    ("prefix=", "prefix"),
    ("prefix=a&prefix_ids=1", "prefix"),
    ("prefix=a&prefix=b", "prefix"),
    ("num_beams=2&do_sample=false&prefix_ids=1", "prefix_ids"),
    ("num_beams=2&do_sample=false&first_sample=1", "first_sample"),
    ("first_sample=-1", "first_sample"),
    ("first_sample=1.5", "first_sample"),
    ("first_sample=x", "first_sample"),
])
def test_a_bad_forced_start_in_a_link_names_the_key(query, field):
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_query("prompt=Hi&" + query)
    assert info.value.field == field


@pytest.mark.parametrize("data, field", [
    ({"prefix_ids": [1, True]}, "prefix_ids"),
    ({"prefix_ids": [1.0]}, "prefix_ids"),
    ({"prefix_ids": "1,2"}, "prefix_ids"),
    ({"prefix": 5}, "prefix"),
    ({"first_sample": "2"}, "first_sample"),
])
def test_a_bad_forced_start_in_a_preset_names_the_key(data, field):
    with pytest.raises(ParamError) as info:
        PlaygroundConfig.from_dict({"prompt": "Hi", **data})
    assert info.value.field == field


def test_the_loaded_model_checks_ids_and_the_text_length():
    encode = lambda text: [0] * len(text.split())  # one token a word  # noqa: E731
    check_prefix_tokens(PlaygroundConfig(prompt="Hi", prefix_ids=(0, 99)), 100, encode)
    with pytest.raises(ParamError) as info:
        check_prefix_tokens(PlaygroundConfig(prompt="Hi", prefix_ids=(0, 100)), 100, encode)
    assert info.value.field == "prefix_ids" and "[0, 99]" in str(info.value)
    params = SamplingParams(max_new_tokens=3)
    check_prefix_tokens(PlaygroundConfig(prompt="Hi", params=params, prefix="a b c"), 100, encode)
    with pytest.raises(ParamError) as info:
        check_prefix_tokens(PlaygroundConfig(prompt="Hi", params=params, prefix="a b c d"), 100, encode)
    assert info.value.field == "prefix" and "4 tokens" in str(info.value)


def test_share_holds_a_shown_branch_and_the_form_otherwise():
    form = PlaygroundConfig(prompt="Other", samples=3, view="sweep", color_by="raw")
    spec = BRANCHES[0]
    branch = SimpleNamespace(parent=BranchLink("p", 2, 2, 30), spec=spec, kind="generate")
    config = branch_config(branch, form)
    assert config.sweep_spec() == spec and config.view == "generate" and config.color_by == "raw"
    assert branch_config(SimpleNamespace(parent=None, spec=spec, kind="generate"), form) is None
    assert branch_config(None, form) is None


def test_exports_carry_the_forced_start():
    config = PlaygroundConfig.from_spec(BRANCHES[0])
    preset = json.loads(preset_json(config))
    assert preset["prefix_ids"] == [504, 2213, 30] and preset["first_sample"] == 2 and preset["samples"] == 1
    snippet = generate_snippet(config, "some/model")
    compile(snippet, "<snippet>", "exec")
    assert "prefix_ids = [504, 2213, 30]" in snippet
    assert set(export_notes(config)["not_expressible"]) >= {"prefix_ids", "first_sample"}
    text = PlaygroundConfig.from_spec(BRANCHES[1])
    assert "prefix" in export_notes(text)["not_expressible"]
    assert "Why did the chicken" in generate_snippet(text, "m")
    json.loads(openai_request_json(text, "m"))


def last_run(frames):
    return [frame.run for frame in frames if frame.run is not None][-1]


def test_a_branch_link_reruns_the_branch_token_for_token(engine):
    store = RunStore(engine)
    start = PlaygroundConfig(prompt="Write a short story about a lighthouse keeper.", params=PARAMS, samples=2)
    parent = last_run(stream_run(engine, store, start.sweep_spec(), "generate"))
    final = store.replay(parent, 1, 4).probs[-1]
    token = next(int(t) for t in final.topk(5).indices if int(t) != parent.generation.rows[1].token_ids[4])
    made = [branch_run(store, parent, 1, 4, token), edit_run(store, parent, 0, "The old keeper")]
    for spec, link in made:
        branch = last_run(stream_run(engine, store, spec, "generate", parent=link))
        config = branch_config(branch, start)
        opened = PlaygroundConfig.from_query(config.to_query())
        check_prefix_tokens(opened, engine.loaded.vocab_size,
                            lambda text: engine.loaded.tokenizer.encode(text, add_special_tokens=False))
        assert opened.sweep_spec() == spec
        # what the opened page's form gives back when Run is pressed
        rerun_spec = config_from_form(dict(zip(NAMES, form_values(opened, engine.loaded.decode)))).sweep_spec()
        again = last_run(stream_run(engine, store, rerun_spec, "generate"))
        assert again.generation.rows[0].token_ids == branch.generation.rows[0].token_ids
        assert again.labels == branch.labels
