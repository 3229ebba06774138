"""``givens``: an N x K Stiefel node as a product of Givens rotations, ``N K - K(K+1)/2`` angles.

Column j owns ``N - 1 - j`` rotations among rows ``j..N-1``, arranged as a binary tree so they run
in ``ceil(log2(N - j))`` rounds of disjoint planes (one batched op per round, not one per angle). In
round r the planes are rows ``(j + p, j + p + 2^r)`` for ``p = 0, 2^(r+1), 2 * 2^(r+1), ...``;
``G(t)`` maps ``(x_a, x_b)`` to ``(c x_a - s x_b, s x_a + c x_b)``. With ``P_j`` the product of
column j's rotations (round 0 leftmost)::

    Q = P_0 P_1 ... P_{K-1} E_K D

Right inverse (exact for every orthonormal Q): reduce Q to E_K column by column, round 0 first,
choosing ``t = atan2(x_b, x_a)`` to zero ``x_b`` into a non-negative ``x_a``; the last survivor is
then ``|q_j| = 1``, so D is all +1 except when K = N, where the last column keeps the sign
``det Q`` (D is a buffer, not trained). Cost of the forward: ``sum_j ceil(log2(N - j))`` rounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..errors import SpecError
from .base import StiefelNode

INITS = ("random", "identity")


@lru_cache(maxsize=64)
def givens_layout(n: int, k: int) -> tuple[tuple[tuple[int, int, int], ...], int, np.ndarray]:
    """``(per column (rounds, padded rows, offset), padded angle count, positions of real angles)``.

    Padded angles (planes reaching past row N-1) stay 0: identity rotations, not parameters.
    """
    columns, offset, positions = [], 0, []
    for j in range(k):
        m = n - j
        rounds = max(0, math.ceil(math.log2(m))) if m > 1 else 0
        padded = 1 << rounds
        columns.append((rounds, padded, offset))
        for r in range(rounds):
            for t in range(padded >> (r + 1)):
                if t * (2 << r) + (1 << r) < m:
                    positions.append(offset + t)
            offset += padded >> (r + 1)
    return tuple(columns), offset, np.array(positions, dtype=np.int64)


def givens_columns(angles: torch.Tensor, n: int, k: int, signs: torch.Tensor | None = None) -> torch.Tensor:
    """``P_0 ... P_{K-1} E_K diag(signs)`` from the padded angle vector of :func:`givens_layout`."""
    columns, _, _ = givens_layout(n, k)
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)   # (total, 2, 2)
    # one split (a single backward op) rather than a slice per round (each slice's backward would
    # zero-fill the whole gradient of ``rot``)
    sizes = [padded >> (r + 1) for rounds, padded, _ in columns for r in range(rounds)]
    per_round = iter(rot.split(sizes)) if sizes else iter(())
    round_rot = [[next(per_round) for _ in range(rounds)] for rounds, _, _ in columns]
    sub = angles.new_ones(1, 1) if k == n else torch.eye(n - k + 1, 1, dtype=angles.dtype, device=angles.device)
    for j in range(k - 1, -1, -1):
        rounds, padded, _ = columns[j]
        m = n - j
        if j < k - 1:   # add column j: [[1, 0], [0, sub]]
            sub = torch.cat([torch.cat([sub.new_ones(1, 1), sub.new_zeros(1, k - j - 1)], 1),
                             torch.cat([sub.new_zeros(m - 1, 1), sub], 1)], 0)
        width = k - j
        y = torch.cat([sub, sub.new_zeros(padded - m, width)], 0) if padded > m else sub
        for r in range(rounds - 1, -1, -1):
            groups = padded >> (r + 1)
            yv = y.view(groups, 2, 1 << r, width)
            first = round_rot[j][r] @ yv[:, :, 0, :]                            # (groups, 2, width)
            y = torch.cat([first.unsqueeze(2), yv[:, :, 1:, :]], 2).reshape(padded, width)
        sub = y[:m]
    return sub if signs is None else sub * signs


def givens_inverse(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(padded angles, signs)`` with ``givens_columns(angles, N, K, signs) = q`` (exact reduction)."""
    n, k = q.shape
    columns, total, _ = givens_layout(n, k)
    x = np.array(q, dtype=np.float64, copy=True)
    angles = np.zeros(total)
    for j in range(k):
        rounds, padded, offset = columns[j]
        m = n - j
        for r in range(rounds):
            groups = padded >> (r + 1)
            p = np.arange(groups) * (2 << r)
            ok = p + (1 << r) < m
            a, b = j + p[ok], j + p[ok] + (1 << r)
            theta = np.arctan2(x[b, j], x[a, j])
            c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
            xa, xb = x[a].copy(), x[b].copy()
            x[a], x[b] = c * xa + s * xb, -s * xa + c * xb
            angles[offset + np.nonzero(ok)[0]] = theta
            offset += groups
    signs = np.ones(k)
    if k == n:
        signs[-1] = 1.0 if x[-1, -1] >= 0 else -1.0
    return angles, signs


class GivensNode(StiefelNode, kind="givens"):
    """N x K orthonormal columns from ``N K - K(K+1)/2`` Givens rotations (module docstring).

    Options: ``cols``; ``init`` random (angles U(-pi s, pi s)) | identity (Q = E_K); ``init_scale`` s.
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, cols=None,
                 init: str = "random", init_scale: float = 1.0) -> None:
        super().__init__(name, legs, shape, cols)
        if init not in INITS:
            raise SpecError(f"init {init!r} is not known", node=name, fix=f"use one of {', '.join(INITS)}")
        _, self.padded, positions = givens_layout(self.rows, self.cols)
        self.register_buffer("positions", torch.from_numpy(positions), persistent=False)
        count = len(positions)
        angles = torch.zeros(count) if init == "identity" else (torch.rand(count) * 2 - 1) * math.pi * init_scale
        self.angles = nn.Parameter(angles)
        self.register_buffer("signs", torch.ones(self.cols))

    def padded_angles(self) -> torch.Tensor:
        return self.angles.new_zeros(self.padded).index_copy(0, self.positions, self.angles)

    def matrix(self) -> torch.Tensor:
        return givens_columns(self.padded_angles(), self.rows, self.cols, self.signs.to(self.angles.dtype))

    def set_matrix(self, matrix: torch.Tensor) -> None:
        angles, signs = givens_inverse(matrix.detach().cpu().double().numpy())
        with torch.no_grad():
            self.angles.copy_(torch.from_numpy(angles)[self.positions.cpu()].to(self.angles))
            self.signs.copy_(torch.from_numpy(signs).to(self.signs))
