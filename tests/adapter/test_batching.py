"""tn_peft.adapter.batching on its own: grouping by kind and shape, shared nodes once, batched == one by one,
and a user kind joining through the two hooks."""

from __future__ import annotations

import pytest
import torch

import tn_peft
from tn_peft.adapter.batching import batch_key, evaluate_groups, group_nodes
from tn_peft.nodes.base import REGISTRY, Node


def _pauli_nodes():
    a, b = (tn_peft.load_graph("quantum_peft").build(16, 16) for _ in range(2))
    c = tn_peft.load_graph("quantum_peft").build(32, 16)
    return a, b, c


def test_groups_by_shape_and_evaluates_as_one_by_one():
    a, b, c = _pauli_nodes()
    nodes = [a.nodes["U"], b.nodes["U"], c.nodes["V"], a.nodes["s"], a.nodes["U"]]   # a.U twice: once
    groups = group_nodes(nodes)
    sizes = sorted(len(g) for g in groups)
    assert sizes == [1, 1, 2]    # (a.U, b.U) share a circuit shape; c.V (32 rows) and the diagonal are alone
    assert batch_key(a.nodes["s"]) is None and batch_key(a.nodes["U"]) == batch_key(b.nodes["U"])
    assert batch_key(a.nodes["U"]) != batch_key(c.nodes["V"])
    values = evaluate_groups(groups)
    for node in (a.nodes["U"], b.nodes["U"], c.nodes["V"], a.nodes["s"]):
        torch.testing.assert_close(values[id(node)], node(), rtol=1e-6, atol=1e-6)


def test_batched_gradients_reach_every_node():
    a, b, _ = _pauli_nodes()
    values = evaluate_groups(group_nodes([a.nodes["U"], b.nodes["U"]]))
    (values[id(a.nodes["U"])].sum() + 2 * values[id(b.nodes["U"])].sum()).backward()
    assert a.nodes["U"].weights.grad.abs().sum() > 0 and b.nodes["U"].weights.grad.abs().sum() > 0


@pytest.fixture
def scale_kind():
    """A user kind that opts in to batching with the two hooks, registered for this test only."""

    class Scale(Node, kind="test_batch_scale"):
        calls = 0

        def __init__(self, name, legs, shape):
            super().__init__(name, legs, shape)
            self.value = torch.nn.Parameter(torch.randn(shape))

        def forward(self):
            return self.value * 2

        @staticmethod
        def batch_key(node):
            return node.shape

        @classmethod
        def forward_many(cls, nodes):
            cls.calls += 1
            return list(torch.stack([n.value for n in nodes]).mul(2).unbind(0))

    yield Scale
    REGISTRY.pop("test_batch_scale", None)


def test_a_user_kind_joins_through_its_hooks(scale_kind):
    nodes = [scale_kind(f"n{i}", ["a"], [3]) for i in range(3)] + [scale_kind("odd", ["a"], [4])]
    groups = group_nodes(nodes)
    assert sorted(len(g) for g in groups) == [1, 3]
    values = evaluate_groups(groups)
    assert scale_kind.calls == 1   # one batched call for the three of shape (3,); the odd one is called alone
    for node in nodes:
        torch.testing.assert_close(values[id(node)], node())
