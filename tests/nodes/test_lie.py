"""exp / cayley / taylor: low-rank evaluation against dense maps, counts, right inverses."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tn_peft.errors import SpecError
from tn_peft.nodes import CayleyNode, ExpNode, TaylorNode, create_node, lie_columns
from tn_peft.nodes.lie_inverse import cayley_inverse, log_orthogonal, stiefel_log
from tn_peft.testing import assert_orthonormal


def dense_map(lower, k, method, order=4):
    n, r = lower.shape
    full = torch.zeros(n, n, dtype=lower.dtype)
    full[:, :r] = lower
    a = full - full.T
    eye = torch.eye(n, dtype=lower.dtype)
    if method == "exp":
        u = torch.linalg.matrix_exp(a)
    elif method == "cayley":
        u = torch.linalg.solve(eye - a / 2, eye + a / 2)
    else:
        u, term = eye.clone(), eye.clone()
        for p in range(1, order + 1):
            term = term @ a / p
            u = u + term
    return u[:, :k]


@st.composite
def shapes(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, n))
    r = draw(st.integers(1, k))
    return n, k, r, draw(st.integers(0, 2**31 - 1))


@given(shapes(), st.sampled_from(["exp", "cayley", "taylor"]), st.integers(1, 6))
def test_low_rank_maps_equal_dense_maps(shape, method, order):
    n, k, r, seed = shape
    lower = torch.randn(n, r, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).tril(-1)
    lower = lower / max(1.0, n ** 0.5)
    ours = lie_columns(lower, k, method, order)
    torch.testing.assert_close(ours, dense_map(lower, k, method, order), atol=1e-11, rtol=0)


@given(shapes(), st.sampled_from([ExpNode, CayleyNode]), st.sampled_from([torch.float32, torch.float64]))
def test_exact_maps_are_orthonormal_with_the_formula_count(shape, cls, dtype):
    n, k, r, _ = shape
    node = cls("U", ["o", "k"], [n, k], rank=r).to(dtype)
    assert node.num_parameters() == n * r - r * (r + 1) // 2
    assert_orthonormal(node.matrix())


def test_taylor_error_falls_with_order():
    torch.manual_seed(0)
    errors = []
    for order in (1, 2, 4, 8, 12):
        node = TaylorNode("U", ["o", "k"], [256, 8], order=order).double()
        node.values.data = ExpNode("U", ["o", "k"], [256, 8]).values.data.double()
        errors.append(node.orthonormality_error())
    assert all(a > b for a, b in itertools.pairwise(errors))
    assert errors[0] > 1e-2 and errors[-1] < 1e-9


@pytest.mark.parametrize("cls", [ExpNode, CayleyNode, TaylorNode])
def test_gradcheck_and_identity_init(cls):
    node = cls("U", ["o", "k"], [7, 3], rank=2).double()
    values = node.values.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: torch.func.functional_call(node, {"values": v}, args=()), (values,))
    eye = cls("U", ["o", "k"], [7, 3], init="identity").matrix()
    torch.testing.assert_close(eye, torch.eye(7, 3))


def test_option_errors():
    with pytest.raises(SpecError, match="intrinsic rank"):
        ExpNode("U", ["o", "k"], [16, 4], rank=5)
    with pytest.raises(SpecError, match="intrinsic rank"):
        create_node("cayley", "U", ["o", "k"], [16, 4], {"rank": 0})
    with pytest.raises(SpecError, match="order"):
        create_node("taylor", "U", ["o", "k"], [16, 4], {"order": 0})
    with pytest.raises(SpecError, match="no option"):
        create_node("exp", "U", ["o", "k"], [16, 4], {"layers": 1})


def random_stiefel(n, k, seed):
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, k)))[0]
    if n == k and np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.mark.parametrize("cls", [ExpNode, CayleyNode])
@pytest.mark.parametrize("n,k,r", [(64, 4, 4), (64, 4, 2), (300, 16, 16), (12, 12, 12), (20, 15, 9), (4096, 16, 16)])
def test_right_inverse_round_trips_in_float32(cls, n, k, r):
    source = cls("U", ["o", "k"], [n, k], rank=r)
    q = source.matrix().detach()
    node = cls("U", ["o", "k"], [n, k], rank=r)
    node.right_inverse(q)
    assert (node.matrix() - q).abs().max() < 1e-5
    assert (node.values - source.values).abs().max() < 1e-4


@pytest.mark.parametrize("cls", [ExpNode, CayleyNode])
@pytest.mark.parametrize("n,k", [(64, 4), (256, 16), (9, 9)])
def test_right_inverse_reaches_random_stiefel_matrices(cls, n, k):
    q = random_stiefel(n, k, n + k)
    node = cls("U", ["o", "k"], [n, k]).double()
    node.set_matrix(torch.from_numpy(q))
    assert np.abs(node.matrix().detach().numpy() - q).max() < 1e-10


def test_unreachable_matrices_raise_clear_errors():
    minus = -np.eye(8, 3)
    with pytest.raises(ValueError, match="eigenvalue -1"):
        cayley_inverse(minus)
    reflection = np.eye(5)
    reflection[0, 0] = -1
    with pytest.raises(ValueError, match="determinant -1"):
        stiefel_log(reflection)
    q = torch.from_numpy(random_stiefel(32, 4, 0))
    with pytest.raises(ValueError, match="intrinsic rank"):
        CayleyNode("U", ["o", "k"], [32, 4], rank=2).set_matrix(q)
    with pytest.raises(ValueError, match="not orthonormal"):
        stiefel_log(np.ones((6, 2)))


def test_log_orthogonal_handles_rotation_by_pi():
    rotation = np.diag([-1.0, -1.0, 1.0, 1.0])
    log = log_orthogonal(rotation)
    np.testing.assert_allclose(torch.linalg.matrix_exp(torch.from_numpy(log)).numpy(), rotation, atol=1e-12)
    np.testing.assert_allclose(log, -log.T)
