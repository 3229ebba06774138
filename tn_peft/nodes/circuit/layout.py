"""Structure of a simplified-two-design circuit on wires of any dimension: gates, parameters, chunks.

Pure Python (no torch): which gate acts on which wire in which sublayer, where each gate's
parameters sit in the flat parameter vector, and how a sublayer is cut into *chunks* (consecutive
wires whose gates are multiplied into one dense ``D x D`` matrix and applied as one matmul).

Circuit (QUANTUM_PEFT.md sec. 2 and 3), on wires ``0..q-1`` of dimensions ``d_0..d_{q-1}``
(wire 0 is the most significant digit of the row/column index)::

    initial sublayer:  a gate on every wire
    layer l (L times): CZ on even pairs (0,1),(2,3),..., then a gate on both wires of each even pair;
                       CZ on odd pairs (1,2),(3,4),...,  then a gate on both wires of each odd pair

A gate on a wire of dimension d is ``exp((T - T^T) / 2)`` with T strictly lower triangular holding
its ``d(d-1)/2`` angles (row-major over ``i > j``); for ``d = 2`` that is exactly
``RY(t) = [[cos t/2, -sin t/2], [sin t/2, cos t/2]]``. A CZ on wires of dims (a, b) is the diagonal
``(-1)^(i*j)``. Parameter order: the initial gates by wire, then per layer the pairs (even pairs
first, then odd), each pair's first wire then second wire -- PennyLane's ``SimplifiedTwoDesign``
layout when every wire is a qubit.

Parameter count: ``sum_w p(d_w) * (1 + L * pairs(w))`` with ``p(d) = d(d-1)/2`` and ``pairs(w)``
the number of pairs containing wire w (2 inside, 1 at either end, 0 when q = 1). For q qubits:
``q + 2L(q-1) = (2L+1) q - 2L``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache


def gate_params(dim: int) -> int:
    """Angles of a gate on a wire of dimension ``dim``: ``dim (dim - 1) / 2``."""
    return dim * (dim - 1) // 2


def wire_pairs(num_wires: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """``(even_pairs, odd_pairs)`` of the simplified two design on ``num_wires`` wires."""
    even = tuple((w, w + 1) for w in range(0, num_wires - 1, 2))
    odd = tuple((w, w + 1) for w in range(1, num_wires - 1, 2))
    return even, odd


def circuit_num_params(wire_dims: Sequence[int], layers: int) -> int:
    """Trainable angles of the circuit: ``sum_w p(d_w) (1 + L pairs(w))``; ``(2L+1)q - 2L`` for qubits."""
    q = len(wire_dims)
    total = 0
    for w, d in enumerate(wire_dims):
        pairs = 0 if q == 1 else (1 if w in (0, q - 1) else 2)
        total += gate_params(d) * (1 + layers * pairs)
    return total


@dataclass(frozen=True)
class Gate:
    """One gate: on ``wire`` (dimension ``dim``), its angles at ``offset : offset + gate_params(dim)``."""

    wire: int
    dim: int
    offset: int


@dataclass(frozen=True)
class Sublayer:
    """CZ on ``pairs`` (applied first), then ``gates`` (indices into ``CircuitLayout.gates``)."""

    pairs: tuple[tuple[int, int], ...]
    gates: tuple[int, ...]


@dataclass(frozen=True)
class Chunk:
    """Consecutive wires ``[start, stop)`` of one sublayer applied as one dense ``dim x dim`` matrix.

    ``merged`` chunks (only in sublayer 1) are the product ``even_0 @ initial`` on those wires.
    """

    sublayer: int
    start: int
    stop: int
    dim: int
    merged: bool = False


@dataclass(frozen=True)
class CircuitLayout:
    """Gates and sublayers of the circuit on ``wire_dims`` with ``layers`` layers."""

    wire_dims: tuple[int, ...]
    layers: int
    gates: tuple[Gate, ...] = field(repr=False)
    sublayers: tuple[Sublayer, ...] = field(repr=False)
    num_params: int = 0

    @property
    def size(self) -> int:
        """N, the product of the wire dimensions."""
        return math.prod(self.wire_dims)

    @property
    def num_initial_params(self) -> int:
        return sum(gate_params(d) for d in self.wire_dims)

    def gate_on(self, sublayer: int, wire: int) -> int | None:
        """Index of the gate sublayer ``sublayer`` puts on ``wire``, or None (identity there)."""
        for g in self.sublayers[sublayer].gates:
            if self.gates[g].wire == wire:
                return g
        return None

    def units(self, sublayer: int) -> list[tuple[int, int, bool]]:
        """The sublayer's indivisible wire ranges ``(start, stop, active)``: its pairs and lone wires."""
        sub = self.sublayers[sublayer]
        busy = {w for g in sub.gates for w in (self.gates[g].wire,)}
        pair_of = {a: (a, b) for a, b in sub.pairs}
        out, w = [], 0
        while w < len(self.wire_dims):
            if w in pair_of:
                out.append((w, w + 2, True))
                w += 2
            else:
                out.append((w, w + 1, w in busy))
                w += 1
        return out


