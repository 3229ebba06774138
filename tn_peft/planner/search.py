"""Search for the contraction tree minimizing the cost model's objective.

- :func:`optimal_path`: exact. Every binary tree up to ``OUTER_LIMIT`` operands
  (:func:`exhaustive_path`), beyond the connected-subset DPs of :mod:`.subset_dp` (``ccp_path``,
  ``hub_path``), and as the last resort opt_einsum's ``DynamicProgramming`` (Pfeifer et al. 2014)
  run with our own local cost (:func:`oe_dp_path`). Costs depend only on the two merged subsets
  (their legs and whether they hold a tensor that needs a gradient), so the subset DPs stay exact.
- :func:`hyper_path`: cotengra's hyper-optimizer scoring its candidate trees with the same
  objective, for networks beyond ``EXACT_LIMIT`` operands the subset DPs cannot finish within
  ``LARGE_BUDGETS`` (chains and TT + x up to 63 operands stay exact), and beyond 63 operands.
- :func:`exhaustive_path`: every binary tree, outer products included (a check for small networks).

Paths are SSA: a list of pairs ``(i, j)``; operands are ``0..n-1`` and step ``s`` makes ``n + s``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import opt_einsum
from opt_einsum.paths import DynamicProgramming, _dp_calc_legs

from .cost import CostModel
from .cost.scorer import INFEASIBLE, Scorer
from .problem import COST_SLACK, MAX_BITMAP_OPERANDS, Problem
from .subset_dp import Disconnected, OverBudget, ccp_path, find_hub, hub_path

__all__ = ["EXACT_LIMIT", "LARGE_BUDGETS", "OUTER_LIMIT", "Scorer", "ccp_path", "exhaustive_path", "find_hub", "flops_path",
           "hub_path", "hyper_path", "linear_to_ssa", "oe_dp_path", "optimal_path", "tree_to_ssa"]

#: Operand counts up to which the search is always exact (opt_einsum's DP as the last resort).
EXACT_LIMIT = 22
#: opt_einsum's "optimal" enumerates every order (factorial); beyond this many operands its "dp" finds
#: the same FLOP optimum (outer products aside) in seconds instead of hours.
OE_OPTIMAL_LIMIT = 9
#: Beyond EXACT_LIMIT (up to 63 operands, the subsets' int64 bitmaps): the subset DPs' budgets
#: (connected pairs, hub cells), about 0.1 s each, before cotengra's hyper-optimizer takes over.
LARGE_BUDGETS = (60_000, 400_000)
#: Operand counts up to which the exact search also tries outer products.
OUTER_LIMIT = 8


def _inputs(problem: Problem) -> tuple[list[frozenset], frozenset, dict]:
    return [frozenset(op.legs) for op in problem.operands], frozenset(problem.output), problem.size_dict


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


def flops_path(problem: Problem, optimize: str = "greedy") -> list[tuple[int, int]]:
    """An SSA path from opt_einsum minimizing FLOPs only (``greedy``, ``optimal``, ``dp``...)."""
    if len(problem.operands) == 1:
        return []
    n = len(problem.operands)
    if optimize == "optimal" and n > OE_OPTIMAL_LIMIT:
        optimize = "dp"  # same optimum (without outer products), without the factorial search
    path, _ = opt_einsum.contract_path(*_einsum_args(problem), optimize=optimize, shapes=True)
    return linear_to_ssa(path, n)


def _einsum_args(problem: Problem) -> list:
    eq = problem.equation()
    shapes = [tuple(problem.size_dict[leg] for leg in op.legs) for op in problem.operands]
    return [eq, *shapes]


def optimal_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
                 scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The exact optimum of the objective: ``(ssa path, objective)``.

    Up to ``OUTER_LIMIT`` operands every binary tree is searched (:func:`exhaustive_path`, outer
    products included). Beyond, around a hub (an operand sharing legs with at least half of the
    others, like x with every TT core) :func:`hub_path`, else the connected subgraph / complement
    pairs (:func:`ccp_path`); when one meets too many subsets, the other, then opt_einsum's DP.
    Beyond ``EXACT_LIMIT`` operands the two subset DPs get ``LARGE_BUDGETS`` and cotengra's
    hyper-optimizer (:func:`hyper_path`, not exact) replaces opt_einsum's DP; beyond 63 operands
    it is the only search.
    """
    n = len(problem.operands)
    if n <= OUTER_LIMIT:
        return exhaustive_path(problem, model, circuit_gates, scorer)
    if n > MAX_BITMAP_OPERANDS:
        return hyper_path(problem, model, circuit_gates)
    hub = find_hub(problem)
    large = n > EXACT_LIMIT
    pairs = {"budget": LARGE_BUDGETS[0]} if large else {}
    cells = {"budget": LARGE_BUDGETS[1], "pair_budget": LARGE_BUDGETS[0]} if large else {}
    searches = [functools.partial(ccp_path, problem, model, circuit_gates, **pairs),
                functools.partial(hub_path, problem, model, circuit_gates, hub=hub, **cells)]
    if hub is not None:
        searches.reverse()
    for search in searches:
        try:
            return search()
        except (OverBudget, Disconnected):
            continue
    return oe_dp_path(problem, model, circuit_gates) if n <= EXACT_LIMIT else hyper_path(problem, model, circuit_gates)


