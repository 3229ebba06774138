"""The cost of one pairwise step, written once for Python numbers and numpy arrays.

:func:`matmul_step` and :func:`broadcast_step` hold the arithmetic of a matmul step and of a
broadcast multiply (see :mod:`~tn_peft.planner.cost`); they take an :class:`Arithmetic` (the
elementwise ``maximum`` / ``minimum`` / ``where``): :data:`SCALAR` for the exact searches, which
cost one pair at a time (:class:`~.scorer.Scorer`), :data:`ARRAY` for thousands of pairs in one
numpy pass (:class:`~.batch_scorer.BatchScorer`). Same operations in the same order, so both agree
to the last bit. :func:`pair_cost` costs a step given by its legs; :func:`circuit_cost` a circuit
applied gate by gate; :func:`step_floor` bounds any step from below (the search's pruning).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..problem import COST_SLACK
from .model import CostModel, StepCost


class Arithmetic(NamedTuple):
    """The elementwise operations of the step formulas, for Python numbers or for numpy arrays:
    ``maximum(x, y)``, ``minimum(x, y, z)`` and ``where(condition, x, y)``. A term that only some
    steps pay is written ``flag * term`` (a 0/1 flag: exact, and cheaper than a ``where`` per number)."""

    maximum: Callable
    minimum: Callable
    where: Callable


def _pick(condition, x, y):
    return x if condition else y


def _minimum(x, y, z):
    return np.minimum(np.minimum(x, y), z)


#: Python numbers (one step at a time; grad flags are bools).
SCALAR = Arithmetic(max, min, _pick)
#: numpy arrays, elementwise (grad flags are 0/1 integer arrays, so that they add up).
ARRAY = Arithmetic(np.maximum, _minimum, np.where)


@functools.lru_cache(maxsize=64)
def matmul_step(model: CostModel, itemsize: int, arith: Arithmetic = SCALAR) -> Callable:
    """``f(a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b)`` ->
    ``(flops, backward_flops, saved, ops, time)`` of ``C[c] = A[a] . B[b]`` as one ``(m x k) . (k x n)``
    matmul (``a, b, c, full``: entries of A, B, C and of all legs together), the model's constants
    bound once (the exact searches call it for every pair they cost).

    ``time = (1 + grads) * (overhead + max(moved / bandwidth, flops / (rate * eff))) + fresh / alloc
    (+ permute copies)``, ``eff = d / (d + half_dim)``, ``d = min(m, n, k)``;
    ``saved = (A if B needs a gradient) + (B if A does)``, each only if ``count_*``.
    """
    half, rate, bandwidth, overhead = model.half_dim, model.flop_rate, model.bandwidth, model.op_overhead
    threshold, alloc = model.alloc_threshold, model.alloc_bandwidth
    copy_rate = model.bandwidth * 1 / (1 + model.copy_half_run)  # CostModel.copy_seconds of a run of 1
    maximum, minimum, _ = arith

    def step(a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b):
        flops = 2 * full
        d = minimum(m, n, k)
        compute = flops * (d + half) / (d * rate)
        moved = (a + b + c) * itemsize / bandwidth
        grads = grad_a + grad_b
        time = (overhead + maximum(moved, compute)) * (1 + grads)
        a_bytes, b_bytes, c_bytes = a * itemsize, b * itemsize, c * itemsize
        # first touch of the output, and of each gradient
        time = time + (c_bytes >= threshold) * (c_bytes / alloc)
        time = time + (grad_a & (a_bytes >= threshold)) * (a_bytes / alloc)
        time = time + (grad_b & (b_bytes >= threshold)) * (b_bytes / alloc)
        # permute + reshape of an operand: a copy forward, and its transpose backward
        passes = 1 + (grads > 0)
        copy_a_time = overhead + 2 * a_bytes / copy_rate + (a_bytes >= threshold) * (a_bytes / alloc)
        copy_b_time = overhead + 2 * b_bytes / copy_rate + (b_bytes >= threshold) * (b_bytes / alloc)
        time = time + copy_a * (copy_a_time * passes)
        time = time + copy_b * (copy_b_time * passes)
        saved = (a * count_a * grad_b + b * count_b * grad_a) * itemsize
        return flops, flops * grads, saved, 1 + grads + copy_a * passes + copy_b * passes, time

    return step


@functools.lru_cache(maxsize=64)
def broadcast_step(model: CostModel, itemsize: int, arith: Arithmetic = SCALAR) -> Callable:
    """``f(a, b, c, full, grad_a, grad_b, count_a, count_b)`` -> ``(flops, backward_flops, saved, ops,
    time)`` of ``C = A * B`` with broadcasting (a diagonal scaling, an outer product):
    ``dA = sum(dC * B)``, ``dB = sum(dC * A)``; a broadcast input's gradient is summed back down
    (one more op). Each op costs :meth:`CostModel.op_seconds`."""
    rate, bandwidth, overhead = model.flop_rate * 1.0, model.bandwidth, model.op_overhead
    threshold, alloc = model.alloc_threshold, model.alloc_bandwidth
    maximum, _, where = arith

    def seconds(flops, moved, fresh):  # CostModel.op_seconds (no matmul dims)
        return overhead + maximum(flops / rate, moved / bandwidth) + where(fresh >= threshold, fresh / alloc, 0.0)

    def step(a, b, c, full, grad_a, grad_b, count_a, count_b):
        time = seconds(full, (a + b + c) * itemsize, c * itemsize)
        ops, backward = 1, 0
        for needed, size in ((grad_a, a), (grad_b, b)):
            reduce = size < full
            one = seconds(full, (2 * full + size) * itemsize, where(reduce, full, size) * itemsize)
            time = time + where(needed, one, 0.0)
            ops = ops + needed * (1 + reduce)
            backward = backward + needed * (full + where(reduce, full, 0))
        saved = (a * count_a * grad_b + b * count_b * grad_a) * itemsize
        return full, backward, saved, ops, time

    return step


def matmul_cost(model: CostModel, a, b, c, full, m, n, k, grad_a, grad_b, count_a=True, count_b=True,
                copy_a=False, copy_b=False, itemsize: int = 4) -> StepCost:
    """:func:`matmul_step` as a :class:`StepCost` (writes ``c`` entries)."""
    terms = matmul_step(model, itemsize)(a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b)
    return step_cost(terms, c, itemsize)


def broadcast_cost(model: CostModel, a, b, c, full, grad_a, grad_b, count_a=True, count_b=True,
                   itemsize: int = 4) -> StepCost:
    """:func:`broadcast_step` as a :class:`StepCost` (writes ``c`` entries)."""
    terms = broadcast_step(model, itemsize)(a, b, c, full, grad_a, grad_b, count_a, count_b)
    return step_cost(terms, c, itemsize)


def step_cost(terms: tuple, c, itemsize: int) -> StepCost:
    """The :class:`StepCost` of a step's ``(flops, backward_flops, saved, ops, time)`` (from
    :func:`matmul_step` or :func:`broadcast_step`) whose result has ``c`` entries."""
    flops, backward, saved, ops, time = terms
    return StepCost(flops, backward, saved, c * itemsize, c * itemsize, ops, time)


def pair_cost(model: CostModel, legs_a, legs_b, legs_out, sizes, *, grad_a: bool, grad_b: bool,
              count_a: bool = True, count_b: bool = True, copy_a: bool = False, copy_b: bool = False,
              itemsize: int = 4) -> StepCost:
    """Cost of ``C[legs_out] = contract(A[legs_a], B[legs_b])`` with autograd (see :mod:`~tn_peft.planner.cost`).

    ``count_a``: A's bytes count as saved when kept (False for node tensors, alive anyway).
    ``copy_a``: A needs a permute copy first (its legs are out of order for the matmul).

    >>> m = CostModel()
    >>> c = pair_cost(m, {"t", "i"}, {"i", "r"}, {"t", "r"}, {"t": 8, "i": 16, "r": 4},
    ...               grad_a=False, grad_b=True)
    >>> c.flops, c.backward_flops, c.saved
    (1024, 1024, 512)
    """
    a = math.prod(sizes[leg] for leg in legs_a)
    b = math.prod(sizes[leg] for leg in legs_b)
    c = math.prod(sizes[leg] for leg in legs_out)
    union = set(legs_a) | set(legs_b)
    full = math.prod(sizes[leg] for leg in union)
    shared = set(legs_a) & set(legs_b)
    summed = shared - set(legs_out)
    if not summed:
        return broadcast_cost(model, a, b, c, full, grad_a, grad_b, count_a, count_b, itemsize)
    m = math.prod(sizes[leg] for leg in set(legs_a) - set(legs_b))
    n = math.prod(sizes[leg] for leg in set(legs_b) - set(legs_a))
    k = math.prod(sizes[leg] for leg in summed)
    return matmul_cost(model, a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b, itemsize)


def step_floor(model: CostModel, itemsize: int):
    """``f(a, b, shared, tensors_with_grad)`` -> a lower bound on the objective of any matmul or
    broadcast step joining tensors of ``a`` and ``b`` entries that share legs of ``shared`` entries
    (numbers or numpy arrays, elementwise).

    The step touches ``full = a b / shared`` entries and writes ``c >= full / shared`` (only shared
    legs can close), forward and once per gradient, so its objective is at least
    ``(1 + grads) * (overhead * rate + max(full, (a + b + c) * itemsize / bandwidth * rate))
    + fresh(c) * rate`` (forward flops of a broadcast are ``full``, of a matmul ``2 full``; copies
    and the memory term only add). Circuit steps have no such bound. The search skips pairs by it.
    """
    rate, threshold, alloc = model.flop_rate, model.alloc_threshold, model.alloc_bandwidth
    overhead = model.op_overhead * rate
    per_entry = rate * itemsize / model.bandwidth
    per_fresh = rate * itemsize / alloc

    def floor(a, b, shared, grads):
        a, b, shared = (np.asarray(v, dtype=np.float64) for v in (a, b, shared))
        full = a * b / shared
        c = full / shared
        bound = (1 + np.asarray(grads)) * (overhead + np.maximum(full, (a + b + c) * per_entry))
        bound = bound + np.where(c * itemsize >= threshold, c * per_fresh, 0.0)
        return bound * (1 - COST_SLACK)  # float rounding (sizes as floats) must never lift it above the exact cost

    return floor


def circuit_cost(model: CostModel, rows: int, width: int, passes: int, chunk: int, grad_state: bool,
                 grad_gates: bool, itemsize: int = 4) -> StepCost:
    """Cost of applying a renormalized node's circuit to ``rows`` states of length ``width`` (N).

    Each of the ``passes`` is one batched matmul of a ``chunk x chunk`` gate block over the state:
    ``2 * rows * width * chunk`` flops; autograd keeps every pass's input state when the gates
    need gradients.
    """
    state = rows * width
    flops = 2 * state * chunk * passes
    per_pass = model.op_seconds(2 * state * chunk, 2 * state * itemsize, state * itemsize, (chunk, rows))
    grads = int(grad_state) + int(grad_gates)
    time = passes * per_pass * (1 + grads)
    saved = state * itemsize * passes * int(grad_gates)
    return StepCost(flops, flops * grads, saved, state * itemsize * passes, state * itemsize,
                    passes * (1 + grads), time)
