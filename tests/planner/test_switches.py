"""tn_peft/planner/runtime/switches.py: a fused kernel switched off replaces no plan, and the plan's
decisions say which kernel is off and why."""

import os
import subprocess
import sys

import pytest

from tn_peft.planner.runtime import switches
from tn_peft.graph.spec import load_graph

triton_kernels = pytest.importorskip("tn_peft.planner.runtime.triton_kernels")
pytestmark = pytest.mark.skipif(not triton_kernels.available(), reason="triton is not importable")


@pytest.fixture
def lowrank_off():
    switches.switch_off("lowrank", "measured 1.3x slower than the torch program (a test)")
    yield
    switches.switch_on("lowrank")


def test_a_switched_off_kernel_leaves_the_torch_program_and_says_why(lowrank_off):
    plan = load_graph("lora").build(48, 32).plan(64, device="cuda")
    assert plan.kernel is None
    assert any("'lowrank' switched off (measured 1.3x slower" in d for d in plan.decisions)
    assert not plan.source().startswith("# runs as the fused")


def test_switching_it_on_again_restores_the_kernel(lowrank_off):
    adapter = load_graph("lora").build(48, 32)
    assert adapter.plan(64, device="cuda").kernel is None
    switches.switch_on("lowrank")
    assert adapter.plan(64, device="cuda").kernel == "lowrank"


def test_plans_made_before_the_switch_are_forgotten():
    from tn_peft.planner.cost import CostModel
    from tn_peft.planner.runtime.dispatch import family_for

    problem = load_graph("lora").build(48, 32).problem.with_tokens(8)
    model = CostModel.for_device("cuda")
    assert family_for(problem, model).plan_for(8).kernel == "lowrank"
    switches.switch_off("lowrank", "a test")
    try:
        assert family_for(problem, model).plan_for(8).kernel is None
    finally:
        switches.switch_on("lowrank")
    assert family_for(problem, model).plan_for(8).kernel == "lowrank"


def test_a_cpu_plan_never_mentions_kernels(lowrank_off):
    assert not any("Triton" in d for d in load_graph("lora").build(48, 32).plan(64).decisions)


@pytest.mark.parametrize("kernel, reason, start, match", [("fast", "x", 1, "no fused kernel is named 'fast'"),
                                                           ("lowrank", "  ", 1, "needs a reason"),
                                                           ("lowrank", "x", 0, "at least 1")])
def test_bad_switches_say_what_is_wrong(kernel, reason, start, match):
    with pytest.raises(ValueError, match=match):
        switches.switch_off(kernel, reason, from_tokens=start)
    assert kernel not in switches.SWITCHED_OFF


def test_the_environment_switches_kernels_off_for_a_process():
    code = ("from tn_peft.planner.runtime import switches; from tn_peft.graph.spec import load_graph; "
            "print(switches.SWITCHED_OFF); print(load_graph('kron').build(64, 64).plan(8, device='cuda').decisions[-1])")
    env = dict(os.environ, TN_PEFT_FUSED_OFF="kron_rows, circuit_rows")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "'kron_rows': ('switched off by TN_PEFT_FUSED_OFF', 1)" in out and "'circuit_rows'" in out
    assert "fused Triton kernel 'kron_rows' switched off (switched off by TN_PEFT_FUSED_OFF)" in out
    bad = subprocess.run([sys.executable, "-c", "import tn_peft.planner.runtime.switches"],
                         env=dict(os.environ, TN_PEFT_FUSED_OFF="lowrnak"), capture_output=True, text=True)
    assert bad.returncode != 0 and "TN_PEFT_FUSED_OFF names 'lowrnak'" in bad.stderr
    bad = subprocess.run([sys.executable, "-c", "import tn_peft.planner.runtime.switches"],
                         env=dict(os.environ, TN_PEFT_FUSED_OFF="lowrank@many"), capture_output=True, text=True)
    assert bad.returncode != 0 and "kernel@TOKENS" in bad.stderr


def test_a_kernel_off_from_some_token_count_runs_below_it():
    """A plan family splits its token range where the kernel goes off; each side says what runs."""
    from tn_peft.planner.cost import CostModel
    from tn_peft.planner.runtime.dispatch import family_for

    adapter = load_graph("lora").build(48, 32)
    switches.switch_off("lowrank", "slower from T = 300 (a test)", from_tokens=300)
    try:
        family = family_for(adapter.problem.with_tokens(8), CostModel.for_device("cuda"))
        assert 300 in family.breakpoints
        assert family.plan_for(299).kernel == "lowrank" and family.plan_for(300).kernel is None
        assert any("slower from T = 300 (a test); off from T = 300" in d for d in family.plan_for(4096).decisions)
        assert family.select(299)[0] is not family.select(300)[0]
        assert adapter.plan(64, device="cuda").kernel == "lowrank" and adapter.plan(512, device="cuda").kernel is None
    finally:
        switches.switch_on("lowrank")
    assert switches.token_breaks() == []


def test_a_kernel_off_from_some_token_count_in_the_environment():
    code = ("from tn_peft.planner.runtime import switches; from tn_peft.graph.spec import load_graph; "
            "a = load_graph('lora').build(48, 32); print(switches.SWITCHED_OFF['lowrank'], "
            "a.plan(8, device='cuda').kernel, a.plan(4096, device='cuda').kernel)")
    env = dict(os.environ, TN_PEFT_FUSED_OFF="lowrank@1024")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "('switched off by TN_PEFT_FUSED_OFF', 1024) lowrank None" in out
