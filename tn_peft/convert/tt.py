"""TT-matrix (MPO) math for conversion: TT-SVD of dW (via tensorly), its mixed-canonical form, padding.

A TT-matrix of ``dW`` (out = m1...md, in = n1...nd) is a list of cores ``G_t[r_{t-1}, m_t, n_t, r_t]``
(r_0 = r_d = 1) with ``dW[(m1..md), (n1..nd)] = G_1 G_2 ... G_d`` contracted over the bonds.
The mixed-canonical form at bond c has G_1..G_c left-orthonormal (``(r_{t-1} m n) x r_t`` with
orthonormal columns), G_{c+1}..G_d right-orthonormal (``r_{t-1} x (m n r_t)`` with orthonormal rows)
and a diagonal ``s`` on bond c: the Schmidt values of dW split between the first c and last d-c factors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def fold(dW: torch.Tensor, out_factors: Sequence[int], in_factors: Sequence[int]) -> torch.Tensor:
    """(out, in) -> the order-d tensor with modes (m1 n1, m2 n2, ..., md nd)."""
    d = len(out_factors)
    if len(in_factors) != d or math.prod(out_factors) != dW.shape[0] or math.prod(in_factors) != dW.shape[1]:
        raise ValueError(f"factors {list(out_factors)} x {list(in_factors)} do not fold a {tuple(dW.shape)} matrix")
    t = dW.reshape(*out_factors, *in_factors)
    order = [i for t_ in range(d) for i in (t_, d + t_)]
    return t.permute(order).reshape([m * n for m, n in zip(out_factors, in_factors)])


def tt_to_matrix(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract cores ``[r, m, n, r']`` back to the (prod m, prod n) matrix."""
    result = cores[0]  # (1, m1, n1, r1)
    outs, ins = [cores[0].shape[1]], [cores[0].shape[2]]
    result = result.reshape(cores[0].shape[1], cores[0].shape[2], cores[0].shape[3])  # (M, N, r)
    for core in cores[1:]:
        _, m, n, r1 = core.shape
        result = torch.einsum("abr,rmns->ambns", result, core).reshape(result.shape[0] * m, result.shape[1] * n, r1)
        outs.append(m)
        ins.append(n)
    return result.reshape(math.prod(outs), math.prod(ins))


def full_ranks(out_factors: Sequence[int], in_factors: Sequence[int]) -> list[int]:
    """The largest possible bond ranks: r_t = min(prod_{u<=t} m_u n_u, prod_{u>t} m_u n_u), t = 1..d-1."""
    sizes = [m * n for m, n in zip(out_factors, in_factors)]
    return [min(math.prod(sizes[:t]), math.prod(sizes[t:])) for t in range(1, len(sizes))]


def ranks_for_tolerance(dW: torch.Tensor, out_factors: Sequence[int], in_factors: Sequence[int],
                        tolerance: float) -> list[int]:
    """Bond ranks of the TT-SVD whose error is at most ``tolerance * ||dW||_F`` (Oseledets 2011, Alg. 1:
    each of the d-1 truncations drops singular values of energy <= (tolerance ||dW|| / sqrt(d-1))^2)."""
    return [int(core.shape[3]) for core in tt_svd_tolerance(dW, out_factors, in_factors, tolerance)[:-1]]


def tt_svd_tolerance(dW: torch.Tensor, out_factors: Sequence[int], in_factors: Sequence[int],
                     tolerance: float) -> list[torch.Tensor]:
    """The TT-SVD truncated to ``tolerance`` (the sweep :func:`ranks_for_tolerance` describes), cores
    ``[r_{t-1}, m_t, n_t, r_t]`` (float64) as :func:`tt_svd` with those ranks returns them: one sweep
    both picks the ranks and keeps the cores. Cores 1..d-1 come out left-orthonormal."""
    tensor = fold(dW.detach().to(torch.float64), out_factors, in_factors)
    sizes = tensor.shape
    d = len(sizes)
    if d == 1:
        return [tensor.reshape(1, out_factors[0], in_factors[0], 1).clone()]
    delta2 = (float(tolerance) * float(torch.linalg.norm(dW.to(torch.float64)))) ** 2 / (d - 1)
    cores, rank, rest = [], 1, tensor.reshape(-1)
    for t in range(d - 1):
        matrix = rest.reshape(rank * sizes[t], -1)
        u, s, vt = torch.linalg.svd(matrix, full_matrices=False)
        tail = torch.flip(torch.cumsum(torch.flip(s ** 2, [0]), 0), [0])  # tail[k] = sum_{i>=k} s_i^2
        keep = max(1, int((tail > delta2).sum()))
        u, s, vt = u[:, :keep], s[:keep], vt[:keep]
        # tensorly's sign convention (svd_flip): each column of u has its largest-magnitude entry positive
        signs = torch.sign(u.gather(0, u.abs().argmax(0, keepdim=True)))
        u, vt = u * signs, vt * signs.T
        cores.append(u.reshape(rank, out_factors[t], in_factors[t], keep).contiguous())
        rest = s[:, None] * vt
        rank = keep
    cores.append(rest.reshape(rank, out_factors[-1], in_factors[-1], 1).contiguous())
    return cores


