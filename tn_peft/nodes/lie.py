"""``exp``, ``cayley``, ``taylor``: Stiefel nodes from a skew-symmetric generator (QUANTUM_PEFT.md sec. 3).

``A = B - B^T`` with B (N x N) strictly lower triangular and nonzero only in its first r columns
(r = the intrinsic rank K' <= K): ``N r - r(r+1)/2`` parameters. The node is the first K columns of

- ``exp``:    ``exp(A)`` (exact);
- ``cayley``: ``(I - A/2)^-1 (I + A/2)`` (exact);
- ``taylor``: ``sum_{p<=P} A^p / p!`` (approximate: unitarity error about ``||A||^(P+1) / (P+1)!``).

A has rank <= 2r, ``A = W J W^T`` with ``W = [B, E]`` (E the first r identity columns) and
``J = [[0, I], [-I, 0]]``, so every map is ``Q = E_K + W f(M) J W^T E_K`` with the small
``M = J W^T W`` (2r x 2r): ``f(M) = sum M^n/(n+1)!`` for exp (one ``matrix_exp`` of size 2r + K),
``(I - M/2)^-1`` for cayley (one solve), the truncated series for taylor. Cost O(N r K), never N x N.

Right inverses (:func:`stiefel_log`, :func:`cayley_inverse`) live in :mod:`tn_peft.nodes.lie_inverse`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import RightInverseError, SpecError
from .base import StiefelNode

METHODS = ("exp", "cayley", "taylor")
INITS = ("random", "identity")


def lower_count(n: int, rank: int) -> int:
    """Parameters of an N x r strictly lower triangular block: ``N r - r (r + 1) / 2``."""
    return n * rank - rank * (rank + 1) // 2


def lower_positions(n: int, rank: int) -> np.ndarray:
    """Flat positions (row-major in an N x r array) of the parameters, column by column."""
    return np.array([i * rank + j for j in range(rank) for i in range(j + 1, n)], dtype=np.int64)


def lie_columns(lower: torch.Tensor, k: int, method: str = "exp", order: int = 4) -> torch.Tensor:
    """First k columns of ``map(B - B^T)`` for ``lower`` = B's first r columns, ``(..., N, r)``.

    ``method``: exp | cayley | taylor (``order`` P >= 1). Returns ``(..., N, k)``; requires r <= k <= N.
    """
    n, r = lower.shape[-2:]
    batch = lower.shape[:-2]
    eye_k = torch.eye(n, k, dtype=lower.dtype, device=lower.device).expand(*batch, n, k)
    if r == 0:
        return eye_k
    top = lower[..., :r, :]                                   # E^T B (r x r), strictly lower
    gram = lower.mT @ lower                                   # B^T B
    eye_r = torch.eye(r, dtype=lower.dtype, device=lower.device).expand(*batch, r, r)
    m = torch.cat([torch.cat([top, eye_r], -1), torch.cat([-gram, -top.mT], -1)], -2)   # J W^T W
    z = torch.cat([torch.eye(r, k, dtype=lower.dtype, device=lower.device).expand(*batch, r, k),
                   -lower[..., :k, :].mT], -2)                # J W^T E_K  (2r x k)
    if method == "exp":
        aug = torch.cat([torch.cat([m, z], -1), lower.new_zeros(*batch, k, 2 * r + k)], -2)  # [[M, Z], [0, 0]]
        y = torch.linalg.matrix_exp(aug)[..., : 2 * r, 2 * r:]   # phi(M) Z
    elif method == "cayley":
        y = torch.linalg.solve(torch.eye(2 * r, dtype=m.dtype, device=m.device) - 0.5 * m, z)
    elif method == "taylor":
        if order < 1:
            raise ValueError(f"taylor order must be >= 1, got {order}")
        y = z / order
        for p in range(order - 1, 0, -1):                    # Horner: sum_{p=1..P} M^(p-1) Z / p!
            y = (z + m @ y) / p
    else:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    out = eye_k + lower @ y[..., :r, :]
    return torch.cat([out[..., :r, :] + y[..., r:, :], out[..., r:, :]], -2)


class LieNode(StiefelNode):
    """Shared body of the exp / cayley / taylor kinds (see the module docstring).

    Options: ``cols``; ``rank`` the intrinsic rank r (default: K, the full Stiefel dimension);
    ``init`` random (B entries N(0, (s / sqrt N)^2), so columns of A have norm about s) | identity
    (B = 0, Q = E_K); ``init_scale`` s.
    """

    method = "exp"

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, cols=None,
                 rank: int | None = None, init: str = "random", init_scale: float = 1.0) -> None:
        super().__init__(name, legs, shape, cols)
        n, k = self.rows, self.cols
        rank = k if rank is None else rank
        if not isinstance(rank, int) or not 1 <= rank <= k:
            raise SpecError(f"intrinsic rank {rank!r} must be an integer in 1..{k} (the node's columns)",
                            node=name, fix=f"use rank <= {k}, or omit it for the full rank {k}")
        if init not in INITS:
            raise SpecError(f"init {init!r} is not known", node=name, fix=f"use one of {', '.join(INITS)}")
        self.rank, self.init, self.init_scale = rank, init, float(init_scale)
        self.register_buffer("positions", torch.from_numpy(lower_positions(n, rank)), persistent=False)
        count = lower_count(n, rank)
        values = torch.zeros(count) if init == "identity" else torch.randn(count) * (self.init_scale / n ** 0.5)
        self.values = nn.Parameter(values)

    def lower(self) -> torch.Tensor:
        """B's first r columns, ``(N, r)``, strictly lower triangular."""
        n, r = self.rows, self.rank
        flat = self.values.new_zeros(n * r).index_copy(0, self.positions, self.values)
        return flat.view(n, r)

    def matrix(self) -> torch.Tensor:
        return lie_columns(self.lower(), self.cols, self.method, getattr(self, "order", 4))

    def set_lower(self, lower: np.ndarray | torch.Tensor) -> None:
        """Set the parameters from an (N, K) strictly lower block; columns past the rank must be 0."""
        lower = torch.as_tensor(np.asarray(lower, dtype=np.float64))
        extra = lower[:, self.rank:].abs().max().item() if lower.shape[1] > self.rank else 0.0
        scale = max(1.0, lower.abs().max().item())
        if extra > 1e-7 * scale:
            raise RightInverseError(
                f"node {self.name!r}: the matrix needs generator columns past the intrinsic rank {self.rank} "
                f"(largest entry {extra:.3g}); it is not reachable with rank {self.rank}. Fix: raise rank "
                f"to {self.cols}")
        with torch.no_grad():
            flat = lower[:, : self.rank].reshape(-1)[self.positions.cpu()]
            self.values.copy_(flat.to(self.values))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"


