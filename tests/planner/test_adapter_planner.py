"""Adapters built from graphs run planned programs: same values and gradients as the reference contraction."""

import pytest
import torch

from tn_peft.errors import ShapeError
from tn_peft.graph.spec import catalog, load_graph
from tn_peft.testing.reference import (
    reference_contraction,
    reference_delta,
    reference_output,
)


def _planned(graph, shape=(48, 32), dtype=torch.float64):
    adapter = load_graph(graph).build(*shape, dtype=dtype)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    return adapter


@pytest.mark.parametrize("graph", catalog())
def test_planned_adapter_equals_the_reference_contraction(graph):
    shape = (64, 64) if graph in ("tt", "ttd", "quanta") else (48, 32)
    planned = _planned(graph, shape)
    x = torch.randn(3, 5, shape[0], dtype=torch.float64, requires_grad=True)
    y, want = planned(x), reference_output(planned, x)
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-9)
    params = list(planned.parameters())
    grads = torch.autograd.grad(y.square().sum(), [x, *params])
    expected = torch.autograd.grad(want.square().sum(), [x, *params])
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(planned.delta_weight(), reference_delta(planned), rtol=1e-9, atol=1e-9)
    dense = reference_contraction(planned.problem.without_x(), None, planned.node_tensors()) / planned.scale
    torch.testing.assert_close(planned.contract_dense(planned.node_tensors()), dense, rtol=1e-9, atol=1e-9)


def test_adapter_dispatch_keys_on_grad_mode_and_dtype():
    planned = _planned("tt", (64, 64), torch.float32)
    x = torch.randn(10, 64)
    with torch.no_grad():
        y0 = planned(x)
    y1 = planned(x)
    torch.testing.assert_close(y0, y1)
    planned(x.double().float())
    assert len(planned._families) == 2  # inference and training plans
    assert not y0.requires_grad and y1.requires_grad


def test_adapter_rejects_wrong_input_width():
    planned = _planned("lora")
    with pytest.raises(ShapeError, match="last dimension 48"):
        planned(torch.randn(2, 47, dtype=torch.float64))


def test_adapter_plan_method():
    planned = _planned("svd")
    plan = planned.plan(64)
    assert plan.problem.tokens == 64 and plan.decisions
    assert planned.plan().problem.tokens is None
