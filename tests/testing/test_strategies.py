"""tn_peft.testing.strategies: what they draw is valid, varied and non-trivial."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.nodes.base import StiefelNode
from tn_peft.graph.spec import load_graph
from tn_peft.testing import (
    STIEFEL_KINDS,
    adapters,
    assert_orthonormal,
    assert_planner_matches_reference,
    layer_shapes,
    specs,
    stiefel_nodes,
)


@given(adapters())
def test_planner_matches_the_reference_on_drawn_adapters(adapter):
    assert adapter.num_parameters() > 0
    assert_planner_matches_reference(adapter, tokens=(1, 6))


@pytest.mark.parametrize("kind", STIEFEL_KINDS)
@settings(max_examples=12)
@given(data=st.data())
def test_stiefel_nodes_of_every_kind_are_orthonormal(kind, data):
    node = data.draw(stiefel_nodes(kind=kind))
    assert isinstance(node, StiefelNode) and node.kind == kind and node.rows >= node.cols >= 1
    assert_orthonormal(node.matrix())


def test_stiefel_nodes_reach_primes_and_non_powers_of_two():
    seen = set()

    @settings(max_examples=60, derandomize=True, deadline=None)
    @given(stiefel_nodes(kind="pauli", max_rows=13))
    def record(node):
        seen.add(node.rows)

    record()
    assert {3, 5, 6, 7, 11, 13} & seen and any(n & (n - 1) == 0 for n in seen)


@given(specs())
def test_specs_are_valid_catalog_like_graphs(case):
    spec, in_features, out_features = case
    net = load_graph(spec)
    sizes = net.resolve(in_features, out_features)
    assert math.prod(sizes[leg] for leg in net.open["out"]) == out_features
    assert net.build(in_features, out_features).delta_weight().shape == (out_features, in_features)


@given(layer_shapes(max_features=20))
def test_layer_shapes_are_in_range(shape):
    out_features, in_features = shape
    assert 1 <= out_features <= 20 and 1 <= in_features <= 20


@settings(max_examples=10)
@given(adapters(dtype=torch.float32))
def test_adapters_hold_non_trivial_tensors(adapter):
    assert all(float(p.abs().min()) > 0 for p in adapter.parameters() if p.requires_grad and p.numel())
    assert float(adapter.delta_weight().abs().max()) > 0
