"""Fit of the Pauli-circuit SVD form (Quantum-PEFT) to a LoRA layer: circuits reach only part of the
Stiefel manifold, so ``U(theta) diag(s) V(phi)^T ~ dW = scale B A`` is a least-squares fit.

For orthonormal U, V the best s is ``s_i = u_i^T dW v_i`` and the error is
``||dW||_F^2 - sum_i (u_i^T dW v_i)^2``, so after warm-starting each circuit on the exact singular
vectors (``node.fit``) the angles are refined jointly to maximize the captured energy
``sum_i (u_i^T dW v_i)^2`` (computed from the factors, never forming dW), then s is set in closed form.
"""

from __future__ import annotations

import torch

from .linalg import truncate


def captured(U: torch.Tensor, V: torch.Tensor, B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``diag(U^T B A V)``: the best singular values for fixed U, V (O((out + in) r k) work)."""
    return ((U.T @ B) * (A @ V).T).sum(1)


def fit_pauli(adapter, B: torch.Tensor, A: torch.Tensor, scale: float, U_t: torch.Tensor, s_t: torch.Tensor,
              V_t: torch.Tensor, *, steps: int = 100, lr: float = 0.05) -> float:
    """Set the U, s, V nodes of a built ``quantum_peft`` adapter to fit ``scale * B A``; returns the
    relative Frobenius error of dW (from the factors)."""
    u_node, s_node, v_node = adapter.node("U"), adapter.node("s"), adapter.node("V")
    k = s_node.shape[0]
    U_t, s_t, V_t = truncate(U_t, s_t, V_t, k)
    dtype = next(u_node.parameters()).dtype
    B = (float(scale) * B.detach().to(dtype))
    A = A.detach().to(dtype)
    total = float(torch.linalg.norm(s_t)) ** 2  # ||dW||_F^2
    warm = max(steps // 2, 1)  # a cheap warm start on the exact singular vectors (no restarts, no L-BFGS)
    u_node.fit(U_t.to(dtype), steps=warm, restarts=0, polish=0)
    v_node.fit(V_t.to(dtype), steps=warm, restarts=0, polish=0)
    params = [p for node in (u_node, v_node) for p in node.parameters() if p.requires_grad]

    def energy() -> torch.Tensor:
        return (captured(u_node.matrix(), v_node.matrix(), B, A) ** 2).sum()

    with torch.no_grad():
        best = float(energy())
        best_state = [p.detach().clone() for p in params]
    if params and total > 0:
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / max(steps, 1))
        for _ in range(steps):
            opt.zero_grad()
            loss = -energy() / total
            loss.backward()
            opt.step()
            sched.step()
            value = -float(loss.detach()) * total
            if value > best:
                best, best_state = value, [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, saved in zip(params, best_state):
                p.copy_(saved)
    with torch.no_grad():
        s = captured(u_node.matrix(), v_node.matrix(), B, A)
        s_node.right_inverse(s / adapter.scale)
    return (max(total - float((s ** 2).sum()), 0.0) / total) ** 0.5 if total > 0 else 0.0
