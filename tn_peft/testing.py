"""Hypothesis strategies and assertions for testing adapters, shipped for users' own tests.

    from hypothesis import given
    from tn_peft.testing import networks, assert_orthonormal

    @given(networks())
    def test_my_property(case):
        net, in_features, out_features = case
        ...

Strategies need the ``hypothesis`` package (``pip install hypothesis``); assertions need only torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import require
from .nodes.base import orthonormality_error


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
        from .network import Network

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


def reference_delta_weight(net, tensors: dict[str, Any], in_features: int, out_features: int) -> np.ndarray:
    """dW by a plain numpy einsum built from the leg lists (an independent reference; no scale)."""
    letters: dict[str, str] = {}

    def letter(leg: str) -> str:
        if leg not in letters:
            letters[leg] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(letters)]
        return letters[leg]

    terms = ["".join(letter(leg) for leg in node.legs) for node in net.nodes]
    out = "".join(letter(leg) for leg in net.open["out"] + net.open["in"])
    arrays = [np.asarray(tensors[node.name], dtype=np.float64) for node in net.nodes]
    full = np.einsum(",".join(terms) + "->" + out, *arrays)
    return full.reshape(out_features, in_features)


def assert_orthonormal(matrix: torch.Tensor, atol: float | None = None) -> None:
    """Assert ``Q^T Q = I`` (columns orthonormal); default tolerance by dtype (1e-10 fp64, 1e-5 fp32)."""
    if atol is None:
        atol = 1e-10 if matrix.dtype == torch.float64 else 1e-5
    err = orthonormality_error(matrix)
    assert err <= atol, f"columns are not orthonormal: max |Q^T Q - I| = {err:.3g} > {atol:g}"


def assert_same_delta(first, second, atol: float = 1e-6) -> None:
    """Assert two adapters (or tensors) give the same dW within ``atol``."""
    a = first.delta_weight() if hasattr(first, "delta_weight") else first
    b = second.delta_weight() if hasattr(second, "delta_weight") else second
    err = float((a.detach() - b.detach()).abs().max())
    assert err <= atol, f"dW differ: max abs difference {err:.3g} > {atol:g}"


def assert_right_inverse_round_trips(node_class, q, *, fp64_atol: float = 1e-12, fp32_atol: float = 1e-5) -> None:
    """Assert a Stiefel node kind reaches ``q`` (an N x K numpy matrix) through its right inverse.

    Checks both precisions: ``set_matrix`` in fp64 (within ``fp64_atol``) and ``right_inverse`` in
    fp32 (within ``fp32_atol``), each on a fresh node with legs ``["o", "k"]``.
    """
    n, k = q.shape
    double = node_class("U", ["o", "k"], [n, k]).double()
    double.set_matrix(torch.from_numpy(q))
    err = np.abs(double.matrix().detach().numpy() - q).max()
    assert err < fp64_atol, f"fp64 right inverse misses q by {err:.3g}"
    single = node_class("U", ["o", "k"], [n, k])
    single.right_inverse(torch.from_numpy(q).float())
    err = np.abs(single.matrix().detach().numpy() - q).max()
    assert err < fp32_atol, f"fp32 right inverse misses q by {err:.3g}"
