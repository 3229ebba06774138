"""Token-aware plan families: breakpoints computed once, dispatch is a lookup of microseconds."""

import pytest
import torch

from tn_peft.planner import Problem, make_plan
from tn_peft.planner.runtime.dispatch import PlanFamily, dw_plan_for, family_for
from tn_peft.graph.spec import load_graph
from tn_peft.testing.reference import reference_contraction as reference


def test_family_switches_plans_with_tokens_and_matches_each_plan():
    net = load_graph("tt", cores=3, rank=8)
    family = PlanFamily(Problem.from_network(net, 1024, 1024), max_tokens=4096)
    assert family.breakpoints == sorted(family.breakpoints)
    assert len(family.plans) == len(family.breakpoints) + 1
    # each interval's plan is the plan the search picks at its start and inside it (the middle of
    # intervals wider than the bisection's precision: the family never planned those T)
    ends = [b - 1 for b in family.breakpoints] + [family.max_tokens]
    inside = 0
    for start, end, plan in zip([1] + family.breakpoints, ends, family.plans):
        assert make_plan(family.problem.with_tokens(start)).signature() == plan.signature()
        if end / start >= 1.5:
            middle = round((start * end) ** 0.5)
            assert make_plan(family.problem.with_tokens(middle)).signature() == plan.signature(), middle
            inside += 1
    assert inside >= 2
    tensors = [torch.randn(s, dtype=torch.float64) for s in family.problem.shapes()[1:]]
    for tokens in (1, 5, 300, 4096):
        x = torch.randn(tokens, 1024, dtype=torch.float64)
        torch.testing.assert_close(family(x, *tensors), reference(family.problem.with_tokens(tokens), x, tensors))
    assert family.describe()[0].startswith("T 1..")


def test_dispatch_is_a_lookup_that_never_plans(monkeypatch):
    # (its time, 2-4 us, is measured side by side by `tn-peft bench planner`, not here)
    from tn_peft.planner.runtime import dispatch

    family = family_for(Problem.from_network(load_graph("tt", cores=3, rank=8), 1024, 1024, tokens=1))
    assert len(family.plans) > 1

    def no_planning(*args, **kwargs):
        raise AssertionError("dispatch planned")

    monkeypatch.setattr(dispatch, "make_plan", no_planning)
    for tokens in (1, 2, 7, 64, 65, 1000, 4096, 10_000):
        program = family.program_for(tokens)
        assert program is family.plans[family.index(tokens)].program
        assert family.program_for(tokens) is program


def test_families_and_dw_plans_are_cached():
    problem = Problem.from_network(load_graph("lora"), 48, 32, tokens=3)
    assert family_for(problem) is family_for(problem.with_tokens(99))
    assert dw_plan_for(problem) is dw_plan_for(problem.without_x())
    assert family_for(problem) is not family_for(problem.with_grads(False))


def _tt_layer():
    """A TT adapter on a 1024 x 1024 Linear: its plan changes with T (several breakpoints)."""
    from torch import nn

    from tn_peft.model.layers import TnLinear

    torch.manual_seed(0)
    layer = TnLinear(nn.Linear(1024, 1024))
    layer.base_layer.requires_grad_(False)
    layer.update_layer("tt", load_graph("tt", cores=3, rank=8).build(1024, 1024))
    layer.active_adapters = ["tt"]
    with torch.no_grad():
        for param in layer.tn_adapters["tt"].parameters():
            param.add_(0.1 * torch.randn_like(param))
    return layer


def _output_and_grads(fn, layer, x):
    layer.zero_grad()
    y = fn(x)
    y.pow(2).mean().backward()
    return y.detach(), {n: p.grad.clone() for n, p in layer.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("dynamic", [False, True])
def test_planner_dispatch_runs_under_torch_compile_fullgraph(dynamic, monkeypatch):
    """The planner's own dispatch and program are traced (no graph break), and the trace runs the
    plan of the T it sees: under dynamic shapes too (guarded on the plan's T range)."""
    layer = _tt_layer()
    adapter = layer.tn_adapters["tt"]
    _output_and_grads(layer, layer, torch.randn(1, 1024))  # eager warm-up: plans the family
    (family,) = adapter._families.values()
    assert len(family.plans) > 2  # the plan for large T is not the one for T = 1
    calls = []

    def counted(i, program):
        def run(x, *tensors):
            calls.append(i)
            return program(x, *tensors)
        return run

    monkeypatch.setattr(family, "entries", [(counted(i, p), g) for i, (p, g) in enumerate(family.entries)])
    monkeypatch.setattr(family, "_lookup", {})

    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True, dynamic=dynamic)
    starts = [1] + family.breakpoints
    for tokens in (1, starts[2] + 1, 600, 2048):
        x = torch.randn(tokens, 1024)
        expected = family.index(tokens)
        calls.clear()
        want, want_grads = _output_and_grads(layer, layer, x)
        assert calls == [expected]
        calls.clear()
        got, got_grads = _output_and_grads(compiled, layer, x)
        assert calls == [expected], (tokens, calls)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        for name, grad in want_grads.items():
            torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert family.index(2048) == len(family.plans) - 1 and family.index(1) == 0


def test_compile_without_eager_warm_up_plans_outside_the_graph():
    """Without fullgraph, a family not planned yet is planned eagerly at a graph break; the program
    itself still runs (traced) afterwards."""
    from torch import nn

    from tn_peft.model.layers import TnLinear

    layer = TnLinear(nn.Linear(40, 24))
    layer.update_layer("a", load_graph("lora").build(40, 24))
    layer.active_adapters = ["a"]
    torch._dynamo.reset()
    x = torch.randn(3, 7, 40)
    torch.testing.assert_close(torch.compile(layer, backend="aot_eager")(x), layer(x))


def test_a_fused_kernel_is_recorded_in_the_plan_it_replaces():
    """Plan.run_as: same tree and costs, the kernel runs, decisions and source say so."""
    problem = Problem.from_network(load_graph("lora"), 48, 32, tokens=5)
    plan = make_plan(problem)

    def kernel(x, *tensors):
        return torch.zeros(x.shape[0], 32)

    kernel.kernel = "lowrank"
    fused = plan.run_as(kernel)
    assert fused.program is kernel and plan.program is not kernel
    assert fused.signature() == plan.signature() and fused.flops() == plan.flops()
    assert plan.kernel is None and "fused" not in " ".join(plan.decisions)
    assert any("fused Triton kernel 'lowrank'" in d for d in fused.decisions)
    assert fused.source().startswith("# runs as the fused Triton kernel 'lowrank'")
    assert fused.source().endswith(plan.source())


def test_adapter_plan_takes_the_device():
    """On CUDA's cost model with triton importable, the LoRA chain's plan is the fused lowrank kernel;
    on CPU the plan's own source runs."""
    from tn_peft.planner.runtime import triton_kernels

    adapter = load_graph("lora").build(48, 32)
    cpu = adapter.plan(64)
    assert cpu.kernel is None and cpu.model.name == "cpu"
    cuda = adapter.plan(64, device="cuda")
    assert cuda.model.name == "cuda"
    assert cuda.kernel == ("lowrank" if triton_kernels.available() else None)
    assert adapter.plan(None, device="cuda").kernel is None  # the dW plan has no activations to fuse
