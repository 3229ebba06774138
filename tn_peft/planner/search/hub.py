"""The hub search: when one operand (x) touches most others, the exact subset DP restricted to the
subsets holding it, as a shortest path (A* with lazy, floor-bounded steps); the pieces it absorbs
come from :func:`~.ccp.ccp_table`.

Raises :class:`~.base.OverBudget` past its budget and :class:`~.base.Disconnected` on a
disconnected network; :func:`~.exact.exact_path` then tries DPccp, then opt_einsum's DP.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from ..bitmaps import bits
from ..cost import CostModel, step_floor
from ..cost.batch_scorer import BatchScorer
from ..problem import MAX_BITMAP_OPERANDS, Problem
from .base import (
    Disconnected,
    OverBudget,
    bfs_order,
    build_path,
    cap_of,
    component_masks,
    most_connected,
    ordered_scorer,
    relabel,
)
from .ccp import CCP_BUDGET, CHUNK_CELLS, ccp_table

#: Candidate steps :func:`hub_path` looks at before giving up (20 TT cores + x look at about 40,000;
#: the search is exact either way, the fallback is opt_einsum's DP).
HUB_BUDGET = 400_000


#: Subsets :func:`hub_path` expands together ahead of its A* (the most promising), in one numpy pass.
PREFETCH_WIDTH = 32


def hub_path(problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
             hub: int | None = None, budget: int = HUB_BUDGET,
             pair_budget: int = CCP_BUDGET) -> tuple[list[tuple[int, int]], float]:
    """Exact optimum of a connected network around a hub operand (x touching every TT core): a
    :class:`HubSearch` run (see there). ``hub``: the operand index (default: the one sharing legs
    with the most others). ``budget``: subset x piece cells the search may look at;
    ``pair_budget``: connected pairs of the pieces' DP."""
    n = len(problem.operands)
    if n > MAX_BITMAP_OPERANDS:
        raise ValueError(f"hub_path plans up to {MAX_BITMAP_OPERANDS} operands, got {n} (use hyper_path)")
    if n == 1:
        return [], 0.0
    return HubSearch(problem, model, gated, hub, budget, pair_budget).run()


