"""Every binary tree, outer products included: the exact optimum for small networks (and a check)."""

from __future__ import annotations

import functools

from ..cost import CostModel
from ..cost.scorer import INFEASIBLE, Scorer
from ..problem import Problem
from .base import linear_to_ssa, tree_to_ssa


def exhaustive_path(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
                    scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """Minimum over every binary tree (outer products included), by memoized recursion over subsets."""
    scorer = scorer or Scorer(problem, model, gated)
    n = scorer.n

    @functools.cache
    def best(subset: int) -> tuple[float, tuple]:
        if subset & (subset - 1) == 0:
            return 0.0, (subset.bit_length() - 1,)
        low = subset & -subset
        rest = subset ^ low
        result = (INFEASIBLE, ())
        part = rest
        while True:  # every split (A, B) with the lowest operand in A
            a = low | part
            b = subset ^ a
            if b:
                ca, ta = best(a)
                cb, tb = best(b)
                if ca + cb < result[0]:  # a step never costs less than nothing: prune
                    cost = ca + cb + scorer.objective(a, b)
                    if cost < result[0]:
                        result = (cost, (ta, tb))
            if part == 0:
                break
            part = (part - 1) & rest
        return result

    cost, tree = best((1 << n) - 1)
    if not tree:  # no tree is feasible (circuits that cannot apply anywhere): any path, at an infinite cost
        return linear_to_ssa([(0, 1)] * (n - 1), n), INFEASIBLE
    return tree_to_ssa(tree, n), cost
