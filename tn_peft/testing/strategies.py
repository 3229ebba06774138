"""Hypothesis strategies for tn_peft objects: networks, graph specs, built adapters, Stiefel nodes, layer shapes.

Each returns a hypothesis strategy (``pip install hypothesis``):

- :func:`networks` -- ``(Network, in, out)``: random dense/diagonal tensor networks (trees, loops, hyperedges);
- :func:`specs` -- ``(spec dict, in, out)``: catalog-like graph specs (low-rank, SVD forms over every
  orthonormal kind, TT cores with loops), valid for that layer shape;
- :func:`adapters` -- built :class:`~tn_peft.adapter.adapter.Adapter` s of :func:`specs` (or of specs you
  pass) with every tensor random and non-zero;
- :func:`stiefel_nodes` -- an N x K orthonormal node of one kind (or any), N from 1 to ``max_rows``
  (primes and non-powers of two included), K <= N, random parameters;
- :func:`layer_shapes` -- ``(out, in)`` of a layer;

and :func:`randomize`, which makes a module's trainable tensors random and non-zero.
"""

from __future__ import annotations

import math

import torch

from ..errors import require


def _st():
    return require("hypothesis.strategies", "hypothesis", "tn_peft.testing strategies")


def networks(max_nodes: int = 6, max_size: int = 4, hyperedges: bool = True, loops: bool = True):
    """Random valid Networks of dense (and diagonal) nodes: chains, trees, loops and hyperedges.

    Draws ``(network, in_features, out_features)``; every leg has an explicit small size, and the
    open legs (1-2 factors each for out and in) sit on random nodes.
    """
    st = _st()

    @st.composite
    def draw_network(draw):
        from ..graph.network import Network

        n = draw(st.integers(1, max_nodes))
        legs: list[list[str]] = [[] for _ in range(n)]
        sizes: dict[str, int] = {}

        def new_leg(prefix: str) -> str:
            name = f"{prefix}{len(sizes)}"
            sizes[name] = draw(st.integers(1, max_size))
            return name

        for i in range(1, n):  # a random spanning tree: every node joins an earlier one
            j = draw(st.integers(0, i - 1))
            leg = new_leg("b")
            legs[i].append(leg)
            legs[j].append(leg)
        if loops and n >= 3:
            for _ in range(draw(st.integers(0, 2))):
                i, j = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
                leg = new_leg("c")
                legs[i].append(leg)
                legs[j].append(leg)
        diagonal_nodes: list[str] = []
        if hyperedges and n >= 2 and draw(st.booleans()):
            members = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=min(3, n), unique=True))
            leg = new_leg("h")
            for m in members:
                legs[m].append(leg)
            diagonal_nodes.append(leg)
        open_legs = {}
        for group in ("out", "in"):
            count = draw(st.integers(1, 2))
            open_legs[group] = []
            for _ in range(count):
                leg = new_leg("o" if group == "out" else "i")
                legs[draw(st.integers(0, n - 1))].append(leg)
                open_legs[group].append(leg)
        net = Network("random", open=open_legs, sizes=dict(sizes))
        for i in range(n):  # every node has a leg: a tree bond (n > 1) or all open legs (n == 1)
            net.add_node(f"N{i}", "dense", legs[i], init="normal", std=1.0)
        for k, leg in enumerate(diagonal_nodes):
            net.add_node(f"D{k}", "diagonal", [leg], init="normal")
        net.validate()
        in_features = math.prod(sizes[leg] for leg in open_legs["in"])
        out_features = math.prod(sizes[leg] for leg in open_legs["out"])
        return net, in_features, out_features

    return draw_network()


#: orthonormal (Stiefel) node kinds that are exact (taylor is an approximation and is left out)
STIEFEL_KINDS = ("exp", "cayley", "householder", "givens", "pauli")


def layer_shapes(max_features: int = 48, min_features: int = 1):
    """``(out_features, in_features)``: powers of two, primes and everything between, up to ``max_features``."""
    st = _st()
    size = st.one_of(st.sampled_from([n for n in (2, 3, 4, 7, 8, 12, 13, 16, 31, 32, 48, 64)
                                      if min_features <= n <= max_features]),
                     st.integers(min_features, max_features))
    return st.tuples(size, size)


