"""tn_peft.targets on its own: PEFT's matching rules, layer indices, the output head."""

from __future__ import annotations

import pytest
from torch import nn

from tn_peft.errors import SpecError
from tn_peft.targets import (
    find_targets,
    in_modules_to_save,
    layer_index,
    match_name,
)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.value, self.norm = nn.Linear(8, 8), nn.Linear(8, 4), nn.LayerNorm(8)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([_Block(), _Block(), _Block()])
        self.conv = nn.Conv2d(2, 3, kernel_size=(3, 2), groups=1)
        self.classifier = nn.Linear(8, 2)


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


def test_modules_to_save_covers_children():
    assert in_modules_to_save("classifier.dense", ["classifier"]) and in_modules_to_save("a.classifier", ["classifier"])
    assert not in_modules_to_save("classifier2", ["classifier"])


def test_find_targets_rules():
    net = _Net()
    assert find_targets(net, ["query"]) == ["layer.0.query", "layer.1.query", "layer.2.query"]
    assert find_targets(net, ["query", "value"], exclude_modules=["layer.1.value"], layers_to_transform=[1, 2],
                        layers_pattern="layer") == ["layer.1.query", "layer.2.query", "layer.2.value"]
    assert find_targets(net, ["query"], layers_to_transform=[]) == find_targets(net, ["query"])  # [] means all
    linear = find_targets(net, "all-linear")
    assert "classifier" in linear  # a plain module has no output head to leave out
    assert find_targets(net, "all-linear", modules_to_save=["classifier"]) == [n for n in linear if n != "classifier"]


def test_find_targets_errors_name_the_fault():
    net = _Net()
    with pytest.raises(SpecError, match=r"matched no module of _Net.*module names look like: layer, layer\.0"):
        find_targets(net, ["key"])
    with pytest.raises(SpecError, match="no layer index can be found in targeted module 'conv'.*layers_pattern='layer'"):
        find_targets(net, ["conv", "query"], layers_to_transform=[0], layers_pattern="layer")
    with pytest.raises(SpecError, match=r"matched no targeted module.*layer indices are \[0, 1, 2\]"):
        find_targets(net, ["query"], layers_to_transform=[5], layers_pattern="layer")
    with pytest.raises(SpecError, match="which tn_peft cannot adapt"):
        find_targets(net, ["norm"])
