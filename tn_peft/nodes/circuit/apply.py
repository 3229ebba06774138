"""Evaluate simplified-two-design circuits (qubits or mixed radix) without building the N x N matrix.

Public functions:

- :func:`pauli_unitary` -- first k columns of the Pauli (RY + CZ) circuit on q qubits, ``(2^q, k)``.
- :func:`circuit_columns` -- the same on wires of any dimensions (``N = prod(wire_dims)``).
- :func:`circuit_apply` -- the circuit's orthogonal matrix applied to a state: ``U @ x``.

How it is fast (DESIGN.md: per-step cost is mostly dispatch): every gate entry the circuit needs is
computed in one small *gate table* (cos/sin of all angles at once, one ``matrix_exp`` per qudit
dimension); the gates of consecutive wires are multiplied into a dense ``D x D`` chunk matrix by one
gather + one product (CZ signs and idle wires folded in as a constant mask); a sublayer is then a few
GEMMs, each multiplying the state's leading chunk axis and rotating it to the end (``(D, rest)^T C^T``,
the "Kronecker shuffle"), with no copies; chunk sizes come from a small cost model
(:mod:`.layout`). The initial sublayer is
merged into the first even sublayer, and for the first k columns that merged sublayer is itself a
Kronecker product whose columns are built directly (an outer product of a head vector and a tail
block), so a circuit with L layers costs ``2L - 1`` passes over an ``N x k`` state. Everything takes
leading batch dimensions of angle sets, so nodes of the same shape can be evaluated as one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import ShapeError
from .layout import (
    Chunk,
    CircuitLayout,
    apply_passes,
    circuit_layout,
    column_chunks,
    cz_sign,
    gate_params,
)


@dataclass
class _Group:
    dim: int
    index: torch.Tensor          # (n, factors, dim, dim) into the gate table
    const: torch.Tensor | None   # (n, dim, dim) signs x identity pattern of idle wires (float64)
    _cast: dict = None

    def const_as(self, dtype) -> torch.Tensor:
        if self._cast is None:
            self._cast = {}
        if dtype not in self._cast:
            self._cast[dtype] = self.const.to(dtype)
        return self._cast[dtype]


@dataclass
class _Schedule:
    """The pass schedule of one (circuit, mode, columns, device): its chunks per state pass and their
    index tables; built once, cached."""

    layout: CircuitLayout
    qubit_params: torch.Tensor | None          # (n2,) angle positions of the d=2 gates
    qudit_groups: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]  # d, (n, p) idx, rows, cols
    groups: dict[int, _Group]
    merged: dict[int, int]                                 # dim -> number of merged chunks in group
    handles: dict[Chunk, tuple[int, bool, int]]            # chunk -> (dim, is_merged, id)
    passes: list[list[Chunk]]                              # state passes, in order
    head: list[Chunk]                                      # columns mode: first-sublayer chunks
    head_index: torch.Tensor | None = None                 # (factors, H) into the flat head table
    tail_index: torch.Tensor | None = None                 # (factors, Dt, k)
    cache: dict = field(default_factory=dict)                # per-dtype constants


def _entry_tables(layout: CircuitLayout) -> tuple[list[np.ndarray], int]:
    """Per gate a (d, d) array of its entries' positions in the gate table; and the table size."""
    qubits = [g for g, gate in enumerate(layout.gates) if gate.dim == 2]
    n2 = len(qubits)
    tables: list[np.ndarray | None] = [None] * len(layout.gates)
    for rank, g in enumerate(qubits):
        tables[g] = np.array([[rank, 2 * n2 + rank], [n2 + rank, rank]])
    pos = 3 * n2
    for d in sorted({gate.dim for gate in layout.gates if gate.dim > 2}):
        for g, gate in enumerate(layout.gates):
            if gate.dim == d:
                tables[g] = pos + np.arange(d * d).reshape(d, d)
                pos += d * d
    return tables, pos + 3  # constants ONE, MINUS, ZERO at the end


def _digits(dims: Sequence[int]) -> np.ndarray:
    """(prod dims, len dims) array of mixed-radix digits, first dim most significant."""
    return np.stack(np.unravel_index(np.arange(math.prod(dims)), tuple(dims)), axis=1)


