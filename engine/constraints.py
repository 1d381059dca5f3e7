"""The constraints of constrained beam search: a port of transformers 4.55's generation/beam_constraints.py.

PhrasalConstraint (a sequence of tokens the output must contain), DisjunctiveConstraint (one of several token
sequences) and ConstraintListState (a hypothesis's progress through all of them; its "bank" orders hypotheses
by progress). Kept as transformers has them, quirks included, because the search's choices depend on them: a
phrase that breaks off restarts at fulfilled_idx 0 (not -1), and the token that breaks an in-progress
constraint is not tried against the pending ones. Used by engine/constrained_beams.py.
"""
from __future__ import annotations


class PhrasalConstraint:
    """transformers' PhrasalConstraint: the ordered tokens `token_ids` must appear."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = list(token_ids)
        self.seqlen = len(self.token_ids)
        self.fulfilled_idx = -1  # the index of the currently fulfilled step
        self.completed = False

    def advance(self) -> int | None:
        return None if self.completed else self.token_ids[self.fulfilled_idx + 1]

    def does_advance(self, token_id: int) -> bool:
        return not self.completed and token_id == self.token_ids[self.fulfilled_idx + 1]

    def update(self, token_id: int) -> tuple[bool, bool, bool]:
        stepped = completed = reset = False
        if self.does_advance(token_id):
            self.fulfilled_idx += 1
            stepped = True
            completed = self.fulfilled_idx == self.seqlen - 1
            self.completed = completed
        else:
            reset = True
            self.reset()
        return stepped, completed, reset

    def reset(self) -> None:
        self.completed = False
        self.fulfilled_idx = 0  # sic (transformers 4.55)

    def remaining(self) -> int:
        return self.seqlen - (self.fulfilled_idx + 1)

    def copy(self, stateful: bool = False) -> "PhrasalConstraint":
        new = PhrasalConstraint(self.token_ids)
        if stateful:
            new.fulfilled_idx, new.completed = self.fulfilled_idx, self.completed
        return new


class DisjunctiveTrie:
    """The alternatives of a DisjunctiveConstraint as a trie of token ids."""

    def __init__(self, nested_token_ids: list[list[int]]):
        self.max_height = max(len(one) for one in nested_token_ids)
        root: dict = {}
        for token_ids in nested_token_ids:
            level = root
            for token_id in token_ids:
                level = level.setdefault(token_id, {})
        if self.count_leaves(root) != len(nested_token_ids):
            raise ValueError(f"one alternative is the start of another: {nested_token_ids}")
        self.trie = root

    def next_tokens(self, current_seq: list[int]) -> list[int]:
        start = self.trie
        for token in current_seq:
            start = start[token]
        return list(start.keys())

    def reached_leaf(self, current_seq: list[int]) -> bool:
        return len(self.next_tokens(current_seq)) == 0

    def count_leaves(self, root: dict) -> int:
        return 1 if not root else sum(self.count_leaves(node) for node in root.values())


class DisjunctiveConstraint:
    """transformers' DisjunctiveConstraint: one of the token sequences `nested_token_ids` must appear."""

    def __init__(self, nested_token_ids: list[list[int]]):
        self.trie = DisjunctiveTrie(nested_token_ids)
        self.token_ids = nested_token_ids
        self.seqlen = self.trie.max_height
        self.current_seq: list[int] = []
        self.completed = False

    def advance(self) -> list[int] | None:
        tokens = self.trie.next_tokens(self.current_seq)
        return tokens or None

    def does_advance(self, token_id: int) -> bool:
        return token_id in self.trie.next_tokens(self.current_seq)

    def update(self, token_id: int) -> tuple[bool, bool, bool]:
        stepped = reset = False
        if self.does_advance(token_id):
            self.current_seq.append(token_id)
            stepped = True
        else:
            reset = True
            self.reset()
        self.completed = self.trie.reached_leaf(self.current_seq)
        return stepped, self.completed, reset

    def reset(self) -> None:
        self.completed = False
        self.current_seq = []

    def remaining(self) -> int:
        return 0 if self.completed else self.seqlen - len(self.current_seq)

    def copy(self, stateful: bool = False) -> "DisjunctiveConstraint":
        new = DisjunctiveConstraint(self.token_ids)
        if stateful:
            new.current_seq, new.completed = self.current_seq, self.completed  # shared list, as in transformers
        return new


