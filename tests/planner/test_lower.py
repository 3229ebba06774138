"""Lowering a plan's trees to its program's source (tn_peft.planner.lower)."""

from tn_peft.planner import Problem, make_plan
from tn_peft.planner.lower import lower
from tn_peft.graph.spec import load_graph


def test_scale_one_and_no_grads_emit_plain_matmuls():
    net = load_graph("lora", alpha=4, rank=4)  # scale 1
    problem = Problem.from_network(net, 32, 16, tokens=8, grad=False)
    plan = make_plan(problem)
    assert plan.saved_bytes() == 0
    assert "* 1.0" not in plan.source()


def test_lower_is_what_the_plan_holds_and_frees_temporaries():
    net = load_graph("tt", cores=3, rank=4)
    plan = make_plan(Problem.from_network(net, 64, 64, tokens=16))
    source, emitted = lower(plan.problem, plan.model, plan.branches, delta=plan.delta, initial=plan.initial)
    assert source == plan.source() and emitted.ops == plan.emitted.ops
    assert "    del " in source  # temporaries die after their last use, not at return


def test_delta_programs_take_theta_0_after_theta():
    net = load_graph("quanta")
    plan = make_plan(Problem.from_network(net, 64, 64, tokens=4), initial=True)
    header = plan.source().splitlines()[0]
    names = [op.name for op in plan.problem.operands[1:]]
    assert header.startswith("def program(x, ") and all(f"{n}_0" in header for n in names), header
