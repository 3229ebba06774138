"""``pauli``: an N x K Stiefel node from a simplified-two-design circuit (QUANTUM_PEFT.md sec. 2-4).

``Q = U(theta)[:, :K]`` with U a circuit of L layers of RY rotations and CZ entanglers. Three
constructions, recorded in ``node.construction``:

- ``pauli`` (N = 2^q): qubits, ``(2L+1) q - 2L`` angles; 4096 x K with L = 1 has 34.
- ``mixed_radix`` (N = d_0 d_1 ... d_{q-1}): wires of the prime factors of N (largest first; or the
  ``wires`` option), generalized RY ``exp((T - T^T)/2)`` with ``d(d-1)/2`` angles per gate and
  generalized CZ ``(-1)^(i*j)``; ``sum_w d_w(d_w-1)/2 (1 + L pairs(w))`` angles
  (:func:`~tn_peft.nodes.circuit_layout.circuit_num_params`); 384 = 3 x 2^7 with L = 1 has 26.
- ``csd`` (any N): the recursive cosine-sine construction of :mod:`tn_peft.nodes.csd`.

``construction: auto`` picks pauli for powers of two, mixed_radix when every prime factor of N is
at most 7, csd otherwise (e.g. 259 = 7 x 37, 11008 = 2^8 x 43). All are exactly orthonormal.
The family does not reach every Stiefel matrix, so instead of a right inverse it has
:meth:`PauliNode.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SpecError
from ..factorize import prime_factors as ascending_prime_factors
from .base import StiefelNode
from .circuit import circuit_columns, pauli_unitary
from .circuit_layout import circuit_layout, gate_params
from .circuit_network import CircuitNetwork, circuit_network
from .csd import CSDBlock, csd_num_params, init_angles
from .fit import FitResult, fit_columns

CONSTRUCTIONS = ("auto", "pauli", "mixed_radix", "csd")
INITS = ("random", "normal", "identity")
#: auto uses mixed radix when every prime factor of N is at most this
SMALL_PRIME = 7


def prime_factors(n: int) -> list[int]:
    """Prime factors of n with multiplicity, largest first: ``prime_factors(384) == [3, 2, ..., 2]``."""
    return sorted(ascending_prime_factors(n), reverse=True)


def choose_construction(n: int) -> str:
    """``pauli`` for powers of two, ``mixed_radix`` when N is 7-smooth, else ``csd``."""
    if n >= 2 and n & (n - 1) == 0:
        return "pauli"
    if n > 1 and max(prime_factors(n)) <= SMALL_PRIME:
        return "mixed_radix"
    return "csd"


class PauliNode(StiefelNode, kind="pauli"):
    """N x K orthonormal columns from a Pauli / mixed-radix / CSD circuit with ``layers`` layers.

    Options: ``cols`` (column legs), ``layers`` (L >= 0), ``construction`` auto | pauli | mixed_radix |
    csd, ``wires`` (explicit wire dimensions for mixed_radix, product N), ``init`` random | normal |
    identity (zero angles: Q = E_K up to column signs, the CZ layers' signs), ``init_scale``
    (random: angles U(-pi s, pi s); normal: std s).
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, cols=None,
                 layers: int = 1, construction: str = "auto", wires: Sequence[int] | None = None,
                 init: str = "random", init_scale: float = 1.0) -> None:
        super().__init__(name, legs, shape, cols)
        n, k = self.rows, self.cols
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
            raise SpecError(f"layers must be an integer >= 0, got {layers!r}", node=name, fix="use layers: 1")
        if construction not in CONSTRUCTIONS:
            raise SpecError(f"construction {construction!r} is not known", node=name,
                            fix=f"use one of {', '.join(CONSTRUCTIONS)}")
        if init not in INITS:
            raise SpecError(f"init {init!r} is not known", node=name, fix=f"use one of {', '.join(INITS)}")
        if wires is not None:
            wires = tuple(int(w) for w in wires)
            if math.prod(wires) != n or min(wires) < 2:
                raise SpecError(f"wires {list(wires)} multiply to {math.prod(wires)}, the node has {n} rows",
                                node=name, fix=f"give wire dimensions >= 2 whose product is {n}")
            if construction == "auto":
                construction = "pauli" if set(wires) == {2} else "mixed_radix"
        if construction == "auto":
            construction = choose_construction(n)
        if construction == "pauli" and (n < 2 or n & (n - 1)):
            raise SpecError(f"construction 'pauli' needs a power-of-two size, the node has {n} rows",
                            node=name, fix="use construction: auto (mixed_radix or csd)")
        if construction == "mixed_radix" and n < 2:
            raise SpecError("construction 'mixed_radix' needs at least 2 rows", node=name, fix="use csd")
        self.layers = layers
        self.construction = construction
        self.init, self.init_scale = init, float(init_scale)
        if construction == "csd":
            self.wire_dims = None
            self.csd = CSDBlock(n, layers, init, self.init_scale, columns=k)
            self.expected_params = csd_num_params(n, layers, k)
        else:
            self.wire_dims = wires or ((2,) * (n.bit_length() - 1) if construction == "pauli" else tuple(prime_factors(n)))
            layout = circuit_layout(self.wire_dims, layers)
            self.expected_params = layout.num_params
            if construction == "pauli":
                q = len(self.wire_dims)
                self.initial = nn.Parameter(init_angles((q,), init, self.init_scale))
                self.weights = nn.Parameter(init_angles((layers, q - 1, 2), init, self.init_scale))
            else:
                first = layout.num_initial_params
                self.initial = nn.Parameter(init_angles((first,), init, self.init_scale))
                self.weights = nn.Parameter(init_angles((layers, (layout.num_params - first) // max(layers, 1)),
                                                        init, self.init_scale))

    def reset_parameters(self, init: str | None = None, init_scale: float | None = None) -> None:
        """Redraw every angle (``init`` / ``init_scale`` default to the node's options)."""
        init = init or self.init
        scale = self.init_scale if init_scale is None else init_scale
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(init_angles(p.shape, init, scale))

    def theta(self) -> torch.Tensor:
        """All circuit angles as one flat vector in layout order (not for csd)."""
        return torch.cat([self.initial.reshape(-1), self.weights.reshape(-1)])

    def matrix(self) -> torch.Tensor:
        if self.construction == "csd":
            return self.csd.columns(self.cols)
        if self.construction == "pauli":
            return pauli_unitary(self.initial, self.weights, self.cols)
        return circuit_columns(self.wire_dims, self.layers, self.theta(), self.cols)

    def as_network(self) -> CircuitNetwork | None:
        """The circuit as gate and sign tensors (:mod:`tn_peft.nodes.circuit_network`); None for csd."""
        if self.construction == "csd":
            return None
        return circuit_network(self.wire_dims, self.layers, self.theta(), self.cols)

    def set_matrix(self, matrix: torch.Tensor) -> None:
        raise NotImplementedError(
            f"node {self.name!r}: a {self.construction} circuit does not reach every orthonormal matrix, "
            f"so it has no exact right inverse; use node.fit(target), which returns the residual")

    def fit(self, target: torch.Tensor, **options) -> FitResult:
        """Fit the angles to ``target`` (rows x cols, or the node's leg layout) up to column signs.

        Options go to :func:`tn_peft.nodes.fit.fit_columns` (steps, lr, restarts, polish).
        Returns a :class:`~tn_peft.nodes.fit.FitResult`; ``float(result)`` is ``||Q D - T||_F``.
        """
        return fit_columns(self, target, reinit=lambda: self.reset_parameters("random"), **options)

    def extra_repr(self) -> str:
        wires = f", wires={list(self.wire_dims)}" if self.wire_dims and self.construction != "pauli" else ""
        return (f"{super().extra_repr()}, construction={self.construction!r}, layers={self.layers}{wires}")


def mixed_radix_params(wire_dims: Sequence[int], layers: int) -> int:
    """Angles of a mixed-radix circuit (re-exported for users sizing adapters)."""
    return circuit_layout(tuple(wire_dims), layers).num_params


__all__ = ["PauliNode", "choose_construction", "gate_params", "mixed_radix_params", "prime_factors"]
