"""Token-aware plan families: breakpoints in T computed once, per-call dispatch by lookup.

The best tree depends on the token count T (``x @ dW^T`` for small T contracts into x; for large T
it may pay to build dW first, or to contract in another order). A :class:`PlanFamily` plans one
layer shape at T = 1, 4, 16, ... (``GRID_RATIO``) up to ``max_tokens``; where two neighbouring grid
points disagree it bisects (geometrically, to ``BREAK_PRECISION``) for the switch point. Costs are
piecewise linear in T, so a tree optimal at both ends of an interval is optimal inside it.

Per call, :meth:`PlanFamily.select` is a dict lookup (``T -> (compiled program, gated nodes)``),
falling back to a scan of the breakpoints the first time a T is seen: microseconds, never a re-plan.

Under ``torch.compile`` the dispatch is traced too (no second code path, no graph break with
``fullgraph=True``): every plan's program is compiled when the family is built, so a trace only reads
plain lists; the breakpoints are scanned by a plain loop (dynamo cannot trace ``bisect``) and the
``T`` cache is neither read nor written. With static shapes T is a Python int and the loop runs at
trace time. With dynamic shapes T is symbolic: the loop compares it with the breakpoints, so the
trace takes the plan of the T it was traced with (its hint) and dynamo guards on that plan's T range;
a T outside the range recompiles with the plan for its own range, never runs a plan made for another T.
Planning itself (the tree search) never runs inside a trace: see :meth:`tn_peft.adapter.adapter.Adapter.apply`.

    family = family_for(problem)             # cached by problem structure, sizes, grads, dtype
    y = family(x, *node_tensors)             # x: (..., in) -> (..., out)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ...errors import ShapeError
from ..choose import make_plan
from ..cost import CostModel
from ..plan import Plan
from ..problem import Problem

GRID_RATIO = 4
BREAK_PRECISION = 1.1
MAX_TOKENS = 1 << 20
#: Distinct token counts remembered per family (the fallback is a short scan, so this only saves ~1 us).
LOOKUP_LIMIT = 4096


class PlanFamily:
    """All plans of one problem over T in ``[1, max_tokens]`` (see module docstring)."""

    def __init__(self, problem: Problem, model: CostModel | None = None, *, initial: bool = False,
                 max_tokens: int = MAX_TOKENS, optimize: str = "auto"):
        if not problem.has_x:
            problem = problem.with_tokens(1)
        self.problem, self.model, self.initial, self.optimize = problem, model or CostModel.for_device("cpu"), initial, optimize
        self.max_tokens = int(max_tokens)
        self.planned = 0  # how many plans were searched to find the breakpoints
        grid = [1]
        while grid[-1] < self.max_tokens:
            grid.append(min(grid[-1] * GRID_RATIO, self.max_tokens))
        plans = [self._plan(t) for t in grid]
        self.breakpoints: list[int] = []
        self.plans: list[Plan] = [plans[0]]
        for k in range(1, len(grid)):
            self._segment(grid[k - 1], plans[k - 1], grid[k], plans[k])
        self._lookup: dict[int, tuple[Callable, frozenset[int]]] = {}
        self.in_features, self.out_features = problem.in_features, problem.out_features
        # On CUDA, chains x -> V -> (s) -> U and per-wire maps run as one fused Triton kernel instead
        # of the plan's source (both circuits of a Quantum-PEFT chain gate by gate: one kernel for the
        # chain); such a plan becomes plan.run_as(kernel), so self.plans describes what runs.
        self.fused, fused_gated = fused_kernels(problem, self.model, initial=initial)
        self.plans = [as_run(plan, self.fused, fused_gated) for plan in self.plans]
        # (program, gated nodes) per token range, compiled now: a torch.compile trace of the
        # dispatch then reads plain lists and never compiles generated source.
        self.entries: list[tuple[Callable, frozenset[int]]] = [(plan.program, plan.gated_nodes())
                                                               for plan in self.plans]

    def _plan(self, tokens: int) -> Plan:
        self.planned += 1
        return make_plan(self.problem.with_tokens(tokens), self.model, initial=self.initial, optimize=self.optimize)

    def _segment(self, lo: int, plan_lo: Plan, hi: int, plan_hi: Plan) -> None:
        """Extend the breakpoints over (lo, hi], where plan_lo is best at lo and plan_hi at hi."""
        if plan_lo.signature() == plan_hi.signature():
            return
        if hi - lo <= 1 or hi / lo <= BREAK_PRECISION:
            self.breakpoints.append(hi)
            self.plans.append(plan_hi)
            return
        mid = max(lo + 1, min(hi - 1, round(math.sqrt(lo * hi))))
        plan_mid = self._plan(mid)
        self._segment(lo, plan_lo, mid, plan_mid)  # leaves plan_mid's tree active at mid
        self._segment(mid, plan_mid, hi, plan_hi)

    # ---------------------------------------------------------------- lookup
    def index(self, tokens: int) -> int:
        """Which token range ``tokens`` falls in (a plain loop: traceable, and symbolic T gets guards)."""
        i = 0
        for start in self.breakpoints:
            if tokens < start:
                break
            i += 1
        return i

    def select(self, tokens: int) -> tuple[Callable, frozenset[int]]:
        """``(compiled program, gated nodes)`` for ``tokens`` rows: a dict lookup after the first call.

        The gated nodes are node positions (0-based, operand order without x) the program applies
        gate by gate: the caller passes those node modules instead of their tensors. Under
        ``torch.compile`` the cache is skipped (a trace must not mutate it, and a symbolic T is no
        dict key): the scan of the breakpoints is traced instead.
        """
        if torch.compiler.is_compiling():
            return self.entries[self.index(tokens)]
        entry = self._lookup.get(tokens)
        if entry is None:
            entry = self.entries[self.index(tokens)]
            if len(self._lookup) < LOOKUP_LIMIT:
                self._lookup[tokens] = entry
        return entry

    def plan_for(self, tokens: int) -> Plan:
        """The plan that runs for ``tokens`` rows (fused kernels recorded: :meth:`Plan.run_as`)."""
        return self.plans[self.index(tokens)]

    def program_for(self, tokens: int) -> Callable:
        """The compiled program for ``tokens`` rows (see :meth:`select`)."""
        return self.select(tokens)[0]

    def __call__(self, x: torch.Tensor, *tensors: Any) -> torch.Tensor:
        """``x @ dW^T`` for x of shape ``(..., in)``; tensors in operand order (then theta_0's).

        For a circuit operand the caller may pass its node module instead of its tensor; a plan that
        applies that circuit gate by gate needs the module (see :meth:`select`), and says so.
        """
        n = self.in_features
        if x.shape[-1] != n:
            raise ShapeError(f"adapter {self.problem.name!r} takes inputs with last dimension {n}, "
                             f"got shape {tuple(x.shape)}")
        flat = x.reshape(-1, n)
        program, gated = self.select(flat.shape[0])
        for i in gated:
            if isinstance(tensors[i], torch.Tensor):
                raise ShapeError(f"the plan for {flat.shape[0]} tokens applies node {self.problem.operands[i + 1].name!r} "
                                 "gate by gate: pass its node module, not its tensor (Adapter.apply does)")
        y = program(flat, *tensors)
        return y.reshape(*x.shape[:-1], self.out_features)

    def describe(self) -> list[str]:
        """One line per token range: the range and the plan's decisions."""
        out = []
        starts = [1] + self.breakpoints
        ends = [b - 1 for b in self.breakpoints] + [self.max_tokens]
        for lo, hi, plan in zip(starts, ends, self.plans):
            out.append(f"T {lo}..{hi}: " + "; ".join(plan.decisions))
        return out


_FAMILIES: dict[tuple, PlanFamily] = {}
_DW_PLANS: dict[tuple, Plan] = {}
#: Families kept per process (one per layer shape x grad pattern x dtype x device kind).
CACHE_LIMIT = 512


def fused_kernels(problem: Problem, model: CostModel, *, initial: bool = False
                  ) -> tuple[Callable | None, tuple[Callable, frozenset[int]] | None]:
    """The fused Triton programs that may replace ``problem``'s plans on ``model``'s device:
    ``(chain or per-wire program, (both-circuits program, its gated nodes))``, each None where none
    applies (any device but CUDA, no triton, delta networks; :mod:`.fused` decides the rest)."""
    if model.name != "cuda" or initial or not problem.has_x:
        return None, None
    from . import fused, triton_kernels

    if not triton_kernels.available():
        return None, None
    return fused.fused_program(problem), fused.fused_gated_program(problem)


def as_run(plan: Plan, fused: Callable | None, fused_gated: tuple[Callable, frozenset[int]] | None) -> Plan:
    """``plan`` as it runs: :meth:`Plan.run_as` the fused program that replaces it, else itself.
    The chain program replaces a plan with no circuit gate by gate; the both-circuits program one
    that applies exactly its two circuits gate by gate."""
    gated = plan.gated_nodes()
    if fused is not None and not gated:
        return plan.run_as(fused)
    if fused_gated is not None and gated == fused_gated[1]:
        return plan.run_as(fused_gated[0])
    return plan


def running_plan(problem: Problem, model: CostModel | None = None, *, initial: bool = False,
                 optimize: str = "auto") -> Plan:
    """The plan for ``problem`` at its own token count, as it runs on ``model``'s device (fused
    kernels recorded, :func:`as_run`)."""
    model = model or CostModel.for_device("cpu")
    plan = make_plan(problem, model, initial=initial, optimize=optimize)
    return as_run(plan, *fused_kernels(problem, model, initial=initial))


def family_for(problem: Problem, model: CostModel | None = None, *, initial: bool = False) -> PlanFamily:
    """The cached :class:`PlanFamily` of ``problem`` (its token count is ignored)."""
    model = model or CostModel.for_device("cpu")
    key = (problem.key(with_tokens=False), model, initial)
    return _cached(_FAMILIES, key, lambda: PlanFamily(problem, model, initial=initial))


def dw_plan_for(problem: Problem, model: CostModel | None = None) -> Plan:
    """The cached plan building dW itself (no activations; a delta network's theta_0 part is the
    adapter's cached ``initial_dense``)."""
    model = model or CostModel.for_device("cpu")
    problem = problem.without_x()
    return _cached(_DW_PLANS, (problem.key(), model), lambda: make_plan(problem, model))


def _cached(cache: dict, key: tuple, make):
    """``cache[key]``, made on first use; a full cache (CACHE_LIMIT entries) starts over."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        value = cache[key] = make()
    return value


def clear_caches() -> None:
    """Forget every cached family and dW plan (e.g. after changing the default cost model)."""
    _FAMILIES.clear()
    _DW_PLANS.clear()
