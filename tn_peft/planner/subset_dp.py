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

from .cost import CostModel, step_floor
from .problem import Problem
from .scorer import Scorer, _bits


class OverBudget(Exception):
    """More subsets than the budget allows (the search would be slow, not wrong)."""


class Disconnected(ValueError):
    """hub_path plans connected networks only."""


def find_hub(problem: Problem) -> int | None:
    """The operand sharing legs with the most others, if that is at least half of them and 3."""
    degree = _degrees(problem)
    hub = max(range(len(degree)), key=lambda i: (degree[i], -i))
    return hub if degree[hub] >= max(3, (len(degree) - 1) / 2) else None


def _degrees(problem: Problem) -> list[int]:
    """For each operand, how many others share a leg with it."""
    legs = [set(op.legs) for op in problem.operands]
    return [sum(1 for j in range(len(legs)) if j != i and legs[i] & legs[j]) for i in range(len(legs))]


#: Connected pairs :func:`ccp_path` looks at before handing over to opt_einsum's sieved DP.
CCP_BUDGET = 40_000


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


#: Candidate steps :func:`hub_path` looks at before giving up (20 TT cores + x need 24,000; the
#: search is exact either way, the fallback is opt_einsum's DP).
HUB_BUDGET = 100_000


def hub_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
             hub: int | None = None, budget: int = HUB_BUDGET) -> tuple[list[tuple[int, int]], float]:
    """Exact optimum of a connected network around a hub operand (x touching every TT core).

    Every tree is a spine: the hub ``h`` absorbs, one after another, subtrees ``R1, R2, ...`` that
    do not contain it, each a connected subset of the network without ``h`` (no outer products):
    ``best(h + S) = min over R of best(h + S - R) + best(R) + cost(h + S - R, R)``, the subset DP
    restricted to subsets holding ``h``, i.e. a shortest path from ``{h}`` to everything. The
    ``best(R)`` come from the connected-pair DP (:func:`_ccp_table`) on the network without ``h``
    (a chain of cores has n^2 / 2 connected subsets); the path is found by A* (costs are
    non-negative) with lazy edges: a step enters the queue at :func:`~.cost.step_floor` (the steps
    out of one subset, bounded together with numpy, share one queue entry in order of their bounds)
    and is costed exactly only if it comes out before the optimum; the look-ahead is the bytes the
    next step must read. Only subsets cheaper than the optimum are expanded, and only steps under
    the cap (the hub absorbing its neighbours one by one) enter the queue.
    ``hub``: the operand index (default: the one sharing legs with the most others). Up to 63
    operands (subsets are int64 bitmaps in numpy).
    """
    n = len(problem.operands)
    if n > 63:
        raise ValueError(f"hub_path plans up to 63 operands, got {n} (use hyper_path)")
    if hub is None:
        degree = _degrees(problem)
        hub = max(range(n), key=lambda i: (degree[i], -i))
    order = _bfs_order(problem, skip=hub) + [hub]
    scorer, nbr = _ordered_scorer(problem, model, circuit_gates, order)
    h = 1 << (n - 1)
    if len(_components(nbr, n)) > 1:
        raise Disconnected("hub_path plans connected networks (ccp_path joins components)")
    seed_path = _spine_path(nbr, n)
    cap = _cap(scorer.path_cost(seed_path))
    rest = [m & ~h for m in nbr[:-1]]
    pieces = _ccp_table(scorer, rest, n - 1, cap, CCP_BUDGET)
    # Per piece (numpy, cheapest first): operand mask, cost, legs as log2 sizes, size, gradient.
    # Circuit steps (gate by gate) get no bounds: floor and look-ahead are then 0.
    grad_mask = scorer.grad_mask
    bounded = not scorer.gates
    floor = step_floor(model, scorer.itemsize)
    per_byte = model.flop_rate * scorer.itemsize / model.bandwidth if bounded else 0.0
    ranked = sorted(pieces, key=lambda r: pieces[r][0])
    piece_mask = np.array(ranked, dtype=np.int64)
    piece_cost = np.array([pieces[r][0] for r in ranked])
    piece_legs = [scorer.legs_mask(r) for r in ranked]
    piece_size = np.array([float(scorer.size(lr)) for lr in piece_legs])
    piece_grad = np.array([int(bool(r & grad_mask)) for r in ranked])
    n_legs = len(scorer.leg_sizes)
    n_bytes = (n_legs + 7) // 8

    def leg_bits(masks: list[int]) -> np.ndarray:  # (len(masks), n_legs) 0/1
        raw = np.frombuffer(b"".join(m.to_bytes(n_bytes, "little") for m in masks), np.uint8)
        return np.unpackbits(raw.reshape(len(masks), n_bytes), axis=1, bitorder="little")[:, :n_legs]

    incidence = leg_bits(piece_legs) * np.log2(np.array(scorer.leg_sizes, dtype=np.float64))

    full = (1 << n) - 1
    dist: dict[int, float] = {h: 0.0}
    settled: dict[int, int] = {}
    # Entries (key, 0, t, s, r): t reached exactly at cost key - look-ahead via s + r. (key, 1, b, i, 0):
    # candidate i of batch b (the pieces of one expanded subset, by increasing bound), not yet costed;
    # a batch holds one entry at a time, so the heap stays small however many candidates pass.
    heap: list[tuple[float, int, int, int, int]] = [(0.0, 0, h, 0, 0)]
    batches: list[tuple[int, list[float], list[int]]] = []
    objective, size, legs_mask = scorer.objective, scorer.size, scorer.legs_mask
    looked = 0
    while heap:
        _, lazy, t, s, r = heapq.heappop(heap)
        if lazy:
            source, bounds, members = batches[t]
            i = s
            while True:  # cost candidates while they come before everything else in the queue
                u, piece = source | members[i], members[i]
                if u not in settled and bounds[i] < dist.get(u, cap):
                    cost = dist[source] + pieces[piece][0] + objective(source, piece)
                    if cost < dist.get(u, cap):
                        dist[u] = cost
                        ahead = 0.0 if u == full else (1 + int(bool(u & grad_mask))) * size(legs_mask(u)) * per_byte
                        heapq.heappush(heap, (cost + ahead, 0, u, source, piece))
                i += 1
                if i == len(members):
                    break
                if heap and bounds[i] > heap[0][0]:
                    heapq.heappush(heap, (bounds[i], 1, t, i, 0))
                    break
            continue
        if t in settled:
            continue
        d = dist[t]
        settled[t] = r
        if t == full:
            break
        around, m = 0, t
        while m:
            low = m & -m
            around |= nbr[low.bit_length() - 1]
            m ^= low
        around &= ~t
        bound = d + piece_cost
        fits = ((piece_mask & t) == 0) & ((piece_mask & around) != 0) & (bound < cap)
        looked += len(ranked)
        if bounded:
            la = legs_mask(t)
            shared = np.exp2(incidence @ leg_bits([la])[0])
            bound = bound + floor(float(size(la)), piece_size, shared, int(bool(t & grad_mask)) + piece_grad)
            fits &= bound < cap
        chosen = np.flatnonzero(fits)
        if len(chosen):
            chosen = chosen[np.argsort(bound[chosen], kind="stable")]
            batches.append((t, bound[chosen].tolist(), [ranked[i] for i in chosen.tolist()]))
            heapq.heappush(heap, (batches[-1][1][0], 1, len(batches) - 1, 0, 0))
        if looked > budget:
            raise OverBudget
    came = {state: piece for state, piece in settled.items() if state != h}
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
    return cost * (1 + 1e-9) if math.isfinite(cost) else math.inf


