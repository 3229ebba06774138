"""Search for the contraction tree minimizing the cost model's objective.

- :func:`optimal_path`: exact. opt_einsum's ``DynamicProgramming`` (Pfeifer et al. 2014) run with
  our own local cost (its ``minimize`` takes a callable), seeded with the cost of a greedy tree as
  the cost cap so one sieve pass suffices. Costs depend only on the two merged subsets (their legs
  and whether they hold a tensor that needs a gradient), so the subset DP stays exact.
- :func:`hyper_path`: beyond ``EXACT_LIMIT`` operands, cotengra's hyper-optimizer scoring its
  candidate trees with the same objective.
- :func:`exhaustive_path`: every binary tree, outer products included (a check for small networks).

Paths are SSA: a list of pairs ``(i, j)``; operands are ``0..n-1`` and step ``s`` makes ``n + s``.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Sequence
from dataclasses import replace

import opt_einsum
from opt_einsum.paths import DynamicProgramming, _dp_calc_legs

from .cost import CostModel, step_floor
from .problem import Problem
from .scorer import INFEASIBLE, Scorer, _bits

#: Operand counts up to which the search is exact (beyond: cotengra's hyper-optimizer).
EXACT_LIMIT = 22
#: Operand counts up to which the exact search also tries outer products.
OUTER_LIMIT = 8

def _inputs(problem: Problem) -> tuple[list[frozenset], frozenset, dict]:
    return [frozenset(op.legs) for op in problem.operands], frozenset(problem.output), problem.size_dict


def linear_to_ssa(path: Sequence[Sequence[int]], n: int) -> list[tuple[int, int]]:
    """opt_einsum's linear path (positions in a shrinking list) -> SSA pairs.

    k-ary steps become k-1 pairs; single-operand steps (sums) are dropped: a step sums every leg
    its result no longer needs.

    >>> linear_to_ssa([(1, 2), (0, 1)], 3)
    [(1, 2), (0, 3)]
    """
    ids = list(range(n))
    nxt = n
    out: list[tuple[int, int]] = []
    for step in path:
        picked = [ids[p] for p in step]
        for p in sorted(step, reverse=True):
            del ids[p]
        current = picked[0]
        for other in picked[1:]:
            out.append((current, other))
            current = nxt
            nxt += 1
        ids.append(current)
    return out


def flops_path(problem: Problem, optimize: str = "greedy") -> list[tuple[int, int]]:
    """An SSA path from opt_einsum minimizing FLOPs only (``greedy``, ``optimal``, ``dp``...)."""
    if len(problem.operands) == 1:
        return []
    inputs = _inputs(problem)[0]
    if optimize == "optimal" and len(inputs) > 9:
        optimize = "dp"  # same optimum (without outer products), without the factorial search
    path, _ = opt_einsum.contract_path(*_einsum_args(problem), optimize=optimize, shapes=True)
    return linear_to_ssa(path, len(inputs))


def _einsum_args(problem: Problem) -> list:
    eq = problem.equation()
    shapes = [tuple(problem.size_dict[leg] for leg in op.legs) for op in problem.operands]
    return [eq, *shapes]


def optimal_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
                 scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The exact optimum of the objective: ``(ssa path, objective)``.

    Up to ``OUTER_LIMIT`` operands every binary tree is searched (:func:`exhaustive_path`, outer
    products included). Beyond, around a hub (an operand sharing legs with at least half of the
    others, like x with every TT core) :func:`hub_path`, else the connected subgraph / complement
    pairs (:func:`ccp_path`); when one meets too many subsets, the other, then opt_einsum's DP.
    """
    if len(problem.operands) <= OUTER_LIMIT:
        return exhaustive_path(problem, model, circuit_gates, scorer)
    hub = find_hub(problem)
    searches = [ccp_path, hub_path]
    if hub is not None:
        searches.reverse()
    for search in searches:
        try:
            return search(problem, model, circuit_gates)
        except (_OverBudget, _Disconnected):
            continue
    return oe_dp_path(problem, model, circuit_gates)


def find_hub(problem: Problem) -> int | None:
    """The operand sharing legs with the most others, if that is at least half of them and 3."""
    legs = [set(op.legs) for op in problem.operands]
    n = len(legs)
    degree = [sum(1 for j in range(n) if j != i and legs[i] & legs[j]) for i in range(n)]
    hub = max(range(n), key=lambda i: (degree[i], -i))
    return hub if degree[hub] >= max(3, (n - 1) / 2) else None