def tt_svd(dW: torch.Tensor, out_factors: Sequence[int], in_factors: Sequence[int],
           ranks: int | Sequence[int] | None = None) -> list[torch.Tensor]:
    """TT-SVD of dW with tensorly's ``tensor_train_matrix``: cores ``[r_{t-1}, m_t, n_t, r_t]`` (float64).

    ``ranks``: None (full ranks: exact), an int (every bond capped at it) or one rank per bond.
    Cores 1..d-1 come out left-orthonormal.
    """
    import tensorly as tl
    from tensorly.decomposition import tensor_train_matrix

    d = len(out_factors)
    caps = full_ranks(out_factors, in_factors)
    if ranks is None:
        bonds = caps
    elif isinstance(ranks, int):
        bonds = [min(ranks, c) for c in caps]
    else:
        bonds = [min(int(r), c) for r, c in zip(ranks, caps)]
    matrix = dW.detach().to(torch.float64).cpu().numpy()
    tensor = matrix.reshape(*out_factors, *in_factors)
    if d == 1:
        return [torch.from_numpy(matrix.reshape(1, out_factors[0], in_factors[0], 1).copy())]
    with tl.backend_context("numpy"):
        factors = tensor_train_matrix(tl.tensor(tensor), rank=[1, *bonds, 1]).factors
    return [torch.from_numpy(np.asarray(f).copy()) for f in factors]


def mixed_canonical(cores: Sequence[torch.Tensor], center: int):
    """Cores (1..d-1 left-orthonormal, as :func:`tt_svd` returns) -> ``(cores, s)`` in mixed-canonical
    form at bond ``center`` (1 <= center < d): cores 1..center left-, center+1..d right-orthonormal,
    ``dW = G_1 .. G_c diag(s) G_{c+1} .. G_d``."""
    cores = [c.clone() for c in cores]
    d = len(cores)
    if not 1 <= center < d:
        raise ValueError(f"center must be a bond 1..{d - 1}, got {center}")
    for t in range(d - 1, center - 1, -1):  # right-orthonormalize cores d..center+1 (0-based t)
        r0, m, n, r1 = cores[t].shape
        q, r = torch.linalg.qr(cores[t].reshape(r0, m * n * r1).T)  # M^T = Q R  ->  M = R^T Q^T
        k = q.shape[1]
        cores[t] = q.T.reshape(k, m, n, r1)
        cores[t - 1] = torch.einsum("amnr,kr->amnk", cores[t - 1], r)
    r0, m, n, r1 = cores[center - 1].shape
    u, s, zt = torch.linalg.svd(cores[center - 1].reshape(r0 * m * n, r1), full_matrices=False)
    cores[center - 1] = u.reshape(r0, m, n, -1)
    cores[center] = torch.einsum("kr,rmns->kmns", zt, cores[center])
    return cores, s


def canonical_to_matrix(cores: Sequence[torch.Tensor], s: torch.Tensor, center: int) -> torch.Tensor:
    """Contract a mixed-canonical train (``s`` on bond ``center``) to its matrix."""
    cores = list(cores)
    cores[center - 1] = cores[center - 1] * s
    return tt_to_matrix(cores)


def pad_core(core: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Zero-pad a core ``[a, m, n, b]`` to ``[r0, m, n, r1]`` (dW unchanged)."""
    a, m, n, b = core.shape
    if a > r0 or b > r1:
        raise ValueError(f"core of bonds ({a}, {b}) does not fit ({r0}, {r1})")
    out = core.new_zeros(r0, m, n, r1)
    out[:a, :, :, :b] = core
    return out


def pad_canonical(cores: Sequence[torch.Tensor], s: torch.Tensor, center: int, bonds: Sequence[int]):
    """Pad a mixed-canonical train to bond sizes ``bonds`` keeping every core (left/right-)orthonormal.

    The core on the orthonormal side of a bond gains orthonormal-complement columns, its neighbour zero
    entries, and ``s`` zeros: the contraction is unchanged.
    """
    from .linalg import pad_stiefel

    cores = [c.clone() for c in cores]
    d = len(cores)
    bonds = [1, *bonds, 1]
    for t in range(1, d):  # bond t joins core t-1 and core t (0-based cores)
        want, have = bonds[t], cores[t].shape[0]
        if want == have:
            continue
        left, right = cores[t - 1], cores[t]
        if t <= center:  # left side: the left core's columns are the bond
            a, m, n, _ = left.shape
            cores[t - 1] = pad_stiefel(left.reshape(a * m * n, have), want).reshape(a, m, n, want)
            cores[t] = pad_core(right, want, right.shape[3])
            if t == center:
                s = torch.cat([s, s.new_zeros(want - have)])
                _, m2, n2, b2 = right.shape
                cores[t] = pad_stiefel(right.reshape(have, m2 * n2 * b2).T, want).T.reshape(want, m2, n2, b2)
        else:  # right side: the right core's rows (as a matrix r0 x (m n r1)) are the bond
            _, m, n, b = right.shape
            cores[t] = pad_stiefel(right.reshape(have, m * n * b).T, want).T.reshape(want, m, n, b)
            cores[t - 1] = pad_core(left, left.shape[0], want)
    return cores, s