def oe_dp_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
               scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The same optimum through opt_einsum's ``DynamicProgramming`` with our cost as ``minimize``.

    The production fallback of :func:`optimal_path` up to ``EXACT_LIMIT`` operands, when the
    connected-subset searches give up (over budget, or a disconnected network); slower than
    :func:`ccp_path`, which enumerates only connected pairs.
    """
    scorer = scorer or Scorer(problem, model, circuit_gates)
    n = scorer.n
    if n <= 2:
        path = [(0, 1)] if n == 2 else []
        return path, scorer.path_cost(path)
    seed = flops_path(problem, "greedy")
    inputs, output, sizes = _inputs(problem)

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
    cap = scorer.path_cost(seed)
    cap = cap * (1 + COST_SLACK) if math.isfinite(cap) else False
    try:
        linear = DynamicProgramming(minimize=compare, cost_cap=cap)(list(inputs), output, sizes)
    except RuntimeError:  # nothing under the cap (only with infeasible circuit steps): no cap
        linear = DynamicProgramming(minimize=compare, cost_cap=False)(list(inputs), output, sizes)
    path = linear_to_ssa(linear, n)
    if scorer.path_cost(path) > scorer.path_cost(seed):  # opt_einsum joins disconnected parts its own way
        path = seed
    return path, scorer.path_cost(path)


def hyper_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
               max_repeats: int = 64) -> tuple[list[tuple[int, int]], float]:
    """cotengra's hyper-optimizer (greedy family) scored with our objective (for large networks)."""
    import cotengra as ctg

    scorer = Scorer(problem, model, circuit_gates)
    inputs, output, sizes = _inputs(problem)

    from cotengra.scoring import ensure_basic_quantities_are_computed

    def score(trial):
        ensure_basic_quantities_are_computed(trial)  # cotengra records flops / size / write
        tree = trial["tree"]
        path = [tuple(p) for p in tree.get_path()]
        return math.log2(max(scorer.path_cost(linear_to_ssa(path, scorer.n)), 1.0))

    opt = ctg.HyperOptimizer(methods=["greedy"], max_repeats=max_repeats, minimize=score, parallel=False,
                             optlib="random", progbar=False, reconf_opts=None, simulated_annealing_opts=None,
                             slicing_opts=None, slicing_reconf_opts=None, on_trial_error="raise")
    tree = opt.search([tuple(i) for i in inputs], tuple(output), sizes)
    path = linear_to_ssa([tuple(p) for p in tree.get_path()], scorer.n)
    seed = flops_path(problem, "greedy")
    if scorer.path_cost(seed) < scorer.path_cost(path):
        path = seed
    return path, scorer.path_cost(path)


def exhaustive_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
                    scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """Minimum over every binary tree (outer products included), by memoized recursion over subsets."""
    scorer = scorer or Scorer(problem, model, circuit_gates)
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
