"""The search entry points: equal to brute force on small networks; path helpers; cotengra beyond the exact limit."""

import functools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from search_helpers import random_problem

from tn_peft.planner import CostModel, Problem
from tn_peft.planner.cost.scorer import Scorer
from tn_peft.planner.search import (
    exact_path,
    exhaustive_path,
    flops_path,
    hyper_path,
    linear_to_ssa,
    tree_to_ssa,
)
from tn_peft.graph.spec import load_graph
from tn_peft.testing import networks

MODEL = CostModel()


def brute_force(problem: Problem, model: CostModel) -> float:
    """Minimum over every sequence of pairwise merges, memoized on the set of current tensors."""
    scorer = Scorer(problem, model)

    @functools.cache
    def best(state: frozenset) -> float:
        if len(state) == 1:
            return 0.0
        items = sorted(state)
        out = math.inf
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i], items[j]
                rest = state - {a, b} | {a | b}
                out = min(out, scorer.objective(a, b) + best(rest))
        return out

    return best(frozenset(1 << i for i in range(len(problem.operands))))


@settings(max_examples=12)
@given(case=networks(max_nodes=6, max_size=4), tokens=st.sampled_from([None, 1, 40]))
def test_plan_search_equals_brute_force_up_to_8_tensors(case, tokens):
    net, n_in, n_out = case
    problem = Problem.from_network(net, n_in, n_out, tokens=tokens)
    assert len(problem.operands) <= 8
    _, cost = exact_path(problem, MODEL)
    assert cost == pytest.approx(brute_force(problem, MODEL), rel=1e-12)


def test_exhaustive_tree_is_a_valid_path():
    problem = random_problem(5, random.Random(3), tokens=8)
    path, cost = exhaustive_path(problem, MODEL)
    assert len(path) == len(problem.operands) - 1
    assert Scorer(problem, MODEL).path_cost(path) == pytest.approx(cost)


def test_hyper_path_for_large_networks():
    problem = Problem.from_network(load_graph("tt", cores=24, rank=2), 2**24, 2**24)
    path, cost = hyper_path(problem, MODEL, max_repeats=4)
    assert len(path) == len(problem.operands) - 1
    assert math.isfinite(cost)


def test_path_helpers():
    assert linear_to_ssa([(1, 2), (0, 1)], 3) == [(1, 2), (0, 3)]
    assert linear_to_ssa([(0, 1, 2)], 3) == [(0, 1), (3, 2)]
    assert tree_to_ssa(((0,), ((1,), (2,))), 3) == [(1, 2), (0, 3)]
    problem = Problem.from_network(load_graph("lora"), 32, 16, tokens=4)
    assert len(flops_path(problem, "greedy")) == 2


def test_large_chains_stay_exact_and_large_tangles_go_to_cotengra(monkeypatch):
    from tn_peft.planner.search import ccp_path, exact, flops_path

    chain = Problem.from_network(load_graph("tt", cores=30, rank=8), 2**30, 2**30)  # 30 operands
    expected = ccp_path(chain, MODEL)[1]

    def no_hyper(*args, **kwargs):
        raise AssertionError("a 30-core chain should be planned exactly")

    monkeypatch.setattr(exact, "hyper_path", no_hyper)
    assert exact_path(chain, MODEL)[1] == pytest.approx(expected, rel=1e-12)
    monkeypatch.undo()
    called = []

    def hyper(problem, model, gated=frozenset()):
        called.append(len(problem.operands))
        return flops_path(problem, "greedy"), 0.0

    monkeypatch.setattr(exact, "hyper_path", hyper)
    monkeypatch.setattr(exact, "LARGE_BUDGETS", (10, 10))  # both subset DPs run over at once
    exact_path(random_problem(25, random.Random(5), tokens=8), MODEL)
    exact_path(Problem.from_network(load_graph("tt", cores=70, rank=2), 2**70, 2**70), MODEL)  # > 63 operands
    assert called == [26, 70]


def test_searches_are_picked_by_name():
    from tn_peft.planner.search import SEARCHES, search_for

    assert search_for("auto") is exact_path and search_for("hyper") is hyper_path
    problem = Problem.from_network(load_graph("tt", cores=4, rank=4), 256, 256, tokens=8)
    for name, search in SEARCHES.items():  # one signature: (problem, model, circuit operands) -> (path, objective)
        path, cost = search(problem, MODEL, frozenset())
        assert len(path) == len(problem.operands) - 1
        assert cost == pytest.approx(Scorer(problem, MODEL).path_cost(path), rel=1e-12), name
    assert search_for("greedy")(problem, MODEL)[0] == flops_path(problem, "greedy")


def test_an_unknown_search_names_the_known_ones():
    from tn_peft.planner import make_plan
    from tn_peft.planner.search import SEARCHES, search_for

    with pytest.raises(ValueError, match="unknown search 'fastest'; known searches: auto, hyper") as info:
        search_for("fastest")
    assert all(name in str(info.value) for name in SEARCHES)
    problem = Problem.from_network(load_graph("lora"), 64, 64, tokens=4)
    for name in ("fastest", "ccp", "hub"):  # the exact searches' parts are not planner searches
        with pytest.raises(ValueError, match=f"optimize='{name}' is not a planner search; use one of "
                                             "auto, hyper, greedy, optimal, dp"):
            make_plan(problem, optimize=name)


def test_flop_searches_hand_gated_trees_to_the_exact_search():
    """opt_einsum's trees know no circuits: asked for a tree applying a circuit gate by gate, every FLOP
    search gives the exact search's."""
    from tn_peft.planner.search import FLOP_SEARCHES, search_for

    problem = load_graph("quantum_peft", layers=1).build(64, 64).problem.with_tokens(8)
    gated = frozenset(i for i, op in enumerate(problem.operands) if op.kind == "circuit")
    assert len(gated) == 2
    for name in FLOP_SEARCHES:
        assert search_for(name)(problem, MODEL, gated) == exact_path(problem, MODEL, gated)
