"""``householder``: an N x K Stiefel node as a product of K Householder reflections.

``Q = H_1 H_2 ... H_K E_K D``, ``H_i = I - 2 v_i v_i^T / |v_i|^2`` with ``v_i = e_i + (entries below
row i)``: ``N K - K(K+1)/2`` parameters, and D a fixed diagonal of column signs (a buffer, not
trained; LAPACK's QR fixes them). Evaluated with the compact "UT" form (Joffrain et al. 2006)::

    H_1 ... H_K = I - V T^-1 V^T,   T = triu(V^T V, 1) + diag(V^T V) / 2

so the forward is two GEMMs and one K x K triangular solve, O(N K^2), with plain autograd
(``torch.linalg.householder_product``'s backward is far slower at N = 4096).

Right inverse (exact for every orthonormal Q): Householder QR, ``Q = H_1 ... H_K R`` with R diagonal
(+-1) because Q is orthonormal; the reflectors are the parameters and ``D = diag(R)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SpecError
from .base import StiefelNode
from .lie import lower_count, lower_positions

INITS = ("random", "identity")


def householder_columns(reflectors: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """``H_1 ... H_K E_K diag(signs)`` from the strictly-lower parts of the reflectors, ``(..., N, K)``."""
    n, k = reflectors.shape[-2:]
    eye = torch.eye(n, k, dtype=reflectors.dtype, device=reflectors.device)
    v = reflectors.tril(-1) + eye
    gram = v.mT @ v
    t = gram.triu(1) + torch.diag_embed(gram.diagonal(dim1=-2, dim2=-1) * 0.5)
    q = eye - v @ torch.linalg.solve_triangular(t, v[..., :k, :].mT, upper=True)
    return q if signs is None else q * signs.unsqueeze(-2)


def householder_inverse(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(reflectors (N x K, strictly lower), signs (K,))`` with ``householder_columns(...) = q``."""
    import scipy.linalg  # here, not at import: scipy.linalg costs ~0.4 s of `import tn_peft`

    (qr, tau), _ = scipy.linalg.qr(q, mode="raw")
    k = q.shape[1]
    qr = qr[:, :k]
    signs = np.sign(np.diag(qr)).astype(np.float64)
    signs[signs == 0] = 1.0
    # LAPACK skips a reflection (tau = 0) where the column is already e_i * beta; our map always
    # reflects (v_i = e_i flips e_i), so that column's sign flips too.
    signs[tau[:k] == 0] *= -1
    return np.tril(qr, -1), signs


class HouseholderNode(StiefelNode, kind="householder"):
    """N x K orthonormal columns from K Householder reflections; ``N K - K(K+1)/2`` parameters.

    Options: ``cols``; ``init`` random (reflector entries N(0, s^2)) | identity (Q = E_K);
    ``init_scale`` s.
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, cols=None,
                 init: str = "random", init_scale: float = 1.0) -> None:
        super().__init__(name, legs, shape, cols)
        if init not in INITS:
            raise SpecError(f"init {init!r} is not known", node=name, fix=f"use one of {', '.join(INITS)}")
        n, k = self.rows, self.cols
        self.register_buffer("positions", torch.from_numpy(lower_positions(n, k)), persistent=False)
        count = lower_count(n, k)
        self.values = nn.Parameter(torch.zeros(count) if init == "identity" else torch.randn(count) * init_scale)
        # with zero reflectors every H_i flips e_i, so signs -1 give the identity columns
        self.register_buffer("signs", -torch.ones(k) if init == "identity" else torch.ones(k))

    def reflectors(self) -> torch.Tensor:
        n, k = self.rows, self.cols
        return self.values.new_zeros(n * k).index_copy(0, self.positions, self.values).view(n, k)

    def matrix(self) -> torch.Tensor:
        return householder_columns(self.reflectors(), self.signs.to(self.values.dtype))

    def set_matrix(self, matrix: torch.Tensor) -> None:
        reflectors, signs = householder_inverse(matrix.detach().cpu().double().numpy())
        with torch.no_grad():
            flat = torch.from_numpy(reflectors).reshape(-1)[self.positions.cpu()]
            self.values.copy_(flat.to(self.values))
            self.signs.copy_(torch.from_numpy(signs).to(self.signs))
