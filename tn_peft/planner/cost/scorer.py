"""``Scorer``: the cost of merging two operand subsets, as the search sees it (cached per pair).

Legs are bits of an int and subsets of operands are bitmaps, so a step's cost is a few integer
operations: this runs for every pair the exact search looks at (thousands per plan).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..bitmaps import bits
from ..problem import Problem
from .model import CostModel, StepCost, objective
from .step import broadcast_step, circuit_cost, matmul_step, step_cost

INFEASIBLE = math.inf


class Scorer:
    """Costs of merging operand subsets (bitmaps) of one problem, cached.

    Legs are bits of an int mask (``leg_names`` maps back), so a step's cost is a few integer ops.
    ``gated``: indices of circuit operands applied gate by gate (others are dense tensors).
    """

    def __init__(self, problem: Problem, model: CostModel, gated: frozenset[int] = frozenset()):
        self.problem, self.model = problem, model
        self.n = len(problem.operands)
        sizes = problem.size_dict
        self.leg_names = sorted({leg for op in problem.operands for leg in op.legs} | set(problem.output))
        index = {leg: i for i, leg in enumerate(self.leg_names)}
        self.leg_sizes = [sizes[leg] for leg in self.leg_names]
        self.op_masks = [sum(1 << index[leg] for leg in op.legs) for op in problem.operands]
        self.out_mask = sum(1 << index[leg] for leg in problem.output)
        self.carriers = [0] * len(self.leg_names)
        for i, mask in enumerate(self.op_masks):
            for b in bits(mask):
                self.carriers[b] |= 1 << i
        self.grad_mask = sum(1 << i for i, op in enumerate(problem.operands) if op.requires_grad)
        # saving a node tensor costs nothing (it is alive anyway); saving x or an intermediate does
        self.leaf_nodes = sum(1 << i for i, op in enumerate(problem.operands) if op.kind != "x")
        self.gated = frozenset(gated)
        self.itemsize = problem.itemsize
        self._legs_of: dict[int, int] = {1 << i: m for i, m in enumerate(self.op_masks)}
        self._size: dict[int, int] = {0: 1}
        self._by_bit = {1 << i: size for i, size in enumerate(self.leg_sizes)}
        self._carriers_by_bit = {1 << i: c for i, c in enumerate(self.carriers)}
        self._op_by_bit = {1 << i: m for i, m in enumerate(self.op_masks)}
        self._pairs: dict[tuple[int, int], StepCost | None] = {}
        self._objectives: dict[tuple[int, int], float] = {}
        self._matmul = matmul_step(model, problem.itemsize)
        self._broadcast = broadcast_step(model, problem.itemsize)

    def size(self, mask: int) -> int:
        """Product of the sizes of the legs in ``mask``."""
        out = self._size.get(mask)
        if out is None:
            out, m, by_bit = 1, mask, self._by_bit
            while m:
                low = m & -m
                out *= by_bit[low]
                m ^= low
            self._size[mask] = out
        return out

    def legs_mask(self, subset: int) -> int:
        """Legs (mask) of the tensor made by contracting ``subset``: those still needed outside it."""
        legs = self._legs_of.get(subset)
        if legs is None:
            every, m, ops = 0, subset, self._op_by_bit
            while m:
                low = m & -m
                every |= ops[low]
                m ^= low
            legs, m, carriers, outside = every & self.out_mask, every & ~self.out_mask, self._carriers_by_bit, ~subset
            while m:
                low = m & -m
                if carriers[low] & outside:
                    legs |= low
                m ^= low
            self._legs_of[subset] = legs
        return legs

    def legs_of(self, subset: int) -> frozenset[str]:
        """Leg names of the tensor made by contracting ``subset``."""
        return frozenset(self.leg_names[b] for b in bits(self.legs_mask(subset)))

    def pair(self, s1: int, s2: int) -> StepCost | None:
        """The step merging subsets ``s1`` and ``s2`` (None if the step is not allowed)."""
        key = (s1, s2) if s1 < s2 else (s2, s1)
        cost = self._pairs.get(key, False)
        if cost is False:
            cost = self._pair(*key)
            self._pairs[key] = cost
        return cost

    def _pair(self, s1: int, s2: int, objective_only: bool = False) -> StepCost | float | None:
        legs_of, size = self._legs_of, self.size
        la = legs_of.get(s1)
        if la is None:
            la = self.legs_mask(s1)
        lb = legs_of.get(s2)
        if lb is None:
            lb = self.legs_mask(s2)
        s = s1 | s2
        lc = legs_of.get(s)
        if lc is None:  # only shared legs can close: drop those carried by nothing outside s
            lc, m, carriers, keep = la | lb, la & lb & ~self.out_mask, self._carriers_by_bit, ~s
            while m:
                low = m & -m
                if not carriers[low] & keep:
                    lc ^= low
                m ^= low
            legs_of[s] = lc
        grad = self.grad_mask
        ga, gb = bool(s1 & grad), bool(s2 & grad)
        if self.gated:
            applied = [s for s in (s1, s2) if s & (s - 1) == 0 and s.bit_length() - 1 in self.gated]
            if len(applied) == 2:  # a circuit applies to a tensor; both are circuits (modules, no tensor)
                return None
            for single, lq, lo, gq, go in ((s1, la, lb, ga, gb), (s2, lb, la, gb, ga)):
                if applied and single == applied[0]:
                    return self._circuit_step(single.bit_length() - 1, lo, lc, gq, go)
        leaves = self.leaf_nodes
        count_a = s1 & (s1 - 1) != 0 or not s1 & leaves  # a node tensor is alive anyway: keeping it is free
        count_b = s2 & (s2 - 1) != 0 or not s2 & leaves
        sizes = self._size
        a = sizes.get(la) or size(la)
        b = sizes.get(lb) or size(lb)
        shared = la & lb
        summed = shared & ~lc
        both = sizes.get(shared) or size(shared)   # sizes multiply: every other size follows
        m, n = a // both, b // both
        full = m * n * both
        if not summed:
            terms = self._broadcast(a, b, full, full, ga, gb, count_a, count_b)
            return objective(self.model, terms[4], terms[2]) if objective_only else step_cost(terms, full, self.itemsize)
        k = sizes.get(summed) or size(summed)
        c = full // k
        copy = self.model.copy_operands
        copy_a = copy and count_a and la.bit_count() >= 3
        copy_b = copy and count_b and lb.bit_count() >= 3
        terms = self._matmul(a, b, c, full, m, n, k, ga, gb, count_a, count_b, copy_a, copy_b)
        return objective(self.model, terms[4], terms[2]) if objective_only else step_cost(terms, c, self.itemsize)

    def _circuit_step(self, index: int, lo: int, lc: int, grad_q: bool, grad_o: bool) -> StepCost | None:
        # A circuit Q[rows..., k] applies to an operand holding all its row legs (-> k), or its
        # column leg k (-> rows); anything else needs the dense tensor.
        op = self.problem.operands[index]
        names = {leg: i for i, leg in enumerate(self.leg_names)}
        rows = sum(1 << names[leg] for leg in op.legs[:-1])
        col = 1 << names[op.legs[-1]]
        if rows & lo == rows and not col & lo and not rows & lc:
            states = self.size(lo) // self.size(rows)
        elif col & lo and not rows & lo and not col & lc:
            states = self.size(lo) // self.size(col)
        else:
            return None
        return circuit_cost(self.model, states, self.size(rows), op.passes, op.chunk, grad_o, grad_q, self.itemsize)

    def objective(self, s1: int, s2: int) -> float:
        """The search's objective of one step, ``(time + memory_weight * saved) * flop_rate`` (cached)."""
        key = (s1, s2) if s1 < s2 else (s2, s1)
        value = self._objectives.get(key)
        if value is None:
            cost = self._pair(key[0], key[1], True)  # matmul and broadcast steps come back as their objective
            if cost is None:
                value = INFEASIBLE
            elif type(cost) is float:
                value = cost
            else:
                value = cost.objective(self.model)
            self._objectives[key] = value
        return value

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

