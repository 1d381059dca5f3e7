"""HTML of branching in the Generate view: a token's popup (its probabilities and the alternatives a branch can
take) and the branch tree under the outputs. No Gradio here.

As in render.py, everything from a user or the model goes through html.escape; the styles (dp-popup-*, dp-tree-*)
are in render.CSS.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

from .plots import format_number, show_whitespace


@dataclass(frozen=True)
class Alternative:
    """One token offered at a (row, step): its probabilities there (an exact replay) and what it is."""

    token_id: int
    text: str
    final_prob: float
    raw_prob: float
    chosen: bool  # the token the output took
    removed: bool  # the settings removed it (final p 0): the raw model's likeliest among those


@dataclass
class TokenPopup:
    """What a token's popup in Generate shows: the token, its probabilities and rank at its step (from the
    replay the Distributions view uses) and the alternatives a branch can take."""

    run_id: str
    row: int
    step: int
    label: str  # the output's label ("sample 1")
    text: str  # the text the token added to the output
    raw_prob: float
    final_prob: float
    rank: int  # under the final distribution (1 = likeliest; ties share the better rank)
    alternatives: list[Alternative]
    refusal: str  # why this output cannot be branched ("" when it can)


@dataclass(frozen=True)
class TreeNode:
    """One run in a branch tree, in depth-first order (a parent before its branches)."""

    run_id: str
    depth: int  # 0 for the root
    title: str  # "run 4 · sample 1 · branch at step 5"
    fork: str  # how it left its parent: "from output 1 at step 5: “ cat” (p 0.12 under the parent)"; "" for the root
    clickable: bool  # a Generate run (shown again in Generate); a sweep is not
    current: bool  # the run shown now


def _quoted(text: str) -> str:
    """A token for a popup line, escaped: whitespace made visible, an empty token as ∅."""
    return html.escape(f"“{show_whitespace(text) or '∅'}”")


def _alternative_html(popup: TokenPopup, alt: Alternative) -> str:
    """One alternative: its text and probability, and a button continuing the output with it."""
    p = f"raw p {format_number(alt.raw_prob)}" if alt.removed else f"p {format_number(alt.final_prob)}"
    if alt.chosen:
        action = '<span class="dp-popup-chosen">chosen</span>'
    elif popup.refusal:
        action = ""
    else:
        name = html.escape(f"continue with “{show_whitespace(alt.text) or '∅'}”", quote=True)
        action = (f'<button type="button" class="dp-popup-continue" data-token="{alt.token_id}" aria-label="{name}">'
                  f'continue with this</button>')
    return (f'<li class="dp-popup-alt{" dp-chosen" if alt.chosen else ""}"><span class="dp-popup-alt-text">'
            f'{_quoted(alt.text)}</span><span class="dp-popup-p">{html.escape(p)}</span>{action}</li>')


def popup_html(popup: TokenPopup, nonce: int = 0) -> str:
    """A token's popup in Generate (a non-modal dialog; the page's script places it beside the token, shows it,
    and closes it on Escape, the close button or a click outside): the token, its step, raw and final p and rank,
    the likeliest alternatives under the final distribution and the likeliest ones the settings removed, each
    with a "continue with this" button (none for an output that cannot be branched), and "Open in
    Distributions". Model text is escaped. `nonce`: the click it answers (the same token twice is two popups)."""
    kept = [a for a in popup.alternatives if not a.removed]
    removed = [a for a in popup.alternatives if a.removed]
    name = html.escape(f"Token “{show_whitespace(popup.text) or '∅'}” at step {popup.step}", quote=True)
    parts = [f'<div class="dp-popup" role="dialog" aria-label="{name}" tabindex="-1" hidden '
             f'data-run="{html.escape(popup.run_id, quote=True)}" data-sample="{popup.row}" data-step="{popup.step}" '
             f'data-nonce="{int(nonce)}">',
             f'<div class="dp-popup-head"><span class="dp-popup-token">{_quoted(popup.text)}</span>'
             f'<button type="button" class="dp-popup-close" data-close aria-label="Close">×</button></div>',
             f'<div class="dp-popup-meta">{html.escape(popup.label)} · step {popup.step} · final p '
             f'{html.escape(format_number(popup.final_prob))} · raw p {html.escape(format_number(popup.raw_prob))} · '
             f'rank {popup.rank} (final)</div>']
    if kept:
        parts.append('<div class="dp-popup-section">Likeliest under the final distribution</div>'
                     f'<ul class="dp-popup-alts">{"".join(_alternative_html(popup, a) for a in kept)}</ul>')
    if removed:
        parts.append('<div class="dp-popup-section">Removed by the settings (the raw model\'s likeliest)</div>'
                     f'<ul class="dp-popup-alts">{"".join(_alternative_html(popup, a) for a in removed)}</ul>')
    if popup.refusal:
        parts.append(f'<div class="dp-popup-note">{html.escape(popup.refusal)}</div>')
    parts.append('<div class="dp-popup-foot"><button type="button" class="dp-popup-open" data-open>'
                 'Open in Distributions</button></div></div>')
    return "".join(parts)


TREE_INDENT_LEVELS = 12  # deeper branches are indented no further (the tree stays readable on a phone)


def tree_html(nodes: list[TreeNode]) -> str:
    """The branch tree under Generate's outputs: one line per run, indented by depth, a parent before its
    branches; each Generate run a button (data-run) that shows it again, the shown run marked. "" for no tree."""
    if not nodes:
        return ""
    items = []
    for node in nodes:
        depth = min(node.depth, TREE_INDENT_LEVELS)
        title = html.escape(node.title)
        current = ' aria-current="true"' if node.current else ""
        head = (f'<button type="button" class="dp-tree-node" data-run="{html.escape(node.run_id, quote=True)}"{current}>'
                f'{title}</button>' if node.clickable else f'<span class="dp-tree-node"{current}>{title}</span>')
        fork = f' <span class="dp-tree-fork">{html.escape(node.fork)}</span>' if node.fork else ""
        items.append(f'<li class="dp-tree-item{" dp-current" if node.current else ""}" aria-level="{node.depth + 1}" '
                     f'style="padding-left: {1.2 * depth:.1f}em">{"└ " if node.depth else ""}{head}{fork}</li>')
    return (f'<div class="dp-tree"><div class="dp-tree-title">Branches (click a run to show it again)</div>'
            f'<ul class="dp-tree-list">{"".join(items)}</ul></div>')
