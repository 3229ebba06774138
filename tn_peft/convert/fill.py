"""Set a built adapter's nodes from a target: exact for ``svd`` / ``tt`` / ``ttd``, a fit for Pauli circuits.

Each ``fill_*`` takes a built :class:`~tn_peft.adapter.adapter.Adapter` (float64) and the pieces of the
target dW, writes node parameters through their right inverse, and leaves checking to the caller
(``adapter.delta_weight()`` against the target).

Gauges: ``U diag(s) V^T`` is unchanged by flipping column i of U (or V) together with ``s_i``. Maps
such as ``exp`` reach only det = +1 square matrices, so every *square* orthonormal node is brought to
det = +1 first by such a flip (harmless for maps that reach all of O(n)); in a canonical train the
flip travels along the bond to the next core, ending on ``s``.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .linalg import truncate


def set_stiefel(node, matrix: torch.Tensor, *, layer: str, tolerance: float = 1e-6) -> None:
    """Write an orthonormal-column matrix into a Stiefel node through its right inverse, and check it."""
    kind = getattr(node, "kind", type(node).__name__)
    try:
        if hasattr(node, "set_matrix"):
            node.set_matrix(matrix.to(_dtype(node)))
        else:
            node.right_inverse(matrix.to(_dtype(node)))
    except NotImplementedError:
        raise CheckpointError(f"layer {layer!r}, node {node.name!r}: node kind {kind!r} has no right inverse; "
                              f"choose a map with one (exp, cayley, householder)") from None
    except (ValueError, ArithmeticError, RuntimeError) as exc:  # e.g. the Stiefel log not converging
        raise CheckpointError(f"layer {layer!r}, node {node.name!r}: the right inverse of map {kind!r} failed "
                              f"({exc}); convert with --map householder, which reaches every orthonormal matrix") from None
    with torch.no_grad():
        got = node.matrix() if hasattr(node, "matrix") else node()
    error = float((got.to(torch.float64).reshape(matrix.shape) - matrix.to(torch.float64)).abs().max())
    if error > tolerance:
        raise CheckpointError(f"layer {layer!r}, node {node.name!r}: map {kind!r} cannot reproduce this orthonormal "
                              f"matrix (max error {error:.2e}); convert with another --map (householder reaches all of O(n))")


def _dtype(node) -> torch.dtype:
    params = list(node.parameters())
    return params[0].dtype if params else torch.float64


def positive_determinant(Q: torch.Tensor) -> bool:
    """False only for a square matrix with det < 0 (the ones exp/Cayley maps cannot reach)."""
    return Q.shape[0] != Q.shape[1] or float(torch.linalg.det(Q)) > 0


# ------------------------------------------------------------------------------ svd
def svd_gauge(U: torch.Tensor, s: torch.Tensor, V: torch.Tensor):
    """Column signs that help the maps: diag of the top k x k block >= 0 (closer to the identity columns
    E_k, where the exp map's log converges and Cayley's (I + Q1) is invertible), then det = +1 for a
    square U or V by flipping column 0. Each flip negates s_i too: dW is unchanged."""
    U, s, V = U.clone(), s.clone(), V.clone()
    k = s.numel()
    for Q in (U, V):
        flip = torch.diagonal(Q[:k]) < 0
        Q[:, flip] = -Q[:, flip]
        s[flip] = -s[flip]
    for Q in (U, V):
        if not positive_determinant(Q):
            Q[:, 0] = -Q[:, 0]
            s[0] = -s[0]
    return U, s, V


def fill_svd(adapter, U: torch.Tensor, s: torch.Tensor, V: torch.Tensor, *, layer: str) -> None:
    """``scale * U_node diag(s_node) V_node^T = U diag(s) V^T`` exactly; pads to the node rank k with zeros."""
    k = adapter.node("s").shape[0]
    U, s, V = svd_gauge(*truncate(U, s, V, k))
    set_stiefel(adapter.node("U"), U, layer=layer)
    set_stiefel(adapter.node("V"), V, layer=layer)
    adapter.node("s").right_inverse(s / adapter.scale)


# ------------------------------------------------------------------------------ tt
def fill_tt(adapter, cores: list[torch.Tensor], *, layer: str) -> None:
    """Dense TT cores ``G{i}`` (zero-padded to the node shapes); the scale is divided out of the last core."""
    from .tt import pad_core

    d = len(cores)
    for i, core in enumerate(cores, start=1):
        node = adapter.node(f"G{i}")
        shape = _core_shape(node, i, d)
        core = pad_core(core, *shape)
        if i == d:
            core = core / adapter.scale
        node.right_inverse(_to_legs(core, i, d))


def _core_shape(node, i: int, d: int) -> tuple[int, int]:
    """(r_{i-1}, r_i) of node G{i}, whose legs drop r_0 / r_d."""
    shape = node.shape
    r0 = shape[0] if i > 1 else 1
    r1 = shape[-1] if i < d else 1
    return r0, r1


def _to_legs(core: torch.Tensor, i: int, d: int) -> torch.Tensor:
    """A core [r0, m, n, r1] without the boundary bonds the graph's nodes do not carry."""
    if i == 1:
        core = core[0]
    if i == d:
        core = core[..., 0]
    return core


# ------------------------------------------------------------------------------ ttd
def ttd_gauge(cores: list[torch.Tensor], s: torch.Tensor, center: int):
    """Bring every square core to det = +1 by sign flips along bonds, ending on ``s`` (dW unchanged)."""
    cores, s = [c.clone() for c in cores], s.clone()
    d = len(cores)
    for t in range(center):  # left cores: matrix (r0 m n, r1); flip column 0 and row 0 of the next core
        r0, m, n, r1 = cores[t].shape
        if not positive_determinant(cores[t].reshape(r0 * m * n, r1)):
            cores[t][..., 0] = -cores[t][..., 0]
            if t + 1 < center:
                cores[t + 1][0] = -cores[t + 1][0]
            else:
                s[0] = -s[0]
    for t in range(d - 1, center - 1, -1):  # right cores: matrix (m n r1, r0); flip column 0 = bond r0 index 0
        r0, m, n, r1 = cores[t].shape
        if not positive_determinant(cores[t].reshape(r0, m * n * r1).T):
            cores[t][0] = -cores[t][0]
            if t - 1 >= center:
                cores[t - 1][..., 0] = -cores[t - 1][..., 0]
            else:
                s[0] = -s[0]
    return cores, s


def fill_ttd(adapter, cores: list[torch.Tensor], s: torch.Tensor, center: int, *, layer: str) -> None:
    """Mixed-canonical train: left cores G1..Gc, ``s`` on bond c, right cores; padded to node bonds."""
    from .tt import pad_canonical

    d = len(cores)
    bonds = [adapter.sizes[f"r{i}"] for i in range(1, d)]
    cores, s = pad_canonical(cores, s, center, bonds)
    cores, s = ttd_gauge(cores, s, center)
    for i, core in enumerate(cores, start=1):
        node = adapter.node(f"G{i}")
        tensor = _to_legs(core, i, d)
        set_stiefel(node, node.to_matrix(tensor.to(torch.float64)), layer=layer)
    adapter.node("s").right_inverse(s / adapter.scale)
