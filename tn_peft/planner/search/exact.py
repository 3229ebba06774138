"""The exact optimum of the objective: the search the planner runs (``optimize="auto"``), choosing
among the exact algorithms by the network's size and shape."""

from __future__ import annotations

import functools

from ..cost import CostModel
from ..cost.scorer import Scorer
from ..problem import MAX_BITMAP_OPERANDS, Problem
from .base import Disconnected, OverBudget, find_hub
from .ccp import ccp_path
from .exhaustive import exhaustive_path
from .hub import hub_path
from .hyper import hyper_path
from .oe_dp import oe_dp_path

#: Operand counts up to which the search is always exact (opt_einsum's DP as the last resort).
EXACT_LIMIT = 22


#: Beyond EXACT_LIMIT (up to 63 operands, the subsets' int64 bitmaps): the subset DPs' budgets
#: (connected pairs, hub cells), about 0.1 s each, before cotengra's hyper-optimizer takes over.
LARGE_BUDGETS = (60_000, 400_000)


#: Operand counts up to which the exact search also tries outer products.
OUTER_LIMIT = 8


def exact_path(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
                 scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The exact optimum of the objective: ``(ssa path, objective)``.

    Up to ``OUTER_LIMIT`` operands every binary tree is searched (:func:`~.exhaustive.exhaustive_path`, outer
    products included). Beyond, around a hub (an operand sharing legs with at least half of the
    others, like x with every TT core) :func:`~.hub.hub_path`, else the connected subgraph / complement
    pairs (:func:`~.ccp.ccp_path`); when one meets too many subsets, the other, then opt_einsum's DP.
    Beyond ``EXACT_LIMIT`` operands the two subset DPs get ``LARGE_BUDGETS`` and cotengra's
    hyper-optimizer (:func:`~.hyper.hyper_path`, not exact) replaces opt_einsum's DP; beyond 63 operands
    it is the only search.
    """
    n = len(problem.operands)
    if n <= OUTER_LIMIT:
        return exhaustive_path(problem, model, gated, scorer)
    if n > MAX_BITMAP_OPERANDS:
        return hyper_path(problem, model, gated)
    hub = find_hub(problem)
    large = n > EXACT_LIMIT
    pairs = {"budget": LARGE_BUDGETS[0]} if large else {}
    cells = {"budget": LARGE_BUDGETS[1], "pair_budget": LARGE_BUDGETS[0]} if large else {}
    searches = [functools.partial(ccp_path, problem, model, gated, **pairs),
                functools.partial(hub_path, problem, model, gated, hub=hub, **cells)]
    if hub is not None:
        searches.reverse()
    for search in searches:
        try:
            return search()
        except (OverBudget, Disconnected):
            continue
    return oe_dp_path(problem, model, gated) if n <= EXACT_LIMIT else hyper_path(problem, model, gated)
