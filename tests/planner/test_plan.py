"""Plans compute the contraction exactly: random networks, shapes and T against one einsum (fp64)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.planner import CostModel, Problem, make_plan
from tn_peft.graph.spec import load_graph
from tn_peft.testing import networks
from tn_peft.testing.reference import reference_contraction as reference


def _tensors(problem, dtype=torch.float64, grad=False):
    start = 1 if problem.has_x else 0
    return [torch.randn(s, dtype=dtype, requires_grad=grad) for s in problem.shapes()[start:]]


def _check(problem, initial=False, optimize="auto"):
    plan = make_plan(problem, initial=initial, optimize=optimize)
    tensors = _tensors(problem)
    init = _tensors(problem) if initial else None
    x = torch.randn(problem.tokens, problem.in_features, dtype=torch.float64) if problem.has_x else None
    args = ([x] if x is not None else []) + tensors + (init or [])
    got = plan.program(*args)
    want = reference(problem, x, tensors, init)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * max(1.0, float(want.abs().max())))
    return plan


@settings(max_examples=40)
@given(case=networks(max_nodes=6, max_size=4), tokens=st.sampled_from([None, 1, 3, 17]),
       grads=st.lists(st.booleans(), min_size=7, max_size=7), x_grad=st.booleans())
def test_random_networks_match_reference(case, tokens, grads, x_grad):
    net, n_in, n_out = case
    problem = Problem.from_network(net, n_in, n_out, tokens=tokens, x_grad=x_grad, itemsize=8,
                                   grad=dict(zip(net.node_names, grads)))
    _check(problem)


@settings(max_examples=15)
@given(case=networks(max_nodes=4, max_size=3), tokens=st.sampled_from([None, 2, 9]))
def test_random_delta_networks_match_reference(case, tokens):
    net, n_in, n_out = case
    _check(Problem.from_network(net, n_in, n_out, tokens=tokens, itemsize=8), initial=True)


@pytest.mark.parametrize("graph,params,shape", [
    ("lora", {}, (64, 48)), ("tt", {"cores": 3}, (64, 64)), ("kron", {}, (36, 24)),
    ("lotr", {}, (32, 40)), ("quanta", {}, (27, 8)), ("tt", {"cores": 6}, (64, 64)),
])
@pytest.mark.parametrize("tokens", [None, 1, 50])
@pytest.mark.parametrize("optimize", ["auto", "greedy", "optimal"])
def test_catalog_plans_match_reference(graph, params, shape, tokens, optimize):
    net = load_graph(graph, **params)
    _check(Problem.from_network(net, *shape, tokens=tokens, itemsize=8), initial=net.delta, optimize=optimize)


def test_plan_reports_costs_and_decisions():
    net = load_graph("svd", map="exp")
    plan = make_plan(Problem.from_network(net, 256, 128, tokens=64))
    assert plan.flops() > 0 and plan.backward_flops() > 0
    assert plan.saved_bytes() > 0 and plan.peak_bytes() >= plan.size() > 0
    assert any("diagonal s: applied as a scaling" in d for d in plan.decisions)
    assert "def program(x, U, s, V):" in plan.source()
    assert "s0:" in plan.tree()
    assert plan.to_dict()["tokens"] == 64


def test_tt_training_plan_keeps_less_memory_than_flop_optimal():
    # The case: TT adapter (6 cores, modes 4, rank 8) at 1024 tokens: the FLOP-optimal tree
    # keeps ~400 MiB for backward; the planner's choice keeps far less.
    net = load_graph("tt", cores=6, rank=8)
    problem = Problem.from_network(net, 4096, 4096, tokens=1024)
    ours = make_plan(problem)
    flop_optimal = make_plan(problem, optimize="optimal")
    assert flop_optimal.saved_bytes() > 300 * 2**20
    assert ours.saved_bytes() < flop_optimal.saved_bytes() / 2


def test_plan_call_keeps_leading_dims_and_checks_shape():
    from tn_peft.errors import ShapeError

    net = load_graph("lora")
    problem = Problem.from_network(net, 32, 16, tokens=6)
    plan = make_plan(problem)
    tensors = _tensors(problem, torch.float32)
    assert plan(torch.randn(2, 3, 32), *tensors).shape == (2, 3, 16)
    with pytest.raises(ShapeError, match="last dimension 32"):
        plan(torch.randn(2, 31), *tensors)


def test_cost_model_profiles():
    assert CostModel.for_device("cuda").name == "cuda"
    assert CostModel.for_device("cpu").flop_rate > 0


def test_plan_call_names_the_node_with_a_wrong_shape():
    from tn_peft.errors import ShapeError

    problem = Problem.from_network(load_graph("lora"), 32, 16, tokens=6)
    plan = make_plan(problem)
    b, a = _tensors(problem, torch.float32)
    with pytest.raises(ShapeError, match="node 'A' must have shape"):
        plan(torch.randn(6, 32), b, a[:, :-1])
    with pytest.raises(ShapeError, match="takes 2 node tensors"):
        plan(torch.randn(6, 32), b)


def test_bad_token_count_is_a_spec_error():
    from tn_peft.errors import SpecError

    with pytest.raises(SpecError, match="token count"):
        Problem.from_network(load_graph("lora"), 32, 16, tokens=0)


def test_a_leg_only_one_operand_holds_must_be_open():
    from tn_peft.errors import SpecError
    from tn_peft.planner import Operand

    ops = [Operand("A", ("o", "r", "loose")), Operand("B", ("r", "i"))]
    with pytest.raises(SpecError, match="'loose'.*one operand only"):
        Problem.from_operands(ops, {"o": 2, "r": 2, "i": 2, "loose": 3}, ["o"], ["i"])
