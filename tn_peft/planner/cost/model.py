"""The cost model's constants (:class:`CostModel`, one device kind) and the costs it adds up (:class:`StepCost`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace


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
        return objective(model, self.time, self.saved)


def objective(model: CostModel, time, saved):
    """``(time + memory_weight * saved) * flop_rate``: the objective of a step's predicted seconds and
    saved bytes, in flop units (numbers or numpy arrays)."""
    return (time + model.memory_weight * saved) * model.flop_rate
