"""pauli_unitary and the ``pauli`` node on powers of two: orthonormality, layout, counts, gradients."""

import numpy as np
import pytest
import torch
from circuit_reference import pauli_matrix
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.errors import ShapeError, SpecError
from tn_peft.nodes import PauliNode, circuit_apply, create_node, pauli_unitary

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def angles(q, layers, seed, dtype=torch.float64, batch=()):
    gen = torch.Generator().manual_seed(seed)
    initial = (torch.rand(*batch, q, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
    weights = (torch.rand(*batch, layers, max(q - 1, 0), 2, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
    return initial.to(dtype), weights.to(dtype)


@st.composite
def circuits(draw, max_q=12):
    q = draw(st.integers(1, max_q))
    layers = draw(st.integers(0, 4))
    n = 2 ** q
    k = draw(st.integers(1, min(n, 64)) | st.just(n) if q <= 6 else st.integers(1, min(n, 64)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return q, layers, k, dtype, draw(st.integers(0, 2**31 - 1))


@given(circuits())
def test_columns_are_orthonormal(case):
    q, layers, k, dtype, seed = case
    initial, weights = angles(q, layers, seed, dtype)
    u = pauli_unitary(initial, weights, k)
    assert u.shape == (2 ** q, k) and u.dtype == dtype
    err = (u.T @ u - torch.eye(k, dtype=dtype)).abs().max().item()
    assert err < TOL[dtype]


@settings(max_examples=30)
@given(circuits(max_q=6))
def test_kronecker_path_equals_dense_build(case):
    q, layers, k, _, seed = case
    initial, weights = angles(q, layers, seed)
    dense = pauli_matrix(initial.numpy(), weights.numpy())
    np.testing.assert_allclose(pauli_unitary(initial, weights, k).numpy(), dense[:, :k], atol=1e-12)
    x = torch.randn(2 ** q, 3, dtype=torch.float64)
    theta = torch.cat([initial, weights.reshape(-1)])
    np.testing.assert_allclose(circuit_apply((2,) * q, layers, theta, x).numpy(), dense @ x.numpy(), atol=1e-12)


def test_pennylane_docstring_example():
    # SimplifiedTwoDesign docstring: init [pi]*3, layer1 [[0,pi],[0,pi]], layer2 [[pi,0],[pi,0]]
    # gives <Z_i> = [1, -1, 1] on |000>.
    initial = torch.full((3,), np.pi, dtype=torch.float64)
    weights = torch.tensor([[[0, np.pi], [0, np.pi]], [[np.pi, 0], [np.pi, 0]]], dtype=torch.float64)
    state = pauli_unitary(initial, weights, 1)[:, 0].reshape(2, 2, 2)
    probs = state ** 2
    z = [float((probs.sum(dim=[d for d in range(3) if d != w]) * torch.tensor([1.0, -1.0], dtype=torch.float64)).sum())
         for w in range(3)]
    np.testing.assert_allclose(z, [1.0, -1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("q,layers,k", [(1, 1, 1), (2, 0, 3), (3, 2, 5), (4, 1, 16), (5, 3, 2)])
def test_gradcheck(q, layers, k):
    k = min(k, 2 ** q)
    initial, weights = angles(q, layers, q * 10 + layers)
    initial.requires_grad_(True)
    weights.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: pauli_unitary(a, b, k), (initial, weights))
    zero = (torch.zeros_like(initial, requires_grad=True), torch.zeros_like(weights, requires_grad=True))
    assert torch.autograd.gradcheck(lambda a, b: pauli_unitary(a, b, k), zero)


def test_batched_angle_sets_equal_one_by_one():
    initial, weights = angles(5, 2, 3, batch=(4,))
    batched = pauli_unitary(initial, weights, 6)
    single = torch.stack([pauli_unitary(initial[i], weights[i], 6) for i in range(4)])
    assert batched.shape == (4, 32, 6)
    torch.testing.assert_close(batched, single, atol=1e-13, rtol=0)


def test_bad_shapes_raise():
    with pytest.raises(ShapeError):
        pauli_unitary(torch.zeros(3), torch.zeros(1, 3, 2))
    with pytest.raises(ShapeError):
        pauli_unitary(torch.zeros(3), torch.zeros(1, 2, 2), k=9)


@given(st.integers(1, 12), st.integers(0, 4))
def test_parameter_count_formula(q, layers):
    node = PauliNode("U", ["out", "k"], [2 ** q, 1], layers=layers)
    assert node.construction == "pauli"
    assert node.num_parameters() == (2 * layers + 1) * q - 2 * layers == node.expected_params


def test_worked_counts_and_quantum_peft_total():
    assert create_node("pauli", "U", ["o", "k"], [1024, 4], {"layers": 1}).num_parameters() == 28
    u = create_node("pauli", "U", ["o", "k"], [4096, 4], {"layers": 1})
    assert u.num_parameters() == 34
    s = create_node("diagonal", "s", ["k"], [4])
    assert 2 * u.num_parameters() + s.num_parameters() == 72


def test_node_init_options():
    # all angles zero: U is the product of the CZ layers, a diagonal of signs
    eye = PauliNode("U", ["o", "k"], [64, 5], init="identity").matrix()
    torch.testing.assert_close(eye.abs(), torch.eye(64, 5))
    small = PauliNode("U", ["o", "k"], [64, 5], init="normal", init_scale=1e-3)
    assert small.initial.abs().max() < 0.01
    with pytest.raises(SpecError):
        PauliNode("U", ["o", "k"], [64, 5], init="zeros")
    with pytest.raises(SpecError):
        PauliNode("U", ["o", "k"], [64, 5], layers=-1)
    with pytest.raises(SpecError):
        PauliNode("U", ["o", "k"], [64, 5], construction="fourier")
    with pytest.raises(SpecError):
        PauliNode("U", ["o", "k"], [96, 5], construction="pauli")
    with pytest.raises(SpecError):
        PauliNode("U", ["o", "k"], [4, 5])


def test_node_forward_follows_legs_and_cols():
    node = PauliNode("core", ["r0", "m", "r1"], [2, 8, 4], cols="r0", layers=2)
    q = node.matrix()
    assert q.shape == (32, 2)
    assert node().shape == (2, 8, 4)
    torch.testing.assert_close(node.to_matrix(node()), q)
    assert node.orthonormality_error() < 1e-5


def test_quantum_peft_graph_has_72_parameters_at_4096():
    from tn_peft.adapter.adapter import Adapter
    from tn_peft.graph.spec import load_graph

    adapter = Adapter(load_graph("quantum_peft", rank=4, layers=1), 4096, 4096)
    assert sum(p.numel() for p in adapter.parameters() if p.requires_grad) == 2 * 34 + 4 == 72
    assert adapter.node("U").construction == "pauli"


def test_circuit_profile_is_what_the_planner_reads():
    """A Pauli node reports (passes = gate ops, chunk = widest wire); plain kinds report None."""
    import tn_peft

    adapter = tn_peft.load_graph("quantum_peft", layers=2).build(48, 48)
    u = adapter.node("U")
    network = u.as_network()
    assert u.circuit_profile() == (len(network.ops), max(network.wire_dims)) == (len(network.ops), 3)
    assert adapter.node("s").circuit_profile() is None
    assert tn_peft.load_graph("svd").build(16, 16).node("U").circuit_profile() is None
    (circuit,) = [op for op in adapter.problem.operands if op.name == "U"]
    assert circuit.kind == "circuit" and (circuit.passes, circuit.chunk) == u.circuit_profile()


def test_spread_basis_is_a_coprime_golden_stride():
    from tn_peft.nodes.circuit.pauli import spread_basis

    assert spread_basis(384, 4) == [0, 239, 94, 333] and spread_basis(2, 2) == [0, 1]
    for n, k in [(384, 64), (4096, 16), (12, 12), (3, 2)]:
        states = spread_basis(n, k)
        assert len(set(states)) == k and all(0 <= s < n for s in states)
    with pytest.raises(ShapeError):
        spread_basis(8, 9)


@pytest.mark.parametrize("rows,construction", [(16, "pauli"), (24, "mixed_radix")])
def test_spread_basis_node_is_the_full_circuit_at_those_columns(rows, construction):
    from tn_peft.nodes.circuit.pauli import spread_basis

    first = PauliNode("U", ["o", "k"], [rows, 4], layers=2)
    spread = PauliNode("U", ["o", "k"], [rows, 4], layers=2, basis="spread")
    spread.load_state_dict(first.state_dict())
    full = PauliNode("U", ["o", "k"], [rows, rows], layers=2)
    full.load_state_dict(first.state_dict())
    assert spread.construction == construction and spread.as_network() is None and spread.circuit_profile() is None
    torch.testing.assert_close(first.matrix(), full.matrix()[:, :4])
    torch.testing.assert_close(spread.matrix(), full.matrix()[:, spread_basis(rows, 4)])
    assert spread.orthonormality_error() < 1e-5 and "basis='spread'" in repr(spread)


def test_spread_basis_batches_with_its_own_kind_and_trains():
    from tn_peft.adapter.batching import batch_key, evaluate_groups, group_nodes

    a, b = (PauliNode("U", ["o", "k"], [24, 4], layers=1, basis="spread") for _ in range(2))
    first = PauliNode("U", ["o", "k"], [24, 4], layers=1)
    assert batch_key(a) == batch_key(b) != batch_key(first)
    values = evaluate_groups(group_nodes([a, b]))
    torch.testing.assert_close(values[id(a)], a(), rtol=1e-6, atol=1e-6)
    values[id(b)].sum().backward()
    assert b.weights.grad.abs().sum() > 0


def test_spread_basis_errors_name_the_node():
    with pytest.raises(SpecError, match="basis 'middle' is not known.*first, spread"):
        PauliNode("U", ["o", "k"], [16, 4], basis="middle")
    with pytest.raises(SpecError, match="csd construction"):
        PauliNode("U", ["o", "k"], [22, 4], basis="spread")


def test_quantum_peft_with_the_spread_basis_plans_the_reference_delta():
    import tn_peft
    from tn_peft.testing import reference_delta

    adapter = tn_peft.load_graph("quantum_peft", layers=2, basis="spread").build(48, 48)
    with torch.no_grad():
        adapter.node("s").values.normal_()
    x = torch.randn(5, 48, dtype=torch.float32)
    torch.testing.assert_close(adapter(x).double(), x.double() @ reference_delta(adapter).T, rtol=1e-4, atol=1e-5)
