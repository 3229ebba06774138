"""The search is exact: equal to brute force on small networks, to opt_einsum's DP on larger ones."""

import functools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.planner import CostModel, Operand, Problem
from tn_peft.planner.search import (
    Scorer,
    ccp_path,
    exhaustive_path,
    find_hub,
    flops_path,
    hub_path,
    hyper_path,
    linear_to_ssa,
    oe_dp_path,
    optimal_path,
    tree_to_ssa,
)
from tn_peft.spec import load_graph
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


def random_problem(n: int, rng: random.Random, tokens=None, hub: bool = False) -> Problem:
    """A random connected network (a random tree plus a few extra bonds); ``hub``: operand 0 also
    shares a leg with every other operand (like x with the cores of a TT adapter)."""
    legs = [[] for _ in range(n)]
    sizes = {}

    def new(prefix):
        name = f"{prefix}{len(sizes)}"
        sizes[name] = rng.randint(2, 6)
        return name

    for i in range(1, n):
        leg = new("b")
        legs[i].append(leg)
        legs[rng.randrange(i)].append(leg)
        if hub and rng.random() < 0.9:
            leg = new("h")
            legs[0].append(leg)
            legs[i].append(leg)
    for _ in range(rng.randint(0, 3)):
        i, j = rng.sample(range(n), 2)
        leg = new("c")
        legs[i].append(leg)
        legs[j].append(leg)
    outs = [new("o") for _ in range(rng.randint(1, 2))]
    ins = [new("i") for _ in range(rng.randint(1, 2))]
    for leg in outs + ins:
        legs[rng.randrange(n)].append(leg)
    ops = [Operand(f"N{i}", tuple(legs[i]), "tensor", rng.random() < 0.7) for i in range(n)]
    return Problem.from_operands(ops, sizes, outs, ins, tokens=tokens, x_grad=rng.random() < 0.3)


@settings(max_examples=12)
@given(case=networks(max_nodes=6, max_size=4), tokens=st.sampled_from([None, 1, 40]))
def test_plan_search_equals_brute_force_up_to_8_tensors(case, tokens):
    net, n_in, n_out = case
    problem = Problem.from_network(net, n_in, n_out, tokens=tokens)
    assert len(problem.operands) <= 8
    _, cost = optimal_path(problem, MODEL)
    assert cost == pytest.approx(brute_force(problem, MODEL), rel=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_connected_pair_dp_equals_opt_einsum_dp(seed):
    rng = random.Random(seed)
    problem = random_problem(rng.randint(9, 12), rng, tokens=rng.choice([None, 3, 64]))
    ours, cost = ccp_path(problem, MODEL)
    _, expected = oe_dp_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert Scorer(problem, MODEL).path_cost(ours) == pytest.approx(cost, rel=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_hub_search_equals_opt_einsum_dp(seed):
    rng = random.Random(100 + seed)
    problem = random_problem(rng.randint(9, 13), rng, tokens=rng.choice([None, 3, 64]), hub=seed % 3 != 0)
    path, cost = hub_path(problem, MODEL)  # exact whichever operand is the hub
    _, expected = oe_dp_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert Scorer(problem, MODEL).path_cost(path) == pytest.approx(cost, rel=1e-12)
    assert len(path) == len(problem.operands) - 1
    _, auto = optimal_path(problem, MODEL)
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


def test_twenty_cores_plus_x_is_exact():
    import time

    problem = Problem.from_network(load_graph("tt", cores=20, rank=8), 2**20, 2**20, tokens=64)
    start = time.perf_counter()
    _, cost = optimal_path(problem, MODEL)
    elapsed = time.perf_counter() - start
    _, expected = oe_dp_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert elapsed < 2.0  # ~20 ms on an idle 2-core machine (opt_einsum's DP: ~0.1 s); generous for CI


def test_exhaustive_tree_is_a_valid_path():
    problem = random_problem(5, random.Random(3), tokens=8)
    path, cost = exhaustive_path(problem, MODEL)
    assert len(path) == len(problem.operands) - 1
    assert Scorer(problem, MODEL).path_cost(path) == pytest.approx(cost)


def test_chain_of_21_tensors_is_exact_and_fast():
    import time

    problem = Problem.from_network(load_graph("tt", cores=21, rank=4), 2**21, 2**21)
    start = time.perf_counter()
    _, cost = ccp_path(problem, MODEL)
    elapsed = time.perf_counter() - start
    _, expected = oe_dp_path(problem, MODEL)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert elapsed < 1.0  # ~10 ms on an idle 2-core machine; generous for CI noise


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
