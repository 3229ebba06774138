"""Right inverses of the Lie maps: orthonormal N x K matrix Q -> generator block B (N x K).

The generator is ``A = [[A11, -A21^T], [A21, 0]]`` (A11 = B[:K] - B[:K]^T, A21 = B[K:]); the returned
block is ``B = [tril(A11, -1); A21]``. All in float64 numpy.

- :func:`cayley_inverse`, closed form. ``(I - A/2) Q = (I + A/2) E_K`` gives, with Q = [Q1; Q2]::

      A21 = 2 Q2 (I + Q1)^-1,        A11 = 2 (I + Q1)^-T (Q1 - Q1^T) (I + Q1)^-1

  Reachable: exactly the Q whose top block Q1 has no eigenvalue -1 (flipping a column's sign can
  leave this set).
- :func:`stiefel_log`, the Stiefel logarithm for the canonical metric (exp(A) E_K is the Riemannian
  exponential at E_K; Edelman, Arias & Smith 1998). For K < N the exponential reaches every Q; we use
  Zimmermann's iteration (SIAM J. Matrix Anal. Appl. 38, 2017): complete [Q1; R] (R from QR of Q2) to
  an orthogonal V, then rotate the completion until log(V) has a zero lower-right block. It converges
  for Q not too far from E_K (in practice well beyond ``||Q - E_K|| ~ 1``) and raises RightInverseError (a ValueError)
  when it does not. For K = N it is the real logarithm of Q, which needs det Q = +1.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..errors import RightInverseError, ShapeError


def _check(q: np.ndarray) -> tuple[int, int]:
    if q.ndim != 2 or q.shape[0] < q.shape[1]:
        raise ShapeError(f"expected an N x K matrix with N >= K, got shape {q.shape}")
    err = np.abs(q.T @ q - np.eye(q.shape[1])).max()
    if err > 1e-4:
        raise RightInverseError(f"the matrix is not orthonormal (max |Q^T Q - I| = {err:.3g}); "
                         f"orthonormalize it first (e.g. a QR decomposition)")
    return q.shape


def _block(a11: np.ndarray, a21: np.ndarray) -> np.ndarray:
    return np.vstack([np.tril(a11, -1), a21])


def cayley_inverse(q: np.ndarray) -> np.ndarray:
    """The B (N x K) with ``cayley(B - B^T)[:, :K] = q``; RightInverseError if ``-1`` is an eigenvalue of q[:K]."""
    _, k = _check(q)
    q1, q2 = q[:k], q[k:]
    plus = np.eye(k) + q1
    if np.linalg.cond(plus) > 1e10:
        raise RightInverseError("the Cayley map does not reach this matrix: its top K x K block has an eigenvalue "
                         "-1 (try flipping the sign of a column, or use the exp or householder kinds)")
    inv = np.linalg.inv(plus)
    return _block(2 * inv.T @ (q1 - q1.T) @ inv, 2 * q2 @ inv)


def log_orthogonal(v: np.ndarray) -> np.ndarray:
    """A real skew-symmetric L with ``expm(L) = v`` for v in SO(n), from the real Schur form."""
    t, z = scipy.linalg.schur(v, output="real")
    n = len(t)
    log_t = np.zeros_like(t)
    minus, i = [], 0
    while i < n:
        if i + 1 < n and t[i + 1, i] != 0.0:
            theta = np.arctan2(t[i + 1, i] - t[i, i + 1], t[i, i] + t[i + 1, i + 1])
            log_t[i, i + 1], log_t[i + 1, i] = -theta, theta
            i += 2
        else:
            if t[i, i] < 0:
                minus.append(i)
            i += 1
    if len(minus) % 2:
        raise RightInverseError("the matrix has determinant -1, so it is not exp of a skew-symmetric matrix; "
                         "flip the sign of one column")
    for a, b in zip(minus[::2], minus[1::2]):  # a pair of -1 eigenvalues is a rotation by pi
        log_t[a, b], log_t[b, a] = -np.pi, np.pi
    out = z @ log_t @ z.T
    return 0.5 * (out - out.T)


def stiefel_log(q: np.ndarray, *, tol: float = 1e-13, max_iter: int = 500) -> np.ndarray:
    """The B (N x K) with ``exp(B - B^T)[:, :K] = q`` (Zimmermann's algorithm; see the module docstring)."""
    n, k = _check(q)
    if n == k:
        log = log_orthogonal(q)
        return _block(log, np.zeros((0, k)))
    q0, r0 = np.linalg.qr(q[k:])                 # (N-K, p), (p, K), p = min(K, N-K)
    p = q0.shape[1]
    top = np.vstack([q[:k], r0])                 # orthonormal columns, (K+p, K)
    full = np.linalg.qr(top, mode="complete")[0]
    v = np.hstack([top, full[:, k:]])
    if np.linalg.det(v) < 0:
        v[:, -1] *= -1
    u, _, wt = np.linalg.svd(v[k:, k:])          # Procrustes start: lower-right block symmetric PSD
    rot = wt.T @ u.T
    if np.linalg.det(rot) < 0:
        u[:, -1] *= -1
        rot = wt.T @ u.T
    v[:, k:] = v[:, k:] @ rot
    for _ in range(max_iter):
        log = log_orthogonal(v)
        c = log[k:, k:]
        if np.abs(c).max() < tol:
            break
        v[:, k:] = v[:, k:] @ scipy.linalg.expm(-c)
    else:
        raise RightInverseError(
            f"the Stiefel logarithm did not converge in {max_iter} iterations (residual {np.abs(c).max():.3g}): "
            f"the matrix is too far from the first {k} identity columns for this algorithm. Fix: use the "
            f"householder or givens kinds, whose right inverses are exact everywhere")
    del p
    return _block(log[:k, :k], q0 @ log[k:, :k])
