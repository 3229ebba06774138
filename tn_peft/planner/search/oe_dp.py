"""opt_einsum's ``DynamicProgramming`` (Pfeifer et al. 2014) run with our own step cost: the exact
fallback when the connected-subset searches give up."""

from __future__ import annotations

import math

from opt_einsum.paths import DynamicProgramming, _dp_calc_legs

from ..cost import CostModel
from ..cost.scorer import Scorer
from ..problem import Problem
from .base import cap_of, einsum_inputs, linear_to_ssa
from .flops import flops_path


def oe_dp_path(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
               scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The same optimum through opt_einsum's ``DynamicProgramming`` with our cost as ``minimize``.

    The production fallback of :func:`exact_path` up to ``EXACT_LIMIT`` operands, when the
    connected-subset searches give up (over budget, or a disconnected network); slower than
    :func:`~.ccp.ccp_path`, which enumerates only connected pairs.
    """
    scorer = scorer or Scorer(problem, model, gated)
    n = scorer.n
    if n <= 2:
        path = [(0, 1)] if n == 2 else []
        return path, scorer.path_cost(path)
    seed = flops_path(problem, "greedy")
    inputs, output, sizes = einsum_inputs(problem)

    def compare(cost1, cost2, i1_union_i2, size_dict, cost_cap, s1, s2, xn, g, all_tensors, inputs_,
                i1_cut_i2_wo_output, memory_limit, contract1, contract2):
        cost = cost1 + cost2 + scorer.objective(s1, s2)
        if cost <= cost_cap:
            s = s1 | s2
            old = xn.get(s)
            if old is None or cost < old[1]:
                legs = _dp_calc_legs(g, all_tensors, s, inputs_, i1_cut_i2_wo_output, i1_union_i2)
                xn[s] = (legs, cost, (contract1, contract2))

    # cost_cap = the greedy tree's cost: every subtree of the optimum costs less, so one pass does.
    cap = cap_of(scorer.path_cost(seed))
    cap = cap if math.isfinite(cap) else False  # opt_einsum's "no cap"
    try:
        linear = DynamicProgramming(minimize=compare, cost_cap=cap)(list(inputs), output, sizes)
    except RuntimeError:  # nothing under the cap (only with infeasible circuit steps): no cap
        linear = DynamicProgramming(minimize=compare, cost_cap=False)(list(inputs), output, sizes)
    path = linear_to_ssa(linear, n)
    if scorer.path_cost(path) > scorer.path_cost(seed):  # opt_einsum joins disconnected parts its own way
        path = seed
    return path, scorer.path_cost(path)
