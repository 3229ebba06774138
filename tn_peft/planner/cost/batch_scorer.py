"""``BatchScorer``: the objectives of many steps at once (numpy), the arithmetic of :class:`~.scorer.Scorer`.

The exact searches cost thousands of pairs per plan; one numpy pass over all of them replaces
thousands of Python calls. For pairs ``(S1, S2)`` of operand subsets (int bitmaps):

- legs of a subset ``S``: ``legs(S) = inside(S) & (outside(S) | output)``, where ``inside`` /
  ``outside`` count the carriers of each leg in ``S`` / not in ``S`` (one matmul each);
- sizes are ``2 ** (bits @ log2(leg sizes))``, rounded to the integer they stand for (exact up to
  2^50, within float rounding beyond, as the scalar arithmetic's own float conversions are);
- the step's objective is :func:`~.step.matmul_step`'s, or :func:`~.step.broadcast_step`'s when
  nothing is summed: the scalar scorer's formulas run on arrays (:data:`~.step.ARRAY`), so results
  agree with ``Scorer.objective`` to the last bit (tested). Steps with a circuit operand applied gate by gate are costed by the scalar scorer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..bitmaps import bits
from ..problem import MAX_BITMAP_OPERANDS
from .model import objective
from .scorer import Scorer
from .step import ARRAY, broadcast_step, matmul_step


class Group(NamedTuple):
    """Operand subsets (int64 bitmaps), their legs (rows of 0/1) and (log2 entries, leg count)."""

    subsets: np.ndarray
    legs: np.ndarray
    stats: np.ndarray


class BatchScorer:
    """Vectorized step objectives of one :class:`Scorer`'s problem (operands as bits of int64)."""

    def __init__(self, scorer: Scorer):
        if scorer.n > MAX_BITMAP_OPERANDS:
            raise ValueError(f"BatchScorer handles up to {MAX_BITMAP_OPERANDS} operands, got {scorer.n}")
        self.scorer = scorer
        model = scorer.model
        self.n, self.n_legs = scorer.n, len(scorer.leg_sizes)
        incidence = np.zeros((self.n, self.n_legs))
        for i, mask in enumerate(scorer.op_masks):
            incidence[i, list(bits(mask))] = 1.0
        self.incidence = incidence
        self.carried = incidence.sum(axis=0)  # carriers per leg
        log_sizes = np.log2(np.array(scorer.leg_sizes, dtype=np.float64))
        out = np.zeros(self.n_legs, dtype=bool)
        out[list(bits(scorer.out_mask))] = True
        self.out = out
        # A leg both tensors hold closes in their merge unless it is an output leg, or a hyperedge
        # (3+ carriers) with a carrier outside both; columns: log2 size, count, then the same over
        # the legs that close whenever shared (two carriers, not an output).
        simple = (self.carried == 2) & ~out
        ones = np.ones(self.n_legs)
        self.weights = np.stack([log_sizes, ones, log_sizes * simple, ones * simple], axis=1)
        self.hyper = [(leg, scorer.carriers[leg], log_sizes[leg])
                      for leg in np.flatnonzero((self.carried >= 3) & ~out).tolist()]
        self.grad_mask, self.leaves = np.int64(scorer.grad_mask), np.int64(scorer.leaf_nodes)
        self.gated_bits = np.array([1 << i for i in sorted(scorer.gated)], dtype=np.int64)
        self.model = model
        self._matmul = matmul_step(model, scorer.itemsize, ARRAY)
        self._broadcast = broadcast_step(model, scorer.itemsize, ARRAY)

    @staticmethod
    def _unpack(masks: np.ndarray, width: int) -> np.ndarray:
        """(len(masks), width) 0/1 uint8 of int64 bitmaps (bit i of row r = bit i of masks[r])."""
        raw = np.ascontiguousarray(masks, dtype=np.int64).view(np.uint8).reshape(len(masks), 8)
        return np.unpackbits(raw, axis=1, bitorder="little")[:, :width]

    def legs(self, subsets: np.ndarray) -> np.ndarray:
        """(len(subsets), n_legs) 0/1 floats: the legs of the tensor each subset contracts to."""
        inside = self._unpack(subsets, self.n).astype(np.float64)
        count_in = inside @ self.incidence
        return ((count_in > 0) & ((count_in < self.carried) | self.out)).astype(np.float64)

    def group(self, subsets) -> Group:
        """Subsets (int64 bitmaps) with their legs and :meth:`stats`, ready to be paired."""
        subsets = np.asarray(subsets, dtype=np.int64)
        legs = self.legs(subsets)
        return Group(subsets, legs, legs @ self.weights[:, :2])

    def partner(self, group: Group) -> np.ndarray:
        """``group``'s side of :meth:`shared` (n_legs, 4 * len(group)), to reuse across calls."""
        weighted = self.weights.T[:, None, :] * group.legs[None, :, :]  # (4, len, n_legs)
        return weighted.reshape(-1, self.n_legs).T

    def shared(self, first: Group, second: Group, partner: np.ndarray | None = None) -> np.ndarray:
        """(len(first), len(second), 4): for every pair, the legs both hold (log2 entries, count)
        and those of them that close whatever else is merged (log2 entries, count). ``partner``:
        :meth:`partner` of ``second``, if the caller kept it."""
        partner = self.partner(second) if partner is None else partner
        return (first.legs @ partner).reshape(len(first.subsets), 4, -1).transpose(0, 2, 1)

    def objectives(self, s1, s2) -> tuple[np.ndarray, np.ndarray]:
        """``(objective, entries of the result)`` of merging ``s1[i]`` with ``s2[i]`` for every i
        (disjoint operand subsets as int64 bitmaps). Infeasible steps (a circuit applied gate by
        gate where it cannot be) come back as ``inf``."""
        s1, s2 = np.asarray(s1, dtype=np.int64), np.asarray(s2, dtype=np.int64)
        unique, inverse = np.unique(np.concatenate([s1, s2]), return_inverse=True)
        both = self.group(unique)
        first, second = inverse[:len(s1)], inverse[len(s1):]
        shared = (both.legs[first] * both.legs[second]) @ self.weights
        return self.pairs(both, first, both, second, shared)

    def pairs(self, first: Group, i: np.ndarray, second: Group, j: np.ndarray,
              shared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`objectives` of ``first.subsets[i]`` with ``second.subsets[j]``, given their rows
        of :meth:`shared`."""
        s1, s2 = first.subsets[i], second.subsets[j]
        log_both, closed_log, closed_count = shared[:, 0], shared[:, 2], shared[:, 3]
        if self.hyper:
            merged = s1 | s2
            for leg, carriers, log_size in self.hyper:
                closes = (first.legs[i, leg] * second.legs[j, leg]) * ((merged & carriers) == carriers)
                closed_log = closed_log + closes * log_size
                closed_count = closed_count + closes
        a_stats, b_stats = first.stats[i], second.stats[j]
        log_a, log_b = a_stats[:, 0], b_stats[:, 0]
        log_full = log_a + log_b - log_both
        a, b = _exact(log_a), _exact(log_b)
        m, n = _exact(log_a - log_both), _exact(log_b - log_both)
        full, k, c = _exact(log_full), _exact(closed_log), _exact(log_full - closed_log)
        ga = ((s1 & self.grad_mask) != 0).astype(np.int64)
        gb = ((s2 & self.grad_mask) != 0).astype(np.int64)
        count_a = ((s1 & (s1 - 1)) != 0) | ((s1 & self.leaves) == 0)
        count_b = ((s2 & (s2 - 1)) != 0) | ((s2 & self.leaves) == 0)
        copy = self.model.copy_operands
        copy_a, copy_b = count_a & (a_stats[:, 1] >= 3) & copy, count_b & (b_stats[:, 1] >= 3) & copy
        # the scalar scorer costs the pair with the lower bitmap as A (its cache key): so do we, so
        # that the terms of A and B are added in the same order, to the last bit
        swap = s1 > s2
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        m, n = np.where(swap, n, m), np.where(swap, m, n)
        ga, gb = np.where(swap, gb, ga), np.where(swap, ga, gb)
        count_a, count_b = np.where(swap, count_b, count_a), np.where(swap, count_a, count_b)
        copy_a, copy_b = np.where(swap, copy_b, copy_a), np.where(swap, copy_a, copy_b)
        with np.errstate(divide="ignore", invalid="ignore"):  # rows that are broadcasts (k = 1 ok, d = 0 never)
            _, _, saved, _, time = self._matmul(a, b, c, full, m, n, k, ga, gb, count_a, count_b, copy_a, copy_b)
        out = objective(self.model, time, saved)
        multiply = np.flatnonzero(closed_count == 0)  # nothing summed: a broadcast multiply
        if len(multiply):
            _, _, saved, _, time = self._broadcast(*(v[multiply] for v in (a, b, c, full, ga, gb, count_a, count_b)))
            out[multiply] = objective(self.model, time, saved)
        if len(self.gated_bits):  # steps applying a circuit gate by gate: the scalar scorer's rule
            gated = np.isin(s1, self.gated_bits) | np.isin(s2, self.gated_bits)
            for row in np.flatnonzero(gated).tolist():
                out[row] = self.scorer.objective(int(s1[row]), int(s2[row]))
        return out, c


def _exact(log2_size: np.ndarray) -> np.ndarray:
    """``2 ** log2_size`` as the integer-valued float it stands for (sums of log2 leg sizes)."""
    return np.rint(np.exp2(log2_size))


__all__ = ["BatchScorer", "Group"]
