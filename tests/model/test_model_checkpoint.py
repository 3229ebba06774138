"""The checkpoint format and its low-level functions: names, config fields, every refusal."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import perturb
from torch import nn

import tn_peft
from tn_peft import checkpoint as ckpt
from tn_peft.errors import CheckpointError
from tn_peft.graph.spec import network_from_spec

LORA = {"graph": "lora", "graph_args": {"rank": 2}}


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4)))


def _saved(tmp_path):
    model = tn_peft.get_model(_net(), tn_peft.AdapterConfig(target_modules=["0", "2.0"], **LORA))
    perturb(model)
    model.save_pretrained(tmp_path)
    return model


def test_files_keys_and_config_fields(tmp_path):
    model = _saved(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config, tensors = ckpt.load_adapter_files(tmp_path)
    assert set(tensors) == {"base_model.model.0.tn_B", "base_model.model.0.tn_A",
                            "base_model.model.2.0.tn_B", "base_model.model.2.0.tn_A"}
    assert tensors["base_model.model.2.0.tn_B"].shape == (4, 2)
    assert config["peft_type"] == "TN_PEFT" and config["tn_peft_version"] == tn_peft.__version__
    assert config["graph"] == model.networks["default"].to_spec()
    assert config["targets"] == {"0": {"type": "linear", "shape": [8, 8]}, "2.0": {"type": "linear", "shape": [4, 8]}}
    for key in ckpt.CONFIG_FIELDS:
        assert key in config
    assert network_from_spec(config["graph"]) == model.networks["default"]
    loaded = tn_peft.AdapterConfig.from_pretrained(tmp_path)
    assert loaded.target_modules == ["0", "2.0"] and loaded.network() == model.networks["default"]


def test_low_level_round_trip_and_atomicity(tmp_path):
    tensors = {"base_model.model.fc.tn_s": torch.arange(4.0), "base_model.model.fc.tn_U.weights": torch.ones(2, 3)}
    config = {"peft_type": "TN_PEFT", "graph": {"name": "x"}, "targets": {"fc": {"type": "linear", "shape": [4, 4]}}}
    ckpt.save_adapter_files(tmp_path, config, tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded_config, loaded = ckpt.load_adapter_files(tmp_path, {k: tuple(v.shape) for k, v in tensors.items()})
    assert loaded_config == config
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with pytest.raises(CheckpointError, match="adapter_config.json: the config is not JSON-serializable"):
        ckpt.save_adapter_files(tmp_path, {"bad": object()}, tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_refusals_name_the_file_and_key(tmp_path):
    _saved(tmp_path)
    weights = tmp_path / ckpt.WEIGHTS_NAME
    _, tensors = ckpt.load_adapter_files(tmp_path)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: missing key 'extra'"):
        ckpt.load_adapter_files(tmp_path, {**shapes, "extra": (1,)})
    with pytest.raises(CheckpointError, match=r"unexpected key 'base_model.model.0.tn_A'"):
        ckpt.load_adapter_files(tmp_path, {k: v for k, v in shapes.items() if k != "base_model.model.0.tn_A"})
    with pytest.raises(CheckpointError, match=r"key 'base_model.model.0.tn_A' has shape \(2, 8\), the model expects \(3, 8\)"):
        ckpt.load_adapter_files(tmp_path, {**shapes, "base_model.model.0.tn_A": (3, 8)})
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: corrupt or truncated"):
        ckpt.load_adapter_files(tmp_path)
    weights.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"corrupt or truncated"):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: no such file"):
        ckpt.load_adapter_files(tmp_path)
    config_path = tmp_path / ckpt.CONFIG_NAME
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "peft_type": "LORA"}))
    with pytest.raises(CheckpointError, match=r"adapter_config.json: key 'peft_type' is 'LORA'"):
        ckpt.load_adapter_files(tmp_path)
    config_path.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"adapter_config.json: cannot be read as JSON"):
        ckpt.load_adapter_files(tmp_path)
    config_path.unlink()
    with pytest.raises(CheckpointError, match=r"adapter_config.json: no such file"):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)


def test_loading_onto_the_wrong_model_names_the_module(tmp_path):
    _saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"target module '2.0' is not in the base model"):
        tn_peft.TnPeftModel.from_pretrained(nn.Sequential(nn.Linear(8, 8)), tmp_path)
    wrong = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 5)))
    with pytest.raises(CheckpointError, match=r"target module '2.0' was \(out, in\) = \[4, 8\] when saved"):
        tn_peft.TnPeftModel.from_pretrained(wrong, tmp_path)
    # a graph changed behind the config's back: the tensor shapes no longer fit
    config_path = tmp_path / ckpt.CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["graph"]["params"]["rank"] = 3
    config["graph_args"] = {"rank": 3}
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"key 'base_model.model.0.tn_\w' has shape"):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)


def test_several_adapters_use_subfolders_and_load_back(tmp_path):
    model = tn_peft.get_model(_net(), tn_peft.AdapterConfig(target_modules="0", **LORA))  # regex: "0" only
    model.add_adapter("second", tn_peft.AdapterConfig(target_modules=["2.0"], graph="lotr", graph_args={"rank": 2}))
    perturb(model, "default", seed=1)
    perturb(model, "second", seed=2)
    x = torch.randn(3, 8)
    first = model(x)
    model.set_adapter("second")
    second = model(x)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "second" / "adapter_model.safetensors").is_file()
    loaded = tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    loaded.load_adapter(tmp_path, "second")
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded(x), first)
    loaded.set_adapter("second")
    torch.testing.assert_close(loaded(x), second)
    trainable = tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path, is_trainable=True)
    assert trainable.get_nb_trainable_parameters()[0] == 2 * 16 and trainable.training


def test_config_round_trips_through_dict():
    config = tn_peft.AdapterConfig(graph="quantum_peft", graph_args={"rank": 4}, target_modules=["query"],
                                   modules_to_save=["classifier"], alpha=16, dropout=0.1)
    assert tn_peft.AdapterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert "regex" in config.help()["target_modules"]
    with pytest.raises(tn_peft.SpecError, match="needs target_modules"):
        tn_peft.AdapterConfig()
    with pytest.raises(tn_peft.SpecError, match="dropout"):
        tn_peft.AdapterConfig(target_modules=["x"], dropout=1.5)


@pytest.mark.parametrize("entry, key", [
    ("linear", r"key 'targets\.0' must be an object"),
    (None, r"key 'targets\.0' must be an object"),
    ({"shape": 5}, r"key 'targets\.0\.shape' must be \[out, in\]"),
    ({"shape": [8]}, r"key 'targets\.0\.shape' must be \[out, in\]"),
    ({"shape": ["8", "8"]}, r"key 'targets\.0\.shape' must be \[out, in\]"),
    ({"shape": [8.5, 8]}, r"key 'targets\.0\.shape' must be \[out, in\]"),
    ({}, r"key 'targets\.0\.shape' must be \[out, in\]"),
])
def test_corrupt_saved_target_entries_name_the_key(tmp_path, entry, key):
    _saved(tmp_path)
    config_path = tmp_path / ckpt.CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["targets"]["0"] = entry
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=key):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    model = tn_peft.get_model(_net(), tn_peft.AdapterConfig(target_modules=["0"], **LORA))
    with pytest.raises(CheckpointError, match=key):
        model.load_adapter(tmp_path, "other")


def test_two_tensors_on_one_checkpoint_key_are_an_error_not_a_silent_loss(tmp_path):
    # a delta graph keeps theta_0 as buffers "initial_<node>": a node named "initial_A" would take A's key
    spec = {"name": "clash", "params": {"rank": 2}, "scale": 1, "delta": True, "open": {"out": "out", "in": "in"},
            "sizes": {"r": "rank"},
            "nodes": [{"name": "A", "kind": "dense", "legs": ["out", "r"], "options": {"init": "normal"}},
                      {"name": "initial_A", "kind": "dense", "legs": ["r", "in"], "options": {"init": "normal"}}]}
    model = tn_peft.get_model(torch.nn.Sequential(torch.nn.Linear(6, 6)),
                              tn_peft.AdapterConfig(graph=spec, target_modules=["0"]))
    with pytest.raises(CheckpointError, match="initial_A.*both map to checkpoint key.*rename the graph's nodes"):
        model.save_pretrained(tmp_path)
    assert not (tmp_path / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("graph", ["lora", "quantum_peft", "svd", "tt", "ttd", "quanta", "kron", "lotr"])
def test_every_catalog_graph_round_trips_merge_and_save_load(tmp_path, graph):
    from torch import nn

    import tn_peft
    from tn_peft.testing import (
        assert_merge_roundtrip,
        assert_save_load_roundtrip,
        randomize,
    )

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(graph=graph, target_modules=["0", "2"]))
    randomize(model, 3)
    x = torch.randn(4, 16)
    assert_merge_roundtrip(model, x)
    assert_save_load_roundtrip(model, tmp_path, x)