def _chunk_index(layout, entries, size, sub, a, b, signs: bool) -> tuple[np.ndarray, np.ndarray]:
    """Chunk matrix of sublayer ``sub`` on wires [a, b) as ``prod(table[index], 0) * const``.

    ``index`` (gates, D, D) gathers the entries of the chunk's gates; ``const`` (D, D) holds the CZ
    signs of the columns times the identity pattern of idle wires (kept out of the product so that
    the product's backward never meets exact zeros).
    """
    dims = layout.wire_dims[a:b]
    dig = _digits(dims)
    const = np.ones((len(dig), len(dig)))
    factors = []
    for f, w in enumerate(range(a, b)):
        g = layout.gate_on(sub, w)
        r, c = dig[:, f][:, None], dig[:, f][None, :]
        if g is None:
            const = const * (r == c)
        else:
            factors.append(entries[g][r, c])
    if not factors:
        factors.append(np.full(const.shape, size - 3))
    pairs = [(p - a, q - a) for p, q in layout.sublayers[sub].pairs if a <= p and q < b] if signs else []
    const = const * np.array([cz_sign(dims, d, pairs, 0) for d in dig])[None, :]
    return np.stack(factors), const


#: schedules by (wires, layers, k, width, device), least recently used first; bounded
_SCHEDULES: OrderedDict[tuple, _Schedule] = OrderedDict()
MAX_SCHEDULES = 512


def _schedule(wire_dims: tuple[int, ...], layers: int, k: int | None, width: int, device) -> _Schedule:
    key = (wire_dims, layers, k, width, str(device))
    schedule = _SCHEDULES.get(key)
    if schedule is not None:
        _SCHEDULES.move_to_end(key)
        return schedule
    layout = circuit_layout(wire_dims, layers)
    entries, size = _entry_tables(layout)

    def as_t(array):
        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.long, device=device)

    qubit = [gate.offset for gate in layout.gates if gate.dim == 2]
    qudit = []
    for d in sorted({gate.dim for gate in layout.gates if gate.dim > 2}):
        offs = [gate.offset for gate in layout.gates if gate.dim == d]
        rows, cols = np.tril_indices(d, -1)
        qudit.append((d, as_t(np.array(offs)[:, None] + np.arange(gate_params(d))[None, :]),
                      as_t(rows), as_t(cols)))
    head = column_chunks(layout) if k is not None else []
    passes = apply_passes(layout, width)
    if k is not None:  # the first pass is built directly as columns
        passes = passes[1:]
    # chunk matrices to build, grouped by dimension; in each group the merged chunks' even halves
    # come first, then their initial halves, then plain chunks, so that the merged products are
    # one batched matmul of two contiguous slices (index_select's backward is pathologically slow
    # on multi-threaded CPU)
    evens: dict[int, list] = {}
    inits: dict[int, list] = {}
    plain: dict[int, list] = {}
    handles: dict[Chunk, tuple[int, bool, int]] = {}
    for chunk in head + [c for p in passes for c in p]:
        if chunk in handles:
            continue
        d = chunk.dim
        if chunk.merged:
            evens.setdefault(d, []).append(_chunk_index(layout, entries, size, 1, chunk.start, chunk.stop, True))
            inits.setdefault(d, []).append(_chunk_index(layout, entries, size, 0, chunk.start, chunk.stop, False))
            handles[chunk] = (d, True, len(evens[d]) - 1)
        else:
            plain.setdefault(d, []).append(
                _chunk_index(layout, entries, size, chunk.sublayer, chunk.start, chunk.stop, True))
            handles[chunk] = (d, False, len(plain[d]) - 1)
    groups = {}
    merged = {}
    for d in sorted(set(evens) | set(plain)):
        lst = evens.get(d, []) + inits.get(d, []) + plain.get(d, [])
        factors = max(x.shape[0] for x, _ in lst)
        padded = [np.concatenate([x, np.full((factors - x.shape[0],) + x.shape[1:], size - 3)]) for x, _ in lst]
        const = np.stack([c for _, c in lst])
        groups[d] = _Group(d, as_t(np.stack(padded)),
                           None if np.all(const == 1) else torch.as_tensor(const, device=device))
        merged[d] = len(evens.get(d, []))
    schedule = _Schedule(layout, as_t(np.array(qubit)) if qubit else None, qudit, groups, merged, handles, passes, head)
    if k is not None:
        _column_tables(schedule, k, as_t)
    _SCHEDULES[key] = schedule
    while len(_SCHEDULES) > MAX_SCHEDULES:
        _SCHEDULES.popitem(last=False)
    return schedule


def _column_tables(schedule: _Schedule, k: int, as_t) -> None:
    """Index tables building the first k columns of the Kronecker product of the head chunks."""
    dims = [c.dim for c in schedule.head]
    offsets = np.cumsum([0] + [d * d for d in dims])
    tail_start, suffix = len(dims) - 1, dims[-1]
    while suffix < k:
        tail_start -= 1
        suffix *= dims[tail_start]
    head_dims, tail_dims = dims[:tail_start], dims[tail_start:]
    if head_dims:
        dig = _digits(head_dims)
        schedule.head_index = as_t(np.stack([offsets[i] + dig[:, i] * dims[i] for i in range(len(head_dims))]))
    dig = _digits(tail_dims)
    cdig = dig[:k]
    schedule.tail_index = as_t(np.stack([
        offsets[tail_start + i] + dig[:, i][:, None] * tail_dims[i] + cdig[:, i][None, :]
        for i in range(len(tail_dims))]))


