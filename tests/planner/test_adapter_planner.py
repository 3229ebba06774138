"""Adapters built from graphs run planned programs: same values and gradients as dense dW."""

import pytest
import torch

from tn_peft.errors import ShapeError
from tn_peft.spec import catalog, load_graph


def _pair(graph, shape=(48, 32), dtype=torch.float64):
    net = load_graph(graph)
    planned = net.build(*shape, dtype=dtype)
    with torch.no_grad():
        for p in planned.parameters():
            p.normal_()
    dense = net.build(*shape, dtype=dtype, planner=False)
    dense.load_state_dict(planned.state_dict())
    return planned, dense


@pytest.mark.parametrize("graph", catalog())
def test_planned_adapter_equals_dense_dw(graph):
    shape = (64, 64) if graph in ("tt", "ttd", "quanta") else (48, 32)
    planned, dense = _pair(graph, shape)
    x = torch.randn(3, 5, shape[0], dtype=torch.float64, requires_grad=True)
    y, want = planned(x), dense(x)
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-9)
    grads = torch.autograd.grad(y.square().sum(), [x, *planned.parameters()])
    expected = torch.autograd.grad(want.square().sum(), [x, *dense.parameters()])
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(planned.delta_weight(), dense.delta_weight(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(planned.contract_dense(planned.node_tensors()),
                               dense.contract_dense(dense.node_tensors()), rtol=1e-9, atol=1e-9)


def test_adapter_dispatch_keys_on_grad_mode_and_dtype():
    planned, _ = _pair("tt", (64, 64), torch.float32)
    x = torch.randn(10, 64)
    with torch.no_grad():
        y0 = planned(x)
    y1 = planned(x)
    torch.testing.assert_close(y0, y1)
    planned(x.double().float())
    assert len(planned._families) == 2  # inference and training plans
    assert not y0.requires_grad and y1.requires_grad


def test_adapter_rejects_wrong_input_width():
    planned, _ = _pair("lora")
    with pytest.raises(ShapeError, match="last dimension 48"):
        planned(torch.randn(2, 47, dtype=torch.float64))


def test_adapter_plan_method():
    planned, _ = _pair("svd")
    plan = planned.plan(64)
    assert plan.problem.tokens == 64 and plan.decisions
    assert planned.plan().problem.tokens is None
