"""Pure math of conversion: exact LoRA -> SVD, rank choice, padding."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tn_peft.convert.linalg import (
    choose_rank,
    lora_scale,
    lora_to_svd,
    numerical_rank,
    orthonormality_error,
    pad_stiefel,
    relative_error,
    svd,
    svd_to_lora,
    truncate,
)


@given(out=st.integers(1, 24), inp=st.integers(1, 24), r=st.integers(1, 12),
       alpha=st.floats(0.5, 64), rslora=st.booleans(), seed=st.integers(0, 2**16))
def test_lora_to_svd_is_exact_and_canonical(out, inp, r, alpha, rslora, seed):
    g = torch.Generator().manual_seed(seed)
    B, A = torch.randn(out, r, generator=g), torch.randn(r, inp, generator=g)
    scale = lora_scale(alpha, r, rslora)
    U, s, V = lora_to_svd(B, A, scale)
    k = min(out, inp, r)
    assert U.shape == (out, k) and V.shape == (inp, k) and s.shape == (k,)
    dW = scale * B.double() @ A.double()
    assert relative_error(U @ torch.diag(s) @ V.T, dW) < 1e-10
    assert orthonormality_error(U) < 1e-10 and orthonormality_error(V) < 1e-10
    assert torch.all(s[:-1] >= s[1:])  # descending, like an SVD


@given(out=st.integers(1, 16), inp=st.integers(1, 16), r=st.integers(1, 8), seed=st.integers(0, 2**16),
       target_scale=st.floats(0.1, 10))
def test_svd_to_lora_round_trip(out, inp, r, seed, target_scale):
    g = torch.Generator().manual_seed(seed)
    dW = torch.randn(out, r, generator=g, dtype=torch.float64) @ torch.randn(r, inp, generator=g, dtype=torch.float64)
    U, s, V = svd(dW)
    k = choose_rank(s, dW.shape)
    assert k == min(out, inp, r)
    s = s.clone()
    s[0] = -s[0]  # negative singular values (sign gauges) must survive
    U2 = U.clone()
    U2[:, 0] = -U2[:, 0]
    B, A = svd_to_lora(*truncate(U2, s, V, k), scale=target_scale)
    assert relative_error(target_scale * B @ A, dW) < 1e-10


def test_choose_rank_energy_bounds_error():
    s = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    for threshold in (0.5, 0.8, 0.95, 0.99, 1.0):
        k = choose_rank(s, (4, 4), threshold)
        kept = float((s[:k] ** 2).sum() / (s ** 2).sum())
        assert kept >= threshold - 1e-12
        assert k == 1 or float((s[:k - 1] ** 2).sum() / (s ** 2).sum()) < threshold
    assert choose_rank(s, (4, 4), 3) == 3 and choose_rank(s, (4, 4), 10) == 4
    with pytest.raises(ValueError):
        choose_rank(s, (4, 4), 1.5)
    with pytest.raises(ValueError):
        choose_rank(s, (4, 4), 0)


def test_numerical_rank_and_padding():
    Q, _ = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64))
    P = pad_stiefel(Q, 5)
    assert P.shape == (6, 5) and torch.allclose(P[:, :2], Q) and orthonormality_error(P) < 1e-12
    assert numerical_rank(torch.tensor([1.0, 1e-20], dtype=torch.float64), (3, 3)) == 1
    U, s, _ = truncate(Q, torch.tensor([2.0, 1.0], dtype=torch.float64), Q, 4)
    assert s.tolist() == [2.0, 1.0, 0.0, 0.0] and U.shape == (6, 4)


def test_lora_scale():
    assert lora_scale(16, 4) == 4.0 and lora_scale(16, 4, True) == 8.0 and math.isclose(lora_scale(1, 3), 1 / 3)