def _gate_table(schedule: _Schedule, theta: torch.Tensor) -> torch.Tensor:
    """All gate entries (cos, sin, -sin of half angles; qudit exp entries) then constants 1, -1, 0."""
    parts = []
    batch = theta.shape[:-1]
    if schedule.qubit_params is not None:
        half = theta[..., schedule.qubit_params] * 0.5
        sin = torch.sin(half)
        parts += [torch.cos(half), sin, -sin]
    for d, idx, rows, cols in schedule.qudit_groups:
        t = theta[..., idx] * 0.5
        lower = _lower(t, d, rows, cols)
        parts.append(torch.linalg.matrix_exp(lower - lower.transpose(-1, -2)).flatten(-3))
    key = ("constants", theta.dtype)
    if key not in schedule.cache:
        schedule.cache[key] = torch.tensor([1.0, -1.0, 0.0], dtype=theta.dtype, device=theta.device)
    parts.append(schedule.cache[key].expand(*batch, 3))
    return torch.cat(parts, -1)


def _lower(t: torch.Tensor, d: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(..., n, p) angles -> (..., n, d, d) strictly lower triangular matrices."""
    flat = t.new_zeros(*t.shape[:-1], d * d)
    flat = flat.index_copy(-1, rows * d + cols, t)
    return flat.unflatten(-1, (d, d))


def _chunk_matrices(schedule: _Schedule, table: torch.Tensor) -> dict[int, tuple[tuple, tuple]]:
    """dim -> (raw chunk matrices, merged products), each a tuple of (..., D, D) tensors.

    Each group is unbound once (one backward op) instead of indexed per chunk.
    """
    out = {}
    for d, group in schedule.groups.items():
        mats = table[..., group.index].prod(dim=-3)
        if group.const is not None:
            mats = mats * group.const_as(mats.dtype)
        m = schedule.merged[d]
        prods = (mats[..., :m, :, :] @ mats[..., m:2 * m, :, :]).unbind(-3) if m else ()
        mats = mats[..., 2 * m:, :, :]
        out[d] = (mats.unbind(-3), prods)
    return out


def _matrix(mats, schedule: _Schedule, chunk: Chunk) -> torch.Tensor:
    d, merged, i = schedule.handles[chunk]
    raw, prods = mats[d]
    return (prods if merged else raw)[i]


def _apply_passes(schedule: _Schedule, mats, x: torch.Tensor, columns_last: bool) -> torch.Tensor:
    """Apply the schedule's passes to the flat state x (B?, N * W); returns it with the layout flag.

    Layout ``columns_last``: axes (wire_0, ..., wire_{q-1}, W); otherwise (W, wire_0, ...). A pass in
    the first layout multiplies the leading chunk and rotates it to the end, ``(D, rest)^T @ C^T``;
    in the second it multiplies the trailing chunk and rotates it to the front, ``C @ (rest, D)^T``.
    Either way each chunk is one GEMM with no copies, and each pass flips the layout.
    """
    lead = x.shape[:-1]
    total = x.shape[-1]
    for chunks in schedule.passes:
        order = chunks if columns_last else chunks[::-1]
        for chunk in order:
            m = _matrix(mats, schedule, chunk)
            if columns_last:
                x = x.reshape(*lead, chunk.dim, total // chunk.dim).mT @ m.mT
            else:
                x = m @ x.reshape(*lead, total // chunk.dim, chunk.dim).mT
        x = x.reshape(*lead, total)
        columns_last = not columns_last
    return x, columns_last


def _unflatten(x: torch.Tensor, columns_last: bool, n: int, width: int) -> torch.Tensor:
    if columns_last:
        return x.unflatten(-1, (n, width))
    return x.unflatten(-1, (width, n)).mT


def _check_theta(wire_dims, layers, theta):
    if torch.compiler.is_compiling():  # checked in the eager call that planned the layer; the layout cache
        return                         # (lru_cache) is not something dynamo should trace
    expected = circuit_layout(tuple(wire_dims), layers).num_params
    if theta.shape[-1] != expected:
        raise ShapeError(f"a circuit on wires {tuple(wire_dims)} with {layers} layers takes {expected} "
                         f"angles, got a last dimension of {theta.shape[-1]}")


def circuit_columns(wire_dims: Sequence[int], layers: int, theta: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """First k columns of the circuit's orthogonal matrix: ``U[:, :k]``, shape ``(..., N, k)``.

    ``theta``: ``(..., num_params)`` flat angles in layout order (see :mod:`.layout`).
    Never forms ``U``: cost O(2L N k D) for chunk size D.
    """
    wire_dims = tuple(int(d) for d in wire_dims)
    _check_theta(wire_dims, layers, theta)
    n = math.prod(wire_dims)
    k = n if k is None else int(k)
    if not 1 <= k <= n:
        raise ShapeError(f"k must be in 1..{n}, got {k}")
    schedule = _schedule(wire_dims, layers, k, n * k, theta.device)
    table = _gate_table(schedule, theta)
    mats = _chunk_matrices(schedule, table)
    batch = theta.shape[:-1]
    head_flat = torch.cat([_matrix(mats, schedule, c).flatten(-2) for c in schedule.head], -1)
    tail = head_flat[..., schedule.tail_index].prod(dim=-3)              # (..., Dt, k)
    if schedule.head_index is not None:
        head = head_flat[..., schedule.head_index].prod(dim=-2)           # (..., H)
        x = head[..., :, None, None] * tail.unsqueeze(-3)
    else:
        x = tail
    x, last = _apply_passes(schedule, mats, x.reshape(*batch, n * k), True)
    return _unflatten(x, last, n, k)


def circuit_apply(wire_dims: Sequence[int], layers: int, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The circuit's orthogonal matrix applied to x: ``U @ x`` for x of shape ``(..., N, W)``.

    ``theta`` of shape ``(..., num_params)`` broadcasts against x's leading dimensions.
    """
    wire_dims = tuple(int(d) for d in wire_dims)
    _check_theta(wire_dims, layers, theta)
    n = math.prod(wire_dims)
    if x.shape[-2] != n:
        raise ShapeError(f"the state has {x.shape[-2]} rows, the circuit acts on {n}")
    schedule = _schedule(wire_dims, layers, None, n * x.shape[-1], theta.device)
    mats = _chunk_matrices(schedule, _gate_table(schedule, theta))
    batch = torch.broadcast_shapes(theta.shape[:-1], x.shape[:-2])
    width = x.shape[-1]
    x = x.expand(*batch, n, width).reshape(*batch, n * width)
    if theta.shape[:-1] != batch:
        mats = {d: (tuple(m.expand(*batch, d, d) for m in r), tuple(m.expand(*batch, d, d) for m in p))
                for d, (r, p) in mats.items()}
    x, last = _apply_passes(schedule, mats, x, True)
    return _unflatten(x, last, n, width)


def pauli_theta(initial: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Flatten PennyLane-layout angles ``initial (..., q)``, ``weights (..., L, q-1, 2)`` to ``(..., P)``."""
    q = initial.shape[-1]
    if weights.dim() < 3 or weights.shape[-2:] != (max(q - 1, 0), 2):
        raise ShapeError(f"weights must have shape (..., L, {max(q - 1, 0)}, 2) for q = {q} qubits, "
                         f"got {tuple(weights.shape)}")
    batch = torch.broadcast_shapes(initial.shape[:-1], weights.shape[:-3])
    initial = initial.expand(*batch, q)
    weights = weights.expand(*batch, *weights.shape[-3:])
    return torch.cat([initial, weights.reshape(*batch, -1)], -1)


def pauli_unitary(initial: torch.Tensor, weights: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """First k columns of the simplified-two-design circuit on q qubits, a real ``(..., 2^q, k)`` tensor.

    ``U = prod_l [RY_odd CZ_odd RY_even CZ_even] RY_initial``, ``RY(t) = [[c, -s], [s, c]]`` with
    ``c, s = cos(t/2), sin(t/2)``; qubit 0 is the most significant bit. ``initial``: ``(..., q)``;
    ``weights``: ``(..., L, q-1, 2)`` -- PennyLane's ``SimplifiedTwoDesign`` layout (in layer l, pair j
    runs over the even pairs, then the odd pairs; ``[..., 0]`` on the pair's first qubit). Leading
    dimensions are a batch of angle sets evaluated together. Never builds the ``2^q x 2^q`` matrix.

    >>> pauli_unitary(torch.zeros(3), torch.zeros(1, 2, 2), k=2).shape
    torch.Size([8, 2])
    """
    q = initial.shape[-1]
    if q < 1:
        raise ShapeError("initial must hold at least one angle (one qubit)")
    theta = pauli_theta(initial, weights)
    return circuit_columns((2,) * q, weights.shape[-3], theta, k)
