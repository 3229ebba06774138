"""tn_peft.io.checkpoint: the one reader of a saved adapter's targets (strict shapes, one shape key),
used alike by from_pretrained, load_adapter and conversion."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft.convert.tn_io import load_tn_adapter
from tn_peft.errors import CheckpointError
from tn_peft.io.checkpoint import SavedTarget, saved_shape, saved_targets, shape_key


def test_saved_shape_reads_a_well_formed_entry(tmp_path):
    assert saved_shape({"shape": [4, 8]}, "x", tmp_path) == (4, 8)
    assert saved_shape({"shape": [4.0, 8]}, "x", tmp_path) == (4, 8)


@pytest.mark.parametrize("info", [
    {"shape": ["4", 8]}, {"shape": [4.5, 8]}, {"shape": [True, 8]}, {"shape": [4]}, {"shape": [0, 8]},
    {"shape": [-4, 8]}, {"shape": "4x8"}, {}, [4, 8], None,
])
def test_saved_shape_refuses_anything_else_naming_the_key(info):
    with pytest.raises(CheckpointError, match=r"adapter_config.json: key 'targets\.fc"):
        saved_shape(info, "fc", "adapter_config.json")


def test_saved_targets_and_the_shape_key():
    config = {"targets": {"a": {"shape": [4, 8]}, "b": {"shape": [2, 3], "graph": {"name": "g"}}}}
    assert saved_targets(config, "c.json") == {"a": SavedTarget(4, 8, None), "b": SavedTarget(2, 3, {"name": "g"})}
    assert shape_key(*saved_targets(config, "c.json")["a"].shape) == "4x8"
    with pytest.raises(CheckpointError, match=r"key 'targets\.a\.graph' must be a graph spec"):
        saved_targets({"targets": {"a": {"shape": [4, 8], "graph": "lora"}}}, "c.json")


def test_every_reader_refuses_a_bad_shape_alike(tmp_path):
    """from_pretrained, load_adapter and conversion read a saved adapter's targets through one parser:
    a shape conversion once read with a bare int() ("4") is refused by all three, with one message."""
    torch.manual_seed(0)
    model = tn_peft.get_model(nn.Sequential(nn.Linear(8, 4)), tn_peft.AdapterConfig(target_modules=["0"]))
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    config = json.loads(path.read_text())
    config["targets"]["0"]["shape"] = ["4", 8]
    path.write_text(json.dumps(config))
    messages = set()
    for read in (lambda: tn_peft.from_pretrained(nn.Sequential(nn.Linear(8, 4)), tmp_path),
                 lambda: tn_peft.get_model(nn.Sequential(nn.Linear(8, 4)),
                                           tn_peft.AdapterConfig(target_modules=["0"])).load_adapter(tmp_path, "b"),
                 lambda: load_tn_adapter(tmp_path)):
        with pytest.raises(CheckpointError, match=r"key 'targets\.0\.shape' must be \[out, in\]") as info:
            read()
        messages.add(str(info.value))
    assert len(messages) == 1, messages
