"""Exact subset dynamic programs over connected operand subsets (no outer products).

- :func:`ccp_path`: DPccp (Moerkotte & Neumann 2006), the subset DP of Pfeifer et al. (opt_einsum's
  ``DynamicProgramming``) enumerating only pairs of disjoint connected subsets that share a leg.
- :func:`hub_path`: when one operand (x) touches most others, the DP restricted to subsets holding
  it, as a shortest path (A* with lazy, floor-bounded steps), the rest from :func:`_ccp_table`.

Both raise :class:`OverBudget` when the network has too many connected subsets for them; the
caller (:func:`tn_peft.planner.search.optimal_path`) then tries the other, then opt_einsum's DP.
Subsets are int bitmaps over the operands; paths are SSA pairs (see :mod:`.search`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .bitmaps import bits, submasks
from .cost import CostModel, step_floor
from .cost.batch_scorer import BatchScorer
from .cost.scorer import Scorer
from .problem import COST_SLACK, MAX_BITMAP_OPERANDS, Problem


class OverBudget(Exception):
    """More subsets than the budget allows (the search would be slow, not wrong)."""


class Disconnected(ValueError):
    """hub_path plans connected networks only."""


def find_hub(problem: Problem) -> int | None:
    """The operand sharing legs with the most others, if that is at least half of them and 3."""
    hub, degree = _most_connected(problem)
    return hub if degree >= max(3, (len(problem.operands) - 1) / 2) else None


def _most_connected(problem: Problem) -> tuple[int, int]:
    """``(operand, how many others it shares legs with)`` for the best connected one (lowest index on ties)."""
    degree = _degrees(problem)
    hub = max(range(len(degree)), key=lambda i: (degree[i], -i))
    return hub, degree[hub]


def _degrees(problem: Problem) -> list[int]:
    """For each operand, how many others share a leg with it."""
    legs = [set(op.legs) for op in problem.operands]
    return [sum(1 for j in range(len(legs)) if j != i and legs[i] & legs[j]) for i in range(len(legs))]


#: Connected pairs :func:`ccp_path` looks at before handing over to opt_einsum's sieved DP.
CCP_BUDGET = 1_000_000  # about 2 s at worst (random 21-operand trees: 0.07-0.42 M pairs, 0.08-0.8 s)


def ccp_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
             budget: int = CCP_BUDGET) -> tuple[list[tuple[int, int]], float]:
    """Exact DP over connected subgraph / complement pairs (DPccp, Moerkotte & Neumann 2006).

    The subset DP of Pfeifer et al. (opt_einsum's ``DynamicProgramming``) without outer products,
    but enumerating only pairs of disjoint connected subsets that share a leg, with operands in
    breadth-first order; pairs whose two halves already cost more than a simple tree are skipped.
    Disconnected components are planned apart and joined, smallest first, by outer products.
    """
    n = len(problem.operands)
    order = _bfs_order(problem)
    scorer, nbr = _ordered_scorer(problem, model, circuit_gates, order)
    seed_path = _sequential_path(n)  # operands in BFS order: every step shares a leg (per component)
    cap = _cap(scorer.path_cost(seed_path))
    best = _ccp_table(scorer, nbr, n, cap, budget)
    components = _components(nbr, n)
    if any(c not in best for c in components):  # nothing under the cap: fall back to the seed
        return _relabel(seed_path, order, n), scorer.path_cost(seed_path)
    path: list[tuple[int, int]] = []
    ids: dict[int, int] = {1 << i: i for i in range(n)}
    roots = sorted(components, key=lambda c: scorer.size(scorer.legs_mask(c)))
    current, acc = _build(best, roots[0], ids, path, n), roots[0]
    for comp in roots[1:]:
        other = _build(best, comp, ids, path, n)
        path.append((current, other))
        acc |= comp
        current = n + len(path) - 1
        ids[acc] = current
    return _relabel(path, order, n), scorer.path_cost(path)


#: Candidate steps :func:`hub_path` looks at before giving up (20 TT cores + x look at about 40,000;
#: the search is exact either way, the fallback is opt_einsum's DP).
HUB_BUDGET = 400_000
#: Subsets :func:`hub_path` expands together ahead of its A* (the most promising), in one numpy pass.
PREFETCH_WIDTH = 32
#: Cells (subset x piece) of one numpy pass (bounds its memory: a few MB).
CHUNK_CELLS = 2**16


def hub_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
             hub: int | None = None, budget: int = HUB_BUDGET,
             pair_budget: int = CCP_BUDGET) -> tuple[list[tuple[int, int]], float]:
    """Exact optimum of a connected network around a hub operand (x touching every TT core).

    Every tree is a spine: the hub ``h`` absorbs, one after another, subtrees ``R1, R2, ...`` that
    do not contain it, each a connected subset of the network without ``h`` (no outer products):
    ``best(h + S) = min over R of best(h + S - R) + best(R) + cost(h + S - R, R)``, the subset DP
    restricted to subsets holding ``h``, i.e. a shortest path from ``{h}`` to everything. The
    ``best(R)`` come from the connected-pair DP (:func:`_ccp_table`) on the network without ``h``
    (a chain of cores has n^2 / 2 connected subsets); the path is found by A* whose look-ahead is
    the bytes the next step must read (every step reads its inputs, so it is consistent and the
    first time a subset leaves the queue its cost is final).

    Expanding a subset costs all its steps (every piece ``R`` it can absorb) in one numpy pass
    (:class:`~.cost.batch_scorer.BatchScorer`); steps that cannot stay under the cap given the cost of
    reaching the subset are skipped by :func:`~.cost.step_floor`. Ahead of the A*, a best-first
    search expands ``PREFETCH_WIDTH`` subsets per pass (those with the lowest cost + look-ahead)
    and lowers the cap whenever a path completes; a subset's steps do not depend on how it was
    reached, so the A* then runs on that cache, expanding what it lacks (or what it reached more
    cheaply than the cache assumed) itself. A subset's steps, sorted, share one queue entry.
    ``hub``: the operand index (default: the one sharing legs with the most others). Up to 63
    operands (subsets are int64 bitmaps in numpy). ``budget``: subset x piece cells the search may
    look at; ``pair_budget``: connected pairs of the pieces' DP.
    """
    n = len(problem.operands)
    if n > MAX_BITMAP_OPERANDS:
        raise ValueError(f"hub_path plans up to {MAX_BITMAP_OPERANDS} operands, got {n} (use hyper_path)")
    if n == 1:
        return [], 0.0
    if hub is None:
        hub, _ = _most_connected(problem)
    order = _bfs_order(problem, skip=hub) + [hub]
    scorer, nbr = _ordered_scorer(problem, model, circuit_gates, order)
    h = 1 << (n - 1)
    if len(_components(nbr, n)) > 1:
        raise Disconnected("hub_path plans connected networks (ccp_path joins components)")
    seed_path = _spine_path(nbr, n)
    cap = _cap(scorer.path_cost(seed_path))
    batch = BatchScorer(scorer)
    pieces = _ccp_table(scorer, [m & ~h for m in nbr[:-1]], n - 1, cap, pair_budget, batch)
    ranked = sorted(pieces, key=lambda r: pieces[r][0])
    piece_group = batch.group(ranked)
    piece_partner = batch.partner(piece_group)
    piece_cost = np.array([pieces[r][0] for r in ranked])
    piece_size = np.exp2(piece_group.stats[:, 0])
    piece_grad = (piece_group.subsets & scorer.grad_mask) != 0
    full = (1 << n) - 1
    grad_mask = np.int64(scorer.grad_mask)
    # Circuit steps (gate by gate) read less than a matmul would: no floor and no look-ahead then.
    bounded = not scorer.gates
    floor = step_floor(model, scorer.itemsize)
    per_entry = model.flop_rate * scorer.itemsize / model.bandwidth if bounded else 0.0
    # subset -> its steps by increasing (cost + look-ahead): those, costs, subsets reached, pieces;
    # and the cost of reaching it they were pruned for (steps beyond the cap from there are left out)
    steps: dict[int, tuple[list[float], list[float], list[int], list[int]]] = {}
    pruned_at: dict[int, float] = {}
    looked = 0

    def expand(subsets: list[int], reach: np.ndarray) -> tuple[np.ndarray, ...]:
        """Cost every step out of ``subsets`` (reached at cost ``reach``) in numpy passes; keep
        those under the cap, sorted. Returns them as arrays: which subset, key, cost, reached."""
        nonlocal looked
        looked += len(subsets) * len(ranked)
        if looked > budget:
            raise OverBudget
        rows = max(1, CHUNK_CELLS // len(ranked))
        starts = range(0, len(subsets), rows)
        parts = [expand_chunk(subsets[lo:lo + rows], reach[lo:lo + rows]) for lo in starts]
        which = np.concatenate([part[0] + lo for part, lo in zip(parts, starts)])  # chunk rows -> rows
        return (which, *(np.concatenate([part[k] for part in parts]) for k in (1, 2, 3)))

    def expand_chunk(subsets: list[int], reach: np.ndarray) -> tuple[np.ndarray, ...]:
        group = batch.group(subsets)
        held = group.subsets
        grid = batch.shared(group, piece_group, piece_partner)
        bound = reach[:, None] + piece_cost[None, :]
        if bounded:  # no step costs less than its floor: skip those that cannot stay under the cap
            grads = ((held & grad_mask) != 0)[:, None].astype(np.int64) + piece_grad[None, :]
            bound = bound + floor(np.exp2(group.stats[:, 0])[:, None], piece_size[None, :], np.exp2(grid[..., 0]), grads)
        fits = ((held[:, None] & piece_group.subsets[None, :]) == 0) & (grid[..., 1] > 0) & (bound < cap)
        which, piece = np.nonzero(fits)
        step, entries = batch.pairs(group, which, piece_group, piece, grid[which, piece])
        reached = held[which] | piece_group.subsets[piece]
        ahead = np.where(reached == full, 0.0, (1 + ((reached & grad_mask) != 0)) * entries * per_entry)
        cost = piece_cost[piece] + step
        key = cost + ahead
        keep = np.flatnonzero(reach[which] + key < cap)
        keep = keep[np.lexsort((key[keep], which[keep]))]
        bounds = np.searchsorted(which[keep], np.arange(len(subsets) + 1))
        columns = [v[keep].tolist() for v in (key, cost, reached, piece_group.subsets[piece])]
        for j, subset in enumerate(subsets):
            lo, hi = bounds[j], bounds[j + 1]
            steps[subset] = tuple(col[lo:hi] for col in columns)  # type: ignore[assignment]
            pruned_at[subset] = float(reach[j])
        return which[keep], key[keep], cost[keep], reached[keep]

    def prefetch() -> None:
        """Best first in numpy passes: expand the ``PREFETCH_WIDTH`` subsets of the frontier with
        the lowest cost + look-ahead together, merge what they reach into the frontier, and lower
        the cap whenever a path completes; stop when nothing left can beat the cap (or at half the
        budget). Only a cache for the A* below: a subset it missed, or reached more cheaply than
        here, is expanded when the A* needs it."""
        nonlocal cap
        states, reach, key = np.array([h], dtype=np.int64), np.zeros(1), np.zeros(1)
        seen, seen_reach = np.zeros(0, dtype=np.int64), np.zeros(0)  # expanded (sorted), at what cost
        while len(states) and looked < budget // 2:
            take = np.argsort(key, kind="stable")[:PREFETCH_WIDTH]
            take = take[key[take] < cap]
            if not len(take):
                return
            subsets, at = states[take], reach[take]
            left = np.ones(len(states), dtype=bool)
            left[take] = False
            which, step_key, cost, reached = expand(subsets.tolist(), at)
            seen, seen_reach = np.concatenate([seen, subsets]), np.concatenate([seen_reach, at])
            order = np.lexsort((seen_reach, seen))  # one record per subset: its cheapest expansion
            seen, seen_reach = seen[order], seen_reach[order]
            first = np.r_[True, seen[1:] != seen[:-1]]
            seen, seen_reach = seen[first], seen_reach[first]
            below, ahead = at[which] + cost, at[which] + step_key
            done = reached == full
            if done.any():
                cap = min(cap, _cap(float(below[done].min())))
            new = ~done & (ahead < cap)
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
            keep = again & (key < cap)
            states, reach, key = states[keep], reach[keep], key[keep]

    dist: dict[int, float] = {h: 0.0}
    came: dict[int, int] = {}
    heap: list[tuple[float, int, int]] = []  # (key, subset, index of its next step)

    def settle_next(subset: int) -> None:
        """Push ``subset``'s first step, expanding it if the cache has not, or pruned too much."""
        if pruned_at.get(subset, math.inf) > dist[subset]:
            expand([subset], np.array([dist[subset]]))
        keys = steps[subset][0]
        if keys and dist[subset] + keys[0] < cap:
            heapq.heappush(heap, (dist[subset] + keys[0], subset, 0))

    prefetch()
    settle_next(h)
    while heap:
        _, t, i = heapq.heappop(heap)
        keys, costs, reached, used = steps[t]
        if i + 1 < len(keys) and dist[t] + keys[i + 1] < cap:
            heapq.heappush(heap, (dist[t] + keys[i + 1], t, i + 1))
        u = reached[i]
        if u in dist:
            continue
        dist[u] = dist[t] + costs[i]
        came[u] = used[i]
        if u == full:
            break
        settle_next(u)
    if full not in came:  # nothing under the cap: the seed is optimal
        return _relabel(seed_path, order, n), scorer.path_cost(seed_path)
    spine: list[int] = []
    s = full
    while s != h:
        spine.append(came[s])
        s ^= came[s]
    path: list[tuple[int, int]] = []
    ids: dict[int, int] = {1 << i: i for i in range(n)}
    current = n - 1
    for r in reversed(spine):
        other = _build(pieces, r, ids, path, n)
        path.append((current, other))
        current = n + len(path) - 1
    return _relabel(path, order, n), scorer.path_cost(path)


def _ordered_scorer(problem: Problem, model: CostModel, circuit_gates: frozenset[int],
                    order: list[int]) -> tuple[Scorer, list[int]]:
    """A scorer of ``problem`` with its operands in ``order``, and each operand's neighbour mask."""
    ordered = replace(problem, operands=tuple(problem.operands[i] for i in order))
    scorer = Scorer(ordered, model, frozenset(order.index(i) for i in circuit_gates))
    masks = scorer.op_masks
    n = len(masks)
    nbr = [sum(1 << j for j in range(n) if j != i and masks[i] & masks[j]) for i in range(n)]
    return scorer, nbr


def _cap(cost: float) -> float:
    """The pruning cap from a known tree's cost (a hair above it, so that tree itself survives)."""
    return cost * (1 + COST_SLACK) if math.isfinite(cost) else math.inf


def _ccp_table(scorer: Scorer, nbr: list[int], n: int, cap: float, budget: int,
               batch: BatchScorer | None = None) -> dict[int, tuple[float, int, int]]:
    """``subset -> (cost, s1, s2)`` for the connected subsets of operands ``0..n-1`` cheaper than ``cap``.

    Operands are numbered breadth-first (component by component) and ``nbr`` holds neighbour masks
    within ``0..n-1``; DPccp's enumeration then meets every subset after all of its parts. The pairs
    are enumerated first and costed in one numpy pass (:class:`~.cost.batch_scorer.BatchScorer`).
    """
    firsts, seconds = _ccp_pairs(nbr, n, budget)
    best: dict[int, tuple[float, int, int]] = {1 << i: (0.0, 0, 0) for i in range(n)}
    if not firsts:
        return best
    batch = batch or BatchScorer(scorer)
    steps = np.concatenate([batch.objectives(np.array(firsts[lo:lo + CHUNK_CELLS], dtype=np.int64),
                                             np.array(seconds[lo:lo + CHUNK_CELLS], dtype=np.int64))[0]
                            for lo in range(0, len(firsts), CHUNK_CELLS)])
    get = best.get
    for s1, s2, step in zip(firsts, seconds, steps.tolist()):
        b1 = get(s1)
        b2 = get(s2)
        if b1 is None or b2 is None:
            continue
        cost = b1[0] + b2[0] + step
        if cost < cap:
            s = s1 | s2
            old = get(s)
            if old is None or cost < old[0]:
                best[s] = (cost, s1, s2)
    return best


def _ccp_pairs(nbr: list[int], n: int, budget: int) -> tuple[list[int], list[int]]:
    """DPccp's csg-cmp pairs of operands ``0..n-1`` (``nbr``: neighbour masks), in its order."""
    firsts: list[int] = []
    seconds: list[int] = []
    around: dict[int, int] = {1 << i: nbr[i] for i in range(n)}

    def neighbours(subset: int, excluded: int) -> int:
        out = around.get(subset)
        if out is None:
            out, m = 0, subset
            while m:
                low = m & -m
                out |= around[low]
                m ^= low
            around[subset] = out
        return out & ~subset & ~excluded

    def enumerate_cmp(s1: int, s2: int, excluded: int) -> None:
        nb = neighbours(s2, excluded)
        for sub in submasks(nb):
            firsts.append(s1)
            seconds.append(s2 | sub)
        for sub in submasks(nb):
            enumerate_cmp(s1, s2 | sub, excluded | nb)

    def emit_csg(s1: int) -> None:
        low = (s1 & -s1).bit_length() - 1
        excluded = s1 | ((1 << (low + 1)) - 1)
        nb = nb_all = neighbours(s1, excluded)
        while nb:  # neighbours by descending index
            i = nb.bit_length() - 1
            firsts.append(s1)
            seconds.append(1 << i)
            enumerate_cmp(s1, 1 << i, excluded | (((1 << (i + 1)) - 1) & nb_all))
            nb ^= 1 << i
        if len(firsts) > budget:
            raise OverBudget

    def enumerate_csg(s: int, excluded: int) -> None:
        nb = neighbours(s, excluded)
        for sub in submasks(nb):
            emit_csg(s | sub)
        for sub in submasks(nb):
            enumerate_csg(s | sub, excluded | nb)

    for i in range(n - 1, -1, -1):
        emit_csg(1 << i)
        enumerate_csg(1 << i, (1 << (i + 1)) - 1)
    return firsts, seconds


def _build(best: dict[int, tuple[float, int, int]], subset: int, ids: dict[int, int],
           path: list[tuple[int, int]], n: int) -> int:
    """Append the SSA steps making ``subset`` (from a DP table) to ``path``; returns its id."""
    if subset in ids:
        return ids[subset]
    _, s1, s2 = best[subset]
    a, b = _build(best, s1, ids, path, n), _build(best, s2, ids, path, n)
    path.append((a, b))
    ids[subset] = n + len(path) - 1
    return ids[subset]


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


def _sequential_path(n: int) -> list[tuple[int, int]]:
    """((0 1) 2) 3 ...: the cap of the connected-pair DP (cheap; any tree's cost is a valid cap)."""
    path, current = [], 0
    for i in range(1, n):
        path.append((current, i))
        current = n + i - 1
    return path


def _bfs_order(problem: Problem, skip: int | None = None) -> list[int]:
    """Operands in breadth-first order from operand 0 (x when present), component by component
    (without operand ``skip``, as if it were not there)."""
    legs = [set(op.legs) for op in problem.operands]
    n = len(legs)
    order: list[int] = []
    seen: set[int] = set() if skip is None else {skip}
    for start in range(n):
        if start in seen:
            continue
        queue = [start]
        seen.add(start)
        while queue:
            i = queue.pop(0)
            order.append(i)
            for j in range(n):
                if j not in seen and legs[i] & legs[j]:
                    seen.add(j)
                    queue.append(j)
    return order


def _components(nbr: list[int], n: int) -> list[int]:
    left = (1 << n) - 1
    out = []
    while left:
        comp = left & -left
        frontier = comp
        while frontier:
            grow = 0
            for i in bits(frontier):
                grow |= nbr[i]
            frontier = grow & ~comp
            comp |= frontier
        out.append(comp)
        left &= ~comp
    return out


def _relabel(path: Sequence[tuple[int, int]], mapping: Sequence[int], n: int) -> list[tuple[int, int]]:
    """Rename the leaves of an SSA path (intermediate ids stay)."""
    return [tuple(mapping[i] if i < n else i for i in pair) for pair in path]  # type: ignore[misc]
