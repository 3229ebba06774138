"""householder: UT-form evaluation, counts, exact right inverse including column signs."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from tn_peft.nodes import HouseholderNode, create_node, householder_columns
from tn_peft.testing import assert_orthonormal, assert_right_inverse_round_trips


@st.composite
def stiefel(draw, max_n=40):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, n))
    seed = draw(st.integers(0, 2**31 - 1))
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, k)))[0]
    flips = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    return q * np.where(flips, -1.0, 1.0)


@given(stiefel())
def test_right_inverse_is_exact_for_every_stiefel_matrix(q):
    assert_right_inverse_round_trips(HouseholderNode, q)


@given(st.integers(1, 60), st.data(), st.sampled_from([torch.float32, torch.float64]))
def test_orthonormal_with_the_formula_count(n, data, dtype):
    k = data.draw(st.integers(1, n))
    node = HouseholderNode("U", ["o", "k"], [n, k]).to(dtype)
    assert node.num_parameters() == n * k - k * (k + 1) // 2
    assert_orthonormal(node.matrix())


def test_matches_lapack_householder_product():
    torch.manual_seed(0)
    v = torch.randn(30, 6, dtype=torch.float64).tril(-1)
    tau = 2.0 / (1.0 + (v * v).sum(0))
    torch.testing.assert_close(householder_columns(v), torch.linalg.householder_product(v, tau))


def test_identity_init_and_gradcheck():
    torch.testing.assert_close(create_node("householder", "U", ["o", "k"], [9, 4], {"init": "identity"}).matrix(),
                               torch.eye(9, 4))
    v = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(householder_columns, (v,))
