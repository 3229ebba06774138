"""Orthogonal matrices of any size N from the cosine-sine decomposition, with Pauli-circuit blocks.

An orthogonal X of size ``N = N1 + N2`` (``N1`` the largest power of two <= N) is built as::

    X = diag(U1, U2) CS(phi) diag(V1, V2)

with ``U1, V1`` Pauli circuits on ``log2 N1`` qubits, ``U2, V2`` the same construction recursively on
``N2`` (QUANTUM_PEFT.md sec. 4: 768 = 512 + 256, 259 = 256 + 2 + 1), a 1 x 1 block the fixed sign +1,
and ``CS(phi)`` the ``N2`` plane rotations pairing row i of the first block with row i of the second:
``a_i' = cos(phi_i) a_i - sin(phi_i) b_i``, ``b_i' = sin(phi_i) a_i + cos(phi_i) b_i``. (This ordering
of the CS blocks differs from ``scipy.linalg.cossin``'s by permutations the U and V blocks absorb.)

Parameter counts (L layers, ``pauli(n) = (2L+1) log2 n - 2L``, ``pauli(1) = 0``)::

    full(n) = pauli(n)                                   if n is a power of two
    full(n) = 2 pauli(N1) + 2 full(N2) + N2              otherwise
    cols(n, k) = full(n) - full(N2)   if k <= N1         (V2 never touches the first k columns)

The first k columns are computed without the N x N matrix: ``V1`` gives k columns directly, the CS
rotations are elementwise, and ``U1``/``U2`` are applied to the ``N x k`` state. Cost: a few Pauli
circuit evaluations per level, one level per 1-bit of N after the first.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .apply import circuit_apply, circuit_columns
from .layout import circuit_num_params


def _pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _pauli_params(n: int, layers: int) -> int:
    return 0 if n == 1 else circuit_num_params((2,) * (n.bit_length() - 1), layers)


def csd_num_params(n: int, layers: int, k: int | None = None) -> int:
    """Trainable parameters of the CSD construction of size n (first k columns; all when k is None)."""
    n1 = _pow2_floor(n)
    if n1 == n:
        return _pauli_params(n, layers)
    n2 = n - n1
    full = 2 * _pauli_params(n1, layers) + 2 * csd_num_params(n2, layers) + n2
    if k is not None and k <= n1:
        full -= csd_num_params(n2, layers)
    return full


def csd_blocks(n: int) -> list[int]:
    """The binary expansion of n, largest power first (the sizes of the Pauli blocks)."""
    return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def init_angles(shape, init: str, scale: float) -> torch.Tensor:
    """random: U(-pi s, pi s); normal: N(0, s^2); identity: zeros.

    With zero angles every RY is the identity, so U is the product of the CZ layers: a diagonal of
    signs, and ``Q = E_K`` up to column signs (csd too: its blocks are such circuits and its middle
    rotations are then the identity).
    """
    if init == "identity":
        return torch.zeros(shape)
    if init == "normal":
        return torch.randn(shape) * scale
    return (torch.rand(shape) * 2 - 1) * math.pi * scale


class PauliBlock(nn.Module):
    """A Pauli circuit on ``log2 n`` qubits as a full orthogonal block (n = 1: the fixed sign +1)."""

    def __init__(self, n: int, layers: int, init: str, scale: float) -> None:
        super().__init__()
        self.n, self.layers = n, layers
        self.qubits = n.bit_length() - 1
        count = _pauli_params(n, layers)
        self.theta = nn.Parameter(init_angles(count, init, scale)) if count else None
        if n == 1:
            self.register_buffer("sign", torch.ones(()))

    def columns(self, k: int) -> torch.Tensor:
        if self.n == 1:
            return self.sign.reshape(1, 1)
        return circuit_columns((2,) * self.qubits, self.layers, self.theta, k)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.n == 1:
            return x * self.sign.to(x.dtype)
        return circuit_apply((2,) * self.qubits, self.layers, self.theta, x)


class CSDBlock(nn.Module):
    """Orthogonal matrix of size n by the recursive cosine-sine construction (module docstring).

    ``columns``: the number of leading columns the owner will ask for (None: the whole matrix is
    applied to states); ``V2`` is only created when those columns reach past ``N1``.
    """

    def __init__(self, n: int, layers: int, init: str = "random", scale: float = 1.0,
                 columns: int | None = None) -> None:
        super().__init__()
        self.n = n
        self.n1 = _pow2_floor(n)
        self.n2 = n - self.n1
        if self.n2 == 0:
            self.leaf = PauliBlock(n, layers, init, scale)
            return
        self.u1 = PauliBlock(self.n1, layers, init, scale)
        self.v1 = PauliBlock(self.n1, layers, init, scale)
        self.u2 = CSDBlock(self.n2, layers, init, scale)
        self.v2 = CSDBlock(self.n2, layers, init, scale) if columns is None or columns > self.n1 else None
        self.phi = nn.Parameter(init_angles(self.n2, init, scale))

    def _finish(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """CS rotations of (top rows 0..N2-1, bottom), then diag(U1, U2)."""
        cos, sin = torch.cos(self.phi)[:, None], torch.sin(self.phi)[:, None]
        head = top[: self.n2]
        new_head = cos * head - sin * bottom
        new_bottom = sin * head + cos * bottom
        top = torch.cat([new_head, top[self.n2:]], 0)
        return torch.cat([self.u1.apply(top), self.u2.apply(new_bottom)], 0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``X @ x`` for x of shape ``(n, W)``."""
        if self.n2 == 0:
            return self.leaf.apply(x)
        return self._finish(self.v1.apply(x[: self.n1]), self.v2.apply(x[self.n1:]))

    def columns(self, k: int) -> torch.Tensor:
        """The first k columns of X, ``(n, k)``."""
        if self.n2 == 0:
            return self.leaf.columns(k)
        if k <= self.n1:
            top = self.v1.columns(k)
            head = top[: self.n2]
            cos, sin = torch.cos(self.phi)[:, None], torch.sin(self.phi)[:, None]
            top = torch.cat([cos * head, top[self.n2:]], 0)
            return torch.cat([self.u1.apply(top), self.u2.apply(sin * head)], 0)
        v1 = self.v1.columns(self.n1)
        v2 = self.v2.columns(k - self.n1)
        top = torch.cat([v1, v1.new_zeros(self.n1, k - self.n1)], 1)
        bottom = torch.cat([v2.new_zeros(self.n2, self.n1), v2], 1)
        return self._finish(top, bottom)
