"""DPccp (Moerkotte & Neumann 2006): the exact subset DP over pairs of disjoint connected subsets
that share a leg (the subset DP of Pfeifer et al. without outer products).

Raises :class:`~.base.OverBudget` when the network has too many connected pairs;
:func:`~.exact.exact_path` then tries the hub search, then opt_einsum's DP. :func:`ccp_table`
is also the hub search's table of pieces.
"""

from __future__ import annotations

import numpy as np

from ..bitmaps import submasks
from ..cost import CostModel
from ..cost.batch_scorer import BatchScorer
from ..cost.scorer import Scorer
from ..problem import Problem
from .base import (
    OverBudget,
    bfs_order,
    build_path,
    cap_of,
    component_masks,
    ordered_scorer,
    relabel,
    sequential_path,
)

#: Connected pairs :func:`ccp_path` looks at before handing over to opt_einsum's sieved DP.
CCP_BUDGET = 1_000_000  # about 2 s at worst (random 21-operand trees: 0.07-0.42 M pairs, 0.08-0.8 s)


#: Cells (subset x piece) of one numpy pass (bounds its memory: a few MB).
CHUNK_CELLS = 2**16


def ccp_path(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
             budget: int = CCP_BUDGET) -> tuple[list[tuple[int, int]], float]:
    """Exact DP over connected subgraph / complement pairs (DPccp, Moerkotte & Neumann 2006).

    The subset DP of Pfeifer et al. (opt_einsum's ``DynamicProgramming``) without outer products,
    but enumerating only pairs of disjoint connected subsets that share a leg, with operands in
    breadth-first order; pairs whose two halves already cost more than a simple tree are skipped.
    Disconnected components are planned apart and joined, smallest first, by outer products.
    """
    n = len(problem.operands)
    order = bfs_order(problem)
    scorer, nbr = ordered_scorer(problem, model, gated, order)
    seed_path = sequential_path(n)  # operands in BFS order: every step shares a leg (per component)
    cap = cap_of(scorer.path_cost(seed_path))
    best = ccp_table(scorer, nbr, n, cap, budget)
    components = component_masks(nbr, n)
    if any(c not in best for c in components):  # nothing under the cap: fall back to the seed
        return relabel(seed_path, order, n), scorer.path_cost(seed_path)
    path: list[tuple[int, int]] = []
    ids: dict[int, int] = {1 << i: i for i in range(n)}
    roots = sorted(components, key=lambda c: scorer.size(scorer.legs_mask(c)))
    current, acc = build_path(best, roots[0], ids, path, n), roots[0]
    for comp in roots[1:]:
        other = build_path(best, comp, ids, path, n)
        path.append((current, other))
        acc |= comp
        current = n + len(path) - 1
        ids[acc] = current
    return relabel(path, order, n), scorer.path_cost(path)


def ccp_table(scorer: Scorer, nbr: list[int], n: int, cap: float, budget: int,
               batch: BatchScorer | None = None) -> dict[int, tuple[float, int, int]]:
    """``subset -> (cost, s1, s2)`` for the connected subsets of operands ``0..n-1`` cheaper than ``cap``.

    Operands are numbered breadth-first (component by component) and ``nbr`` holds neighbour masks
    within ``0..n-1``; DPccp's enumeration then meets every subset after all of its parts. The pairs
    are enumerated first and costed in one numpy pass (:class:`~tn_peft.planner.cost.batch_scorer.BatchScorer`).
    """
    firsts, seconds = _ccp_pairs(nbr, n, budget)
    best: dict[int, tuple[float, int, int]] = {1 << i: (0.0, 0, 0) for i in range(n)}
    if not firsts:
        return best
    batch = batch or BatchScorer(scorer)
    steps = np.concatenate([batch.objectives(np.array(firsts[lo:lo + CHUNK_CELLS], dtype=np.int64),
                                             np.array(seconds[lo:lo + CHUNK_CELLS], dtype=np.int64))[0]
                            for lo in range(0, len(firsts), CHUNK_CELLS)])
    get = best.get
    for s1, s2, step in zip(firsts, seconds, steps.tolist()):
        b1 = get(s1)
        b2 = get(s2)
        if b1 is None or b2 is None:
            continue
        cost = b1[0] + b2[0] + step
        if cost < cap:
            s = s1 | s2
            old = get(s)
            if old is None or cost < old[0]:
                best[s] = (cost, s1, s2)
    return best


def _ccp_pairs(nbr: list[int], n: int, budget: int) -> tuple[list[int], list[int]]:
    """DPccp's csg-cmp pairs of operands ``0..n-1`` (``nbr``: neighbour masks), in its order."""
    firsts: list[int] = []
    seconds: list[int] = []
    around: dict[int, int] = {1 << i: nbr[i] for i in range(n)}

    def neighbours(subset: int, excluded: int) -> int:
        out = around.get(subset)
        if out is None:
            out, m = 0, subset
            while m:
                low = m & -m
                out |= around[low]
                m ^= low
            around[subset] = out
        return out & ~subset & ~excluded

    def enumerate_cmp(s1: int, s2: int, excluded: int) -> None:
        nb = neighbours(s2, excluded)
        for sub in submasks(nb):
            firsts.append(s1)
            seconds.append(s2 | sub)
        for sub in submasks(nb):
            enumerate_cmp(s1, s2 | sub, excluded | nb)

    def emit_csg(s1: int) -> None:
        low = (s1 & -s1).bit_length() - 1
        excluded = s1 | ((1 << (low + 1)) - 1)
        nb = nb_all = neighbours(s1, excluded)
        while nb:  # neighbours by descending index
            i = nb.bit_length() - 1
            firsts.append(s1)
            seconds.append(1 << i)
            enumerate_cmp(s1, 1 << i, excluded | (((1 << (i + 1)) - 1) & nb_all))
            nb ^= 1 << i
        if len(firsts) > budget:
            raise OverBudget

    def enumerate_csg(s: int, excluded: int) -> None:
        nb = neighbours(s, excluded)
        for sub in submasks(nb):
            emit_csg(s | sub)
        for sub in submasks(nb):
            enumerate_csg(s | sub, excluded | nb)

    for i in range(n - 1, -1, -1):
        emit_csg(1 << i)
        enumerate_csg(1 << i, (1 << (i + 1)) - 1)
    return firsts, seconds
