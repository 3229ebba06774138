"""The cost model: FLOPs, bytes moved, what autograd keeps, and a predicted time, per pairwise step.

Every step of a plan is a pairwise contraction ``C = contract(A, B)`` done as one matmul (or a
broadcast multiply when nothing is summed: diagonal scalings, outer products). For such a step

- forward flops: ``2 * prod(legs of A | B)`` (``prod`` for a broadcast multiply);
- backward flops: the same again for each of A, B that needs a gradient (``dA = dC . B``);
- saved for backward: autograd keeps ``A`` when B needs a gradient and ``B`` when A does
  (``mm``/``bmm``/``mul`` save exactly the inputs the other gradient needs); node tensors are
  alive anyway, so only the activations ``x`` and intermediates count;
- predicted time: ``ops * overhead + max(flops / (rate * eff), bytes / bandwidth) + fresh / alloc``,
  forward and backward together, where ``eff = d / (d + half_dim)`` for the smallest matmul
  dimension ``d`` and ``fresh`` counts bytes of new tensors at least ``alloc_threshold`` big (on
  this kind of CPU machine every such allocation page-faults anew: about 1 GB/s).

The objective the search minimizes is ``time + memory_weight * saved_bytes``, in units of flops at
the profile's peak rate (``objective = seconds * flop_rate``): time first, memory as a tie-break.
Costs are additive over steps, so a subset dynamic programme under this cost is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

import numpy as np

from .problem import COST_SLACK


@dataclass(frozen=True)
class CostModel:
    """Constants of one device kind. ``time = ops*overhead + max(compute, memory) + fresh/alloc``.

    flop_rate: peak matmul flop/s. half_dim: matmul efficiency ``d/(d+half_dim)`` of its smallest
    dimension. bandwidth: bytes/s of reads and writes. alloc_threshold / alloc_bandwidth: new
    tensors of at least that many bytes cost an extra ``bytes / alloc_bandwidth`` (first touch).
    op_overhead: seconds per torch op dispatched (forward and backward alike). memory_weight:
    seconds charged per byte kept for backward (a tie-break between plans of equal time).
    copy_operands: charge a permute copy for intermediate operands with 3+ legs (in the search).
    copy_half_run: a permute copy runs at ``bandwidth * run / (run + copy_half_run)`` for a
    contiguous inner run of ``run`` elements.
    """

    name: str = "cpu"
    flop_rate: float = 60e9
    half_dim: float = 40.0
    bandwidth: float = 25e9
    alloc_threshold: int = 32 * 2**20
    alloc_bandwidth: float = 1.1e9
    op_overhead: float = 4e-6
    memory_weight: float = 2e-12
    copy_operands: bool = True
    copy_half_run: float = 10.0

    @classmethod
    def for_device(cls, device: str = "cpu", threads: int | None = None) -> CostModel:
        """The default profile of a device kind: ``"cpu"`` or ``"cuda"``.

        CPU constants were measured on one core of the 2-core AMD EPYC VM this project runs on
        (``tn_peft.planner.calibrate.calibrate()`` measures your machine). They do not follow
        torch's thread count unless ``threads`` is given (compute then scales with it, memory
        bandwidth up to two threads): plans, and so results bit for bit, stay the same whatever
        the thread setting. CUDA: an H100/H200-class GPU with a caching allocator (allocation is
        free); these constants are estimates, not measurements.
        """
        kind = str(device).split(":")[0]
        if kind == "cuda":
            return cls(name="cuda", flop_rate=4e14, half_dim=64.0, bandwidth=3e12, alloc_threshold=2**62,
                       alloc_bandwidth=math.inf, op_overhead=6e-6, memory_weight=1e-14, copy_half_run=4.0)
        base = cls()
        if threads is None or threads == 1:
            return base
        return base.with_(flop_rate=base.flop_rate * threads, bandwidth=base.bandwidth * min(threads, 2))

    def with_(self, **changes) -> CostModel:
        """A copy with some constants changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # ----------------------------------------------------------- primitives
    def efficiency(self, *dims: int) -> float:
        """Fraction of peak a matmul reaches: ``d / (d + half_dim)`` for its smallest dimension d."""
        d = min(dims) if dims else 1
        return d / (d + self.half_dim)

    def fresh_seconds(self, nbytes: float) -> float:
        """Extra time of allocating a new tensor of ``nbytes`` (first touch of fresh pages)."""
        return nbytes / self.alloc_bandwidth if nbytes >= self.alloc_threshold else 0.0

    def copy_seconds(self, nbytes: float, run: int) -> float:
        """A permute copy of ``nbytes`` whose contiguous inner run is ``run`` elements long."""
        rate = self.bandwidth * run / (run + self.copy_half_run)
        return self.op_overhead + 2 * nbytes / rate + self.fresh_seconds(nbytes)

    def op_seconds(self, flops: float, moved_bytes: float, fresh_bytes: float = 0.0, dims: Iterable[int] = ()) -> float:
        """Time of one op: overhead + max(compute, memory) + first-touch of its new output."""
        dims = tuple(dims)
        rate = self.flop_rate * (self.efficiency(*dims) if dims else 1.0)
        return self.op_overhead + max(flops / rate, moved_bytes / self.bandwidth) + self.fresh_seconds(fresh_bytes)


