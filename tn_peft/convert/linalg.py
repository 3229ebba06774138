"""Pure tensor math of conversion: LoRA <-> canonical SVD, truncated SVD, rank choice, sign gauges.

Everything here takes and returns torch tensors (computed in float64) and touches no files.

    dW = scale * B @ A = U diag(s) V^T        (U: out x k, V: in x k, orthonormal columns)
"""

from __future__ import annotations

import math

import torch

from ..nodes.base import orthonormality_error as _orthonormality_error


def lora_scale(alpha: float, rank: int, use_rslora: bool = False) -> float:
    """LoRA's scale: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA.

    >>> lora_scale(16, 4), lora_scale(16, 4, use_rslora=True)
    (4.0, 8.0)
    """
    return float(alpha) / (math.sqrt(rank) if use_rslora else rank)


def lora_to_svd(B: torch.Tensor, A: torch.Tensor, scale: float = 1.0):
    """Exact canonical SVD of a LoRA pair: ``scale * B A = U diag(s) V^T``.

    QR(B) = Qb Rb, QR(A^T) = Qa Ra, SVD(Rb Ra^T) = P S Z^T, so U = Qb P, s = scale * S, V = Qa Z
    (QUANTUM_PEFT.md sec. 1). ``B`` is (out, r), ``A`` is (r, in); k = min(r, out, in).
    Costs O((out + in) r^2), never forms the out x in matrix.

    >>> U, s, V = lora_to_svd(torch.ones(3, 1), torch.ones(1, 2), scale=2.0)
    >>> round(float(s[0]), 6)  # 2 * ||ones(3)|| * ||ones(2)||
    4.898979
    """
    B = B.detach().to(torch.float64)
    A = A.detach().to(torch.float64)
    if B.ndim != 2 or A.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(f"LoRA factors must be B (out, r) and A (r, in), got {tuple(B.shape)} and {tuple(A.shape)}")
    qb, rb = torch.linalg.qr(B)          # (out, kb), (kb, r)
    qa, ra = torch.linalg.qr(A.T)        # (in, ka), (ka, r)
    p, s, zt = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    return qb @ p, float(scale) * s, qa @ zt.T


def svd_to_lora(U: torch.Tensor, s: torch.Tensor, V: torch.Tensor, scale: float = 1.0):
    """LoRA factors with ``scale * B A = U diag(s) V^T``: B = U sqrt|s| / sqrt(scale), A = sign(s) sqrt|s| V^T / sqrt(scale).

    Balancing sqrt|s| between the two factors keeps B and A of the same magnitude.
    """
    s = s.to(torch.float64)
    root = s.abs().sqrt() / math.sqrt(float(scale))
    B = U.to(torch.float64) * root
    A = (torch.sign(s) * root)[:, None] * V.to(torch.float64).T
    return B, A


def svd(dW: torch.Tensor):
    """Thin SVD ``dW = U diag(s) V^T`` in float64 (s descending)."""
    u, s, vt = torch.linalg.svd(dW.detach().to(torch.float64), full_matrices=False)
    return u, s, vt.T


def numerical_rank(s: torch.Tensor, shape: tuple[int, int], eps: float = torch.finfo(torch.float32).eps) -> int:
    """Singular values above ``max(shape) * eps * s_max`` (numpy's matrix_rank rule), at least 1.

    ``eps`` is that of the precision the factors were *stored* in (float32 by default): rounding
    them leaves singular values of about ``eps * s_max`` that are noise, not rank.
    """
    if s.numel() == 0:
        return 1
    tol = max(shape) * float(eps) * float(s.abs().max())
    return max(1, int((s.abs() > tol).sum()))


def choose_rank(s: torch.Tensor, shape: tuple[int, int], rank: float | None = None) -> int:
    """The rank to keep from singular values ``s`` (descending).

    - ``None``: the numerical rank (exact export);
    - ``int``: that rank, capped at ``len(s)``;
    - ``float`` in (0, 1]: the smallest k whose cumulative energy ``sum_{i<k} s_i^2 / sum s_i^2``
      reaches ``rank``, so that the relative Frobenius error is at most ``sqrt(1 - rank)``.

    >>> choose_rank(torch.tensor([3.0, 4.0 * 0 + 1.0, 0.0]), (3, 3), 0.9)
    1
    """
    if rank is None:
        return numerical_rank(s, shape)
    if isinstance(rank, bool):
        raise TypeError("rank must be None, an int >= 1 or a float in (0, 1]")
    if isinstance(rank, int):
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        return max(1, min(rank, s.numel()))
    rank = float(rank)
    if not 0.0 < rank <= 1.0:
        raise ValueError(f"a float rank is a cumulative energy threshold in (0, 1], got {rank}")
    energy = s.to(torch.float64) ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 1
    cumulative = torch.cumsum(energy, 0) / total
    k = int((cumulative < rank - 1e-12).sum()) + 1
    return max(1, min(k, numerical_rank(s, shape)))


def truncate(U: torch.Tensor, s: torch.Tensor, V: torch.Tensor, k: int):
    """The first k singular triplets, zero-padded (orthonormal completion for U, V) when k > len(s)."""
    if k <= s.numel():
        return U[:, :k], s[:k], V[:, :k]
    return pad_stiefel(U, k), torch.cat([s, s.new_zeros(k - s.numel())]), pad_stiefel(V, k)


def pad_stiefel(Q: torch.Tensor, k: int) -> torch.Tensor:
    """Extend an orthonormal-column matrix (n x j) to n x k orthonormal columns (k <= n).

    The extra columns span part of the orthogonal complement; with zero singular values beside them
    they leave dW unchanged.
    """
    n, j = Q.shape
    if k > n:
        raise ValueError(f"cannot fit {k} orthonormal columns in {n} rows")
    if k <= j:
        return Q[:, :k]
    q, _ = torch.linalg.qr(torch.cat([Q, torch.eye(n, dtype=Q.dtype, device=Q.device)], dim=1))
    # the first j columns of q equal Q up to sign; keep Q's own and take the complement from q
    return torch.cat([Q, q[:, j:k]], dim=1)


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """``||approx - exact||_F / ||exact||_F`` (0 when both are zero)."""
    exact = exact.to(torch.float64)
    norm = float(torch.linalg.norm(exact))
    diff = float(torch.linalg.norm(approx.to(torch.float64) - exact))
    return diff / norm if norm > 0 else diff


def orthonormality_error(Q: torch.Tensor) -> float:
    """``max |Q^T Q - I|`` for a matrix with orthonormal columns (in float64)."""
    return _orthonormality_error(Q, torch.float64)
