"""opt_einsum's FLOP-only trees (``greedy``, ``optimal``, ``dp``): what the planner is compared with,
and the seeds and caps of the exact searches."""

from __future__ import annotations

import opt_einsum

from ..cost import CostModel
from ..cost.scorer import Scorer
from ..problem import Problem
from .base import einsum_args, linear_to_ssa

#: opt_einsum's "optimal" enumerates every order (factorial); beyond this many operands its "dp" finds
#: the same FLOP optimum (outer products aside) in seconds instead of hours.
OE_OPTIMAL_LIMIT = 9


def flops_path(problem: Problem, optimize: str = "greedy") -> list[tuple[int, int]]:
    """An SSA path from opt_einsum minimizing FLOPs only (``greedy``, ``optimal``, ``dp``...)."""
    if len(problem.operands) == 1:
        return []
    n = len(problem.operands)
    if optimize == "optimal" and n > OE_OPTIMAL_LIMIT:
        optimize = "dp"  # same optimum (without outer products), without the factorial search
    path, _ = opt_einsum.contract_path(*einsum_args(problem), optimize=optimize, shapes=True)
    return linear_to_ssa(path, n)


def flops_search(optimize: str):
    """:func:`flops_path` with ``optimize`` behind the searches' signature (the objective of its tree).
    opt_einsum knows no circuits: a tree applying ``gated`` operands gate by gate is the exact search's."""

    def search(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset()):
        if gated:
            from .exact import exact_path  # exact seeds itself from this module

            return exact_path(problem, model, gated)
        path = flops_path(problem, optimize)
        return path, Scorer(problem, model, gated).path_cost(path)

    search.__name__ = search.__qualname__ = f"flops_path_{optimize}"
    return search
