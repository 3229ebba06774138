"""Diagrams: no bond label over a node or another label, nothing outside the figure, circuits expanded."""

import itertools

import matplotlib.pyplot as plt
import pytest

import tn_peft
from tn_peft.cli import main
from tn_peft.graph.draw import box_of, draw_network
from tn_peft.graph.spec import catalog


def _boxes(fig, group):
    renderer = fig.canvas.get_renderer()
    return [box_of(a, renderer) for a in fig.tn_peft_artists[group]]


@pytest.mark.parametrize("graph", catalog())
@pytest.mark.parametrize("shape", [(384, 384), (4096, 4096)])
def test_every_catalog_graph_is_laid_out_without_overlaps(graph, shape):
    net = tn_peft.load_graph(graph)
    fig = draw_network(net, sizes=net.resolve(*shape))
    try:
        nodes, labels, anchors = (_boxes(fig, g) for g in ("nodes", "labels", "anchors"))
        markers = nodes[::2]  # (marker, kind caption) per node
        for a, b in itertools.combinations(markers, 2):
            assert not a.overlaps(b), "two nodes overlap"
        for label, text in zip(labels, fig.tn_peft_artists["labels"]):
            assert not any(label.overlaps(n) for n in nodes), f"label {text.get_text()!r} over a node"
        for (a, ta), (b, tb) in itertools.combinations(zip(labels, fig.tn_peft_artists["labels"]), 2):
            assert not a.overlaps(b), f"labels {ta.get_text()!r} and {tb.get_text()!r} overlap"
        frame = fig.bbox
        for box in nodes + labels + anchors:
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                "an element is cut off at the figure's edge"
    finally:
        plt.close(fig)


def test_expand_draws_each_circuit(tmp_path):
    target = tmp_path / "qp.png"
    assert main(["draw", "quantum_peft", "--in", "48", "--out", "48", "--set", "layers=2", "--expand",
                 "-o", str(target)]) == 0
    assert target.stat().st_size > 0
    net = tn_peft.load_graph("quantum_peft", layers=2)
    adapter = net.build(48, 48)
    circuit = adapter.node("U").as_network()
    fig = draw_network(net, sizes=net.resolve(48, 48), circuits={"U": circuit})
    try:
        panel = fig.axes[1]
        rotations = sum(op.kind == "gate" for op in circuit.ops)
        cz = len(circuit.ops) - rotations
        assert panel.get_title() == f"U: {len(circuit.wire_dims)} wires, {rotations} rotations, {cz} CZ"
        words = [t.get_text() for t in panel.texts]
        assert words.count("RY") + words.count("R3") == rotations and "R3" in words  # 48 = 3 x 2^4
    finally:
        plt.close(fig)


def test_expand_on_a_graph_without_circuits_says_so(tmp_path, capsys):
    assert main(["draw", "lora", "--in", "16", "--out", "16", "--expand", "-o", str(tmp_path / "l.png")]) == 0
    assert "no circuit nodes" in capsys.readouterr().out
