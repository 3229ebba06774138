"""Render a Network as a tensor-network diagram (PNG/SVG/PDF via matplotlib).

Conventions: dense nodes are circles, isometries (Stiefel kinds) triangles pointing at their
column legs' side, diagonal nodes diamonds; a bond is a line labelled with its leg and size; a
hyperedge is a black dot joined to every node carrying it; open legs end at ``out``/``in`` labels.

Layout: force-directed around the pinned open legs; each bond label then takes the first spot along
its curve where it overlaps no node and no other label, and the axes grow until every node, label
and anchor is inside the figure; the legend sits below the axes. ``circuits`` (name -> a circuit
node's ``as_network()``) adds one panel per circuit node drawing its gates as the paper's Fig. 2
does: one horizontal line per wire (qubit, or a d-level wire in mixed radix), an ``RY`` box per
rotation (``R`` + its size for a wider wire), a CZ as two dots joined by a vertical line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .network import Network

#: Least distance between two vertices after the force layout (data units; a node marker is ~0.5)
MIN_SPACING = 1.5
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
    # then push apart any two vertices closer than MIN_SPACING (room for a node and a bond label
    # between them); pinned anchors stay put, so their partner moves the whole distance
    free = np.array([n not in pinned for n in names])
    for _ in range(200):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.linalg.norm(delta, axis=-1) + np.eye(len(names)) * 1e9
        close = dist < MIN_SPACING
        if not close.any():
            break
        push = ((MIN_SPACING - dist) * close / (2 * dist))[..., None] * delta
        pos[free] += push.sum(axis=1)[free]
    return {n: pos[index[n]] for n in names}


#: spots tried for a bond label: (position along the curve, side of the curve)
_LABEL_SPOTS = [(t, side) for t in (0.5, 0.35, 0.65, 0.22, 0.78, 0.12, 0.88) for side in (1, -1)]


def box_of(artist, renderer):
    """The display-space box of a drawn artist; a scatter marker's from its centre and size (matplotlib
    reports no finite extent for a lone scatter point before some draws)."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Bbox

    if isinstance(artist, PathCollection):
        (x, y), = artist.get_offset_transform().transform(artist.get_offsets())
        r = np.sqrt(artist.get_sizes()[0]) / 2 * artist.figure.dpi / 72
        return Bbox([[x - r, y - r], [x + r, y + r]])
    return artist.get_window_extent(renderer)


def _overlaps(box, boxes) -> bool:
    return any(box.overlaps(other) for other in boxes)


def _place_labels(fig, labels: list[tuple[object, np.ndarray]], fixed: list) -> None:
    """Move each bond label (Text, its curve) to the first spot that overlaps no box in ``fixed``
    (node markers) and no label placed before it; left where it is if every spot overlaps."""
    renderer = fig.canvas.get_renderer()
    placed: list = []
    for text, curve in labels:
        for t, side in _LABEL_SPOTS:
            point = curve[round(t * (len(curve) - 1))]
            text.set_position(point)
            text.set_va("bottom" if side > 0 else "top")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            if not _overlaps(box, fixed) and not _overlaps(box, placed):
                break
        placed.append(text.get_window_extent(renderer))


def _fit_axes(fig, ax, artists: list, margin: float = 0.04) -> None:
    """Grow the axes' data limits until every artist (markers and text included) lies inside them."""
    for _ in range(6):
        renderer = fig.canvas.get_renderer()
        boxes = [box_of(a, renderer) for a in artists]
        inverse = ax.transData.inverted()
        corners = np.array([inverse.transform([(b.x0, b.y0), (b.x1, b.y1)]) for b in boxes]).reshape(-1, 2)
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        (ax0, ax1), (ay0, ay1) = ax.get_xlim(), ax.get_ylim()
        if x0 >= ax0 and x1 <= ax1 and y0 >= ay0 and y1 <= ay1:
            return
        pad_x, pad_y = margin * (x1 - x0), margin * (y1 - y0)
        ax.set_xlim(min(x0, ax0) - pad_x, max(x1, ax1) + pad_x)
        ax.set_ylim(min(y0, ay0) - pad_y, max(y1, ay1) + pad_y)
        fig.canvas.draw()


