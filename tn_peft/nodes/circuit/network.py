"""The gate network of a circuit node (``node.as_network()``): small gate tensors on wires, in order.

The planner may contract these gates straight into activations instead of building the node's
``N x k`` matrix. Format (a plain dataclass, no torch state besides the tensors):

- ``wire_dims``: the wire dimensions ``(d_0, ..., d_{q-1})``, ``N = prod(wire_dims)``; a row index
  ``r`` of the node's matrix has mixed-radix digits ``(r_0, ..., r_{q-1})``, wire 0 most significant.
- ``ops``: :class:`CircuitOp` in circuit order (the first op acts first on the input basis state):

  * ``CircuitOp("gate", (w,), G)`` with ``G`` of shape ``(d_w, d_w)`` (out index first):
    ``psi'[..., i, ...] = sum_j G[i, j] psi[..., j, ...]`` on axis w;
  * ``CircuitOp("signs", (a, b), S)`` with ``S`` of shape ``(d_a, d_b)``, entries +-1
    (CZ: ``S[i, j] = (-1)^(i*j)``): ``psi'[..., i, ..., j, ...] = S[i, j] psi[..., i, ..., j, ...]``.

- ``k``: the node is the first k columns, ``Q = U[:, :k]`` with ``U = op_n ... op_1``.

The tensors are differentiable functions of the node's parameters (recomputed by every
``as_network()`` call). Helpers: :meth:`CircuitNetwork.apply` gives ``x @ Q`` (what an adapter's
``V`` leg does to activations), :meth:`CircuitNetwork.apply_transpose` gives ``z @ Q^T``, and
:meth:`CircuitNetwork.matrix` the dense ``Q`` (for checks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .layout import circuit_layout


@dataclass(frozen=True)
class CircuitOp:
    """One op of a circuit network: ``kind`` "gate" (one wire) or "signs" (two wires)."""

    kind: str
    wires: tuple[int, ...]
    tensor: torch.Tensor


@dataclass
class CircuitNetwork:
    """A circuit as an ordered list of gate and sign tensors on wires; see the module docstring."""

    wire_dims: tuple[int, ...]
    ops: list[CircuitOp]
    k: int

    @property
    def size(self) -> int:
        """N, the number of rows of the node's matrix."""
        return math.prod(self.wire_dims)

    def _run(self, psi: torch.Tensor, transpose: bool) -> torch.Tensor:
        lead = psi.dim() - len(self.wire_dims)
        ops = reversed(self.ops) if transpose else self.ops
        for op in ops:
            axes = [lead + w for w in op.wires]
            if op.kind == "gate":
                g = (op.tensor.T if transpose else op.tensor).to(psi.dtype)
                # broadcast multiply + sum rather than a GEMM: the gates are tiny (2 x 2 for qubits)
                moved = torch.movedim(psi, axes[0], -1)
                psi = torch.movedim((moved.unsqueeze(-2) * g).sum(-1), -1, axes[0])
            elif op.kind == "signs":
                shape = [1] * len(self.wire_dims)
                shape[op.wires[0]], shape[op.wires[1]] = op.tensor.shape
                psi = psi * op.tensor.to(psi.dtype).reshape(shape)
            else:
                raise ValueError(f"unknown circuit op kind {op.kind!r}")
        return psi

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ Q`` for x of shape ``(..., N)``: the gates transposed, in reverse order; ``(..., k)``."""
        psi = x.reshape(*x.shape[:-1], *self.wire_dims)
        return self._run(psi, transpose=True).reshape(*x.shape[:-1], self.size)[..., : self.k]

    def apply_transpose(self, z: torch.Tensor) -> torch.Tensor:
        """``z @ Q^T`` for z of shape ``(..., k)``: zero-pad to N, gates in order; ``(..., N)``."""
        x = torch.nn.functional.pad(z, (0, self.size - self.k))
        psi = x.reshape(*z.shape[:-1], *self.wire_dims)
        return self._run(psi, transpose=False).reshape(*z.shape[:-1], self.size)

    def matrix(self) -> torch.Tensor:
        """The dense ``(N, k)`` matrix Q (a check; the planner should not need it)."""
        dtype = next((op.tensor.dtype for op in self.ops if op.kind == "gate"), torch.float32)
        device = self.ops[0].tensor.device if self.ops else None
        eye = torch.eye(self.k, dtype=dtype, device=device)
        return self.apply_transpose(eye).T


def cz_tensor(dim_a: int, dim_b: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The generalized CZ as a ``(dim_a, dim_b)`` sign tensor ``(-1)^(i*j)``."""
    i = torch.arange(dim_a, device=device)[:, None]
    j = torch.arange(dim_b, device=device)[None, :]
    return torch.where((i * j) % 2 == 1, -1.0, 1.0).to(dtype)


def gate_matrices(wire_dims: Sequence[int], layers: int, theta: torch.Tensor) -> list[torch.Tensor]:
    """Every gate of the circuit as a dense ``(d, d)`` matrix, in layout order (differentiable)."""
    layout = circuit_layout(tuple(wire_dims), layers)
    out: list[torch.Tensor | None] = [None] * len(layout.gates)
    qubits = [g for g, gate in enumerate(layout.gates) if gate.dim == 2]
    if qubits:
        half = theta[[layout.gates[g].offset for g in qubits]] * 0.5
        c, s = torch.cos(half), torch.sin(half)
        mats = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        for i, g in enumerate(qubits):
            out[g] = mats[i]
    for g, gate in enumerate(layout.gates):
        if gate.dim > 2:
            d = gate.dim
            rows, cols = torch.tril_indices(d, d, -1, device=theta.device)
            lower = theta.new_zeros(d, d).index_put((rows, cols), theta[gate.offset: gate.offset + d * (d - 1) // 2] * 0.5)
            out[g] = torch.linalg.matrix_exp(lower - lower.T)
    return out  # type: ignore[return-value]


def circuit_network(wire_dims: Sequence[int], layers: int, theta: torch.Tensor, k: int) -> CircuitNetwork:
    """The :class:`CircuitNetwork` of the circuit with flat angles ``theta`` (1-D), first k columns."""
    wire_dims = tuple(int(d) for d in wire_dims)
    layout = circuit_layout(wire_dims, layers)
    gates = gate_matrices(wire_dims, layers, theta)
    ops: list[CircuitOp] = []
    for sub in layout.sublayers:
        for a, b in sub.pairs:
            ops.append(CircuitOp("signs", (a, b), cz_tensor(wire_dims[a], wire_dims[b], theta.dtype, theta.device)))
        for g in sub.gates:
            ops.append(CircuitOp("gate", (layout.gates[g].wire,), gates[g]))
    return CircuitNetwork(wire_dims, ops, int(k))
