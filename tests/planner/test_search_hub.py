"""The hub search (tn_peft/planner/search/hub.py) is exact: equal to opt_einsum's DP run with our cost."""

import random

import pytest
from search_helpers import random_problem

from tn_peft.planner import CostModel, Problem
from tn_peft.planner.cost.scorer import Scorer
from tn_peft.planner.search import exact, exact_path, hub_path, oe_dp_path
from tn_peft.planner.search.base import find_hub
from tn_peft.graph.spec import load_graph

MODEL = CostModel()


@pytest.mark.parametrize("seed", range(12))
def test_hub_search_equals_opt_einsum_dp(seed):
    rng = random.Random(100 + seed)
    problem = random_problem(rng.randint(9, 13), rng, tokens=rng.choice([None, 3, 64]), hub=seed % 3 != 0)
    path, cost = hub_path(problem, MODEL)  # exact whichever operand is the hub
    _, expected = oe_dp_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert Scorer(problem, MODEL).path_cost(path) == pytest.approx(cost, rel=1e-12)
    assert len(path) == len(problem.operands) - 1
    _, auto = exact_path(problem, MODEL)
    assert auto == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_hub_search_on_tt_with_x_matches_opt_einsum_dp(tokens):
    problem = Problem.from_network(load_graph("tt", cores=11, rank=8), 2**11, 2**11, tokens=tokens)
    assert find_hub(problem) == 0  # x touches every core
    _, cost = hub_path(problem, MODEL)
    _, expected = oe_dp_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)


def test_find_hub_is_none_on_a_chain():
    assert find_hub(Problem.from_network(load_graph("tt", cores=12, rank=4), 2**12, 2**12)) is None


def test_twenty_cores_plus_x_is_exact_within_the_hub_search(monkeypatch):
    problem = Problem.from_network(load_graph("tt", cores=20, rank=8), 2**20, 2**20, tokens=64)
    _, expected = oe_dp_path(problem, MODEL)

    def no_fallback(*args, **kwargs):
        raise AssertionError("the hub search ran over budget and fell back to opt_einsum's DP")

    monkeypatch.setattr(exact, "oe_dp_path", no_fallback)
    monkeypatch.setattr(exact, "ccp_path", no_fallback)
    _, cost = exact.exact_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)


def test_one_operand():
    from tn_peft.planner import Operand

    problem = Problem.from_operands([Operand("A", ("o", "i"))], {"o": 3, "i": 4}, ["o"], ["i"])
    assert hub_path(problem, MODEL) == ([], 0.0)


def test_hub_search_state_after_a_run():
    from tn_peft.planner.search.base import Disconnected, OverBudget
    from tn_peft.planner.search.hub import HubSearch

    problem = Problem.from_network(load_graph("tt", cores=8, rank=4), 2**8, 2**8, tokens=64)
    search = HubSearch(problem, MODEL)
    assert search.order[-1] == find_hub(problem) == 0  # the hub comes last: its bit is the highest
    path, cost = search.run()
    assert (path, cost) == hub_path(problem, MODEL)
    assert search.dist[search.full] == pytest.approx(cost, rel=1e-12)  # the A* reached everything at that cost
    assert 0 < search.looked <= search.budget
    with pytest.raises(OverBudget):
        HubSearch(problem, MODEL, budget=1).run()
    from tn_peft.planner import Operand

    apart = Problem.from_operands([Operand("A", ("o", "r")), Operand("B", ("s", "i")), Operand("C", ("r", "s", "t")),
                                  Operand("D", ("t",)), Operand("E", ("u",))], {"o": 2, "r": 2, "s": 2, "i": 2, "t": 2,
                                                                                 "u": 2}, ["o", "u"], ["i"])
    with pytest.raises(Disconnected):
        HubSearch(apart, MODEL)
