"""Render a Network as a tensor-network diagram (PNG/SVG/PDF via matplotlib).

Conventions: dense nodes are circles, isometries (Stiefel kinds) triangles pointing at their
column legs' side, diagonal nodes diamonds; a bond is a line labelled with its leg and size; a
hyperedge is a black dot joined to every node carrying it; open legs end at ``out``/``in`` labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .network import Network

_SHAPES = {"dense": "o", "diagonal": "D"}
_COLORS = {"dense": "#8ecae6", "diagonal": "#ffb703"}
_STIEFEL_COLOR = "#90be6d"


def _layout(names: list[str], edges: list[tuple[str, str]], pinned: Mapping[str, np.ndarray],
            seed: int = 0) -> dict[str, np.ndarray]:
    """Force-directed layout (Fruchterman-Reingold) around pinned anchors; deterministic per seed."""
    rng = np.random.default_rng(seed)
    index = {n: i for i, n in enumerate(names)}
    # start from a column per node in declaration order, so chains come out as chains
    pos = np.stack([np.linspace(-1.5, 1.5, len(names)), rng.uniform(-0.3, 0.3, len(names))], axis=1)
    for name, p in pinned.items():
        if name in index:
            pos[index[name]] = p
    k = 1.1
    temperature = 0.6
    for _ in range(300):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.linalg.norm(delta, axis=-1) + 1e-9
        force = (k * k / dist**2)[..., None] * delta
        disp = force.sum(axis=1)
        for a, b in edges:
            i, j = index[a], index[b]
            d = pos[i] - pos[j]
            n = np.linalg.norm(d) + 1e-9
            pull = d * n / k
            disp[i] -= pull
            disp[j] += pull
        length = np.linalg.norm(disp, axis=1, keepdims=True) + 1e-9
        pos += disp / length * np.minimum(length, temperature)
        for name, p in pinned.items():
            if name in index:
                pos[index[name]] = p
        temperature *= 0.985
    return {n: pos[index[n]] for n in names}


def draw_network(net: Network, path: str | Path | None = None, *, sizes: Mapping[str, int] | None = None,
                 title: str | None = None):
    """Draw ``net``; write it to ``path`` when given (atomically) and return the matplotlib figure.

    ``sizes`` (from ``net.resolve(in, out)``) labels legs with numbers instead of expressions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .nodes.base import StiefelNode, node_kind

    where = net.legs()
    # one anchor per open leg: factor legs fan out top to bottom, in on the left, out on the right
    pinned: dict[str, np.ndarray] = {}
    width = max(3.0, 0.9 * len(net.nodes))
    for group, x in (("in", -width), ("out", width)):
        legs = net.open[group]
        for i, leg in enumerate(legs):
            pinned[f"<{group}:{leg}>"] = np.array([x, (len(legs) - 1) / 2 * 1.3 - 1.3 * i])
    vertices = [n.name for n in net.nodes] + list(pinned)
    hyper = [leg for leg, on in where.items() if len(on) + (leg in net.open_legs) >= 3]
    vertices += [f"#{leg}" for leg in hyper]
    edges: list[tuple[str, str, str]] = []
    for leg, on in where.items():
        members = list(on)
        for group in ("in", "out"):
            if leg in net.open[group]:
                members.append(f"<{group}:{leg}>")
        if leg in hyper:
            edges += [(f"#{leg}", m, leg) for m in members]
        elif len(members) == 2:
            edges.append((members[0], members[1], leg))
    pos = _layout(vertices, [(a, b) for a, b, _ in edges], pinned)

    def label(leg: str) -> str:
        if sizes and leg in sizes:
            return f"{leg}={sizes[leg]}"
        expr = net.sizes.get(leg)
        return f"{leg}={expr}" if expr is not None and str(expr) != leg else leg

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    drawn_pairs: dict[tuple[str, str], int] = {}
    for a, b, leg in edges:
        key = tuple(sorted((a, b)))
        count = drawn_pairs.get(key, 0)
        drawn_pairs[key] = count + 1
        p, q = pos[a], pos[b]
        bend = 0.25 * count * (-1) ** count
        mid = (p + q) / 2 + bend * np.array([-(q - p)[1], (q - p)[0]])
        curve = np.array([(1 - t) ** 2 * p + 2 * (1 - t) * t * mid + t**2 * q for t in np.linspace(0, 1, 30)])
        ax.plot(curve[:, 0], curve[:, 1], color="#555555", lw=1.4, zorder=1)
        ax.text(*(curve[15] + np.array([0.0, 0.06])), label(leg), fontsize=7, ha="center", va="bottom",
                color="#333333", zorder=4,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    for spec in net.nodes:
        cls = node_kind(spec.kind)
        stiefel = issubclass(cls, StiefelNode)
        marker = "^" if stiefel else _SHAPES.get(spec.kind, "s")
        color = _STIEFEL_COLOR if stiefel else _COLORS.get(spec.kind, "#cdb4db")
        x, y = pos[spec.name]
        ax.scatter([x], [y], s=900, marker=marker, c=color, edgecolors="black", linewidths=1.2, zorder=2)
        text = spec.name + ("*" if spec.shared else "")
        ax.text(x, y, text, ha="center", va="center", fontsize=9, weight="bold", zorder=3)
        ax.text(x, y - 0.22, spec.kind, ha="center", va="top", fontsize=7, style="italic", zorder=3)
    for anchor in pinned:
        group = anchor[1:anchor.index(":")]
        x, y = pos[anchor]
        ax.scatter([x], [y], s=60, c="white", edgecolors="black", zorder=2)
        ax.text(x + (-0.15 if group == "in" else 0.15), y, "in (x)" if group == "in" else "out",
                ha="right" if group == "in" else "left", va="center", fontsize=9)
    for leg in hyper:
        x, y = pos[f"#{leg}"]
        ax.scatter([x], [y], s=40, c="black", zorder=3)
    ax.set_title(title or f"{net.name}: " + (net.description.split(":")[0][:60] if net.description else ""),
                 fontsize=10)
    ax.text(0.01, 0.01, "triangle: orthonormal (Stiefel) node, diamond: diagonal, dot: hyperedge, *: shared",
            transform=ax.transAxes, fontsize=7, color="#555555")
    ax.set_aspect("equal", adjustable="datalim")
    ax.axis("off")
    fig.tight_layout()
    if path is not None:
        from .io import atomic_write

        suffix = Path(path).suffix.lstrip(".") or "png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix))
        plt.close(fig)
    return fig