@dataclass
class StepCost:
    """Costs of one step (or a sum of steps): the vocabulary of :class:`~tn_peft.planner.plan.Plan`.

    ``flops`` forward, ``backward_flops``, ``saved`` bytes kept for backward, ``write`` bytes of new
    forward tensors, ``size`` the largest forward tensor in bytes, ``ops`` torch ops (forward +
    backward), ``time`` predicted seconds forward + backward.
    """

    flops: float = 0.0
    backward_flops: float = 0.0
    saved: float = 0.0
    write: float = 0.0
    size: float = 0.0
    ops: int = 0
    time: float = 0.0

    def __add__(self, other: StepCost) -> StepCost:
        return StepCost(self.flops + other.flops, self.backward_flops + other.backward_flops,
                        self.saved + other.saved, self.write + other.write, max(self.size, other.size),
                        self.ops + other.ops, self.time + other.time)

    def objective(self, model: CostModel) -> float:
        """``(time + memory_weight * saved) * flop_rate``: what the search minimizes, in flop units."""
        return (self.time + model.memory_weight * self.saved) * model.flop_rate


def pair_cost(model: CostModel, legs_a, legs_b, legs_out, sizes, *, grad_a: bool, grad_b: bool,
              count_a: bool = True, count_b: bool = True, copy_a: bool = False, copy_b: bool = False,
              itemsize: int = 4) -> StepCost:
    """Cost of ``C[legs_out] = contract(A[legs_a], B[legs_b])`` with autograd (see module docstring).

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
        return _broadcast_cost(model, a, b, c, full, grad_a, grad_b, count_a, count_b, itemsize)
    m = math.prod(sizes[leg] for leg in set(legs_a) - set(legs_b))
    n = math.prod(sizes[leg] for leg in set(legs_b) - set(legs_a))
    k = math.prod(sizes[leg] for leg in summed)
    return _matmul_cost(model, a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b, itemsize)


def _matmul_cost(model: CostModel, a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b,
                 copy_a, copy_b, itemsize) -> StepCost:
    return StepCost(*_matmul_terms(model, a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b,
                                   copy_a, copy_b, itemsize))


def _matmul_terms(model: CostModel, a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b,
                  copy_a, copy_b, itemsize) -> tuple:
    """StepCost fields of a matmul step as a tuple (inlined: this runs for every pair searched)."""
    flops = 2 * full
    d = min(m, n, k)
    compute = flops * (d + model.half_dim) / (d * model.flop_rate)
    moved = (a + b + c) * itemsize / model.bandwidth
    step = model.op_overhead + (max(moved, compute))
    threshold, alloc = model.alloc_threshold, model.alloc_bandwidth
    grads = int(grad_a) + int(grad_b)
    time = step * (1 + grads)
    for size, needed in ((c, True), (a, grad_a), (b, grad_b)):
        if needed and size * itemsize >= threshold:
            time += size * itemsize / alloc
    ops = 1 + grads
    for size, copy in ((a, copy_a), (b, copy_b)):
        if copy:  # permute + reshape: a copy forward, and its transpose backward
            one = model.copy_seconds(size * itemsize, 1)
            time += one * (1 + int(grads > 0))
            ops += 1 + int(grads > 0)
    saved = (a * count_a * grad_b + b * count_b * grad_a) * itemsize
    return flops, flops * grads, saved, c * itemsize, c * itemsize, ops, time


def matmul_objective(model: CostModel, itemsize: int):
    """``f(a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b)`` -> the objective
    ``(time + memory_weight * saved) * flop_rate`` of :func:`_matmul_terms`, the same arithmetic with
    the model's constants bound once (the exact search calls it for every pair it costs)."""
    half, rate, bandwidth, overhead = model.half_dim, model.flop_rate, model.bandwidth, model.op_overhead
    threshold, alloc, weight = model.alloc_threshold, model.alloc_bandwidth, model.memory_weight
    copy_rate = model.bandwidth * 1 / (1 + model.copy_half_run)

    def objective(a, b, c, full, m, n, k, grad_a, grad_b, count_a, count_b, copy_a, copy_b) -> float:
        flops = 2 * full
        d = min(m, n, k)
        compute = flops * (d + half) / (d * rate)
        moved = (a + b + c) * itemsize / bandwidth
        grads = int(grad_a) + int(grad_b)
        time = (overhead + (max(moved, compute))) * (1 + grads)
        if c * itemsize >= threshold:
            time += c * itemsize / alloc
        if grad_a and a * itemsize >= threshold:
            time += a * itemsize / alloc
        if grad_b and b * itemsize >= threshold:
            time += b * itemsize / alloc
        for size, copy in ((a, copy_a), (b, copy_b)):
            if copy:
                nbytes = size * itemsize
                one = overhead + 2 * nbytes / copy_rate + (nbytes / alloc if nbytes >= threshold else 0.0)
                time += one * (1 + int(grads > 0))
        saved = (a * count_a * grad_b + b * count_b * grad_a) * itemsize
        return (time + weight * saved) * rate

    return objective


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


def _broadcast_cost(model: CostModel, a, b, c, full, grad_a, grad_b, count_a, count_b, itemsize) -> StepCost:
    # C = A * B with broadcasting (diagonal scaling, outer product); dA = sum(dC * B), dB = sum(dC * A).
    flops = full
    time = model.op_seconds(flops, (a + b + c) * itemsize, c * itemsize)
    ops = 1
    back = 0
    for needed, size in ((grad_a, a), (grad_b, b)):
        if needed:
            reduce = size < full  # a broadcast input's gradient is summed back down: one more op
            time += model.op_seconds(full, (2 * full + size) * itemsize, full * itemsize if reduce else size * itemsize)
            ops += 1 + int(reduce)
            back += full + (full if reduce else 0)
    saved = (a * count_a * grad_b + b * count_b * grad_a) * itemsize
    return StepCost(flops, back, saved, c * itemsize, c * itemsize, ops, time)


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
