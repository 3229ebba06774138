"""tn_peft.planner.choose on its own: with no anchor margin the chosen program is never predicted worse
than the FLOP-optimal tree's (where that tree is a candidate), a large margin keeps the anchor, and the
FLOP-optimal path is a full contraction."""

from __future__ import annotations

import pytest

from tn_peft import load_graph
from tn_peft.planner import Problem, make_plan
from tn_peft.planner.choose import ANCHOR_LIMIT, flop_optimal_path, widen_for


@pytest.mark.parametrize("graph,args,shape,tokens", [("tt", {"cores": 3, "rank": 4}, (512, 512), 64),
                                                     ("svd", {}, (128, 64), 16), ("lotr", {}, (96, 64), 8)])
def test_margin_decides_between_the_best_program_and_the_flop_optimal_tree(graph, args, shape, tokens):
    problem = Problem.from_network(load_graph(graph, **args), *shape, tokens=tokens)
    assert 3 <= len(problem.operands) <= ANCHOR_LIMIT   # the anchor is a candidate
    free = make_plan(problem, anchor_margin=0.0)
    anchored = make_plan(problem, anchor_margin=1e9)
    default = make_plan(problem)
    assert free.objective() <= anchored.objective() * (1 + 1e-12)
    assert free.objective() <= default.objective() * (1 + 1e-12) <= anchored.objective() * (1 + 1e-12)


@pytest.mark.parametrize("graph", ["lora", "svd", "tt", "ttd", "quantum_peft"])
def test_flop_optimal_path_contracts_everything(graph):
    problem = Problem.from_network(load_graph(graph), 64, 64, tokens=4)
    assert isinstance(widen_for(problem), bool)
    path = flop_optimal_path(problem)
    assert len(path) == len(problem.operands) - 1
