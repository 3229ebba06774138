"""givens: tree-ordered rotations, counts, exact right inverse (sign of det for square matrices)."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from tn_peft.nodes import GivensNode, create_node, givens_columns
from tn_peft.nodes.givens import givens_layout
from tn_peft.testing import assert_right_inverse_round_trips


def dense_givens(angles, n, k):
    """The product written out rotation by rotation, from the module docstring's definition."""
    columns, _, _ = givens_layout(n, k)
    q = np.eye(n)
    for j in range(k):
        rounds, padded, offset = columns[j]
        for r in range(rounds):
            for t in range(padded >> (r + 1)):
                a, b = j + t * (2 << r), j + t * (2 << r) + (1 << r)
                if b < n:
                    g = np.eye(n)
                    c, s = np.cos(angles[offset + t]), np.sin(angles[offset + t])
                    g[a, a], g[a, b], g[b, a], g[b, b] = c, -s, s, c
                    q = q @ g
            offset += padded >> (r + 1)
    return q[:, :k]


@given(st.integers(1, 20), st.data())
def test_equals_the_product_written_out(n, data):
    k = data.draw(st.integers(1, n))
    node = GivensNode("U", ["o", "k"], [n, k]).double()
    assert node.num_parameters() == n * k - k * (k + 1) // 2
    padded = node.padded_angles().detach()
    np.testing.assert_allclose(node.matrix().detach().numpy(), dense_givens(padded.numpy(), n, k), atol=1e-12)
    assert node.orthonormality_error() < 1e-12


@given(st.integers(1, 40), st.data())
def test_right_inverse_is_exact(n, data):
    k = data.draw(st.integers(1, n))
    q = np.linalg.qr(np.random.default_rng(data.draw(st.integers(0, 10**6))).normal(size=(n, k)))[0]
    assert_right_inverse_round_trips(GivensNode, q)


def test_large_node_and_gradcheck():
    node = GivensNode("U", ["o", "k"], [1000, 5])
    assert node.orthonormality_error() < 1e-5
    torch.testing.assert_close(create_node("givens", "U", ["o", "k"], [9, 4], {"init": "identity"}).matrix(),
                               torch.eye(9, 4))
    angles = torch.randn(givens_layout(6, 3)[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: givens_columns(a, 6, 3), (angles,))
