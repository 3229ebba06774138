"""The fused per-wire (Kronecker) kernel, checked on the CPU by the Triton interpreter (in a subprocess:
TRITON_INTERPRET must be set before triton is imported, and must not leak into other tests)."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import torch
    from tn_peft.planner.runtime import triton_kernels as tk
    from tn_peft.planner.runtime.fused import fused_program
    from tn_peft.planner import Problem
    from tn_peft.testing.reference import reference_contraction as reference
    from tn_peft.planner.cost import CostModel
    from tn_peft.planner.runtime.dispatch import family_for
    from tn_peft.planner.problem import Operand
    from tn_peft.graph.spec import load_graph
    torch.manual_seed(0)

    def close(a, b, tol=1e-4):
        assert a.shape == b.shape, (a.shape, b.shape)
        err = float((a - b).abs().max() / (b.abs().max() + 1e-12))
        assert err < tol, err


    def check(problem, tokens):
        program = fused_program(problem)
        assert program is not None, problem.name
        shapes = problem.shapes()[1:]
        tensors = [torch.randn(sh) for sh in shapes]
        x = torch.randn(tokens, problem.in_features)
        with torch.no_grad():
            close(program(x, *tensors), reference(problem, x, tensors))
        ours = [t.clone().requires_grad_() for t in [x, *tensors]]
        refs = [t.clone().requires_grad_() for t in [x, *tensors]]
        y = program(ours[0], *ours[1:])
        assert y.shape == (tokens, problem.out_features)
        yr = reference(problem, refs[0], refs[1:])
        close(y.detach(), yr.detach())
        w = torch.randn_like(yr)
        (y * w).sum().backward()
        (yr * w).sum().backward()
        for a, b in zip(ours, refs):
            close(a.grad, b.grad)

    # the kron catalog graph (low-rank factor Ba Bb on wire 2, scale alpha / r), non-square shapes;
    # token counts that are not multiples of the kernel's row block
    for fin, fout, tokens in [(48, 40, 7), (30, 84, 9), (20, 63, 1)]:
        problem = Problem.from_network(load_graph("kron"), fin, fout, tokens=tokens)
        assert problem.scale != 1.0
        check(problem, tokens)

    # three wires, hand built: a factor stored (in, out), a chain with a diagonal on its bond, a
    # diagonal on an open leg, and out legs in another order than the wires
    sizes = dict(n1=3, m1=5, n2=4, r=2, m2=6, n3=5, m3=2)
    ops = [Operand("F", ("n1", "m1")), Operand("P", ("r", "n2")), Operand("s", ("r",), "diagonal"),
           Operand("Q", ("m2", "r")), Operand("d", ("n3",), "diagonal"), Operand("G", ("m3", "n3"))]
    problem = Problem.from_operands(ops, sizes, ("m2", "m1", "m3"), ("n1", "n2", "n3"), tokens=6,
                                    scale=0.5, name="three")
    check(problem, 6)

    # wires that cross: in n1 ends at out m2, in n2 (through a bond) at out m1
    sizes = dict(n1=3, n2=4, m1=5, m2=2, r=3)
    ops = [Operand("A", ("m1", "r")), Operand("B", ("r", "n2")), Operand("C", ("m2", "n1"))]
    check(Problem.from_operands(ops, sizes, ("m1", "m2"), ("n1", "n2"), tokens=5, name="cross"), 5)

    # kron_rows directly: a map that widens, then one that narrows, T = 13
    x = torch.randn(13, 4 * 3)
    f0, f1 = torch.randn(7, 4), torch.randn(2, 3)
    want = torch.einsum("tab,ia,jb->tij", x.reshape(13, 4, 3), f0, f1).reshape(13, -1) * 1.5
    close(tk.kron_rows(x, (4, 3), [(0, f0), (1, f1)], 1.5), want)

    # the CUDA plan family picks the fused program up
    problem = Problem.from_network(load_graph("kron"), 48, 40, tokens=3)
    family = family_for(problem, CostModel.for_device("cuda"))
    assert family.fused is not None and family.plan_for(6).kernel == "kron_rows"
    assert "fused Triton kernel 'kron_rows'" in family.plan_for(6).source()
    tensors = [torch.randn(sh) for sh in problem.shapes()[1:]]
    x = torch.randn(2, 3, 48)
    close(family(x, *tensors).reshape(6, 40), reference(problem, x.reshape(6, 48), tensors))

    # anything else keeps the plan
    for graph in ("tt", "ttd", "quanta", "lotr"):
        assert fused_program(Problem.from_network(load_graph(graph), 64, 64, tokens=4)) is None, graph
    assert fused_program(Problem.from_network(load_graph("kron"), 48, 40)) is None   # no x
    sizes = dict(n1=3, n2=4, m1=5, m2=2)
    shared = [Operand("A", ("m1", "n1")), Operand("B", ("m2", "n2")), Operand("E", ("m1", "m2"))]  # joins outs
    assert fused_program(Problem.from_operands(shared, sizes, ("m1", "m2"), ("n1", "n2"), tokens=2)) is None
    sizes = dict(n1=3, n2=4, m1=5, m2=2, r=2)
    joined = [Operand("A", ("m1", "r")), Operand("B", ("r", "n1")), Operand("C", ("m2", "r")),
              Operand("D", ("r", "n2"))]                                 # a bond joins two wires
    assert fused_program(Problem.from_operands(joined, sizes, ("m1", "m2"), ("n1", "n2"), tokens=2)) is None
    print("ok")
""")


def test_kron_kernel_under_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
