"""Numerical fit of a Stiefel node to a target, for maps that do not reach every orthonormal matrix.

``min over parameters and column signs D of ||Q D - T||_F``; for orthonormal Q and T this is
``2k - 2 sum_j |q_j . t_j|``, so the loss maximizes the absolute column overlaps (the signs come
for free: ``D_jj = sign(q_j . t_j)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...errors import ShapeError


@dataclass
class FitResult:
    """Outcome of :func:`fit_columns`: ``residual = ||Q D - T||_F`` with the best signs ``D``."""

    residual: float
    signs: torch.Tensor
    steps: int
    restarts: int

    def __float__(self) -> float:
        return self.residual


def _loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return q.shape[1] - (q * target).sum(0).abs().sum()


def fit_columns(node, target: torch.Tensor, *, steps: int = 300, lr: float = 0.05, restarts: int = 2,
                polish: int = 50, reinit: Callable[[], None] | None = None, tol: float = 1e-7) -> FitResult:
    """Fit ``node.matrix()`` (rows x cols) to ``target`` up to column signs; keep the best parameters.

    Adam for ``steps`` (learning rate decayed to 0), then L-BFGS for ``polish`` iterations, from the
    node's current parameters and then from ``restarts`` fresh draws of ``reinit()``. Returns a
    :class:`FitResult`; the node is left holding the best parameters found.
    """
    if target.dim() != 2:
        target = node.to_matrix(target)
    if target.shape != (node.rows, node.cols):
        raise ShapeError(f"node {node.name!r}: fit target has shape {tuple(target.shape)}, "
                         f"expected {(node.rows, node.cols)} (or the node's leg shape {node.shape})")
    params = [p for p in node.parameters() if p.requires_grad]
    if not params:
        q = node.matrix().detach()
        return _result(q, target.to(q), 0, 0)
    target = target.detach().to(params[0])
    with torch.no_grad():  # the starting point is a candidate too: fitting never makes things worse
        best_loss = float(_loss(node.matrix(), target))
    best_state, total = [p.detach().clone() for p in params], 0
    for attempt in range(restarts + 1):
        if attempt and reinit is not None:
            reinit()
        elif attempt:
            break
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / max(steps, 1))
        for _ in range(steps):
            opt.zero_grad()
            loss = _loss(node.matrix(), target)
            loss.backward()
            opt.step()
            sched.step()
            total += 1
        if polish:
            lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=polish, tolerance_grad=1e-12,
                                      tolerance_change=1e-15, line_search_fn="strong_wolfe")

            def closure(lbfgs=lbfgs):
                lbfgs.zero_grad()
                value = _loss(node.matrix(), target)
                value.backward()
                return value

            lbfgs.step(closure)
            total += polish
        with torch.no_grad():
            value = float(_loss(node.matrix(), target))
        if value < best_loss:
            best_loss = value
            best_state = [p.detach().clone() for p in params]
        if best_loss < tol:
            break
    with torch.no_grad():
        for p, v in zip(params, best_state):
            p.copy_(v)
        q = node.matrix()
    return _result(q, target, total, attempt)


def _result(q: torch.Tensor, target: torch.Tensor, steps: int, restarts: int) -> FitResult:
    with torch.no_grad():
        signs = torch.where((q * target).sum(0) < 0, -1.0, 1.0).to(q)
        residual = float(torch.linalg.norm(q * signs - target))
    return FitResult(residual, signs, steps, restarts)
