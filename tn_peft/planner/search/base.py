"""What every search shares: its signature, the exceptions of the budgeted ones, SSA paths, and the
network's shape (breadth-first order, components, the hub).

Paths are SSA: a list of pairs ``(i, j)``; operands are ``0..n-1`` and step ``s`` makes ``n + s``.
Subsets of operands are int bitmaps (:mod:`~tn_peft.planner.bitmaps`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..bitmaps import bits
from ..cost import CostModel
from ..cost.scorer import Scorer
from ..problem import COST_SLACK, Problem

#: ``search(problem, model, gated=frozenset(), **options) -> (ssa path, objective)``: every
#: search's signature (``gated``: circuit operands applied gate by gate).
Search = Callable[..., tuple[list[tuple[int, int]], float]]


class OverBudget(Exception):
    """More subsets than the budget allows (the search would be slow, not wrong)."""


class Disconnected(ValueError):
    """hub_path plans connected networks only."""


def einsum_inputs(problem: Problem) -> tuple[list[frozenset], frozenset, dict]:
    return [frozenset(op.legs) for op in problem.operands], frozenset(problem.output), problem.size_dict


def einsum_args(problem: Problem) -> list:
    eq = problem.equation()
    shapes = [tuple(problem.size_dict[leg] for leg in op.legs) for op in problem.operands]
    return [eq, *shapes]


def linear_to_ssa(path: Sequence[Sequence[int]], n: int) -> list[tuple[int, int]]:
    """opt_einsum's linear path (positions in a shrinking list) -> SSA pairs.

    k-ary steps become k-1 pairs; single-operand steps (sums) are dropped: a step sums every leg
    its result no longer needs.

    >>> linear_to_ssa([(1, 2), (0, 1)], 3)
    [(1, 2), (0, 3)]
    """
    ids = list(range(n))
    nxt = n
    out: list[tuple[int, int]] = []
    for step in path:
        picked = [ids[p] for p in step]
        for p in sorted(step, reverse=True):
            del ids[p]
        current = picked[0]
        for other in picked[1:]:
            out.append((current, other))
            current = nxt
            nxt += 1
        ids.append(current)
    return out


def tree_to_ssa(tree, n: int) -> list[tuple[int, int]]:
    """A nested tuple tree ``((0,), ((1,), (2,)))`` -> SSA pairs."""
    path: list[tuple[int, int]] = []

    def walk(node) -> int:
        if len(node) == 1:
            return node[0]
        left, right = walk(node[0]), walk(node[1])
        path.append((left, right))
        return n + len(path) - 1

    walk(tree)
    return path


def sequential_path(n: int) -> list[tuple[int, int]]:
    """((0 1) 2) 3 ...: the cap of the connected-pair DP (cheap; any tree's cost is a valid cap)."""
    path, current = [], 0
    for i in range(1, n):
        path.append((current, i))
        current = n + i - 1
    return path


def build_path(best: dict[int, tuple[float, int, int]], subset: int, ids: dict[int, int],
           path: list[tuple[int, int]], n: int) -> int:
    """Append the SSA steps making ``subset`` (from a DP table) to ``path``; returns its id."""
    if subset in ids:
        return ids[subset]
    _, s1, s2 = best[subset]
    a, b = build_path(best, s1, ids, path, n), build_path(best, s2, ids, path, n)
    path.append((a, b))
    ids[subset] = n + len(path) - 1
    return ids[subset]


def relabel(path: Sequence[tuple[int, int]], mapping: Sequence[int], n: int) -> list[tuple[int, int]]:
    """Rename the leaves of an SSA path (intermediate ids stay)."""
    return [tuple(mapping[i] if i < n else i for i in pair) for pair in path]  # type: ignore[misc]


def cap_of(cost: float) -> float:
    """The pruning cap from a known tree's cost (a hair above it, so that tree itself survives)."""
    return cost * (1 + COST_SLACK) if math.isfinite(cost) else math.inf


def ordered_scorer(problem: Problem, model: CostModel, gated: frozenset[int],
                    order: list[int]) -> tuple[Scorer, list[int]]:
    """A scorer of ``problem`` with its operands in ``order``, and each operand's neighbour mask."""
    ordered = replace(problem, operands=tuple(problem.operands[i] for i in order))
    scorer = Scorer(ordered, model, frozenset(order.index(i) for i in gated))
    masks = scorer.op_masks
    n = len(masks)
    nbr = [sum(1 << j for j in range(n) if j != i and masks[i] & masks[j]) for i in range(n)]
    return scorer, nbr


def bfs_order(problem: Problem, skip: int | None = None) -> list[int]:
    """Operands in breadth-first order from operand 0 (x when present), component by component
    (without operand ``skip``, as if it were not there)."""
    legs = [set(op.legs) for op in problem.operands]
    n = len(legs)
    order: list[int] = []
    seen: set[int] = set() if skip is None else {skip}
    for start in range(n):
        if start in seen:
            continue
        queue = [start]
        seen.add(start)
        while queue:
            i = queue.pop(0)
            order.append(i)
            for j in range(n):
                if j not in seen and legs[i] & legs[j]:
                    seen.add(j)
                    queue.append(j)
    return order


def component_masks(nbr: list[int], n: int) -> list[int]:
    left = (1 << n) - 1
    out = []
    while left:
        comp = left & -left
        frontier = comp
        while frontier:
            grow = 0
            for i in bits(frontier):
                grow |= nbr[i]
            frontier = grow & ~comp
            comp |= frontier
        out.append(comp)
        left &= ~comp
    return out


def find_hub(problem: Problem) -> int | None:
    """The operand sharing legs with the most others, if that is at least half of them and 3."""
    hub, degree = most_connected(problem)
    return hub if degree >= max(3, (len(problem.operands) - 1) / 2) else None


def most_connected(problem: Problem) -> tuple[int, int]:
    """``(operand, how many others it shares legs with)`` for the best connected one (lowest index on ties)."""
    degree = degrees(problem)
    hub = max(range(len(degree)), key=lambda i: (degree[i], -i))
    return hub, degree[hub]


def degrees(problem: Problem) -> list[int]:
    """For each operand, how many others share a leg with it."""
    legs = [set(op.legs) for op in problem.operands]
    return [sum(1 for j in range(len(legs)) if j != i and legs[i] & legs[j]) for i in range(len(legs))]
