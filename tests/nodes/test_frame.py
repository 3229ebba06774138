"""Frames (tn_peft.nodes.frame) and the framed Pauli node: Q = F C(theta)[:, :K] with F E_K = A."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.adapter.batching import evaluate_groups, group_nodes
from tn_peft.errors import ShapeError, SpecError
from tn_peft.nodes.circuit.pauli import PauliNode, grouped_wires
from tn_peft.nodes.frame import apply_frame, frame_from_columns


def _orthonormal(n, k, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=dtype))[0]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(2, 40), data=st.data())
def test_frame_is_orthogonal_and_maps_the_first_basis_vectors_onto_the_columns(n, data):
    k = data.draw(st.integers(1, n))
    a = _orthonormal(n, k, seed=n * 100 + k)
    vectors, tau = frame_from_columns(a)
    f = apply_frame(vectors, tau, torch.eye(n, dtype=torch.float64))
    assert torch.allclose(f.T @ f, torch.eye(n, dtype=torch.float64), atol=1e-12)
    # F E_k = A up to column signs (A = F R with R diagonal +-1)
    assert torch.allclose((f[:, :k] * a).sum(0).abs(), torch.ones(k, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(f[:, :k], torch.linalg.householder_product(vectors, tau), atol=1e-12)


def test_zero_tau_is_the_identity_frame_and_bad_shapes_are_refused():
    m = torch.randn(6, 3)
    assert torch.equal(apply_frame(torch.randn(6, 2), torch.zeros(2), m), m)
    with pytest.raises(ShapeError, match="N x k"):
        frame_from_columns(torch.randn(3, 5))


def test_framed_pauli_node_starts_on_the_frame_and_stays_orthonormal():
    node = PauliNode("U", ["out", "k"], (48, 4), layers=2, frame="gradient")
    assert node.init == "identity" and node.as_network() is None  # a framed node is contracted as one tensor
    target = _orthonormal(48, 4, dtype=torch.float32)
    node.set_frame(target)
    q = node.matrix().detach()
    assert torch.allclose((q * target).sum(0).abs(), torch.ones(4), atol=1e-5)
    with torch.no_grad():
        for p in node.parameters():
            p.uniform_(-3, 3)
    assert node.orthonormality_error() < 1e-5
    assert node.num_parameters() == PauliNode("V", ["in", "k"], (48, 4), layers=2).num_parameters()  # frames are buffers
    assert set(node.state_dict()) >= {"frame_vectors", "frame_tau"}


def test_frame_errors_name_the_node():
    with pytest.raises(SpecError, match="frame 'pca' is not known"):
        PauliNode("U", ["out", "k"], (16, 2), frame="pca")
    with pytest.raises(SpecError, match="has no frame"):
        PauliNode("U", ["out", "k"], (16, 2)).set_frame(_orthonormal(16, 2, dtype=torch.float32))
    with pytest.raises(ShapeError, match="'U'"):
        PauliNode("U", ["out", "k"], (16, 2), frame="weight").set_frame(torch.randn(16, 3))


def test_batched_evaluation_applies_each_nodes_frame():
    nodes = [PauliNode(f"U{i}", ["out", "k"], (24, 3), layers=1, frame="weight", init="random") for i in range(3)]
    for i, node in enumerate(nodes):
        node.set_frame(_orthonormal(24, 3, seed=i, dtype=torch.float32))
    groups = group_nodes(nodes)
    assert len(groups) == 1  # one batched call for the three framed nodes
    batched = evaluate_groups(groups)
    for node in nodes:
        assert torch.allclose(batched[id(node)], node(), atol=1e-6)
    plain = PauliNode("P", ["out", "k"], (24, 3), layers=1)
    assert len(group_nodes(nodes + [plain])) == 2  # framed and plain circuits are not mixed


@pytest.mark.parametrize("n,max_wire,wires", [(384, 8, (8, 8, 6)), (384, 24, (24, 16)), (384, 16, (16, 12, 2)),
                                              (1024, 8, (8, 8, 8, 2)), (384, 3, (3, 2, 2, 2, 2, 2, 2, 2))])
def test_grouped_wires(n, max_wire, wires):
    assert grouped_wires(n, max_wire) == wires
    node = PauliNode("U", ["out", "k"], (n, 4), layers=1, max_wire=max_wire)
    assert tuple(node.wire_dims) == wires and node.orthonormality_error() < 1e-5


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(2, 5000), max_wire=st.integers(2, 64))
def test_grouped_wires_multiply_to_n_within_the_limit(n, max_wire):
    from tn_peft.nodes.circuit.pauli import prime_factors

    if max_wire < max(prime_factors(n)):
        return
    wires = grouped_wires(n, max_wire)
    assert torch.tensor(wires).prod().item() == n and max(wires) <= max_wire


def test_max_wire_below_the_largest_prime_factor_is_refused():
    with pytest.raises(SpecError, match="max_wire 2 is below the largest prime factor 3"):
        PauliNode("U", ["out", "k"], (384, 4), max_wire=2)
    with pytest.raises(SpecError, match="max_wire must be an integer"):
        PauliNode("U", ["out", "k"], (384, 4), max_wire=2.5)