def _ccp_table(scorer: Scorer, nbr: list[int], n: int, cap: float, budget: int) -> dict[int, tuple[float, int, int]]:
    """``subset -> (cost, s1, s2)`` for the connected subsets of operands ``0..n-1`` cheaper than ``cap``.

    Operands are numbered breadth-first (component by component) and ``nbr`` holds neighbour masks
    within ``0..n-1``; DPccp's enumeration then meets every subset after all of its parts.
    """
    best: dict[int, tuple[float, int, int]] = {1 << i: (0.0, 0, 0) for i in range(n)}
    objective = scorer.objective
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

    count = [0]

    def emit(s1: int, s2: int) -> None:
        count[0] += 1
        if count[0] > budget:
            raise OverBudget
        b1 = best.get(s1)
        b2 = best.get(s2)
        if b1 is None or b2 is None:
            return
        base = b1[0] + b2[0]
        if base >= cap:
            return
        cost = base + objective(s1, s2)
        if cost < cap:
            s = s1 | s2
            old = best.get(s)
            if old is None or cost < old[0]:
                best[s] = (cost, s1, s2)

    def enumerate_cmp(s1: int, s2: int, excluded: int) -> None:
        nb = neighbours(s2, excluded)
        for sub in _subsets(nb):
            emit(s1, s2 | sub)
        for sub in _subsets(nb):
            enumerate_cmp(s1, s2 | sub, excluded | nb)

    def emit_csg(s1: int) -> None:
        low = (s1 & -s1).bit_length() - 1
        excluded = s1 | ((1 << (low + 1)) - 1)
        nb = nb_all = neighbours(s1, excluded)
        while nb:  # neighbours by descending index
            i = nb.bit_length() - 1
            emit(s1, 1 << i)
            enumerate_cmp(s1, 1 << i, excluded | (((1 << (i + 1)) - 1) & nb_all))
            nb ^= 1 << i

    def enumerate_csg(s: int, excluded: int) -> None:
        nb = neighbours(s, excluded)
        for sub in _subsets(nb):
            emit_csg(s | sub)
        for sub in _subsets(nb):
            enumerate_csg(s | sub, excluded | nb)

    for i in range(n - 1, -1, -1):
        emit_csg(1 << i)
        enumerate_csg(1 << i, (1 << (i + 1)) - 1)
    return best


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
        for i in _bits(held):
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


def _subsets(mask: int):
    """Non-empty subsets of ``mask`` in increasing order (so every subset precedes its supersets)."""
    sub = 0
    while True:
        sub = (sub - mask) & mask
        if not sub:
            return
        yield sub


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
            for i in _bits(frontier):
                grow |= nbr[i]
            frontier = grow & ~comp
            comp |= frontier
        out.append(comp)
        left &= ~comp
    return out


def _relabel(path: Sequence[tuple[int, int]], mapping: Sequence[int], n: int) -> list[tuple[int, int]]:
    """Rename the leaves of an SSA path (intermediate ids stay)."""
    return [tuple(mapping[i] if i < n else i for i in pair) for pair in path]  # type: ignore[misc]
