"""``pauli``: an N x K Stiefel node from a simplified-two-design circuit (QUANTUM_PEFT.md sec. 2-4).

``Q = U(theta)[:, :K]`` with U a circuit of L layers of RY rotations and CZ entanglers. Three
constructions, recorded in ``node.construction``:

- ``pauli`` (N = 2^q): qubits, ``(2L+1) q - 2L`` angles; 4096 x K with L = 1 has 34.
- ``mixed_radix`` (N = d_0 d_1 ... d_{q-1}): wires of the prime factors of N (largest first; or the
  ``wires`` option), generalized RY ``exp((T - T^T)/2)`` with ``d(d-1)/2`` angles per gate and
  generalized CZ ``(-1)^(i*j)``; ``sum_w d_w(d_w-1)/2 (1 + L pairs(w))`` angles
  (:func:`~tn_peft.nodes.circuit.layout.circuit_num_params`); 384 = 3 x 2^7 with L = 1 has 26.
- ``csd`` (any N): the recursive cosine-sine construction of :mod:`tn_peft.nodes.circuit.csd`.

``construction: auto`` picks pauli for powers of two, mixed_radix when every prime factor of N is
at most 7, csd otherwise (e.g. 259 = 7 x 37, 11008 = 2^8 x 43). All are exactly orthonormal.
The family does not reach every Stiefel matrix, so instead of a right inverse it has
:meth:`PauliNode.fit`.

``frame: weight | gradient`` makes the node ``Q = F C(theta)[:, :K]`` with a fixed orthogonal
frame ``F`` (:mod:`tn_peft.nodes.frame`) that maps the circuit's first K basis vectors onto a data
subspace: the top-K singular vectors of the layer's weight (set when the adapter is built on a
layer) or of the layer's first gradient dL/dW (set by :func:`tn_peft.model.frames.initialize_frames`, as
LoRA-GA does for LoRA). A framed node starts at zero angles (``init: identity``) unless told
otherwise, so ``Q = F E_K`` spans that subspace at step 0. The frame is a buffer (saved, not trained).

``basis: first | spread`` says which K basis states the circuit maps: ``first`` (the default) takes
``U[:, :K]``, states that share every wire but the last ``log K`` ones (the circuit's fast path,
gate by gate in the planner); ``spread`` takes ``U[:, S]`` for the K states ``S = {j a mod N : j < K}``
with ``a`` the integer nearest ``N / phi`` that is coprime with N (:func:`spread_basis`): a
golden-ratio stride, so the states differ on most wires. It is computed as ``U @ E_S`` and contracted
as a dense node.

``bits: b`` (1..8) trains the angles through a b-bit quantizer on the circle (the gates' period
4 pi, :class:`tn_peft.nodes.quantize.AngleQuantizer`) with a straight-through gradient: the node computes,
saves (packed codes) and loads the quantized circuit. Not for the csd construction. (For a wire of
d > 2 each angle is wrapped on the same circle; there the wrap is a jump, which the angles rarely
reach from their start in ``[-pi, pi]``.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ...errors import ShapeError, SpecError
from ...factorize import prime_factors as ascending_prime_factors
from ..quantize import AngleQuantizer, check_bits
from ..base import StiefelNode
from ..frame import apply_frame, frame_from_columns
from .apply import circuit_apply, circuit_columns, pauli_unitary
from .csd import CSDBlock, csd_num_params, init_angles
from .fit import FitResult, fit_columns
from .layout import circuit_layout, gate_params
from .network import CircuitNetwork, circuit_network

CONSTRUCTIONS = ("auto", "pauli", "mixed_radix", "csd")
INITS = ("random", "normal", "identity")
#: where a frame's subspace comes from (``none``: no frame, Q = C(theta)[:, :K])
FRAMES = ("none", "weight", "gradient")
#: which K basis states the circuit maps (see the module docstring)
BASES = ("first", "spread")
#: auto uses mixed radix when every prime factor of N is at most this
SMALL_PRIME = 7
GOLDEN = (1 + 5 ** 0.5) / 2


def spread_basis(n: int, k: int) -> list[int]:
    """K distinct basis states ``j a mod N`` (``j < K``) with ``a`` the integer nearest ``N / phi`` that is
    coprime with N: ``spread_basis(384, 4) == [0, 239, 94, 333]`` (first: ``[0, 1, 2, 3]``)."""
    if not 1 <= k <= n:
        raise ShapeError(f"spread_basis needs 1 <= k <= n, got k={k}, n={n}")
    if n <= 2:
        return list(range(k))
    target = n / GOLDEN
    a = min((c for c in range(1, n) if math.gcd(c, n) == 1), key=lambda c: (abs(c - target), c))
    return [j * a % n for j in range(k)]


def prime_factors(n: int) -> list[int]:
    """Prime factors of n with multiplicity, largest first: ``prime_factors(384) == [3, 2, ..., 2]``."""
    return sorted(ascending_prime_factors(n), reverse=True)


def grouped_wires(n: int, max_wire: int) -> tuple[int, ...]:
    """Wires of at most ``max_wire`` (>= N's largest prime factor) whose product is N, few and large:
    N's prime factors, largest first, each multiplied into the first wire it fits (first-fit
    decreasing), wires largest first. ``grouped_wires(384, 8) == (8, 8, 6)``, ``(384, 24) == (24, 16)``.
    """
    wires: list[int] = []
    for p in prime_factors(n):
        for i, w in enumerate(wires):
            if w * p <= max_wire:
                wires[i] = w * p
                break
        else:
            wires.append(p)
    return tuple(sorted(wires, reverse=True))


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
    csd, ``wires`` (explicit wire dimensions for mixed_radix, product N), ``max_wire`` (0: the
    prime factors; else wires grouped up to this size by :func:`grouped_wires`: more angles per
    gate, between Pauli's log N and the full Lie map's N K), ``init`` random | normal |
    identity (zero angles: Q = E_K up to column signs, the CZ layers' signs) | auto (the default:
    identity with a frame, else random), ``init_scale`` (random: angles U(-pi s, pi s); normal: std s), ``frame``
    none | weight | gradient, ``basis`` first | spread (which K basis states: ``U[:, :K]`` or
    ``U[:, spread_basis(N, K)]``), ``bits`` (0: full precision; 1..8: quantized angles; see the module docstring).
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, cols=None,
                 layers: int = 1, construction: str = "auto", wires: Sequence[int] | None = None,
                 max_wire: int = 0,
                 init: str | None = None, init_scale: float = 1.0, frame: str = "none", basis: str = "first",
                 bits: int = 0) -> None:
        super().__init__(name, legs, shape, cols)
        n, k = self.rows, self.cols
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
            raise SpecError(f"layers must be an integer >= 0, got {layers!r}", node=name, fix="use layers: 1")
        if construction not in CONSTRUCTIONS:
            raise SpecError(f"construction {construction!r} is not known", node=name,
                            fix=f"use one of {', '.join(CONSTRUCTIONS)}")
        if frame not in FRAMES:
            raise SpecError(f"frame {frame!r} is not known", node=name, fix=f"use one of {', '.join(FRAMES)}")
        if basis not in BASES:
            raise SpecError(f"basis {basis!r} is not known", node=name, fix=f"use one of {', '.join(BASES)}")
        if init is None or init == "auto":
            init = "random" if frame == "none" else "identity"
        if init not in INITS:
            raise SpecError(f"init {init!r} is not known", node=name, fix=f"use one of {', '.join(INITS)}")
        if not isinstance(max_wire, int) or isinstance(max_wire, bool) or max_wire < 0:
            raise SpecError(f"max_wire must be an integer >= 0, got {max_wire!r}", node=name,
                            fix="use max_wire: 0 (prime-factor wires) or e.g. 8")
        if max_wire and wires is None and n >= 2:
            if max_wire < max(prime_factors(n)):
                raise SpecError(f"max_wire {max_wire} is below the largest prime factor {max(prime_factors(n))} "
                                f"of the node's {n} rows", node=name,
                                fix=f"use max_wire >= {max(prime_factors(n))}, or 0")
            wires = grouped_wires(n, max_wire)
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
        if check_bits(bits, node=name) and construction == "csd":
            raise SpecError(f"bits {bits} needs a circuit of wires, but {n} rows use the csd construction",
                            node=name, fix="use bits: 0 on this node, or a layer size whose prime factors are at most 7")
        if construction == "csd" and basis != "first":
            raise SpecError(f"basis {basis!r} needs a circuit of wires, but {n} rows use the csd construction",
                            node=name, fix="use basis: first on this node")
        self.layers = layers
        self.construction = construction
        self.bits = bits
        self.init, self.init_scale = init, float(init_scale)
        self.frame = frame
        self.basis = basis
        if basis == "spread":  # E_S, built once (not saved: spread_basis(N, K) rebuilds it)
            states = torch.zeros(n, k)
            states[spread_basis(n, k), range(k)] = 1.0
            self.register_buffer("basis_states", states, persistent=False)
        if frame != "none":  # identity frame until set_frame (tau = 0: every reflection is I)
            self.register_buffer("frame_vectors", torch.zeros(n, k))
            self.register_buffer("frame_tau", torch.zeros(k))
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
            if bits:
                self.quantizers = {"initial": AngleQuantizer(bits), "weights": AngleQuantizer(bits)}

    def reset_parameters(self, init: str | None = None, init_scale: float | None = None) -> None:
        """Redraw every angle (``init`` / ``init_scale`` default to the node's options)."""
        init = init or self.init
        scale = self.init_scale if init_scale is None else init_scale
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(init_angles(p.shape, init, scale))

    def theta(self) -> torch.Tensor:
        """All circuit angles (quantized when ``bits``) as one flat vector in layout order (not for csd)."""
        return torch.cat([self.quantized("initial").reshape(-1), self.quantized("weights").reshape(-1)])

    def circuit_matrix(self) -> torch.Tensor:
        """The circuit's columns ``C(theta)[:, :K]`` (or at the spread basis states), without the frame."""
        if self.construction == "csd":
            return self.csd.columns(self.cols)
        if self.basis == "spread":
            return self._spread_columns(self.theta())
        if self.construction == "pauli":
            return pauli_unitary(self.quantized("initial"), self.quantized("weights"), self.cols)
        return circuit_columns(self.wire_dims, self.layers, self.theta(), self.cols)

    def matrix(self) -> torch.Tensor:
        return self.framed(self.circuit_matrix())

    def _spread_columns(self, theta: torch.Tensor) -> torch.Tensor:
        """``C(theta) @ E_S`` for the spread basis states S, ``(..., N, K)`` for angles ``(..., P)``."""
        return circuit_apply(self.wire_dims, self.layers, theta, self.basis_states.to(theta.dtype))

    def framed(self, columns: torch.Tensor) -> torch.Tensor:
        """``F @ columns`` (``columns`` (..., N, c)); ``columns`` itself without a frame."""
        if self.frame == "none":
            return columns
        return apply_frame(self.frame_vectors, self.frame_tau, columns)

    def set_frame(self, columns: torch.Tensor) -> None:
        """Make ``F`` map the circuit's first K basis vectors onto ``columns`` (N x K, orthonormal)."""
        if self.frame == "none":
            raise SpecError("has no frame", node=self.name, fix="give the node the option frame: weight or gradient")
        if tuple(columns.shape) != (self.rows, self.cols):
            raise ShapeError(f"node {self.name!r}: a frame of shape {tuple(columns.shape)} does not fit its "
                             f"{self.rows} x {self.cols} matrix")
        vectors, tau = frame_from_columns(columns.to(self.frame_vectors.device))
        with torch.no_grad():
            self.frame_vectors.copy_(vectors)
            self.frame_tau.copy_(tau)

    def batch_key(self) -> tuple | None:
        """Nodes with equal keys evaluate as one batched circuit (:mod:`tn_peft.adapter.batching`); csd: never."""
        if self.construction == "csd":
            return None
        theta = self.initial
        return (self.construction, tuple(self.wire_dims), self.layers, self.cols, self._matrix_shape,
                self._to_legs, self.frame != "none", self.basis, theta.dtype, theta.device)

    @classmethod
    def forward_many(cls, nodes: Sequence[PauliNode]) -> list[torch.Tensor]:
        """Every node's tensor from one circuit evaluation over the stacked angles, ``(B, N, k)``, and
        one batched frame product ``F @ C`` when the nodes have frames."""
        first = nodes[0]
        theta = torch.stack([node.theta() for node in nodes])
        if first.basis == "spread":
            columns = first._spread_columns(theta)
        else:
            columns = circuit_columns(first.wire_dims, first.layers, theta, first.cols)
        if first.frame != "none":
            columns = apply_frame(torch.stack([node.frame_vectors for node in nodes]),
                                  torch.stack([node.frame_tau for node in nodes]), columns)
        shaped = columns.reshape(len(nodes), *first._matrix_shape).permute(0, *(i + 1 for i in first._to_legs))
        return list(shaped.unbind(0))

    def as_network(self) -> CircuitNetwork | None:
        """The circuit as gate and sign tensors (:mod:`tn_peft.nodes.circuit.network`); None for csd, for
        a framed node (its dense frame is no circuit, so it is contracted as one tensor) and for the
        spread basis (its columns are no prefix of the circuit's)."""
        if self.construction == "csd" or self.frame != "none" or self.basis != "first":
            return None
        return circuit_network(self.wire_dims, self.layers, self.theta(), self.cols)

    def circuit_profile(self) -> tuple[int, int] | None:
        """``(gate ops, widest wire)`` when the planner may apply this circuit gate by gate: it has a gate
        network and its one column leg is its last (``state @ Q`` maps rows of N to rows of k)."""
        network = self.as_network()
        if network is None or len(self.col_legs) != 1 or self.legs[-1] != self.col_legs[0]:
            return None
        return len(network.ops), max(network.wire_dims)

    def set_matrix(self, matrix: torch.Tensor) -> None:
        raise NotImplementedError(
            f"node {self.name!r}: a {self.construction} circuit does not reach every orthonormal matrix, "
            f"so it has no exact right inverse; use node.fit(target), which returns the residual")

    def fit(self, target: torch.Tensor, **options) -> FitResult:
        """Fit the angles to ``target`` (rows x cols, or the node's leg layout) up to column signs.

        Options go to :func:`tn_peft.nodes.circuit.fit.fit_columns` (steps, lr, restarts, polish).
        Returns a :class:`~tn_peft.nodes.circuit.fit.FitResult`; ``float(result)`` is ``||Q D - T||_F``.
        """
        return fit_columns(self, target, reinit=lambda: self.reset_parameters("random"), **options)

    def extra_repr(self) -> str:
        wires = f", wires={list(self.wire_dims)}" if self.wire_dims and self.construction != "pauli" else ""
        frame = f", frame={self.frame!r}" if self.frame != "none" else ""
        bits = f", bits={self.bits}" if self.bits else ""
        basis = f", basis={self.basis!r}" if self.basis != "first" else ""
        return (f"{super().extra_repr()}, construction={self.construction!r}, layers={self.layers}{wires}{frame}"
                f"{basis}{bits}")


def mixed_radix_params(wire_dims: Sequence[int], layers: int) -> int:
    """Angles of a mixed-radix circuit (re-exported for users sizing adapters)."""
    return circuit_layout(tuple(wire_dims), layers).num_params


__all__ = ["PauliNode", "choose_construction", "gate_params", "grouped_wires", "mixed_radix_params", "prime_factors",
           "spread_basis"]
