"""Search for the contraction tree minimizing the cost model's objective.

- :func:`optimal_path`: exact. opt_einsum's ``DynamicProgramming`` (Pfeifer et al. 2014) run with
  our own local cost (its ``minimize`` takes a callable), seeded with the cost of a greedy tree as
  the cost cap so one sieve pass suffices. Costs depend only on the two merged subsets (their legs
  and whether they hold a tensor that needs a gradient), so the subset DP stays exact.
- :func:`hyper_path`: beyond ``EXACT_LIMIT`` operands, cotengra's hyper-optimizer scoring its
  candidate trees with the same objective.
- :func:`exhaustive_path`: every binary tree, outer products included (a check for small networks).

Paths are SSA: a list of pairs ``(i, j)``; operands are ``0..n-1`` and step ``s`` makes ``n + s``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import opt_einsum
from opt_einsum.paths import DynamicProgramming, _dp_calc_legs

from .cost import CostModel, StepCost, circuit_cost, pair_cost
from .problem import Problem

#: Operand counts up to which the search is exact (beyond: cotengra's hyper-optimizer).
EXACT_LIMIT = 22
#: Operand counts up to which the exact search also tries outer products.
OUTER_LIMIT = 8
INFEASIBLE = math.inf


class Scorer:
    """Costs of merging operand subsets (bitmaps) of one problem, cached.

    ``circuit_gates``: indices of circuit operands applied gate by gate (others are dense tensors).
    """

    def __init__(self, problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset()):
        self.problem, self.model = problem, model
        self.sizes = problem.size_dict
        self.n = len(problem.operands)
        self.legs = [frozenset(op.legs) for op in problem.operands]
        self.output = frozenset(problem.output)
        self.grad_mask = sum(1 << i for i, op in enumerate(problem.operands) if op.requires_grad)
        # saving a node tensor costs nothing (it is alive anyway); saving x or an intermediate does
        self.leaf_nodes = sum(1 << i for i, op in enumerate(problem.operands) if op.kind != "x")
        self.gates = frozenset(circuit_gates)
        self.leg_mask: dict[str, int] = {}
        for i, legs in enumerate(self.legs):
            for leg in legs:
                self.leg_mask[leg] = self.leg_mask.get(leg, 0) | (1 << i)
        self._legs_of: dict[int, frozenset[str]] = {1 << i: legs for i, legs in enumerate(self.legs)}
        self._pairs: dict[tuple[int, int], StepCost | None] = {}

    def legs_of(self, subset: int) -> frozenset[str]:
        """Legs of the tensor made by contracting ``subset``: those still needed outside it."""
        legs = self._legs_of.get(subset)
        if legs is None:
            every = set()
            for i in range(self.n):
                if subset >> i & 1:
                    every |= self.legs[i]
            legs = frozenset(leg for leg in every if leg in self.output or self.leg_mask[leg] & ~subset)
            self._legs_of[subset] = legs
        return legs

    def pair(self, s1: int, s2: int) -> StepCost | None:
        """The step merging subsets ``s1`` and ``s2`` (None if the step is not allowed)."""
        key = (s1, s2) if s1 < s2 else (s2, s1)
        cost = self._pairs.get(key, False)
        if cost is False:
            cost = self._pair(*key)
            self._pairs[key] = cost
        return cost

    def _pair(self, s1: int, s2: int) -> StepCost | None:
        la, lb, lc = self.legs_of(s1), self.legs_of(s2), self.legs_of(s1 | s2)
        ga, gb = bool(s1 & self.grad_mask), bool(s2 & self.grad_mask)
        for single, other, lq, lo, gq, go in ((s1, s2, la, lb, ga, gb), (s2, s1, lb, la, gb, ga)):
            index = single.bit_length() - 1
            if single == 1 << index and index in self.gates:
                return self._circuit_step(index, lq, lo, lc, gq, go)
        model, itemsize = self.model, self.problem.itemsize
        count_a = not (s1 == s1 & -s1 and s1 & self.leaf_nodes)
        count_b = not (s2 == s2 & -s2 and s2 & self.leaf_nodes)
        copy_a = model.copy_operands and count_a and len(la) >= 3
        copy_b = model.copy_operands and count_b and len(lb) >= 3
        return pair_cost(model, la, lb, lc, self.sizes, grad_a=ga, grad_b=gb, count_a=count_a, count_b=count_b,
                         copy_a=copy_a, copy_b=copy_b, itemsize=itemsize)

    def _circuit_step(self, index, lq, lo, lc, grad_q, grad_o) -> StepCost | None:
        # A circuit Q[rows..., k] applies to an operand holding all its row legs (-> k), or its
        # column leg k (-> rows); anything else needs the dense tensor.
        op = self.problem.operands[index]
        rows, col = frozenset(op.legs[:-1]), op.legs[-1]
        size_rows = math.prod(self.sizes[leg] for leg in rows)
        other = math.prod(self.sizes[leg] for leg in lo)
        if rows <= lo and col not in lo and not (rows & lc):
            states = other // size_rows
        elif col in lo and not (rows & lo) and col not in lc:
            states = other // self.sizes[col]
        else:
            return None
        return circuit_cost(self.model, states, size_rows, op.gates, op.chunk, grad_o, grad_q,
                            self.problem.itemsize)

    def objective(self, s1: int, s2: int) -> float:
        cost = self.pair(s1, s2)
        return INFEASIBLE if cost is None else cost.objective(self.model)

    def path_cost(self, path: Sequence[tuple[int, int]]) -> float:
        """Objective of an SSA path (INFEASIBLE if a step is not allowed)."""
        subsets = [1 << i for i in range(self.n)]
        total = 0.0
        for i, j in path:
            total += self.objective(subsets[i], subsets[j])
            subsets.append(subsets[i] | subsets[j])
        return total

    def path_steps(self, path: Sequence[tuple[int, int]]) -> list[StepCost | None]:
        subsets = [1 << i for i in range(self.n)]
        out = []
        for i, j in path:
            out.append(self.pair(subsets[i], subsets[j]))
            subsets.append(subsets[i] | subsets[j])
        return out


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
    inputs, output, sizes = _inputs(problem)
    if optimize == "optimal" and len(inputs) > 9:
        optimize = "dp"  # same optimum (without outer products), without the factorial search
    path, _ = opt_einsum.contract_path(*_einsum_args(problem), optimize=optimize, shapes=True)
    return linear_to_ssa(path, len(inputs))


def _einsum_args(problem: Problem) -> list:
    eq = problem.equation()
    shapes = [tuple(problem.size_dict[leg] for leg in op.legs) for op in problem.operands]
    return [eq, *shapes]


def optimal_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
                 scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The exact optimum of the objective: ``(ssa path, objective)``. See module docstring."""
    scorer = scorer or Scorer(problem, model, circuit_gates)
    n = scorer.n
    if n == 1:
        return [], 0.0
    if n == 2:
        return [(0, 1)], scorer.path_cost([(0, 1)])
    seed = flops_path(problem, "greedy")
    cap = scorer.path_cost(seed)
    inputs, output, sizes = _inputs(problem)
    search_outer = n <= OUTER_LIMIT

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
    cap = cap * (1 + 1e-9) if math.isfinite(cap) else True
    optimizer = DynamicProgramming(minimize=compare, cost_cap=cap, search_outer=search_outer)
    try:
        linear = optimizer(list(inputs), output, sizes)
    except RuntimeError:  # nothing under the cap (only with infeasible circuit steps): no cap
        linear = DynamicProgramming(minimize=compare, cost_cap=False, search_outer=search_outer)(
            list(inputs), output, sizes)
    path = linear_to_ssa(linear, n)
    best = scorer.path_cost(path)
    if best > scorer.path_cost(seed):  # opt_einsum joins disconnected parts without our cost
        path, best = seed, scorer.path_cost(seed)
    return path, best


