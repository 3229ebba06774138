"""Mixed-radix circuits, sizes that are not powers of two, as_network() and fit() of the pauli kind."""

import math

import numpy as np
import pytest
import torch
from circuit_reference import circuit_matrix
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.nodes import PauliNode, circuit_apply, circuit_columns
from tn_peft.nodes.circuit.layout import circuit_num_params
from tn_peft.nodes.circuit.pauli import choose_construction, prime_factors
from tn_peft.testing import assert_orthonormal


def expected_mixed(dims, layers):
    """sum_w d_w(d_w-1)/2 * (1 + L * pairs(w)), pairs = 2 inside, 1 at the ends, 0 for one wire."""
    q = len(dims)
    total = 0
    for w, d in enumerate(dims):
        pairs = 0 if q == 1 else (1 if w in (0, q - 1) else 2)
        total += d * (d - 1) // 2 * (1 + layers * pairs)
    return total


@settings(max_examples=20)
@given(st.lists(st.sampled_from([2, 3, 5, 7]), min_size=1, max_size=5).filter(lambda d: math.prod(d) <= 126),
       st.integers(0, 3), st.integers(0, 2**31 - 1), st.data())
def test_mixed_radix_equals_dense_reference(dims, layers, seed, data):
    n = math.prod(dims)
    k = data.draw(st.integers(1, n))
    count = circuit_num_params(dims, layers)
    assert count == expected_mixed(dims, layers)
    theta = torch.rand(count, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 6 - 3
    dense = circuit_matrix(dims, layers, theta.numpy())
    np.testing.assert_allclose(circuit_columns(dims, layers, theta, k).numpy(), dense[:, :k], atol=1e-12)
    x = torch.randn(n, 2, dtype=torch.float64)
    np.testing.assert_allclose(circuit_apply(dims, layers, theta, x).numpy(), dense @ x.numpy(), atol=1e-12)


# N -> (construction, parameters of an N x 4 node with L = 1), counts from the formulas in the docstrings
SIZES = {
    3: ("mixed_radix", 3),          # one 3-level wire
    5: ("mixed_radix", 10),         # one 5-level wire
    259: ("csd", 50),               # 7 x 37: 2 pauli(256) + full(3) = 22 + 22 + 3 + 3
    384: ("mixed_radix", 26),       # 3 x 2^7: 3*2 + 6*3 + 1*2
    768: ("mixed_radix", 29),       # 3 x 2^8
    1000: ("mixed_radix", 88),      # 5^3 x 2^3
    1536: ("mixed_radix", 32),      # 3 x 2^9
    11008: ("csd", 4420),           # 2^8 x 43: 2 pauli(8192) + full(2816) + 2816
}


@pytest.mark.parametrize("n", sorted(SIZES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_other_sizes_are_orthonormal_with_expected_counts(n, dtype):
    construction, count = SIZES[n]
    k = min(4, n)
    node = PauliNode("U", ["o", "k"], [n, k], layers=1).to(dtype)
    assert node.construction == construction == choose_construction(n)
    assert node.num_parameters() == count == node.expected_params
    q = node.matrix()
    assert q.shape == (n, k) and q.dtype == dtype
    assert_orthonormal(q)
    assert construction in repr(node)


def test_prime_factors_and_explicit_wires():
    assert prime_factors(384) == [3] + [2] * 7
    assert prime_factors(11008) == [43] + [2] * 8
    node = PauliNode("U", ["o", "k"], [36, 3], wires=[4, 9], layers=2)
    assert node.construction == "mixed_radix" and node.wire_dims == (4, 9)
    assert node.num_parameters() == expected_mixed((4, 9), 2)
    assert node.orthonormality_error() < 1e-5
    forced = PauliNode("U", ["o", "k"], [22, 3], construction="mixed_radix")
    assert forced.wire_dims == (11, 2) and forced.orthonormality_error() < 1e-5


@pytest.mark.parametrize("n,k,layers", [(16, 3, 2), (384, 4, 1), (30, 7, 1), (8, 8, 0)])
def test_as_network_contracts_to_the_node(n, k, layers):
    node = PauliNode("U", ["o", "k"], [n, k], layers=layers).double()
    net = node.as_network()
    q = node.matrix()
    assert net.k == k and net.size == n and math.prod(net.wire_dims) == n
    gates = [op for op in net.ops if op.kind == "gate"]
    signs = [op for op in net.ops if op.kind == "signs"]
    q_wires = len(net.wire_dims)
    assert len(gates) == q_wires + 2 * layers * (q_wires - 1)
    assert len(signs) == layers * (q_wires - 1)
    assert all(op.tensor.shape == (net.wire_dims[op.wires[0]],) * 2 for op in gates)
    torch.testing.assert_close(net.matrix(), q, atol=1e-12, rtol=0)
    x = torch.randn(5, n, dtype=torch.float64)
    z = torch.randn(5, k, dtype=torch.float64)
    torch.testing.assert_close(net.apply(x), x @ q, atol=1e-12, rtol=0)
    torch.testing.assert_close(net.apply_transpose(z), z @ q.T, atol=1e-12, rtol=0)
    net.apply(x).sum().backward()  # the gate tensors are differentiable functions of the angles
    assert node.initial.grad is not None and node.initial.grad.abs().sum() > 0


def test_csd_has_no_gate_network():
    assert PauliNode("U", ["o", "k"], [259, 4]).as_network() is None


def test_fit_recovers_a_circuit_up_to_column_signs():
    torch.manual_seed(1)
    source = PauliNode("U", ["o", "k"], [16, 3], layers=1).double()
    target = source.matrix().detach() * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    node = PauliNode("U", ["o", "k"], [16, 3], layers=1).double()
    with torch.no_grad():  # start near the answer: the landscape has local minima
        node.initial.copy_(source.initial + 0.3 * torch.randn(4, dtype=torch.float64))
        node.weights.copy_(source.weights + 0.3 * torch.randn_like(source.weights))
    result = node.fit(target, steps=200, restarts=0)
    assert float(result) < 1e-6
    torch.testing.assert_close(result.signs, torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))


def test_fit_of_an_unreachable_target_reports_the_residual():
    torch.manual_seed(2)
    target = torch.linalg.qr(torch.randn(32, 4, dtype=torch.float64))[0]
    node = PauliNode("U", ["o", "k"], [32, 4], layers=1).double()
    q0 = node.matrix().detach()
    before = torch.linalg.norm(q0 * torch.sign((q0 * target).sum(0)) - target).item()
    result = node.fit(target, steps=60, restarts=1, polish=10)
    q = node.matrix().detach()
    assert 0 < result.residual <= 2 * math.sqrt(4)
    assert result.residual == pytest.approx(torch.linalg.norm(q * result.signs - target).item())
    assert result.residual < before + 1e-9
    with pytest.raises(NotImplementedError, match="fit"):
        node.right_inverse(target)
