"""Search for the contraction tree minimizing the cost model's objective: one algorithm per module,
all behind one signature (:data:`~.base.Search`), picked by name from :data:`SEARCHES`.

- :mod:`.exact` (``"auto"``, :func:`exact_path`): the exact optimum, choosing among the algorithms
  below by the network's size and shape (the planner's search).
- :mod:`.exhaustive`: every binary tree, outer products included (small networks, and a check).
- :mod:`.ccp`: DPccp, the subset DP over connected pairs (Moerkotte & Neumann 2006).
- :mod:`.hub`: the subset DP around a hub operand (x touching every TT core), as an A* search.
- :mod:`.oe_dp`: opt_einsum's ``DynamicProgramming`` with our cost (the exact fallback).
- :mod:`.hyper`: cotengra's hyper-optimizer scored with our objective (large networks, not exact).
- :mod:`.flops`: opt_einsum's FLOP-only trees (``"greedy"``, ``"optimal"``, ``"dp"``): the name
  ``"optimal"`` is opt_einsum's (FLOP-optimal), not our exact search.
- :mod:`.base`: the signature, exceptions, SSA path helpers and the network's shape.

Costs depend only on the two merged subsets (their legs and whether they hold a tensor that needs a
gradient), so the subset DPs are exact. Paths are SSA: ``(i, j)`` pairs; step ``s`` makes ``n + s``.
"""

from __future__ import annotations

from .base import Search, linear_to_ssa, tree_to_ssa
from .ccp import ccp_path
from .exact import EXACT_LIMIT, LARGE_BUDGETS, OUTER_LIMIT, exact_path
from .exhaustive import exhaustive_path
from .flops import flops_path, flops_search
from .hub import hub_path
from .hyper import hyper_path
from .oe_dp import oe_dp_path

#: The FLOP-only searches (opt_einsum's): they know nothing of circuits applied gate by gate.
FLOP_SEARCHES = ("greedy", "optimal", "dp")

#: What ``make_plan(optimize=...)`` takes: the exact search (``auto``), cotengra's and opt_einsum's.
PLANNER_SEARCHES = ("auto", "hyper", *FLOP_SEARCHES)

#: Every search by name (the planner's, then the exact searches' parts, for tests and benchmarks).
SEARCHES: dict[str, Search] = {
    "auto": exact_path,
    "hyper": hyper_path,
    **{name: flops_search(name) for name in FLOP_SEARCHES},
    "exhaustive": exhaustive_path,
    "ccp": ccp_path,
    "hub": hub_path,
    "oe_dp": oe_dp_path,
}


def search_for(name: str) -> Search:
    """The search called ``name`` in :data:`SEARCHES` (ValueError naming the known ones otherwise)."""
    try:
        return SEARCHES[name]
    except KeyError:
        raise ValueError(f"unknown search {name!r}; known searches: {', '.join(SEARCHES)}") from None


__all__ = ["EXACT_LIMIT", "FLOP_SEARCHES", "LARGE_BUDGETS", "OUTER_LIMIT", "PLANNER_SEARCHES", "SEARCHES", "Search", "ccp_path",
           "exact_path", "exhaustive_path", "flops_path", "hub_path", "hyper_path", "linear_to_ssa", "oe_dp_path",
           "search_for", "tree_to_ssa"]
