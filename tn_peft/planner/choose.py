"""Choosing a plan: the search's tree against the FLOP-optimal, greedy and dW-first trees.

:func:`make_plan` runs the exact search under the cost model, emits every candidate tree, ranks
them by the cost of their emitted programs (layout copies included) and keeps the FLOP-optimal
tree unless another is predicted ``ANCHOR_MARGIN`` better; for ``delta`` networks it also chooses
between subtracting two dense dW and subtracting two outputs.
"""

from __future__ import annotations

import functools
import itertools

from .cost import CostModel
from .cost.scorer import Scorer
from .plan import Branch, Plan
from .problem import Problem
from .search import FLOP_SEARCHES, PLANNER_SEARCHES, exact_path, flops_path, search_for


def search_branch(problem: Problem, model: CostModel, optimize: str = "auto") -> Branch:
    """The best tree for one problem, trying each circuit operand dense and gate by gate."""
    circuits = [i for i, op in enumerate(problem.operands) if op.kind == "circuit"]
    options = [frozenset()]
    if problem.has_x:
        options = [frozenset(c) for r in range(len(circuits) + 1) for c in itertools.combinations(circuits, r)]
    search = search_for(optimize)
    best: Branch | None = None
    for gated in options:
        path, _ = search(problem, model, gated)
        scorer = Scorer(problem, model, gated)
        steps = scorer.path_steps(path)
        if any(s is None for s in steps):
            continue
        objective = sum(s.objective(model) for s in steps)
        if best is None or objective < best.objective:
            best = Branch(problem, path, gated, steps, objective, widen=widen_for(problem))
    assert best is not None
    return best


#: From this many tokens on, thin node matrices meet the activations thin side first (emit.widen);
#: below it the extra copy is not paid back (measured on MKL: 1.2-1.8x slower at T = 1-4, even at 8, 1.1-1.4x faster at 16, 2x at 32+).
WIDEN_TOKENS = 12


def widen_for(problem: Problem) -> bool:
    return problem.has_x and (problem.tokens or 0) >= WIDEN_TOKENS


#: Candidate trees whose step costs exceed the search's optimum this many times are not emitted (on the
#: catalog the chosen plan's step cost is at most 1.11x the optimum; emission only adds layout copies).
CANDIDATE_LIMIT = 2.0
#: Deviate from the FLOP-optimal tree only when the model predicts at least this much gain.
ANCHOR_MARGIN = 0.10
#: Operand counts up to which the FLOP-optimal tree is searched as an anchor (it costs a second DP),
#: and opt_einsum's greedy tree is a candidate (beyond, the exact search's tree is the planner's).
ANCHOR_LIMIT = 12


#: A cost model that counts forward FLOPs only (the FLOP-optimal tree the plan is anchored on).
FLOPS_ONLY = CostModel(name="flops", flop_rate=1.0, half_dim=0.0, bandwidth=float("inf"), alloc_threshold=2**62,
                       op_overhead=0.0, memory_weight=0.0, copy_operands=False)


def flop_optimal_path(problem: Problem) -> list[tuple[int, int]]:
    """A tree of minimal forward FLOPs (our exact search with a FLOPs-only model; = opt_einsum's dp)."""
    path, _ = exact_path(problem.with_grads(False, x_grad=False), FLOPS_ONLY)
    return path


def dense_first_path(problem: Problem, model: CostModel) -> list[tuple[int, int]]:
    """The tree that builds dW from the nodes (its own best tree), then contracts x with it."""
    sub = _dw_path(problem.without_x(), model)
    n = len(problem.operands)
    path = [(i + 1, j + 1) for i, j in sub]  # x is operand 0: every id shifts by one
    return path + [(0, n + len(sub) - 1 if sub else 1)]


@functools.lru_cache(maxsize=256)
def _dw_path(problem: Problem, model: CostModel) -> tuple[tuple[int, int], ...]:
    """The best tree building dW: it does not depend on T, so a plan family searches it once."""
    return tuple(search_branch(problem, model).path)


