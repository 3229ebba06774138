"""cotengra's hyper-optimizer scoring its trees with our objective: for networks the exact searches
cannot finish (not exact)."""

from __future__ import annotations

import math

from ..cost import CostModel
from ..cost.scorer import Scorer
from ..problem import Problem
from .base import einsum_inputs, linear_to_ssa
from .flops import flops_path


def hyper_path(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
               max_repeats: int = 64) -> tuple[list[tuple[int, int]], float]:
    """cotengra's hyper-optimizer (greedy family) scored with our objective (for large networks)."""
    import cotengra as ctg

    scorer = Scorer(problem, model, gated)
    inputs, output, sizes = einsum_inputs(problem)

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
