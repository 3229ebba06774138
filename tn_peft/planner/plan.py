"""``Plan``: a contraction tree plus the decisions taken, its predicted costs, and its program.

    plan = make_plan(Problem.from_network(net, 4096, 4096, tokens=1024))   # tn_peft.planner.choose
    plan.flops(), plan.backward_flops(), plan.saved_bytes(), plan.peak_bytes()
    print(plan.source())          # readable straight-line torch code, compiled once
    y = plan(x, *node_tensors)    # y = x @ dW^T  (or dW itself for a plan without x)

Decisions recorded in ``plan.decisions``: materialize dW then one matmul, or contract into x; for
renormalized nodes (circuits) the dense matrix or gate by gate on the activations; diagonal nodes
applied as scalings; for ``delta`` networks (QuanTA: ``T(theta) - T(theta_0)``) the difference taken
of two dense dW, or of two outputs. The program's source comes from :mod:`.lower`; it runs in
:mod:`.runtime.namespace`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ShapeError
from .cost import CostModel, StepCost
from .cost.scorer import Scorer
from .emit import compile_source
from .lower import lower
from .problem import TOKENS, Problem
from .runtime.namespace import NAMESPACE


@dataclass
class Branch:
    """One tree over one problem: SSA ``path``, circuit operands applied gate by gate, step costs."""

    problem: Problem
    path: list[tuple[int, int]]
    gated: frozenset[int] = frozenset()
    steps: list[StepCost] = field(default_factory=list)
    objective: float = 0.0
    widen: bool = False   # thin node matrices laid out thin side first before meeting x (see emit)

    def signature(self) -> tuple:
        return (tuple(self.path), tuple(sorted(self.gated)), self.widen)

    def subsets(self) -> list[int]:
        """The operands (bitmaps) behind every SSA id: the operands, then each step's union."""
        out = [1 << i for i in range(len(self.problem.operands))]
        for i, j in self.path:
            out.append(out[i] | out[j])
        return out