def randomize(module: torch.nn.Module, seed: int | torch.Generator = 0, scale: float = 0.5) -> torch.nn.Module:
    """Set every trainable tensor of ``module`` (an adapter, a node, a model) to U(-scale, scale) with no
    entry near zero: adapters start at dW = 0, and a test of dW needs non-trivial tensors. Returns it."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                values = torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1
                values = torch.where(values.abs() < 0.05, torch.full_like(values, 0.3), values)
                p.copy_((values * scale).to(p.dtype))
    return module


def stiefel_nodes(kind: str | None = None, max_rows: int = 40, dtype: torch.dtype = torch.float64):
    """A built N x K orthonormal node of ``kind`` (default: any of :data:`STIEFEL_KINDS`) with random
    parameters; N in 1..``max_rows`` (pauli: 2..), K in 1..N."""
    st = _st()

    @st.composite
    def draw(drawer):
        from ..nodes.base import create_node

        k_ind = kind or drawer(st.sampled_from(STIEFEL_KINDS))
        n = drawer(st.integers(2 if k_ind == "pauli" else 1, max_rows))
        k = drawer(st.integers(1, n))
        options = {"layers": drawer(st.integers(0, 2))} if k_ind == "pauli" else {}
        node = create_node(k_ind, "Q", ["n", "k"], (n, k), options).to(dtype)
        randomize(node, torch.Generator().manual_seed(drawer(st.integers(0, 2**31 - 1))), scale=1.0)
        return node

    return draw()


def specs(max_features: int = 32, kinds: tuple[str, ...] = ("lowrank", "svd", "tt")):
    """``(spec, in_features, out_features)``: a graph spec dict in the catalog's style, valid for the shape.

    ``lowrank``: ``B[out, r] A[r, in]``; ``svd``: ``U[out, k] diag(s) V[in, k]`` with U and V of any
    exact orthonormal kind; ``tt``: 1-3 cores over factored out/in legs (``for:`` loops) with bonds.
    """
    st = _st()

    @st.composite
    def draw(drawer):
        out_f, in_f = drawer(layer_shapes(max_features, min_features=2))
        form = drawer(st.sampled_from(kinds))
        if form == "tt" and (out_f < 2 or in_f < 2):
            form = "lowrank"
        alpha = drawer(st.sampled_from([1, 2, 8]))
        if form == "lowrank":
            rank = drawer(st.integers(1, 4))
            spec = {"name": "lowrank", "params": {"rank": rank, "alpha": alpha}, "scale": "alpha / rank",
                    "sizes": {"r": "rank"},
                    "nodes": [{"name": "B", "kind": "dense", "legs": ["out", "r"], "options": {"init": "zeros"}},
                              {"name": "A", "kind": "dense", "legs": ["r", "in"]}]}
        elif form == "svd":
            rank = drawer(st.integers(1, min(4, out_f, in_f)))
            maps = [drawer(st.sampled_from(STIEFEL_KINDS)) for _ in range(2)]
            spec = {"name": "svd", "params": {"rank": rank, "alpha": alpha}, "scale": "alpha / rank",
                    "sizes": {"k": "rank"},
                    "nodes": [{"name": "U", "kind": maps[0], "legs": ["out", "k"]},
                              {"name": "s", "kind": "diagonal", "legs": ["k"], "options": {"init": "zeros"}},
                              {"name": "V", "kind": maps[1], "legs": ["in", "k"]}]}
        else:
            from ..factorize import prime_factors

            most = min(3, len(prime_factors(out_f)), len(prime_factors(in_f)))  # each factor >= 2
            cores = drawer(st.integers(1, max(1, most)))
            spec = {"name": "tt", "params": {"cores": cores, "rank": drawer(st.integers(1, 3)), "alpha": alpha},
                    "scale": "alpha", "requires": {"cores >= 1": "a TT has at least one core"},
                    "open": {"out": ["m{i} for i in 1..cores"], "in": ["n{i} for i in 1..cores"]},
                    "sizes": {"r{i} for i in 1..cores-1": "rank"},
                    "nodes": [{"name": "G{i}", "for": "i in 1..cores", "kind": "dense",
                               "legs": ["r{i-1} if i > 1", "m{i}", "n{i}", "r{i} if i < cores"]}]}
        return spec, in_f, out_f

    return draw()


def adapters(spec_strategy=None, dtype: torch.dtype = torch.float64):
    """A built Adapter of a drawn spec (default :func:`specs`) with every trainable tensor random and non-zero."""
    st = _st()
    spec_strategy = spec_strategy if spec_strategy is not None else specs()

    @st.composite
    def draw(drawer):
        from ..graph.spec import load_graph

        spec, in_f, out_f = drawer(spec_strategy)
        adapter = load_graph(spec).build(in_f, out_f, dtype=dtype)
        randomize(adapter, torch.Generator().manual_seed(drawer(st.integers(0, 2**31 - 1))))
        return adapter

    return draw()
