"""Generated source: readable, straight-line torch ops, compiled once; works under torch.compile."""

import pytest
import torch

from tn_peft.planner import Problem, make_plan
from tn_peft.planner.emit import identifier
from tn_peft.graph.spec import load_graph


def test_lora_source_is_two_linears():
    plan = make_plan(Problem.from_network(load_graph("lora"), 64, 32, tokens=4))
    source = plan.source()
    assert source.count("F.linear(") == 2
    assert "einsum" not in source and "for " not in source
    assert plan.program is plan.program  # compiled once


def test_identifiers_are_safe_and_unique():
    taken = set()
    assert identifier("G1", taken) == "G1"
    assert identifier("G1", taken) == "G1_1"
    assert identifier("in", taken) == "n_in"
    assert identifier("3d-core", taken) == "n_3d_core"
    assert identifier("x", taken) == "n_x"


def test_reserved_names_are_the_programs_globals_and_x():
    from tn_peft.planner.emit import RESERVED
    from tn_peft.planner.runtime.namespace import NAMESPACE

    assert set(RESERVED) == {*NAMESPACE, "x"}
    assert all(identifier(name, set()) == f"n_{name}" for name in RESERVED)


@pytest.mark.parametrize("graph,params", [("lora", {}), ("tt", {"cores": 3}), ("svd", {"map": "exp"})])
def test_program_runs_under_torch_compile(graph, params):
    net = load_graph(graph, **params)
    problem = Problem.from_network(net, 64, 64, tokens=8)
    plan = make_plan(problem)
    tensors = [torch.randn(s) for s in problem.shapes()[1:]]
    x = torch.randn(8, 64)
    compiled = torch.compile(plan.program, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, *tensors), plan.program(x, *tensors))


@pytest.mark.slow
def test_program_runs_under_torch_compile_inductor():
    problem = Problem.from_network(load_graph("tt", cores=3), 64, 64, tokens=8)
    plan = make_plan(problem)
    tensors = [torch.randn(s) for s in problem.shapes()[1:]]
    x = torch.randn(8, 64)
    torch.testing.assert_close(torch.compile(plan.program)(x, *tensors), plan.program(x, *tensors))
