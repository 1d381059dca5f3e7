"""Branching, as plain data (no Gradio here): the alternatives at a (row, step) and a token's popup, the run that
continues an output with another token or from an edited text ("edit and continue"), and the branch tree of
kept runs. A branch is a SweepSpec with a forced `prefix` and its parent's `first_sample` (engine/forcing.py);
it runs like any other run (views.stream_run) and is kept with its BranchLink (runs.py).
"""
from __future__ import annotations

from typing import Any

from engine.errors import ParamError
from engine.sweepspec import SweepSpec
from engine.trace import stage_stats

from .config import PlaygroundConfig
from .plots import shorten
from .render_branches import Alternative, TokenPopup, TreeNode, tree_html
from .runs import BranchLink, Run, RunStore
from .views import SHORT_TEXT


# -- branching ----------------------------------------------------------------------------------------------

BRANCH_CHOICES = 12  # alternatives offered at a step: the most likely under the final distribution, then the raw


def branch_spec(run: Run, row: int, step: int, token_id: int) -> SweepSpec:
    """The run that continues output `row` of `run` with `token_id` at `step`: the same prompt, settings, seed and
    sample index, its first `step` tokens kept (engine/forcing.py keeps the noise stream aligned)."""
    run.check_row_step(row, step)
    if run.spec is None:
        raise ParamError("branch", "an output of a run started on this page", run.run_id)
    source = run.spec.rows()[row]
    if source.params.num_beams > 1:
        raise ParamError("branch", "a sampled or greedy output (beam outputs are not branched)", f"output {row}")
    forced = (*run.generation.rows[row].token_ids[:step], int(token_id))
    return SweepSpec(source.prompt, source.params, samples=1, raw=run.spec.raw, system_prompt=source.system_prompt,
                     prefix=(forced,), first_sample=source.sample)


def branch_alternatives(store: RunStore, run: Run, row: int, step: int) -> list[Alternative]:
    """The alternatives at (row, step): the likeliest under the final distribution, then the raw model's
    likeliest among the tokens the settings removed (taking one shows what they prevented)."""
    replay = store.replay(run, row, step)
    raw, final = replay.probs[0], replay.probs[-1]  # [V], [V]
    label = store.engine.loaded.token_label
    kept = [int(t) for t in final.topk(BRANCH_CHOICES).indices if float(final[int(t)]) > 0]
    removed = [int(t) for t in raw.topk(BRANCH_CHOICES + len(kept)).indices if float(final[int(t)]) == 0]
    chosen = run.generation.rows[row].token_ids[step]
    return [Alternative(t, label(t), float(final[t]), float(raw[t]), t == chosen, t in removed)
            for t in [*kept, *removed[:max(BRANCH_CHOICES - len(kept), 3)]]]


def branch_choices(store: RunStore, run: Run, row: int, step: int) -> list[tuple[str, int]]:
    """(label, token id) of the alternatives at (row, step) (branch_alternatives), for a dropdown."""
    return [(f"{a.text!r} · removed by the settings (raw p {a.raw_prob:.3g})" if a.removed
             else f"{a.text!r} · p {a.final_prob:.3g}" + (" (chosen)" if a.chosen else ""), a.token_id)
            for a in branch_alternatives(store, run, row, step)]


def branch_refusal(run: Run, row: int) -> str:
    """Why output `row` of `run` cannot be branched ("" when it can)."""
    if run.spec is None:
        return "only outputs of runs started on this page are branched"
    if run.generation.params[row].num_beams > 1:
        return "beam outputs are not branched (branch a sampled or greedy output)"
    return ""


def branch_run(store: RunStore, run: Run, row: int, step: int, token_id: int) -> tuple[SweepSpec, BranchLink]:
    """The branch of output `row` taking `token_id` at `step` (branch_spec), and its link to the parent: the
    token's probability under the parent's final distribution at the fork (the same replay the views show)."""
    spec = branch_spec(run, row, step, token_id)
    final = store.replay(run, row, step).probs[-1]
    if not 0 <= token_id < final.shape[-1]:
        raise ParamError("branch token", f"a token id in [0, {final.shape[-1] - 1}]", token_id)
    link = BranchLink(run.run_id, row, step, token_id, store.engine.loaded.token_label(token_id),
                      float(final[token_id]))
    return spec, link


def token_popup(store: RunStore, run: Run, row: int, step: int) -> TokenPopup:
    """The popup of token `step` of output `row`: an exact replay of that step, as branch_choices uses."""
    replay = store.replay(run, row, step)
    final = stage_stats(replay.probs[[0, -1]], replay.chosen)[-1]
    return TokenPopup(run.run_id, row, step, run.labels[row], run.pieces[row][step], float(replay.probs[0][replay.chosen]),
                      float(replay.probs[-1][replay.chosen]), final["chosen_rank"],
                      branch_alternatives(store, run, row, step), branch_refusal(run, row))


