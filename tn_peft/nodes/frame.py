"""Frames: a fixed orthogonal basis a circuit acts in, ``Q = F C(theta)[:, :k]``.

A circuit's first k columns start (at zero angles) on the first k basis vectors ``E_k`` of the
features, whose order in a pretrained layer means nothing. A *frame* ``F`` is an N x N orthogonal
matrix, stored compactly as k Householder reflections ``F = H_1 ... H_k``,
``H_i = I - tau_i v_i v_i^T``, chosen so that ``F E_k = A`` for a given orthonormal ``A`` (N x k):
the circuit then starts on the subspace of ``A`` (the top singular vectors of the layer's weight or
of its first gradient) and its angles rotate away from it. The reflections are LAPACK's ``geqrf``
of ``A`` (``A = F R``, R diagonal +-1 for orthonormal ``A``); they are buffers, not trained, and an
all-zero ``tau`` is the identity frame. Storage: ``N k + k`` numbers per framed node.
"""

from __future__ import annotations

import torch

from ..errors import ShapeError


def frame_from_columns(columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vectors (N, k), tau (k,))`` of the reflections with ``H_1 ... H_k E_k = columns`` up to column signs.

    ``columns`` must be N x k with orthonormal columns (k <= N); they are orthonormalized again in
    float64 so that small drift does not matter.
    """
    if columns.dim() != 2 or columns.shape[0] < columns.shape[1]:
        raise ShapeError(f"a frame needs an N x k matrix with k <= N, got shape {tuple(columns.shape)}")
    a = torch.linalg.qr(columns.detach().to(torch.float64))[0]
    packed, tau = torch.geqrf(a)
    n, k = packed.shape
    vectors = torch.tril(packed, -1) + torch.eye(n, k, dtype=packed.dtype, device=packed.device)
    return vectors.to(columns.dtype), tau.to(columns.dtype)


def apply_frame(vectors: torch.Tensor, tau: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``H_1 ... H_k @ matrix`` for ``vectors (..., N, k)``, ``tau (..., k)``, ``matrix (..., N, c)``.

    k rank-one updates, last reflection first: ``M <- M - tau_i v_i (v_i^T M)``.
    """
    out = matrix
    for i in range(vectors.shape[-1] - 1, -1, -1):
        v = vectors[..., :, i:i + 1].to(out.dtype)                  # (..., N, 1)
        t = tau[..., i, None, None].to(out.dtype)                   # (..., 1, 1)
        out = out - (t * v) @ (v.transpose(-1, -2) @ out)
    return out