def oe_dp_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
               scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """The same optimum through opt_einsum's ``DynamicProgramming`` with our cost as ``minimize``.

    (Slower than :func:`ccp_path`, which enumerates only connected pairs; kept as a cross-check.)
    """
    scorer = scorer or Scorer(problem, model, circuit_gates)
    n = scorer.n
    if n <= 2:
        path = [(0, 1)] if n == 2 else []
        return path, scorer.path_cost(path)
    seed = flops_path(problem, "greedy")
    inputs, output, sizes = _inputs(problem)

    def compare(cost1, cost2, i1_union_i2, size_dict, cost_cap, s1, s2, xn, g, all_tensors, inputs_,
                i1_cut_i2_wo_output, memory_limit, contract1, contract2):
        cost = cost1 + cost2 + scorer.objective(s1, s2)
        if cost <= cost_cap:
            s = s1 | s2
            old = xn.get(s)
            if old is None or cost < old[1]:
                legs = _dp_calc_legs(g, all_tensors, s, inputs_, i1_cut_i2_wo_output, i1_union_i2)
                xn[s] = (legs, cost, (contract1, contract2))

    # cost_cap = the greedy tree's cost: every subtree of the optimum costs less, so one pass does.
    cap = scorer.path_cost(seed)
    cap = cap * (1 + 1e-9) if math.isfinite(cap) else False
    try:
        linear = DynamicProgramming(minimize=compare, cost_cap=cap)(list(inputs), output, sizes)
    except RuntimeError:  # nothing under the cap (only with infeasible circuit steps): no cap
        linear = DynamicProgramming(minimize=compare, cost_cap=False)(list(inputs), output, sizes)
    path = linear_to_ssa(linear, n)
    if scorer.path_cost(path) > scorer.path_cost(seed):  # opt_einsum joins disconnected parts its own way
        path = seed
    return path, scorer.path_cost(path)


class _OverBudget(Exception):
    pass


class _Disconnected(ValueError):
    pass


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


#: (pieces x states) :func:`hub_path` looks at before giving up (the search is exact either way).
HUB_BUDGET = 400_000


def hub_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
             hub: int | None = None, budget: int = HUB_BUDGET) -> tuple[list[tuple[int, int]], float]:
    """Exact optimum of a connected network around a hub operand (x touching every TT core).

    Every tree is a spine: the hub ``h`` absorbs, one after another, subtrees ``R1, R2, ...`` that
    do not contain it, each a connected subset of the network without ``h`` (no outer products):
    ``best(h + S) = min over R of best(h + S - R) + best(R) + cost(h + S - R, R)``, the subset DP
    restricted to subsets holding ``h``, i.e. a shortest path from ``{h}`` to everything. The
    ``best(R)`` come from the connected-pair DP (:func:`_ccp_table`) on the network without ``h``
    (a chain of cores has n^2 / 2 connected subsets); the path is found by A* (costs are
    non-negative) with lazy edges: a step enters the queue at :func:`~.cost.step_floor` and is
    costed exactly only if it comes out before the optimum; the look-ahead is the bytes the next
    step must read. Only subsets cheaper than the optimum are expanded, and only steps under the
    cap (the hub absorbing its neighbours one by one) enter the queue.
    ``hub``: the operand index (default :func:`find_hub`, else the best-connected operand).
    """
    n = len(problem.operands)
    if hub is None:
        hub = find_hub(problem)
        if hub is None:  # no operand with half of the others as neighbours: the best-connected one
            legs = [set(op.legs) for op in problem.operands]
            hub = max(range(n), key=lambda i: (sum(1 for j in range(n) if j != i and legs[i] & legs[j]), -i))
    order = _bfs_order(problem, skip=hub) + [hub]
    scorer, nbr = _ordered_scorer(problem, model, circuit_gates, order)
    h = 1 << (n - 1)
    if len(_components(nbr, n)) > 1:
        raise _Disconnected("hub_path plans connected networks (ccp_path joins components)")
    seed_path = _spine_path(nbr, n)
    cap = _cap(scorer.path_cost(seed_path))
    rest = [m & ~h for m in nbr[:-1]]
    pieces = _ccp_table(scorer, rest, n - 1, cap, budget)
    # Each step enters the queue at a lower bound of its cost (cost.step_floor) and is costed
    # exactly only if it comes out before the optimum is known: Dijkstra with lazy edges, and the
    # bytes the next step must read from t as the A* look-ahead (circuit steps get no bounds).
    grad_mask = scorer.grad_mask
    floor = None if scorer.gates else step_floor(model, scorer.itemsize)
    per_byte = 0.0 if scorer.gates else model.flop_rate * scorer.itemsize / model.bandwidth
    by_low: list[list[tuple[int, float, int, int, int]]] = [[] for _ in range(n - 1)]
    for r, (cost, _, _) in pieces.items():
        lr = scorer.legs_mask(r)
        by_low[(r & -r).bit_length() - 1].append((r, cost, lr, scorer.size(lr), int(bool(r & grad_mask))))
    for group in by_low:
        group.sort(key=lambda piece: piece[1])
    full = (1 << n) - 1
    dist: dict[int, float] = {h: 0.0}
    settled: dict[int, int] = {}
    heap: list[tuple[float, int, int, int, int]] = [(0.0, 0, h, 0, 0)]
    objective, size, legs_mask = scorer.objective, scorer.size, scorer.legs_mask
    looked = 0
    while heap:
        key, lazy, t, s, r = heapq.heappop(heap)
        if t in settled:
            continue
        if lazy:  # (key, 1, t, s, r): the step s + r -> t, costed exactly now
            if key >= dist.get(t, cap):
                continue
            cost = dist[s] + pieces[r][0] + objective(s, r)
            if cost < dist.get(t, cap):
                dist[t] = cost
                ahead = 0.0 if t == full else (1 + int(bool(t & grad_mask))) * size(legs_mask(t)) * per_byte
                heapq.heappush(heap, (cost + ahead, 0, t, s, r))
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
        la = legs_mask(t)
        a = size(la)
        gt = int(bool(t & grad_mask))
        free = full & ~t & ~h
        while free:
            low = free & -free
            free ^= low
            group = by_low[low.bit_length() - 1]
            looked += len(group)
            for r, cr, lr, b, gr in group:  # by increasing cost: the rest cost even more
                bound = d + cr
                if bound >= cap:
                    break
                if r & t or not r & around:
                    continue
                if floor is not None:
                    bound += floor(a, b, size(la & lr), gt + gr)
                u = t | r
                if bound < dist.get(u, cap):
                    heapq.heappush(heap, (bound, 1, u, t, r))
        if looked > budget:
            raise _OverBudget
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
            raise _OverBudget
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


