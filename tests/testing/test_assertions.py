"""tn_peft.testing.assertions: each passes on what is right and fails, naming the error, on what is not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft.testing import (
    assert_equivalent,
    assert_merge_roundtrip,
    assert_planner_matches_reference,
    assert_save_load_roundtrip,
    randomize,
    tolerance,
)


def _model(graph="quantum_peft", **args):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(graph=graph, graph_args=args, target_modules=["0", "2"]))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(std=0.3)
    return model


def test_assert_equivalent_on_adapters_networks_and_specs():
    net = tn_peft.load_graph("svd", map="cayley")
    assert_equivalent(net, net.to_spec(), in_features=9, out_features=7)
    a = net.build(9, 7, dtype=torch.float64)
    b = net.build(9, 7, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        a.node("s").values.fill_(0.5)
        b.node("s").values.fill_(0.5)
    assert_equivalent(a, b)
    with torch.no_grad():
        b.node("s").values[0] += 1e-3
    with pytest.raises(AssertionError, match="dW: max abs difference"):
        assert_equivalent(a, b)
    with pytest.raises(AssertionError, match="need in_features"):
        assert_equivalent(net, net)


def test_planner_assertion_catches_a_wrong_program(monkeypatch):
    adapter = randomize(tn_peft.load_graph("tt", cores=3).build(27, 8, dtype=torch.float64))
    assert_planner_matches_reference(adapter)
    real = type(adapter).delta_weight
    monkeypatch.setattr(type(adapter), "delta_weight", lambda self, tensors=None: 1.01 * real(self, tensors))
    with pytest.raises(AssertionError, match="planner dW vs reference"):
        assert_planner_matches_reference(adapter)


@pytest.mark.parametrize("graph,args", [("quantum_peft", {"layers": 1}), ("lora", {"rank": 2}), ("quanta", {"axes": 2})])
def test_merge_and_save_load_round_trips(tmp_path, graph, args):
    model = _model(graph, **args)
    x = torch.randn(3, 16)
    assert_merge_roundtrip(model, x)
    assert not model.base_model[0].merged  # left as it was
    assert_save_load_roundtrip(model, tmp_path, x)


def test_round_trip_assertions_catch_a_broken_merge_and_a_lossy_save(tmp_path, monkeypatch):
    model = _model()
    layer_class = type(model.base_model[0])
    monkeypatch.setattr(layer_class, "merge", lambda self, *a, **k: None)  # merging does nothing
    with pytest.raises(AssertionError, match="merged weight of 0"):
        assert_merge_roundtrip(model)
    monkeypatch.undo()
    from tn_peft.model import model_io

    saving = model_io.adapter_state_dict

    def lossy(m, name):
        state = saving(m, name)
        return {k: v for k, v in state.items() if not k.endswith(".tn_s")}

    monkeypatch.setattr(model_io, "adapter_state_dict", lossy)
    with pytest.raises((AssertionError, tn_peft.CheckpointError)):
        assert_save_load_roundtrip(model, tmp_path)


def test_tolerances_follow_the_dtype():
    assert tolerance(torch.float64) < tolerance(torch.float32) < tolerance(torch.float16) < tolerance(torch.bfloat16)
