"""Branching in the Generate view: the token popup's data, the branch tree (parent links, any depth), the
forced token's probability under its parent, and "edit and continue"."""
from __future__ import annotations

import math
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from engine.errors import ParamError
from engine.params import SamplingParams
from engine.sweepspec import SweepSpec
from playground.branching import (branch_alternatives, branch_choices, branch_run, branch_tree, branch_tree_html,
                                  edit_run, output_text, token_popup)
from playground.render import samples_html, TokenView
from playground.render_branches import Alternative, TokenPopup, popup_html, tree_html
from playground.runs import BranchLink, RunStore
from playground.views import stream_run

EVIL = "<img src=x onerror=alert(1)>"
SHOWN = EVIL.replace(" ", "␣")  # whitespace made visible in labels


class Tags(HTMLParser):
    def __init__(self, markup: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def fake_generation(rows: int = 1, tokens: int = 3):
    row = SimpleNamespace(token_ids=list(range(tokens)))
    return SimpleNamespace(rows=[row] * rows, seconds=0.0, generated_tokens=0, trace=None)


def keep(store: RunStore, parent: BranchLink | None = None, rows: int = 1, kind: str = "generate"):
    labels = [f"sample {i}" for i in range(rows)]
    return store.add(kind, "p", fake_generation(rows), labels, pieces=[["a", "b", "c"]] * rows, parent=parent)


def link(parent, row=0, step=1, text=" cat", p=0.125):
    return BranchLink(parent.run_id, row, step, 7, text, p)


# ---------------------------------------------------------------------------------------- the tree (no model)

def test_a_run_without_parent_or_branches_has_no_tree():
    store = RunStore(engine=None)
    run = keep(store, rows=3)
    assert branch_tree(store, run) == [] and tree_html([]) == ""


def test_the_tree_holds_every_branch_at_any_depth_parent_first():
    store = RunStore(engine=None, capacity=100)
    root = keep(store, rows=3)
    a = keep(store, link(root, row=1, step=5))
    b = keep(store, link(root, row=2, step=2, text="<b>"))
    chain = [a]
    for depth in range(40):  # a deep chain of branches of branches
        chain.append(keep(store, link(chain[-1], step=depth)))
    a2 = keep(store, link(a, step=9))
    nodes = branch_tree(store, chain[20])  # the same tree from any of its runs
    assert [n.run_id for n in nodes] == [root.run_id, a.run_id, *[r.run_id for r in chain[1:]], a2.run_id, b.run_id]
    assert [n.depth for n in nodes[:3]] == [0, 1, 2] and nodes[-1].depth == 1 and nodes[-2].depth == 2
    assert nodes[41].depth == 41  # the deepest
    assert [n.current for n in nodes].count(True) == 1 and nodes[21].current
    assert nodes[0].title == f"run {root.number} · 3 outputs" and nodes[0].fork == ""
    assert nodes[1].fork == f"from run {root.number} output 1 at step 5: “ cat” (p 0.125 under the parent)"
    markup = branch_tree_html(store, b)
    assert "&lt;b&gt;" in markup and "<b>" not in markup  # model text is escaped
    buttons = [attrs for tag, attrs in Tags(markup).tags if tag == "button"]
    assert len(buttons) == len(nodes) and {b_["data-run"] for b_ in buttons} == {n.run_id for n in nodes}
    assert [attrs for tag, attrs in Tags(markup).tags if attrs.get("aria-current")][0]["data-run"] == b.run_id


def test_a_dropped_parent_ends_the_tree_and_is_named():
    store = RunStore(engine=None, capacity=3)
    root = keep(store, rows=2)
    child = keep(store, link(root))
    grandchild = keep(store, link(child, step=2))
    keep(store)  # the root is dropped
    nodes = branch_tree(store, grandchild)
    assert [n.run_id for n in nodes] == [child.run_id, grandchild.run_id]
    assert "a run no longer kept" in nodes[0].fork


def test_sweep_runs_in_a_tree_are_not_buttons():
    store = RunStore(engine=None)
    sweep = keep(store, rows=4, kind="sweep")
    child = keep(store, link(sweep, row=3))
    nodes = branch_tree(store, child)
    assert [n.clickable for n in nodes] == [False, True] and "sweep of 4 outputs" in nodes[0].title


def test_edit_nodes_say_where_the_edit_departs():
    store = RunStore(engine=None)
    root = keep(store, rows=2)
    edited = keep(store, BranchLink(root.run_id, 1, 4, edited="Once upon"))
    assert branch_tree(store, edited)[1].fork == f"from run {root.number} output 1: edited, departing at step 4 “Once upon”"


# ---------------------------------------------------------------------------------------- popup markup (no model)

def popup(refusal: str = "") -> TokenPopup:
    alts = [Alternative(5, EVIL, 0.5, 0.4, False, False), Alternative(6, " ", 0.3, 0.2, True, False),
            Alternative(9, "x\ny", 0.0, 0.1, False, True)]
    return TokenPopup("abc123", 1, 4, "sample 1", EVIL, 0.2, 0.3, 2, alts, refusal)


def test_the_popup_escapes_model_text_and_offers_a_button_per_alternative():
    markup = popup_html(popup(), nonce=7)
    assert EVIL not in markup and "&lt;img␣src=x␣onerror=alert(1)&gt;" in markup
    tags = Tags(markup).tags
    assert not [t for t, _ in tags if t in ("img", "script")]
    dialog = tags[0][1]
    assert (dialog["role"], dialog["data-run"], dialog["data-sample"], dialog["data-step"], dialog["data-nonce"]) == (
        "dialog", "abc123", "1", "4", "7")
    assert "hidden" in dialog and dialog["aria-label"] == f"Token “{SHOWN}” at step 4"
    continues = [a for t, a in tags if t == "button" and "data-token" in a]
    assert [a["data-token"] for a in continues] == ["5", "9"]  # not the chosen one
    assert continues[0]["aria-label"] == f"continue with “{SHOWN}”"
    assert any("data-open" in a for _, a in tags) and any("data-close" in a for _, a in tags)
    assert "rank 2 (final)" in markup and "final p 0.3" in markup and "raw p 0.2" in markup
    assert "Removed by the settings" in markup and "raw p 0.1" in markup


def test_an_output_that_cannot_branch_has_no_continue_buttons():
    markup = popup_html(popup("beam outputs are not branched"))
    assert "data-token" not in markup and "beam outputs are not branched" in markup and "data-open" in markup


def test_generate_tokens_are_keyboard_buttons_without_a_title_tooltip():
    markup = samples_html([[TokenView(EVIL, 0.1, 0.2)]], tooltips=False, run_id="r1")
    tags = Tags(markup).tags
    token = next(a for t, a in tags if "dp-tok" in a.get("class", ""))
    assert "title" not in token and token["tabindex"] == "0" and token["role"] == "button"
    assert token["aria-label"] == f"“{SHOWN}”, step 0, final p 0.2, raw p 0.1"
    assert any(a.get("data-run") == "r1" for _, a in tags)
    grid_style = Tags(samples_html([[TokenView("a", 0.1, 0.2)]])).tags  # the default keeps the tooltip
    assert next(a for t, a in grid_style if "dp-tok" in a.get("class", ""))["title"]


# ---------------------------------------------------------------------------------------- on the model

PROMPT = "Tell me a joke."


def last_run(frames):
    return [frame.run for frame in frames if frame.run is not None][-1]


@pytest.fixture(scope="module")
def parent(engine):
    store = RunStore(engine)
    spec = SweepSpec(PROMPT, SamplingParams(max_new_tokens=10, seed=4, temperature=1.0, top_k=40), samples=2)
    return store, last_run(stream_run(engine, store, spec, "generate"))


def test_the_popup_shows_the_replay_branch_choices_shows(parent):
    store, run = parent
    shown = token_popup(store, run, 1, 3)
    replay = store.replay(run, 1, 3)
    chosen = run.generation.rows[1].token_ids[3]
    assert shown.final_prob == pytest.approx(float(replay.probs[-1][chosen]))
    assert shown.raw_prob == pytest.approx(float(replay.probs[0][chosen]))
    assert shown.final_prob == pytest.approx(math.exp(run.generation.rows[1].final_logprobs[3]), rel=1e-3)
    assert shown.rank == int((replay.probs[-1] > replay.probs[-1][chosen]).sum()) + 1
    assert [a.token_id for a in shown.alternatives] == [t for _, t in branch_choices(store, run, 1, 3)]
    assert shown.text == run.pieces[1][3] and shown.refusal == "" and any(a.chosen for a in shown.alternatives)


def test_a_branch_keeps_its_parent_and_the_forced_tokens_parent_probability(engine, parent):
    store, run = parent
    step, alternative = next((k, a) for k in range(3, 8) for a in branch_alternatives(store, run, 0, k)
                             if not a.chosen and not a.removed)  # a step where the settings leave a choice
    final = store.replay(run, 0, step).probs[-1]
    spec, first = branch_run(store, run, 0, step, alternative.token_id)
    assert first.parent_prob == pytest.approx(float(final[alternative.token_id])) == pytest.approx(alternative.final_prob)
    child = last_run(stream_run(engine, store, spec, "generate", parent=first))
    out = child.generation.rows[0]
    assert child.parent == first and out.token_ids[:step + 1] == run.generation.rows[0].token_ids[:step] + [
        alternative.token_id]
    # the branch's own final p at the fork is the parent's (the same context and settings)
    assert math.exp(out.final_logprobs[step]) == pytest.approx(first.parent_prob, rel=1e-3)
    # a branch of the branch: the tree has depth 2, and the second link is measured on the first branch
    spec2, second = branch_run(store, child, 0, step + 2, branch_alternatives(store, child, 0, step + 2)[-1].token_id)
    grandchild = last_run(stream_run(engine, store, spec2, "generate", parent=second))
    assert second.parent_prob == pytest.approx(float(store.replay(child, 0, step + 2).probs[-1][second.token_id]))
    nodes = branch_tree(store, grandchild)
    assert [(n.run_id, n.depth) for n in nodes[:1]] == [(run.run_id, 0)]
    assert (child.run_id, 1) in [(n.run_id, n.depth) for n in nodes] and (grandchild.run_id, 2) in [
        (n.run_id, n.depth) for n in nodes]
    assert spec2.prefix[0][:step + 1] == tuple(out.token_ids[:step + 1])  # the whole kept prefix, first fork included


def test_edit_and_continue_starts_with_the_edited_text(engine, parent):
    store, run = parent
    text = output_text(run, 1)
    assert text == "".join(run.pieces[1])
    edited = "Why did the chicken"
    spec, edit = edit_run(store, run, 1, edited)
    assert spec.first_sample == 1 and spec.prefix == (edited,) and spec.rows()[0].params == run.generation.params[1]
    child = last_run(stream_run(engine, store, spec, "generate", parent=edit))
    assert "".join(child.pieces[0]).startswith(edited) and child.parent.edited == edited
    # unchanged text: the same tokens, so it continues exactly as the output did (fork at its end)
    same_spec, same = edit_run(store, run, 1, text)
    if engine.loaded.tokenizer.encode(text, add_special_tokens=False) == run.generation.rows[1].token_ids:
        assert same.fork_step == len(run.generation.rows[1].token_ids)
        assert last_run(stream_run(engine, store, same_spec, "generate")).generation.rows[0].token_ids == \
            run.generation.rows[1].token_ids


@pytest.mark.parametrize("text, says", [("", "non-empty"), (None, "non-empty"), ("word " * 40, "at most max_new_tokens")])
def test_a_bad_edit_names_the_field(parent, text, says):
    store, run = parent
    with pytest.raises(ParamError, match=says) as info:
        edit_run(store, run, 0, text)
    assert info.value.field == "edited text"