EDIT_FIELD = "edited text"


def output_text(run: Run, row: int) -> str:
    """Output `row`'s text (what "Edit this output" puts in the box)."""
    run.check_row_step(row)
    return "".join(run.pieces[row])


def edit_run(store: RunStore, run: Run, row: int, text: Any) -> tuple[SweepSpec, BranchLink]:
    """"Edit and continue": output `row`'s settings, seed and sample with `text` as its forced start; the link
    records where the edit first departs from the output's tokens."""
    run.check_row_step(row)
    if not isinstance(text, str) or not text:
        raise ParamError(EDIT_FIELD, "a non-empty text (the output's start as you want it)", text)
    refusal = branch_refusal(run, row)
    if refusal:
        raise ParamError(EDIT_FIELD, f"an edit of a sampled or greedy output of this page ({refusal})", f"output {row}")
    source = run.spec.rows()[row]  # type: ignore[union-attr]  # branch_refusal: a spec
    ids = store.engine.loaded.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) > source.params.max_new_tokens:
        raise ParamError(EDIT_FIELD, f"at most max_new_tokens ({source.params.max_new_tokens}) tokens (the edit is "
                                     f"decoded as the output's first steps)", f"{len(ids)} tokens")
    spec = SweepSpec(source.prompt, source.params, samples=1, raw=run.spec.raw,  # type: ignore[union-attr]
                     system_prompt=source.system_prompt, prefix=(text,), first_sample=source.sample)
    parent_ids = run.generation.rows[row].token_ids
    fork = next((k for k, (a, b) in enumerate(zip(ids, parent_ids)) if a != b), min(len(ids), len(parent_ids)))
    return spec, BranchLink(run.run_id, row, fork, edited=text)


def branch_tree(store: RunStore, run: Run) -> list[TreeNode]:
    """The tree `run` belongs to: its oldest kept ancestor, then every kept branch below it, any depth (a
    parent before its children, children oldest first). A run that has no parent and no branches has no tree."""
    root = run
    while root.parent is not None:
        parent = store.find(root.parent.parent_id)
        if parent is None:
            break
        root = parent
    if root is run and not store.children(run.run_id):
        return []
    nodes, stack = [], [(root, 0)]
    while stack:  # depth-first without recursion: a chain of branches may be deep
        node, depth = stack.pop()
        nodes.append(TreeNode(node.run_id, depth, _tree_title(node), _fork_text(store, node),
                              node.kind == "generate", node is run))
        stack += [(child, depth + 1) for child in reversed(store.children(node.run_id))]
    return nodes


def branch_tree_html(store: RunStore, run: Run) -> str:
    """The branch tree `run` belongs to, as Generate shows it under the outputs ("" when it has none)."""
    return tree_html(branch_tree(store, run))


def output_choices(run: Run) -> list[tuple[str, int]]:
    """(label, output index) of a run's outputs, for "Edit and continue"'s output menu."""
    return [(f"output {i} · {label}", i) for i, label in enumerate(run.labels)]


def _tree_title(run: Run) -> str:
    if run.kind == "sweep":
        return f"run {run.number} · sweep of {run.row_count} outputs"
    if run.row_count == 1:
        return f"run {run.number} · {run.labels[0]}"
    return f"run {run.number} · {run.row_count} outputs"


def _fork_text(store: RunStore, run: Run) -> str:
    link = run.parent
    if link is None:
        return ""
    parent = store.find(link.parent_id)
    where = (f"run {parent.number} output {link.parent_row}" if parent is not None
             else f"output {link.parent_row} of a run no longer kept")
    if link.edited is not None:
        return f"from {where}: edited, departing at step {link.fork_step} “{shorten(link.edited, SHORT_TEXT)}”"
    p = "–" if link.parent_prob is None else f"{link.parent_prob:.3g}"
    return f"from {where} at step {link.fork_step}: “{link.token_text}” (p {p} under the parent)"


def branch_config(run: Run | None, form: PlaygroundConfig) -> PlaygroundConfig | None:
    """A shown branch (or edit) as the configuration a share link or a preset holds: its prompt, settings,
    samples (1), forced start (a branch's exact token ids, an edit's text) and first sample, with the form's view,
    output, step and colouring. None when `run` is not a branch made on this page (the form is then shared)."""
    if run is None or run.parent is None or run.spec is None or run.kind != "generate":
        return None
    view = form.view if form.view != "sweep" else "generate"
    return PlaygroundConfig.from_spec(run.spec, view=view, sample=form.sample, step=form.step, color_by=form.color_by)