Constraint = PhrasalConstraint | DisjunctiveConstraint


def make_constraint(ids: list[int] | list[list[int]]) -> Constraint:
    """One entry of transformers' force_words_ids: [ids] a phrase, [[ids], ...] alternatives."""
    return DisjunctiveConstraint(ids) if isinstance(ids[0], list) else PhrasalConstraint(ids)


class ConstraintListState:
    """transformers' ConstraintListState: a hypothesis's progress through every constraint."""

    def __init__(self, constraints: list[Constraint]):
        self.constraints = constraints
        self.max_seqlen = max(c.seqlen for c in constraints)
        self.n_constraints = len(constraints)
        self.completed = False
        self.init_state()

    def init_state(self) -> None:
        self.complete_constraints: list[Constraint] = []
        self.inprogress_constraint: Constraint | None = None
        self.pending_constraints = [c.copy(stateful=False) for c in self.constraints]

    def get_bank(self) -> int:
        add = self.max_seqlen - self.inprogress_constraint.remaining() if self.inprogress_constraint else 0
        return len(self.complete_constraints) * self.max_seqlen + add

    def advance(self) -> list[int] | None:
        """The tokens that make progress: the in-progress constraint's next, else every pending one's first."""
        token_list: list[int] = []
        sources = [self.inprogress_constraint] if self.inprogress_constraint is not None else self.pending_constraints
        for constraint in sources:
            advance = constraint.advance()
            if isinstance(advance, int):
                token_list.append(advance)
            elif isinstance(advance, list):
                token_list.extend(advance)
        return token_list or None

    def reset(self, token_ids: list[int] | None) -> None:
        self.init_state()
        for token in token_ids or ():
            self.add(token)
            if self.completed:
                break

    def add(self, token_id: int) -> tuple[bool, bool]:
        complete = stepped = False
        if self.completed:
            return True, False
        if self.inprogress_constraint is not None:
            stepped, complete, reset = self.inprogress_constraint.update(token_id)
            if reset:
                self.pending_constraints.append(self.inprogress_constraint.copy(stateful=False))
                self.inprogress_constraint = None
            if complete:
                self.complete_constraints.append(self.inprogress_constraint)
                self.inprogress_constraint = None
                if len(self.pending_constraints) == 0:
                    self.completed = True
        else:
            for cidx, pending in enumerate(self.pending_constraints):
                if pending.does_advance(token_id):
                    stepped, complete, reset = pending.update(token_id)
                    if complete:
                        self.complete_constraints.append(pending)
                        self.inprogress_constraint = None
                    if not complete and stepped:
                        self.inprogress_constraint = pending
                    if complete or stepped:
                        self.pending_constraints = self.pending_constraints[:cidx] + self.pending_constraints[cidx + 1:]
                        if len(self.pending_constraints) == 0 and self.inprogress_constraint is None:
                            self.completed = True
                        break  # one token steps through one constraint at most
        return complete, stepped

    def copy(self, stateful: bool = True) -> "ConstraintListState":
        new = ConstraintListState(self.constraints)
        if stateful:
            new.complete_constraints = [c.copy(stateful=True) for c in self.complete_constraints]
            if self.inprogress_constraint is not None:
                new.inprogress_constraint = self.inprogress_constraint.copy(stateful=True)
            new.pending_constraints = [c.copy() for c in self.pending_constraints]
        return new


def contains(tokens: list[int], ids: list[int] | list[list[int]]) -> bool:
    """Does `tokens` hold the constraint (a phrase [ids], or one of the alternatives [[ids], ...]) contiguously?"""
    for option in (ids if isinstance(ids[0], list) else [ids]):
        n = len(option)
        if any(tokens[i:i + n] == option for i in range(len(tokens) - n + 1)):
            return True
    return False