def hyper_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
               max_repeats: int = 64) -> tuple[list[tuple[int, int]], float]:
    """cotengra's hyper-optimizer (greedy family) scored with our objective (for large networks)."""
    import cotengra as ctg

    scorer = Scorer(problem, model, circuit_gates)
    inputs, output, sizes = _inputs(problem)

    def score(trial):
        tree = trial["tree"]
        path = [tuple(p) for p in tree.get_path()]
        return math.log2(max(scorer.path_cost(linear_to_ssa(path, scorer.n)), 1.0))

    opt = ctg.HyperOptimizer(methods=["greedy"], max_repeats=max_repeats, minimize=score, parallel=False,
                             optlib="random", progbar=False)
    tree = opt.search([tuple(i) for i in inputs], tuple(output), sizes)
    path = linear_to_ssa([tuple(p) for p in tree.get_path()], scorer.n)
    seed = flops_path(problem, "greedy")
    if scorer.path_cost(seed) < scorer.path_cost(path):
        path = seed
    return path, scorer.path_cost(path)


def exhaustive_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset()
                    ) -> tuple[list[tuple[int, int]], float]:
    """Minimum over every binary tree (outer products included), by memoized recursion over subsets."""
    scorer = Scorer(problem, model, circuit_gates)
    n = scorer.n

    @functools.lru_cache(maxsize=None)
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
                cost = ca + cb + scorer.objective(a, b)
                if cost < result[0]:
                    result = (cost, (ta, tb))
            if part == 0:
                break
            part = (part - 1) & rest
        return result

    cost, tree = best((1 << n) - 1)
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