@lru_cache(maxsize=256)
def circuit_layout(wire_dims: tuple[int, ...], layers: int) -> CircuitLayout:
    """Build the gate list and sublayers (initial, then even/odd per layer) of the circuit."""
    if not wire_dims or any(d < 2 for d in wire_dims):
        raise ValueError(f"wire dimensions must be >= 2, got {wire_dims}")
    if layers < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    q = len(wire_dims)
    gates: list[Gate] = []
    offset = 0

    def add(wire: int) -> int:
        nonlocal offset
        gates.append(Gate(wire, wire_dims[wire], offset))
        offset += gate_params(wire_dims[wire])
        return len(gates) - 1

    sublayers = [Sublayer((), tuple(add(w) for w in range(q)))]
    even, odd = wire_pairs(q)
    for _ in range(layers):
        for pairs in (even, odd):
            sublayers.append(Sublayer(pairs, tuple(g for a, b in pairs for g in (add(a), add(b)))))
    layout = CircuitLayout(tuple(wire_dims), layers, tuple(gates), tuple(sublayers), offset)
    assert offset == circuit_num_params(wire_dims, layers)
    return layout


# --- chunking -------------------------------------------------------------------------------------

#: Cost model of one state pass with a chunk of dimension D (a GEMM ``(rest, D) x (D, D)``, forward +
#: backward) on a state of ``width`` entries: DISPATCH_S + width * chunk_ns(D) * 1e-9 seconds, plus
#: BUILD_S per gathered entry of the chunk matrix. Measured on a 2-core CPU (MKL); it only steers the
#: choice between many small GEMMs (poor BLAS efficiency below D ~ 12) and few large ones (D flops
#: per entry).
DISPATCH_S = 20e-6
BUILD_S = 10e-9
MAX_CHUNK_DIM = 256


def chunk_ns(dim: int) -> float:
    """Nanoseconds per state entry of one forward + backward chunk pass of dimension ``dim``."""
    return 1.5 + 0.08 * dim + 4.0 / math.sqrt(dim)


def partition(units: Sequence[tuple[int, int, bool]], wire_dims: Sequence[int], width: int,
              max_dim: int | None = None) -> list[tuple[int, int]]:
    """Cut a sublayer's units into consecutive chunks ``(start, stop)`` covering every wire.

    Every chunk is one GEMM pass (idle wires ride along as identity factors, since each pass also
    rotates the state's axes). Dynamic programming over unit prefixes with the cost model above.
    """
    max_dim = MAX_CHUNK_DIM if max_dim is None else max_dim
    n = len(units)
    best = [0.0] + [math.inf] * n
    choice = [0] * (n + 1)
    for end in range(1, n + 1):
        dim, wires = 1, 0
        for start in range(end - 1, -1, -1):
            a, b, _ = units[start]
            dim *= math.prod(wire_dims[a:b])
            wires += b - a
            if dim > max_dim and start < end - 1:
                break
            cost = DISPATCH_S + width * chunk_ns(dim) * 1e-9 + BUILD_S * (wires + 1) * dim * dim
            if best[start] + cost < best[end]:
                best[end], choice[end] = best[start] + cost, start
    chunks, end = [], n
    while end > 0:
        start = choice[end]
        chunks.append((units[start][0], units[end - 1][1]))
        end = start
    return chunks[::-1]


def apply_passes(layout: CircuitLayout, width: int, max_dim: int | None = None) -> list[list[Chunk]]:
    """State passes (each a list of chunks covering all wires) applying the whole circuit.

    The initial sublayer is merged into the first even sublayer (a product of two matrices on the
    same wires), so a circuit with L layers costs 2L passes (1 when L = 0).
    """
    dims = layout.wire_dims
    if layout.layers == 0:
        units = [(w, w + 1, True) for w in range(len(dims))]
        return [[Chunk(0, a, b, math.prod(dims[a:b])) for a, b in partition(units, dims, width, max_dim)]]
    passes = [[Chunk(1, a, b, math.prod(dims[a:b]), merged=True)
               for a, b in partition(layout.units(1), dims, width, max_dim)]]
    for s in range(2, len(layout.sublayers)):
        passes.append([Chunk(s, a, b, math.prod(dims[a:b]))
                       for a, b in partition(layout.units(s), dims, width, max_dim)])
    return passes


def column_chunks(layout: CircuitLayout) -> list[Chunk]:
    """Finest chunks of the first (merged) sublayer, used to build its first k columns directly."""
    dims = layout.wire_dims
    if layout.layers == 0:
        return [Chunk(0, w, w + 1, dims[w]) for w in range(len(dims))]
    return [Chunk(1, a, b, math.prod(dims[a:b]), merged=True) for a, b, _ in layout.units(1)]


def cz_sign(dims: Sequence[int], digits: Sequence[int], pairs: Sequence[tuple[int, int]], start: int) -> int:
    """``prod (-1)^(i*j)`` over CZ ``pairs`` (wire numbers) for the local digits of wires from ``start``."""
    sign = 1
    for a, b in pairs:
        if (digits[a - start] * digits[b - start]) % 2:
            sign = -sign
    return sign


def digits_of(index: int, dims: Sequence[int]) -> list[int]:
    """Mixed-radix digits of ``index`` over ``dims`` (first dim most significant)."""
    out = []
    for d in reversed(dims):
        out.append(index % d)
        index //= d
    return out[::-1]
