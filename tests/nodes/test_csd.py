"""The cosine-sine construction for sizes with a large prime factor."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.nodes import PauliNode
from tn_peft.nodes.circuit.csd import CSDBlock, csd_blocks, csd_num_params
from tn_peft.testing import assert_orthonormal


def pauli(n, layers):
    q = n.bit_length() - 1
    return 0 if n == 1 else (2 * layers + 1) * q - 2 * layers


def full(n, layers):
    """full(n) = 2 pauli(N1) + 2 full(N2) + N2, the binary expansion recursion of QUANTUM_PEFT sec. 4."""
    n1 = 1 << (n.bit_length() - 1)
    if n1 == n:
        return pauli(n, layers)
    return 2 * pauli(n1, layers) + 2 * full(n - n1, layers) + (n - n1)


def test_block_sizes_and_counts():
    assert csd_blocks(768) == [512, 256]
    assert csd_blocks(259) == [256, 2, 1]
    assert csd_num_params(259, 1, 4) == 50
    assert csd_num_params(768, 1) == 2 * 25 + 2 * 22 + 256


@settings(max_examples=20)
@given(st.integers(2, 300), st.integers(0, 3), st.data())
def test_csd_columns_are_orthonormal_with_the_formula_count(n, layers, data):
    k = data.draw(st.integers(1, min(n, 40)))
    node = PauliNode("U", ["o", "k"], [n, k], layers=layers, construction="csd").double()
    n1 = 1 << (n.bit_length() - 1)
    expected = full(n, layers) - (full(n - n1, layers) if n1 != n and k <= n1 else 0)
    assert node.num_parameters() == expected == node.expected_params
    q = node.matrix()
    assert_orthonormal(q)


@pytest.mark.parametrize("n", [3, 5, 6, 7, 11, 13, 24])
def test_columns_match_the_full_matrix(n):
    block = CSDBlock(n, 1).double()
    full_matrix = block.apply(torch.eye(n, dtype=torch.float64))
    assert (full_matrix.T @ full_matrix - torch.eye(n, dtype=torch.float64)).abs().max() < 1e-12
    for k in sorted({1, n // 2, n - 1, n} - {0}):
        torch.testing.assert_close(block.columns(k), full_matrix[:, :k], atol=1e-12, rtol=0)


@pytest.mark.parametrize("n,k", [(3, 2), (5, 5), (6, 3), (7, 1)])
def test_gradcheck(n, k):
    node = PauliNode("U", ["o", "k"], [n, k], construction="csd", layers=1).double()
    names = [name for name, _ in node.named_parameters()]
    inputs = tuple(p.detach().clone().requires_grad_(True) for p in node.parameters())

    def forward(*values):
        return torch.func.functional_call(node, dict(zip(names, values)), args=())

    assert forward(*inputs).shape == node.shape
    assert torch.autograd.gradcheck(forward, inputs)