def _branch(problem: Problem, model: CostModel, path: list[tuple[int, int]]) -> Branch:
    steps = Scorer(problem, model).path_steps(path)
    return Branch(problem, path, frozenset(), steps, sum(s.objective(model) for s in steps), widen=widen_for(problem))


def make_plan(problem: Problem, model: CostModel | None = None, *, initial: bool = False,
              optimize: str = "auto", anchor_margin: float = ANCHOR_MARGIN) -> Plan:
    """Plan ``problem`` under ``model`` (default: the CPU profile).

    ``optimize="auto"``: the exact optimum of the step-cost objective (:func:`~.search.exact_path`;
    cotengra's hyper-optimizer for large networks beyond the exact searches' budgets), then the
    candidates (that tree, dW-first, and up to ``ANCHOR_LIMIT`` operands the FLOP-optimal and greedy
    trees) are emitted and ranked by the cost of their emitted programs (layout copies included);
    the FLOP-optimal tree is kept unless another is predicted ``anchor_margin`` better.
    ``"hyper"``: cotengra's hyper-optimizer whatever the size.
    ``"greedy"`` / ``"optimal"`` / ``"dp"``: opt_einsum's FLOP-only trees, emitted by the same generator.
    Any other name is a ValueError naming these five (:data:`~.search.PLANNER_SEARCHES`).
    ``initial``: a ``delta`` network (QuanTA): the program also takes theta_0's tensors and returns
    the difference.
    """
    model = model or CostModel.for_device("cpu")
    problem.check()
    if optimize not in PLANNER_SEARCHES:
        raise ValueError(f"optimize={optimize!r} is not a planner search; use one of {', '.join(PLANNER_SEARCHES)}")
    if initial:
        return _delta_plan(problem, model, optimize)
    if optimize in FLOP_SEARCHES:
        return Plan(problem, model, [_branch(problem, model, flops_path(problem, optimize))], method=optimize)
    best = search_branch(problem, model, optimize)
    plans = {best.signature(): Plan(problem, model, [best], method=optimize)}
    if best.gated or len(problem.operands) < 3:
        return next(iter(plans.values()))
    anchor = None
    candidates = []
    limit = best.objective * CANDIDATE_LIMIT
    if problem.has_x:  # dW plans run once per step on small tensors: the search's tree is enough
        small = len(problem.operands) <= ANCHOR_LIMIT  # beyond, no greedy tree and no anchor
        if small:
            candidates.append(("greedy", flops_path(problem, "greedy")))
        if Scorer(problem, model).objective(1, (1 << len(problem.operands)) - 2) < limit:  # its last step alone
            candidates.append(("dense", dense_first_path(problem, model)))
        if small:
            candidates.append(("optimal", flop_optimal_path(problem)))
    for name, path in candidates:
        branch = _branch(problem, model, path)
        if any(step is None for step in branch.steps) or (name != "optimal" and branch.objective > limit):
            continue
        plan = plans.setdefault(branch.signature(), Plan(problem, model, [branch], method=optimize))
        if name == "optimal":
            anchor = plan
    chosen = min(plans.values(), key=Plan.objective)
    if anchor is not None and anchor.objective() <= chosen.objective() * (1 + anchor_margin):
        chosen = anchor
    return chosen


def _delta_plan(problem: Problem, model: CostModel, optimize: str) -> Plan:
    frozen = problem.with_grads(False)
    if not problem.has_x:
        return Plan(problem, model, [search_branch(problem, model, optimize),
                                     search_branch(frozen, model, optimize)], delta="dense", initial=frozen,
                    method=optimize)
    outputs = Plan(problem, model, [search_branch(problem, model, optimize),
                                    search_branch(frozen, model, optimize)], delta="outputs", initial=frozen,
                   method=optimize)
    dense = Plan(problem, model, [search_branch(problem.without_x(), model, optimize),
                                  search_branch(frozen.without_x(), model, optimize)], delta="dense",
                 initial=frozen, method=optimize)
    return dense if dense.objective() < outputs.objective() else outputs