class HubSearch:
    """Exact optimum of a connected network around a hub operand (x touching every TT core).

    Every tree is a spine: the hub ``h`` absorbs, one after another, subtrees ``R1, R2, ...`` that
    do not contain it, each a connected subset of the network without ``h`` (no outer products):
    ``best(h + S) = min over R of best(h + S - R) + best(R) + cost(h + S - R, R)``, the subset DP
    restricted to subsets holding ``h``, i.e. a shortest path from ``{h}`` to everything. The
    ``best(R)`` come from the connected-pair DP (:func:`ccp_table`) on the network without ``h``
    (a chain of cores has n^2 / 2 connected subsets); the path is found by A* whose look-ahead is
    the bytes the next step must read (every step reads its inputs, so it is consistent and the
    first time a subset leaves the queue its cost is final).

    Expanding a subset costs all its steps (every piece ``R`` it can absorb) in one numpy pass
    (:class:`~tn_peft.planner.cost.batch_scorer.BatchScorer`); steps that cannot stay under the cap given the cost of
    reaching the subset are skipped by :func:`~tn_peft.planner.cost.step.step_floor`. Ahead of the A*, a best-first
    search expands ``PREFETCH_WIDTH`` subsets per pass (those with the lowest cost + look-ahead)
    and lowers the cap whenever a path completes; a subset's steps do not depend on how it was
    reached, so the A* then runs on that cache, expanding what it lacks (or what it reached more
    cheaply than the cache assumed) itself. A subset's steps, sorted, share one queue entry.
    Up to 63 operands (subsets are int64 bitmaps in numpy), at least two; arguments as :func:`hub_path`'s.
    """

    def __init__(self, problem: Problem, model: CostModel, gated: frozenset[int] = frozenset(),
                 hub: int | None = None, budget: int = HUB_BUDGET, pair_budget: int = CCP_BUDGET):
        n = self.n = len(problem.operands)
        if hub is None:
            hub, _ = most_connected(problem)
        self.order = bfs_order(problem, skip=hub) + [hub]
        scorer, nbr = self.scorer, self.nbr = ordered_scorer(problem, model, gated, self.order)
        h = self.h = 1 << (n - 1)
        if len(component_masks(nbr, n)) > 1:
            raise Disconnected("hub_path plans connected networks (ccp_path joins components)")
        self.seed_path = _spine_path(nbr, n)
        self.cap = cap_of(scorer.path_cost(self.seed_path))
        batch = self.batch = BatchScorer(scorer)
        pieces = self.pieces = ccp_table(scorer, [m & ~h for m in nbr[:-1]], n - 1, self.cap, pair_budget, batch)
        self.ranked = sorted(pieces, key=lambda r: pieces[r][0])
        self.piece_group = batch.group(self.ranked)
        self.piece_partner = batch.partner(self.piece_group)
        self.piece_cost = np.array([pieces[r][0] for r in self.ranked])
        self.piece_size = np.exp2(self.piece_group.stats[:, 0])
        self.piece_grad = (self.piece_group.subsets & scorer.grad_mask) != 0
        self.full = (1 << n) - 1
        self.grad_mask = np.int64(scorer.grad_mask)
        # Circuit steps (gate by gate) read less than a matmul would: no floor and no look-ahead then.
        self.bounded = not scorer.gated
        self.floor = step_floor(model, scorer.itemsize)
        self.per_entry = model.flop_rate * scorer.itemsize / model.bandwidth if self.bounded else 0.0
        # subset -> its steps by increasing (cost + look-ahead): those, costs, subsets reached, pieces;
        # and the cost of reaching it they were pruned for (steps beyond the cap from there are left out)
        self.steps: dict[int, tuple[list[float], list[float], list[int], list[int]]] = {}
        self.pruned_at: dict[int, float] = {}
        self.looked = 0
        self.budget = budget
        # the A*: cost of reaching each settled subset, the piece that reached it, the queue
        self.dist: dict[int, float] = {h: 0.0}
        self.came: dict[int, int] = {}
        self.heap: list[tuple[float, int, int]] = []  # (key, subset, index of its next step)

    def run(self) -> tuple[list[tuple[int, int]], float]:
        """The optimal ``(ssa path, objective)`` (the seed, the hub absorbing its neighbours one by
        one, when nothing beats it)."""
        n, h, full = self.n, self.h, self.full
        dist, came, heap, steps = self.dist, self.came, self.heap, self.steps
        self.prefetch()
        self.settle_next(h)
        while heap:
            _, t, i = heapq.heappop(heap)
            keys, costs, reached, used = steps[t]
            if i + 1 < len(keys) and dist[t] + keys[i + 1] < self.cap:
                heapq.heappush(heap, (dist[t] + keys[i + 1], t, i + 1))
            u = reached[i]
            if u in dist:
                continue
            dist[u] = dist[t] + costs[i]
            came[u] = used[i]
            if u == full:
                break
            self.settle_next(u)
        scorer, order = self.scorer, self.order
        if full not in came:  # nothing under the cap: the seed is optimal
            return relabel(self.seed_path, order, n), scorer.path_cost(self.seed_path)
        spine: list[int] = []
        s = full
        while s != h:
            spine.append(came[s])
            s ^= came[s]
        path: list[tuple[int, int]] = []
        ids: dict[int, int] = {1 << i: i for i in range(n)}
        current = n - 1
        for r in reversed(spine):
            other = build_path(self.pieces, r, ids, path, n)
            path.append((current, other))
            current = n + len(path) - 1
        return relabel(path, order, n), scorer.path_cost(path)

    def expand(self, subsets: list[int], reach: np.ndarray) -> tuple[np.ndarray, ...]:
        """Cost every step out of ``subsets`` (reached at cost ``reach``) in numpy passes; keep
        those under the cap, sorted. Returns them as arrays: which subset, key, cost, reached."""
        self.looked += len(subsets) * len(self.ranked)
        if self.looked > self.budget:
            raise OverBudget
        rows = max(1, CHUNK_CELLS // len(self.ranked))
        starts = range(0, len(subsets), rows)
        parts = [self._expand_chunk(subsets[lo:lo + rows], reach[lo:lo + rows]) for lo in starts]
        which = np.concatenate([part[0] + lo for part, lo in zip(parts, starts)])  # chunk rows -> rows
        return (which, *(np.concatenate([part[k] for part in parts]) for k in (1, 2, 3)))

    def _expand_chunk(self, subsets: list[int], reach: np.ndarray) -> tuple[np.ndarray, ...]:
        batch, piece_group, grad_mask, cap = self.batch, self.piece_group, self.grad_mask, self.cap
        group = batch.group(subsets)
        held = group.subsets
        grid = batch.shared(group, piece_group, self.piece_partner)
        bound = reach[:, None] + self.piece_cost[None, :]
        if self.bounded:  # no step costs less than its floor: skip those that cannot stay under the cap
            grads = ((held & grad_mask) != 0)[:, None].astype(np.int64) + self.piece_grad[None, :]
            bound = bound + self.floor(np.exp2(group.stats[:, 0])[:, None], self.piece_size[None, :],
                                       np.exp2(grid[..., 0]), grads)
        fits = ((held[:, None] & piece_group.subsets[None, :]) == 0) & (grid[..., 1] > 0) & (bound < cap)
        which, piece = np.nonzero(fits)
        step, entries = batch.pairs(group, which, piece_group, piece, grid[which, piece])
        reached = held[which] | piece_group.subsets[piece]
        ahead = np.where(reached == self.full, 0.0, (1 + ((reached & grad_mask) != 0)) * entries * self.per_entry)
        cost = self.piece_cost[piece] + step
        key = cost + ahead
        keep = np.flatnonzero(reach[which] + key < cap)
        keep = keep[np.lexsort((key[keep], which[keep]))]
        bounds = np.searchsorted(which[keep], np.arange(len(subsets) + 1))
        columns = [v[keep].tolist() for v in (key, cost, reached, piece_group.subsets[piece])]
        for j, subset in enumerate(subsets):
            lo, hi = bounds[j], bounds[j + 1]
            self.steps[subset] = tuple(col[lo:hi] for col in columns)  # type: ignore[assignment]
            self.pruned_at[subset] = float(reach[j])
        return which[keep], key[keep], cost[keep], reached[keep]

    def prefetch(self) -> None:
        """Best first in numpy passes: expand the ``PREFETCH_WIDTH`` subsets of the frontier with
        the lowest cost + look-ahead together, merge what they reach into the frontier, and lower
        the cap whenever a path completes; stop when nothing left can beat the cap (or at half the
        budget). Only a cache for the A* below: a subset it missed, or reached more cheaply than
        here, is expanded when the A* needs it."""
        full = self.full
        states, reach, key = np.array([self.h], dtype=np.int64), np.zeros(1), np.zeros(1)
        seen, seen_reach = np.zeros(0, dtype=np.int64), np.zeros(0)  # expanded (sorted), at what cost
        while len(states) and self.looked < self.budget // 2:
            take = np.argsort(key, kind="stable")[:PREFETCH_WIDTH]
            take = take[key[take] < self.cap]
            if not len(take):
                return
            subsets, at = states[take], reach[take]
            left = np.ones(len(states), dtype=bool)
            left[take] = False
            which, step_key, cost, reached = self.expand(subsets.tolist(), at)
            seen, seen_reach = np.concatenate([seen, subsets]), np.concatenate([seen_reach, at])
            order = np.lexsort((seen_reach, seen))  # one record per subset: its cheapest expansion
            seen, seen_reach = seen[order], seen_reach[order]
            first = np.r_[True, seen[1:] != seen[:-1]]
            seen, seen_reach = seen[first], seen_reach[first]
            below, ahead = at[which] + cost, at[which] + step_key
            done = reached == full
            if done.any():
                self.cap = min(self.cap, cap_of(float(below[done].min())))
            new = ~done & (ahead < self.cap)
            states = np.concatenate([states[left], reached[new]])
            reach = np.concatenate([reach[left], below[new]])
            key = np.concatenate([key[left], ahead[new]])
            if not len(states):
                return
            order = np.lexsort((reach, states))  # one entry per subset: its cheapest way
            states, reach, key = states[order], reach[order], key[order]
            first = np.r_[True, states[1:] != states[:-1]]
            states, reach, key = states[first], reach[first], key[first]
            at_seen = np.minimum(np.searchsorted(seen, states), max(len(seen) - 1, 0))
            again = (seen[at_seen] != states) | (reach < seen_reach[at_seen])  # new, or reached cheaper
            keep = again & (key < self.cap)
            states, reach, key = states[keep], reach[keep], key[keep]

    def settle_next(self, subset: int) -> None:
        """Push ``subset``'s first step, expanding it if the cache has not, or pruned too much."""
        dist = self.dist
        if self.pruned_at.get(subset, math.inf) > dist[subset]:
            self.expand([subset], np.array([dist[subset]]))
        keys = self.steps[subset][0]
        if keys and dist[subset] + keys[0] < self.cap:
            heapq.heappush(self.heap, (dist[subset] + keys[0], subset, 0))


def _spine_path(nbr: list[int], n: int) -> list[tuple[int, int]]:
    """The hub (operand n-1) absorbing its neighbourhood one operand at a time, breadth-first."""
    path: list[tuple[int, int]] = []
    held, current = 1 << (n - 1), n - 1
    while held != (1 << n) - 1:
        around = 0
        for i in bits(held):
            around |= nbr[i]
        nxt = (around & ~held & -(around & ~held)).bit_length() - 1
        path.append((current, nxt))
        current = n + len(path) - 1
        held |= 1 << nxt
    return path