class Plan:
    """The central object of the engine (see module docstring). Build with :func:`make_plan`."""

    def __init__(self, problem: Problem, model: CostModel, branches: list[Branch], *, delta: str | None = None,
                 initial: Problem | None = None, method: str = "optimal"):
        self.problem, self.model, self.branches = problem, model, branches
        self.delta, self.initial, self.method = delta, initial, method
        self._source, self.emitted = lower(problem, model, branches, delta=delta, initial=initial)
        self._program: Callable | None = None
        self.kernel: str | None = None   # a fused kernel that runs instead of the source (run_as)
        self.notes: tuple[str, ...] = ()  # decisions taken after planning (with_note)

    @property
    def program(self) -> Callable:
        """The generated source compiled (once, on first use) into a function; or the fused kernel
        program this plan runs as (:meth:`run_as`)."""
        if self._program is None:
            self._program = compile_source(self._source, self.problem.name, NAMESPACE)
        return self._program

    # ---------------------------------------------------------------- costs
    def cost(self) -> StepCost:
        """Predicted costs of the emitted program (see :class:`~tn_peft.planner.cost.StepCost`)."""
        ops = self.emitted.ops
        return StepCost(sum(o.flops for o in ops), sum(o.backward_flops for o in ops), self.saved_bytes(),
                        self.write(), self.size(), len(ops), sum(o.time for o in ops))

    def flops(self) -> float:
        """Forward FLOPs (a multiply-add counts 2)."""
        return self.cost().flops

    def backward_flops(self) -> float:
        """FLOPs of the backward pass for the operands that need gradients."""
        return self.cost().backward_flops

    def predicted_time(self) -> float:
        """Predicted seconds for forward + backward under the cost model."""
        return self.cost().time

    def objective(self) -> float:
        """``(time + memory_weight * saved) * flop_rate`` of the emitted program: what plans are ranked by."""
        return self.cost().objective(self.model)

    def saved_bytes(self) -> int:
        """Bytes autograd keeps for backward: x and intermediates (node tensors excluded), by storage."""
        saved = {s for op in self.emitted.ops for s in op.saves if s in self.emitted.counted}
        return sum(self.emitted.storage_bytes[s] for s in saved)

    def write(self) -> int:
        """Bytes of every new tensor the forward pass makes."""
        return sum(op.out_bytes for op in self.emitted.ops)

    def size(self) -> int:
        """Bytes of the largest tensor the forward pass makes."""
        return max((op.out_bytes for op in self.emitted.ops), default=0)

    def peak_bytes(self) -> int:
        """Predicted peak of memory the program holds beyond its inputs, forward or backward."""
        ops = self.emitted.ops
        saved = {s for op in ops for s in op.saves}
        last_read: dict[str, int] = {}
        for k, op in enumerate(ops):
            for s in op.reads:
                last_read[s] = k
        live: dict[str, int] = {}
        peak = 0
        for k, op in enumerate(ops):
            if op.out is not None:
                live[op.out] = op.out_bytes
            peak = max(peak, sum(live.values()))
            for s in op.reads:
                if last_read.get(s) == k and s not in saved and s in live:
                    del live[s]
        kept = sum(self.emitted.storage_bytes[s] for s in saved if s in self.emitted.counted or s in live)
        out_bytes = ops[-1].out_bytes if ops else 0
        grads = max((sum(self.emitted.storage_bytes.get(s, 0) for s in op.reads) for op in ops), default=0)
        return int(max(peak, kept + out_bytes + grads))

    # ------------------------------------------------------------- decisions
    @property
    def decisions(self) -> list[str]:
        """Human-readable decisions the plan took (see module docstring)."""
        out = []
        main = self.branches[0]
        problem = main.problem
        if self.delta == "dense" and self.problem.has_x:
            out.append("materialize dW, then one matmul with x")
        elif problem.has_x:
            root = main.path[-1] if main.path else (0,)
            n = len(problem.operands)
            subsets = main.subsets()
            nodes_only = subsets[max(root)] if main.path else 0
            other = subsets[min(root)] if main.path else 0
            if {nodes_only, other} & {1} and (nodes_only | other) == (1 << n) - 1:
                out.append("materialize dW, then one matmul with x")
            else:
                largest = max((op.out_bytes for op in self.emitted.ops if op.kind != "scale"), default=0)
                out.append(f"contract into x (largest intermediate {_fmt_bytes(largest)})")
        else:
            out.append("build dW (no activations)")
        for i, op in enumerate(problem.operands):
            if op.kind == "diagonal":
                out.append(f"diagonal {op.name}: applied as a scaling (broadcast multiply)")
            if op.kind == "circuit":
                how = "gate by gate on the activations" if i in main.gated else "dense Stiefel matrix"
                out.append(f"circuit {op.name}: {how}")
        if self.delta == "dense":
            out.append("delta: dW(theta) - dW(theta_0) built densely, then one matmul")
        elif self.delta == "outputs":
            out.append("delta: both networks contracted into x, outputs subtracted")
        thin = self.emitted.widened
        if thin:
            out.append(f"thin node matrices {', '.join(thin)} laid out thin side first (skinny-GEMM layout)")
        if problem.scale != 1.0:
            out.append(f"scale {problem.scale:g} folded into the smallest tensor")
        if self.kernel is not None:
            out.append(f"runs as the fused Triton kernel {self.kernel!r} (one launch; the source is the "
                       "torch program it replaces)")
        return out + list(self.notes)

    def tree(self) -> str:
        """The contraction tree as indented text, one line per step with its legs and costs."""
        lines = []
        for b, branch in enumerate(self.branches):
            if len(self.branches) > 1:
                lines.append("theta:" if b == 0 else "theta_0:")
            names = branch.problem.names
            scorer = Scorer(branch.problem, self.model, branch.gated)
            labels = list(names)
            subsets = branch.subsets()
            for k, (i, j) in enumerate(branch.path):
                s = subsets[len(names) + k]
                legs = ",".join("T" if leg == TOKENS else leg for leg in sorted(scorer.legs_of(s)))
                cost = branch.steps[k] if k < len(branch.steps) else None
                extra = f"  flops {_fmt(cost.flops)}  saved {_fmt_bytes(cost.saved)}" if cost else ""
                lines.append(f"  s{k}: {labels[i]} . {labels[j]} -> [{legs}]{extra}")
                labels.append(f"s{k}")
        return "\n".join(lines)

    def source(self) -> str:
        """The generated Python source of the program (compiled once into ``self.program``); when the
        plan runs as a fused kernel (:meth:`run_as`), a comment above it says so."""
        if self.kernel is None:
            return self._source
        return (f"# runs as the fused Triton kernel {self.kernel!r} (tn_peft.planner.runtime.triton_kernels);\n"
                f"# this torch program is the contraction it replaces (same result, same tree costs)\n"
                + self._source)

    def run_as(self, program: Callable) -> Plan:
        """A copy of this plan whose program is ``program``, a fused kernel (:mod:`.runtime.fused`; its name in
        ``program.kernel``): recorded in :attr:`decisions` and :meth:`source`. Same tree and costs."""
        fused = copy.copy(self)
        fused._program, fused.kernel = program, getattr(program, "kernel", "fused")
        return fused

    def with_note(self, note: str) -> Plan:
        """A copy of this plan with one more line in :attr:`decisions` (same tree, costs and program)."""
        noted = copy.copy(self)
        noted.notes = (*self.notes, note)
        return noted

    def signature(self) -> tuple:
        return (tuple(b.signature() for b in self.branches), self.delta)

    def gated_nodes(self) -> frozenset[int]:
        """Node positions (operand order, x excluded) whose circuits the program applies gate by gate;
        the program takes those node modules (or their ``as_network()``) instead of tensors."""
        main = self.branches[0]
        shift = 1 if main.problem.has_x else 0
        return frozenset(i - shift for i in main.gated)

    # ---------------------------------------------------------------- running
    def __call__(self, x: torch.Tensor | None = None, *tensors: Any) -> torch.Tensor:
        """Run the program: ``x @ dW^T`` for x of shape ``(..., in)`` (or dW when planned without x)."""
        if not self.problem.has_x:
            if x is not None:
                tensors = (x,) + tensors
            self._check(tensors)
            return self.program(*tensors)
        self._check(tensors)
        n = self.problem.in_features
        if x.shape[-1] != n:
            raise ShapeError(f"plan {self.problem.name!r} takes inputs with last dimension {n}, "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        y = self.program(x.reshape(-1, n), *tensors)
        return y.reshape(*lead, self.problem.out_features)

    def _check(self, tensors: Sequence[Any]) -> None:
        """ShapeError unless ``tensors`` are the node tensors (then theta_0's) in operand order."""
        nodes = [op for op in self.problem.operands if op.kind != "x"]
        expected = len(nodes) * (2 if self.initial is not None else 1)
        if len(tensors) != expected:
            names = ", ".join(op.name for op in nodes)
            raise ShapeError(f"plan {self.problem.name!r} takes {expected} node tensors ({names}"
                             f"{', then theta_0' + chr(39) + 's' if self.initial is not None else ''}), got {len(tensors)}")
        sizes = self.problem.size_dict
        gated = self.gated_nodes()
        for k, t in enumerate(tensors):
            op = nodes[k % len(nodes)]
            if k % len(nodes) in gated or not isinstance(t, torch.Tensor):
                continue
            shape = tuple(sizes[leg] for leg in op.legs)
            if tuple(t.shape) != shape:
                legs = ", ".join(f"{leg}={sizes[leg]}" for leg in op.legs)
                raise ShapeError(f"plan {self.problem.name!r}: node {op.name!r} must have shape {shape} "
                                 f"(legs {legs}), got {tuple(t.shape)}")

    def to_dict(self) -> dict:
        return {"problem": self.problem.name, "tokens": self.problem.tokens, "method": self.method,
                "decisions": self.decisions, "flops": self.flops(), "backward_flops": self.backward_flops(),
                "saved_bytes": self.saved_bytes(), "peak_bytes": self.peak_bytes(),
                "predicted_time_s": self.predicted_time(), "paths": [b.path for b in self.branches]}

    def __repr__(self) -> str:
        return (f"Plan({self.problem.name!r}, T={self.problem.tokens}, flops={_fmt(self.flops())}, "
                f"saved={_fmt_bytes(self.saved_bytes())}, decisions={self.decisions})")


def _fmt(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def _fmt_bytes(x: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= size:
            return f"{x / size:.3g} {unit}"
    return f"{int(x)} B"
