"""Property tests of your own adapter graph with tn_peft.testing: copy this file into your test suite.

It tests examples/pauli_left_dense_right.yaml; point GRAPH at your graph file. Run: pytest test_my_graph.py
"""

from pathlib import Path

import torch
from hypothesis import given
from hypothesis import strategies as st

import tn_peft
from tn_peft.testing import (
    assert_equivalent,
    assert_merge_roundtrip,
    assert_orthonormal,
    assert_planner_matches_reference,
    assert_save_load_roundtrip,
    layer_shapes,
    load_profile,
)

load_profile("ci")  # derandomized, no deadline, 25 examples; HYPOTHESIS_PROFILE=thorough for 500
GRAPH = Path(__file__).with_name("pauli_left_dense_right.yaml")


def build(in_features, out_features, seed):
    """My graph on a layer of that shape, every tensor random (s starts at zero: make it non-trivial)."""
    torch.manual_seed(seed)
    adapter = tn_peft.load_graph(GRAPH, rank=2).build(in_features, out_features, dtype=torch.float64)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    return adapter


@given(layer_shapes(max_features=40, min_features=2), st.integers(0, 2**16))
def test_planner_matches_the_reference_and_u_stays_orthonormal(shape, seed):
    out_features, in_features = shape
    adapter = build(in_features, out_features, seed)
    assert_planner_matches_reference(adapter)
    assert_orthonormal(adapter.node("U").matrix())


def test_my_graph_equals_its_spec_written_out():
    net = tn_peft.load_graph(GRAPH, rank=2)
    assert_equivalent(net, net.to_spec(), in_features=12, out_features=10)


def test_merge_and_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(graph=str(GRAPH), target_modules=["0", "2"]))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(std=0.3)
    x = torch.randn(5, 16)
    assert_merge_roundtrip(model, x)
    assert_save_load_roundtrip(model, tmp_path, x)
