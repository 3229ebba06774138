"""The AST gate before every exec: every program the emitter writes passes; anything else runs nothing."""

from __future__ import annotations

import pytest
import torch

import tn_peft
from tn_peft.errors import UnsafeProgramError
from tn_peft.planner.cost import CostModel
from tn_peft.planner.emit import Emitter, compile_source
from tn_peft.planner.problem import Operand, Problem
from tn_peft.planner.runtime.dispatch import running_plan
from tn_peft.planner.runtime.namespace import NAMESPACE
from tn_peft.planner.verify import GLOBALS, verify_source
from tn_peft.graph.spec import catalog

PAYLOAD = "r\n    open('pwned', 'w')\n    #"


@pytest.mark.parametrize("name", catalog())
@pytest.mark.parametrize("tokens,train", [(None, False), (1, True), (64, True)])
def test_every_catalog_program_passes(name, tokens, train):
    adapter = tn_peft.load_graph(name).build(64, 64)
    problem = adapter.problem.with_grads(train)
    if tokens is not None:
        problem = problem.with_tokens(tokens, x_grad=train)
    for device in ("cpu", "cuda"):
        verify_source(running_plan(problem, CostModel.for_device(device), initial=adapter.network.delta).source())


def test_a_circuit_call_passes():
    verify_source("def program(x, U, s):\n    t0 = apply_circuit(U, x.reshape(1, -1), transpose=True)  # U\n"
                  "    t1 = t0 * s[None, :]\n    del t0\n    return t1\n")


@pytest.mark.parametrize("source,why", [
    ("def program(x):\n    import os\n    return x\n", "statement Import"),
    ("def program(x):\n    return x.__class__\n", "expression Attribute"),
    ("def program(x):\n    return getattr(x, 'a')\n", "only torch.matmul"),
    ("def program(x):\n    return os\n", "'os' is not a parameter"),
    ("def program(x):\n    return x\nimport os\n", "exactly one function"),
    ("def program(x=print('hi')):\n    return x\n", "plain positional"),
    ("def program(*x):\n    return x\n", "plain positional"),
    ("@dec\ndef program(x):\n    return x\n", "plain 'def program"),
    ("def other(x):\n    return x\n", "plain 'def program"),
    ("def program(x):\n    return torch.load(x)\n", "torch.load is not"),
    ("def program(x):\n    return 'text'\n", "constant of type str"),
    ("def program(x):\n    torch = x\n    return x\n", "'torch' may not be bound"),
    ("def program(x):\n    return x[0]\n", "index may only hold"),
    ("def program(x):\n    return apply_circuit(x, x, transpose=__import__)\n", "apply_circuit takes"),
    ("def program(x):\n    return (lambda: x)()\n", "only torch.matmul"),
    ("def program(x):\n    return x.reshape(*x)\n", "starred"),
    ("def program(x):\n    return x.sum(dim=0)\n", "keyword arguments"),
    ("def program(x):\n    return x @ x\n", "operator MatMult"),
    ("def program(x):\n    del os\n    return x\n", "del may only drop"),
    ("def program(x):\n    x.y = 1\n    return x\n", "bind exactly one name"),
    ("def program(x):\n    pass\n", "end with a return"),
    ("def program(x):\n    return x *\n", "does not parse"),
])
def test_anything_outside_the_grammar_is_refused(source, why):
    with pytest.raises(UnsafeProgramError, match=why):
        verify_source(source)


def test_a_refused_program_is_never_compiled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeProgramError):
        compile_source("def program(x):\n    return open('pwned', 'w')\n", "evil", NAMESPACE)
    assert not (tmp_path / "pwned").exists()


def test_the_grammar_knows_the_namespace():
    assert GLOBALS == set(NAMESPACE)


def _raw_problem() -> Problem:
    """A problem whose leg and node names never went through a spec's name check (built directly)."""
    operands = (Operand("x", ("T", "in"), "x", False), Operand("B\nimport os", ("out", PAYLOAD), "tensor", True),
                Operand("A", (PAYLOAD, "in"), "tensor", True))
    return Problem.from_operands(operands[1:], {"out": 4, "in": 4, PAYLOAD: 2}, ["out"], ["in"], tokens=3)


def test_names_that_skipped_the_check_reach_source_escaped_and_run_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = running_plan(_raw_problem(), CostModel.for_device("cpu"))
    source = plan.source()
    payload_lines = [line for line in source.splitlines() if "pwned" in line]
    assert payload_lines and all(line.index("#") < line.index("pwned") for line in payload_lines)  # comments only
    assert ascii(PAYLOAD) in source  # escaped: one line
    verify_source(source)
    x, b, a = torch.randn(3, 4), torch.randn(4, 2), torch.randn(2, 4)
    torch.testing.assert_close(plan.program(x, b, a), x @ (b @ a).T * plan.problem.scale)
    assert not (tmp_path / "pwned").exists()


def test_an_emitter_that_wrote_names_raw_is_stopped_by_the_gate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Emitter, "label", lambda self, legs: "[" + ",".join(legs) + "]")  # the old, broken comment
    plan = running_plan(_raw_problem(), CostModel.for_device("cpu"))
    assert "\n    open('pwned', 'w')" in plan.source()  # the hole, as it was
    with pytest.raises(UnsafeProgramError, match="nothing was run"):
        plan.program
    assert not (tmp_path / "pwned").exists()