def draw_circuit(ax, circuit, name: str) -> None:
    """One circuit node's gates on ``ax`` (see module docstring): wires top to bottom, ops in columns
    (an op takes the first column after the last one its wires used)."""
    dims = list(circuit.wire_dims)
    columns: list[tuple[int, object]] = []
    free = [0] * len(dims)
    for op in circuit.ops:
        column = max(free[w] for w in op.wires)
        for w in range(min(op.wires), max(op.wires) + 1):
            free[w] = column + 1
        columns.append((column, op))
    width = max(free) if free else 1
    for w, d in enumerate(dims):
        ax.plot([-0.6, width - 0.4], [-w, -w], color="#555555", lw=1.0, zorder=1)
        ax.text(-0.7, -w, f"wire {w} (d={d})", ha="right", va="center", fontsize=7)
    for column, op in columns:
        if op.kind == "gate":
            (w,) = op.wires
            label = "RY" if dims[w] == 2 else f"R{dims[w]}"
            ax.add_patch(_box(column, -w))
            ax.text(column, -w, label, ha="center", va="center", fontsize=6, zorder=3)
        else:  # 'signs': a CZ (a diagonal of +-1 between two wires)
            a, b = op.wires
            ax.plot([column, column], [-a, -b], color="black", lw=1.0, zorder=2)
            ax.scatter([column, column], [-a, -b], s=14, c="black", zorder=3)
    gates = sum(op.kind == "gate" for op in circuit.ops)
    ax.set_title(f"{name}: {len(dims)} wires, {gates} rotations, {len(circuit.ops) - gates} CZ", fontsize=8)
    ax.set_xlim(-3.2, width)
    ax.set_ylim(-len(dims) + 0.4, 0.6)
    ax.axis("off")


def _box(x: float, y: float):
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch((x - 0.32, y - 0.3), 0.64, 0.6, boxstyle="round,pad=0.02", fc="#90be6d",
                          ec="black", lw=0.8, zorder=2)


def draw_network(net: Network, path: str | Path | None = None, *, sizes: Mapping[str, int] | None = None,
                 title: str | None = None, circuits: Mapping[str, object] | None = None):
    """Draw ``net``; write it to ``path`` when given (atomically) and return the matplotlib figure.

    ``sizes`` (from ``net.resolve(in, out)``) labels legs with numbers instead of expressions;
    ``circuits`` adds a panel per circuit node (see module docstring). The figure's
    ``tn_peft_artists`` holds the drawn ``nodes``, ``labels`` (bond labels) and ``anchors`` (tests
    check their boxes).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..nodes.kinds import kind_info

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

    circuits = dict(circuits or {})
    heights = [4.8] + [0.28 * len(c.wire_dims) + 0.5 for c in circuits.values()]  # inches: network, each circuit
    fig = plt.figure(figsize=(7.5, sum(heights)), dpi=120)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    ax = fig.add_subplot(grid[0])
    labels: list[tuple[object, np.ndarray]] = []
    node_artists: list = []
    anchor_artists: list = []
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
        text = ax.text(*curve[15], label(leg), fontsize=7, ha="center", va="bottom", color="#333333", zorder=4,
                       bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        labels.append((text, curve))
    for spec in net.nodes:
        stiefel = kind_info(spec.kind).stiefel
        marker = "^" if stiefel else _SHAPES.get(spec.kind, "s")
        color = _STIEFEL_COLOR if stiefel else _COLORS.get(spec.kind, "#cdb4db")
        x, y = pos[spec.name]
        node_artists.append(ax.scatter([x], [y], s=900, marker=marker, c=color, edgecolors="black",
                                       linewidths=1.2, zorder=2))
        text = spec.name + ("*" if spec.shared else "")
        ax.text(x, y, text, ha="center", va="center", fontsize=9, weight="bold", zorder=3)
        node_artists.append(ax.text(x, y - 0.22, spec.kind, ha="center", va="top", fontsize=7, style="italic",
                                    zorder=3))
    for anchor in pinned:
        group = anchor[1:anchor.index(":")]
        x, y = pos[anchor]
        ax.scatter([x], [y], s=60, c="white", edgecolors="black", zorder=2)
        anchor_artists.append(ax.text(x + (-0.15 if group == "in" else 0.15), y, "in (x)" if group == "in" else "out",
                                      ha="right" if group == "in" else "left", va="center", fontsize=9))
    for leg in hyper:
        x, y = pos[f"#{leg}"]
        ax.scatter([x], [y], s=40, c="black", zorder=3)
    ax.set_title(title or f"{net.name}: " + (net.description.split(":")[0][:60] if net.description else ""),
                 fontsize=10)
    fig.text(0.01, 0.005, "triangle: orthonormal (Stiefel) node, diamond: diagonal, dot: hyperedge, *: shared",
             fontsize=7, color="#555555", va="bottom")
    ax.set_aspect("equal", adjustable="box")
    ax.axis("off")
    for k, (name, circuit) in enumerate(circuits.items()):
        draw_circuit(fig.add_subplot(grid[1 + k]), circuit, name)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    _place_labels(fig, labels, [box_of(a, renderer) for a in node_artists + anchor_artists])
    _fit_axes(fig, ax, node_artists + anchor_artists + [t for t, _ in labels])
    # the limits grew: labels sit elsewhere on screen now, so place them once more
    renderer = fig.canvas.get_renderer()
    _place_labels(fig, labels, [box_of(a, renderer) for a in node_artists + anchor_artists])
    fig.tn_peft_artists = {"nodes": node_artists, "labels": [t for t, _ in labels], "anchors": anchor_artists}
    if path is not None:
        from ..io.atomic import atomic_write

        suffix = Path(path).suffix.lstrip(".") or "png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix))
        plt.close(fig)
    return fig
