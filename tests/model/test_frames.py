"""tn_peft.model.frames: weight frames at injection, gradient frames from dL/dW, and their checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft.errors import ShapeError, SpecError
from tn_peft.model.frames import initialize_frames


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))


def _config(frame, rank=2, targets=("0", "2")):
    return tn_peft.AdapterConfig(graph="quantum_peft", graph_args={"frame": frame, "rank": rank, "layers": 1},
                                 target_modules=list(targets))


def _overlap(q, a):
    """|cos| of each column pair: 1 where q's columns are a's up to sign."""
    return (q * a).sum(0).abs()


def test_weight_frames_span_the_top_singular_vectors_of_w():
    model = tn_peft.get_model(_model(), _config("weight"))
    layer = model.base_model[0]
    adapter = layer.tn_adapters["default"]
    left, _, right_t = torch.linalg.svd(layer.base_layer.weight.detach())
    assert torch.allclose(_overlap(adapter.node("U").matrix().detach(), left[:, :2]), torch.ones(2), atol=1e-5)
    assert torch.allclose(_overlap(adapter.node("V").matrix().detach(), right_t[:2].T), torch.ones(2), atol=1e-5)
    assert torch.count_nonzero(adapter.delta_weight()) == 0  # s = 0: dW = 0 at the start


def _batches():
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(8, 16, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def test_gradient_frames_span_the_top_singular_vectors_of_the_summed_gradient():
    reference = _model()
    for p in reference.parameters():
        p.requires_grad_(True)
    for x, y in _batches():
        nn.functional.cross_entropy(reference(x), y).backward()
    grad = reference[0].weight.grad
    model = tn_peft.get_model(_model(), _config("gradient"))
    assert initialize_frames(model, _batches(), _loss) == 4  # U and V of two layers
    base = model.base_model[0].base_layer.weight
    assert not base.requires_grad and base.grad is None  # restored, nothing written
    adapter = model.base_model[0].tn_adapters["default"]
    left, _, right_t = torch.linalg.svd(grad)
    assert torch.allclose(_overlap(adapter.node("U").matrix().detach(), left[:, :2]), torch.ones(2), atol=1e-4)
    assert torch.allclose(_overlap(adapter.node("V").matrix().detach(), right_t[:2].T), torch.ones(2), atol=1e-4)


def test_initialize_frames_without_framed_nodes_or_batches():
    assert initialize_frames(tn_peft.get_model(_model(), _config("none")), _batches(), _loss) == 0
    with pytest.raises(ShapeError, match="no batches"):
        initialize_frames(tn_peft.get_model(_model(), _config("gradient")), [], _loss)


def test_frames_round_trip_through_save_and_load(tmp_path):
    model = tn_peft.get_model(_model(), _config("gradient"))
    initialize_frames(model, _batches(), _loss)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.uniform_(-0.5, 0.5)
    x = torch.randn(5, 16)
    expected = model(x)
    model.save_pretrained(tmp_path / "ad")
    loaded = tn_peft.from_pretrained(_model(), tmp_path / "ad")
    assert torch.allclose(loaded(x), expected, atol=1e-6)


def test_a_frame_on_a_node_that_is_not_u_or_v_is_refused():
    spec = {"name": "odd", "open": {"out": "out", "in": "in"}, "sizes": {"k": 2},
            "nodes": [{"name": "U", "kind": "pauli", "legs": ["out", "k"], "options": {"frame": "weight"}},
                      {"name": "C", "kind": "pauli", "legs": ["k", "j"], "options": {"frame": "weight"}},
                      {"name": "V", "kind": "dense", "legs": ["in", "j"]}]}
    spec["sizes"]["j"] = 2
    with pytest.raises(SpecError, match="framed node's rows"):
        tn_peft.get_model(_model(), tn_peft.AdapterConfig(graph=spec, target_modules=["0"]))
