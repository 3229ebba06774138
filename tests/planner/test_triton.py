"""Fused Triton kernels, checked on the CPU by the Triton interpreter (in a subprocess: the variable
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
    from tn_peft.graph.spec import load_graph
    torch.manual_seed(0)

    def close(a, b, tol=1e-4):
        a, b = a.detach(), b.detach()
        err = float((a - b).abs().max() / (b.abs().max() + 1e-12))
        assert err < tol, err

    # low-rank chain, forward and gradients (s present and absent)
    x, v, s, u = torch.randn(37, 70), torch.randn(70, 5), torch.randn(5), torch.randn(50, 5)
    close(tk.lowrank_forward(x, v, s, u, 0.7), 0.7 * ((x @ v) * s) @ u.T)
    close(tk.lowrank_forward(x, v, None, u, 1.0), (x @ v) @ u.T)
    ours = [t.clone().requires_grad_() for t in (x, v, s, u)]
    ref = [t.clone().requires_grad_() for t in (x, v, s, u)]
    tk.lowrank(*ours, 0.7).square().sum().backward()
    (0.7 * ((ref[0] @ ref[1]) * ref[2]) @ ref[3].T).square().sum().backward()
    for a, b in zip(ours, ref):
        close(a.grad, b.grad)

    # the program used for LoRA / SVD problems on CUDA has the plan program's signature
    for graph in ("lora", "svd"):
        problem = Problem.from_network(load_graph(graph), 48, 40, tokens=6)
        program = fused_program(problem)
        assert program is not None, graph
        tensors = [torch.randn(sh) for sh in problem.shapes()[1:]]
        xx = torch.randn(6, 48)
        close(program(xx, *tensors), torch.einsum(problem.equation(), xx, *tensors) * problem.scale)
    assert fused_program(Problem.from_network(load_graph("tt"), 64, 64, tokens=4)) is None

    # Pauli circuits gate by gate, and the fused x -> V -> s -> U chain
    adapter = load_graph("quantum_peft").build(64, 32)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    U, V, sv = adapter.node("U"), adapter.node("V"), adapter.node("s")()
    xx = torch.randn(9, 64)
    close(tk.circuit_rows(xx, V, transpose=True), xx @ V())
    z = torch.randn(9, 4)
    close(tk.circuit_rows(z, U, transpose=False), z @ U().T)
    xg = xx.clone().requires_grad_()
    tk.circuit_chain(xg, V, sv, U, 2.0).square().sum().backward()
    xr = xx.clone().requires_grad_()
    (2.0 * ((xr @ V()) * sv) @ U().T).square().sum().backward()
    close(xg.grad, xr.grad)

    # the circuits' angles get their gradients through the kernels (a random upstream gradient:
    # |x Q| alone does not depend on the angles, Q having orthonormal columns)
    def angle_grads(fn, nodes, upstream):
        for node in nodes:
            for p in node.parameters():
                p.grad = None
        fn().backward(upstream)
        return [p.grad.clone() for node in nodes for p in node.parameters()]

    for node, inp, transpose in ((V, xx, True), (U, z, False)):
        up = torch.randn(inp.shape[0], node.shape[1] if transpose else node.shape[0])
        ours = angle_grads(lambda: tk.circuit_rows(inp, node, transpose=transpose), [node], up)
        ref = angle_grads(lambda: inp @ node() if transpose else inp @ node().T, [node], up)
        for a, b in zip(ours, ref):
            close(a, b)
    up = torch.randn(9, U.shape[0])
    ours = angle_grads(lambda: tk.circuit_chain(xx, V, sv, U, 2.0), [U, V], up)
    ref = angle_grads(lambda: 2.0 * ((xx @ V()) * sv) @ U().T, [U, V], up)
    for a, b in zip(ours, ref):
        close(a, b)

    # a plan applying both circuits gate by gate runs the fused chain program (circuit nodes passed)
    from tn_peft.planner.runtime.fused import fused_gated_program
    problem = adapter.problem.with_tokens(9)
    program, gated = fused_gated_program(problem)
    assert gated == frozenset((0, 2))  # U and V (node positions without x)
    close(program(xx, U, sv, V), torch.einsum(problem.equation(), xx, U(), sv, V()) * problem.scale)
    assert fused_gated_program(Problem.from_network(load_graph("svd"), 48, 40, tokens=6)) is None  # dense U, V
    print("ok")
""")


def test_kernels_under_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
