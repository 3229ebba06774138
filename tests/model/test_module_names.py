"""tn_peft.model.module_names: the one module-name matcher (targets, exclusions, modules_to_save, pattern keys,
layer indices), its compiled patterns and its bounds."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft.errors import SpecError
from tn_peft.limits import MAX_PATTERN_CHARS
from tn_peft.model.module_names import compiled, in_saved_module, layer_index, match_name, pattern_key


@pytest.mark.parametrize("name,patterns,expected", [
    ("layer.0.query", ["query"], True),          # dotted suffix
    ("layer.0.query", ["uery"], False),          # not a part of a name
    ("query", ["query"], True),                  # exact
    ("layer.0.query", "query", False),           # a string is a regex over the whole name
    ("layer.0.query", r".*\.query", True),
    ("layer.0.query", None, False),
    ("layer.0.query", [], False),
])
def test_match_name(name, patterns, expected):
    assert match_name(name, patterns) is expected


def test_layer_index_outermost_and_patterns():
    assert layer_index("encoder.layer.3.attention.query") == 3
    assert layer_index("model.layers.1.mlp.experts.7.up", "layers") == 1
    assert layer_index("model.layers.1.mlp.experts.7.up", ["blocks", "experts"]) == 7
    assert layer_index("pooler.dense") is None


def test_modules_to_save_covers_children_and_is_a_name_not_a_regex():
    assert in_saved_module("classifier.dense", ["classifier"]) and in_saved_module("a.classifier", ["classifier"])
    assert in_saved_module("a.classifier.out.bias", ["classifier"])
    assert not in_saved_module("classifier2", ["classifier"]) and not in_saved_module("x.classifier2.y", ["classifier"])
    assert not in_saved_module("1", ["1|2"]) and in_saved_module("1|2.weight", ["1|2"])


def test_patterns_compile_once():
    assert compiled("q.*", "modules") is compiled("q.*", "modules")
    assert compiled("value", "key").pattern == r"(.*\.)?(value)$"


def test_pattern_key_first_match_wins():
    assert pattern_key({"value": 1, "layer.0.attention.self.value": 2}, "layer.0.attention.self.value") == "value"
    assert pattern_key(["nope"], "a.value") is None


def test_a_pattern_over_the_bound_is_refused_before_it_runs():
    long = "a" * (MAX_PATTERN_CHARS + 1)
    for rule in ("modules", "key", "layers"):
        with pytest.raises(SpecError, match="MAX_PATTERN_CHARS"):
            compiled(long, rule)
    with pytest.raises(SpecError, match="MAX_PATTERN_CHARS"):
        tn_peft.AdapterConfig(target_modules=long)
    with pytest.raises(SpecError, match="MAX_PATTERN_CHARS"):
        tn_peft.AdapterConfig(target_modules=["q"], modules_to_save=[long])
    with pytest.raises(SpecError, match="MAX_PATTERN_CHARS"):
        tn_peft.AdapterConfig(target_modules=["q"], layer_graph_args={long: {"rank": 2}})
    with pytest.raises(SpecError, match=r"not a valid regex"):
        tn_peft.AdapterConfig(target_modules="(")
    assert compiled("a" * MAX_PATTERN_CHARS, "modules").fullmatch("a" * MAX_PATTERN_CHARS)


def test_a_long_pattern_in_a_saved_config_is_a_spec_error(tmp_path):
    model = tn_peft.get_model(nn.Sequential(nn.Linear(4, 4)), tn_peft.AdapterConfig(target_modules=["0"]))
    model.save_pretrained(tmp_path)
    config = tmp_path / "adapter_config.json"
    config.write_text(config.read_text().replace('"target_modules": [\n    "0"\n  ]',
                                                 '"target_modules": "' + "(a+)+" * 300 + '"'))
    assert "(a+)+" in config.read_text()
    with pytest.raises(SpecError, match="MAX_PATTERN_CHARS"):
        tn_peft.from_pretrained(nn.Sequential(nn.Linear(4, 4)), tmp_path)


def test_modules_to_save_one_or_two_is_one_name_everywhere():
    """``['1|2']`` is a module name wherever modules_to_save is read: it leaves modules 1 and 2 targeted,
    and the wrapper lookup finds no module so named (one SpecError, the model unchanged)."""
    base = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    config = tn_peft.AdapterConfig(target_modules=["0", "1", "2"], modules_to_save=["1|2"])
    from tn_peft.model.targets import find_targets

    assert list(find_targets(base, config.target_modules, modules_to_save=config.modules_to_save)) == ["0", "1", "2"]
    before = repr(base)
    with pytest.raises(SpecError, match=re.escape("modules_to_save=['1|2'] matched no module")):
        tn_peft.get_model(base, config)
    assert repr(base) == before
    # a real name: module 1 is saved (a trainable copy), never adapted
    model = tn_peft.get_model(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)),
                              tn_peft.AdapterConfig(target_modules=["0", "1", "2"], modules_to_save=["1"]))
    assert sorted(model.targets["default"]) == ["0", "2"] and model(torch.randn(2, 4)).shape == (2, 4)