def hyper_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
               max_repeats: int = 64) -> tuple[list[tuple[int, int]], float]:
    """cotengra's hyper-optimizer (greedy family) scored with our objective (for large networks)."""
    import cotengra as ctg

    scorer = Scorer(problem, model, circuit_gates)
    inputs, output, sizes = _inputs(problem)

    from cotengra.scoring import ensure_basic_quantities_are_computed

    def score(trial):
        ensure_basic_quantities_are_computed(trial)  # cotengra records flops / size / write
        tree = trial["tree"]
        path = [tuple(p) for p in tree.get_path()]
        return math.log2(max(scorer.path_cost(linear_to_ssa(path, scorer.n)), 1.0))

    opt = ctg.HyperOptimizer(methods=["greedy"], max_repeats=max_repeats, minimize=score, parallel=False,
                             optlib="random", progbar=False, reconf_opts=None, simulated_annealing_opts=None,
                             slicing_opts=None, slicing_reconf_opts=None, on_trial_error="raise")
    tree = opt.search([tuple(i) for i in inputs], tuple(output), sizes)
    path = linear_to_ssa([tuple(p) for p in tree.get_path()], scorer.n)
    seed = flops_path(problem, "greedy")
    if scorer.path_cost(seed) < scorer.path_cost(path):
        path = seed
    return path, scorer.path_cost(path)


def exhaustive_path(problem: Problem, model: CostModel, circuit_gates: frozenset[int] = frozenset(),
                    scorer: Scorer | None = None) -> tuple[list[tuple[int, int]], float]:
    """Minimum over every binary tree (outer products included), by memoized recursion over subsets."""
    scorer = scorer or Scorer(problem, model, circuit_gates)
    n = scorer.n

    @functools.cache
    def best(subset: int) -> tuple[float, tuple]:
        if subset & (subset - 1) == 0:
            return 0.0, (subset.bit_length() - 1,)
        low = subset & -subset
        rest = subset ^ low
        result = (INFEASIBLE, ())
        part = rest
        while True:  # every split (A, B) with the lowest operand in A
            a = low | part
            b = subset ^ a
            if b:
                ca, ta = best(a)
                cb, tb = best(b)
                if ca + cb < result[0]:  # a step never costs less than nothing: prune
                    cost = ca + cb + scorer.objective(a, b)
                    if cost < result[0]:
                        result = (cost, (ta, tb))
            if part == 0:
                break
            part = (part - 1) & rest
        return result

    cost, tree = best((1 << n) - 1)
    return tree_to_ssa(tree, n), cost


def tree_to_ssa(tree, n: int) -> list[tuple[int, int]]:
    """A nested tuple tree ``((0,), ((1,), (2,)))`` -> SSA pairs."""
    path: list[tuple[int, int]] = []

    def walk(node) -> int:
        if len(node) == 1:
            return node[0]
        left, right = walk(node[0]), walk(node[1])
        path.append((left, right))
        return n + len(path) - 1

    walk(tree)
    return path