class ExpNode(LieNode, kind="exp"):
    """``Q = exp(B - B^T)[:, :K]``; right inverse: the Stiefel logarithm (:func:`stiefel_log`)."""

    method = "exp"

    def set_matrix(self, matrix: torch.Tensor) -> None:
        from .lie_inverse import stiefel_log

        self.set_lower(stiefel_log(matrix.detach().cpu().double().numpy()))


class CayleyNode(LieNode, kind="cayley"):
    """``Q = [(I - A/2)^-1 (I + A/2)][:, :K]``; right inverse in closed form (:func:`cayley_inverse`)."""

    method = "cayley"

    def set_matrix(self, matrix: torch.Tensor) -> None:
        from .lie_inverse import cayley_inverse

        self.set_lower(cayley_inverse(matrix.detach().cpu().double().numpy()))


class TaylorNode(LieNode, kind="taylor"):
    """``Q = [sum_{p<=P} A^p / p!][:, :K]``, approximately orthonormal; option ``order`` P >= 1."""

    method = "taylor"

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, cols=None,
                 rank: int | None = None, order: int = 4, init: str = "random", init_scale: float = 1.0) -> None:
        if not isinstance(order, int) or order < 1:
            raise SpecError(f"taylor order {order!r} must be an integer >= 1", node=name,
                            fix="use order: 4 (error about ||A||^5 / 120), or kind exp for an exact map")
        super().__init__(name, legs, shape, cols=cols, rank=rank, init=init, init_scale=init_scale)
        self.order = order

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, order={self.order}"
