"""Regression tests for the crash classes the fuzzers found: each is now one documented error."""

from __future__ import annotations

import json

import pytest

from tn_peft import CheckpointError, SpecError, load_graph
from tn_peft.cli import main


def test_params_that_are_not_a_mapping():
    with pytest.raises(SpecError, match="params: must map parameter names"):
        load_graph({"name": "x", "params": 3, "nodes": [{"name": "A", "kind": "dense", "legs": ["out", "in"]}]})
    with pytest.raises(SpecError, match="params: must map"):
        load_graph({"name": "x", "params": ["a"], "nodes": [{"name": "A", "kind": "dense", "legs": ["out", "in"]}]})


def test_a_yaml_mapping_key_that_is_a_list(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("name: x\n? [a, b]\n: 1\n")
    with pytest.raises(SpecError, match="a mapping key must be a plain value"):
        load_graph(path)


def test_a_node_name_with_a_dot_or_not_a_string():
    with pytest.raises(SpecError, match="node name 'a.b' is not a name"):
        load_graph({"name": "x", "nodes": [{"name": "a.b", "kind": "dense", "legs": ["out", "in"]}]})


def test_a_lora_config_whose_modules_to_save_is_not_a_list(tmp_path):
    from tn_peft.convert.lora_io import check_config

    with pytest.raises(CheckpointError, match="'modules_to_save' must be a list of module names, got 3"):
        check_config({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "modules_to_save": 3}, tmp_path / "c.json")
    check_config(json.loads('{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": "q|v"}'))


def test_a_nul_byte_in_an_argument(capsys):
    assert main(["convert", "a\x00b", "out"]) == 2
    assert "NUL byte" in capsys.readouterr().err
