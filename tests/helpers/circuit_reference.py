"""Dense reference circuits written from QUANTUM_PEFT.md sec. 2-3, gate by gate as full Kronecker matrices.

Deliberately naive and independent of tn_peft's evaluation code (PennyLane is not installed here):
every gate is ``I x ... x G x ... x I`` built with ``np.kron``, applied in the order PennyLane's
``SimplifiedTwoDesign.compute_decomposition`` lists them (CZ, RY, RY per pair; even pairs, then odd).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def ry(t: float) -> np.ndarray:
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.array([[c, -s], [s, c]])


def qudit_gate(angles: np.ndarray, d: int) -> np.ndarray:
    """exp((T - T^T)/2), T strictly lower with the angles row-major over i > j (d = 2: RY)."""
    if d == 2:
        return ry(float(angles[0]))
    t = np.zeros((d, d))
    pos = 0
    for i in range(d):
        for j in range(i):
            t[i, j] = angles[pos]
            pos += 1
    return scipy.linalg.expm((t - t.T) / 2)


def on_wire(dims, wire: int, gate: np.ndarray) -> np.ndarray:
    out = np.eye(1)
    for w, d in enumerate(dims):
        out = np.kron(out, gate if w == wire else np.eye(d))
    return out


def cz(dims, a: int, b: int) -> np.ndarray:
    n = int(np.prod(dims))
    diag = np.ones(n)
    for index in range(n):
        digits = np.unravel_index(index, dims)
        if (digits[a] * digits[b]) % 2:
            diag[index] = -1
    return np.diag(diag)


def circuit_matrix(dims, layers: int, theta: np.ndarray) -> np.ndarray:
    """The full N x N orthogonal matrix of the simplified two design on wires ``dims``."""
    dims = tuple(dims)
    q = len(dims)
    p = [d * (d - 1) // 2 for d in dims]
    u = np.eye(int(np.prod(dims)))
    pos = 0

    def take(count):
        nonlocal pos
        out = theta[pos: pos + count]
        pos += count
        return out

    for w in range(q):
        u = on_wire(dims, w, qudit_gate(take(p[w]), dims[w])) @ u
    even = [(i, i + 1) for i in range(0, q - 1, 2)]
    odd = [(i, i + 1) for i in range(1, q - 1, 2)]
    for _ in range(layers):
        for a, b in even + odd:
            u = cz(dims, a, b) @ u
            u = on_wire(dims, a, qudit_gate(take(p[a]), dims[a])) @ u
            u = on_wire(dims, b, qudit_gate(take(p[b]), dims[b])) @ u
    assert pos == len(theta)
    return u


def pauli_matrix(initial: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """PennyLane layout: initial (q,), weights (L, q-1, 2) -> 2^q x 2^q."""
    q = len(initial)
    return circuit_matrix((2,) * q, weights.shape[0], np.concatenate([initial, weights.reshape(-1)]))
