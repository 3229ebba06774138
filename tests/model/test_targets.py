"""tn_peft.model.targets on its own: PEFT's matching rules, layer indices, the output head, resolving a config."""

from __future__ import annotations

import pytest
from torch import nn

from tn_peft.errors import SpecError
from tn_peft.model.config import AdapterConfig
from tn_peft.model.layers import LAYER_TYPES, TnLayer
from tn_peft.model.targets import find_targets, resolve_config


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


def test_find_targets_rules():
    net = _Net()
    found = find_targets(net, ["query"])
    assert list(found) == ["layer.0.query", "layer.1.query", "layer.2.query"]
    assert {row.name for row in found.values()} == {"linear"}  # each module's layer type, found once
    assert list(find_targets(net, ["query", "value"], exclude_modules=["layer.1.value"], layers_to_transform=[1, 2],
                             layers_pattern="layer")) == ["layer.1.query", "layer.2.query", "layer.2.value"]
    assert find_targets(net, ["query"], layers_to_transform=[]) == find_targets(net, ["query"])  # [] means all
    linear = list(find_targets(net, "all-linear"))
    assert "classifier" in linear  # a plain module has no output head to leave out
    assert list(find_targets(net, "all-linear", modules_to_save=["classifier"])) == [n for n in linear
                                                                                    if n != "classifier"]


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


def test_resolve_config_gives_each_module_its_layer_type_shape_and_network():
    net = _Net()
    config = AdapterConfig(graph="lora", target_modules=["value"], layers_to_transform=[0, 2], layers_pattern="layer",
                           layer_graph_args={"layer.2.value": {"rank": 2}})
    before = config.to_dict()
    resolved = resolve_config(config, net)
    assert resolved.network == config.network()
    linear, _, conv2d = LAYER_TYPES
    assert {name: (t.layer_type, t.out_features, t.in_features, t.own_graph) for name, t in resolved.targets.items()} == {
        "layer.0.value": (linear, 4, 8, False), "layer.2.value": (linear, 4, 8, True)}
    value0, value2 = resolved.targets.values()
    assert value0.network is resolved.network and value2.network.params["rank"] == 2
    assert value0.module is net.layer[0].value and value0.shape_key == "4x8"
    assert value0.checkpoint_entry() == {"type": "linear", "shape": [4, 8]}
    assert value2.checkpoint_entry() == {"type": "linear", "shape": [4, 8], "graph": value2.network.to_spec()}
    # pure: neither the model nor the config changed
    assert not any(isinstance(m, TnLayer) for m in net.modules()) and config.to_dict() == before
    forced = resolve_config(AdapterConfig(graph="lora", target_modules=["query"]), net, targets=["conv"])
    assert forced.targets["conv"].layer_type is conv2d and forced.targets["conv"].in_features == 2 * 3 * 2


def test_resolve_config_errors_name_the_module():
    net = _Net()
    with pytest.raises(SpecError, match="module 'layer.0.norm' is a .*LayerNorm, which tn_peft cannot adapt"):
        resolve_config(AdapterConfig(graph="lora", target_modules=["query"]), net, targets=["layer.0.norm"])
    with pytest.raises(SpecError, match="layer_graph_args changes node 'U' of 'layer.1.query'"):
        resolve_config(AdapterConfig(graph="lotr", target_modules=["query"],
                                     layer_graph_args={"layer.1.query": {"rank": 2}}), net)


def _count_calls(monkeypatch):
    """Count spec expansions, structure checks (the work of Network.validate) and check_options calls."""
    import collections

    from tn_peft.graph import network as network_module
    from tn_peft.graph import spec as spec_module
    from tn_peft.model import targets as targets_module
    from tn_peft.nodes import kinds as kinds_module

    counts = collections.Counter()

    def counted(owner, name, key):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    counted(spec_module, "network_from_spec", "expand")
    counted(network_module.Network, "_check_structure", "validate")
    counted(kinds_module, "check_options", "check_options")
    counted(targets_module, "layer_type", "layer_type")
    return counts


@pytest.mark.parametrize("kwargs, distinct, in_layers", [
    ({"alpha": 16}, 1, 1),                                                  # alpha merged before the one expansion
    ({"alpha": 16, "layer_graph_args": {"layer.1.query": {"rank": 2}}}, 2, 2),
    ({"layer_graph_args": {"query": {"rank": 2}}}, 2, 1),  # the config's network and one for the key's 3 layers
    ({"layer_graph_args": {"layer.1.query": {"rank": 4}}}, 2, 1),           # an override that changes nothing
])
def test_get_model_expands_and_validates_each_distinct_network_once(monkeypatch, kwargs, distinct, in_layers):
    """The issue's count: LoRA on two layers with alpha set expanded the spec twice, validated the network 4
    times and checked options 16 times; now one expansion, one validation and one check per node for
    each distinct network, however many layers it is built for."""
    import tn_peft

    counts = _count_calls(monkeypatch)
    model = tn_peft.get_model(_Net(), AdapterConfig(graph="lora", target_modules=["query"], **kwargs))
    nodes, layers = len(model.networks["default"].nodes), len(list(model.tn_layers()))
    assert dict(counts) == {"expand": distinct, "validate": distinct, "check_options": nodes * distinct,
                            "layer_type": layers}, counts  # each module's layer type computed once
    assert len({id(layer.tn_adapters["default"].network) for _, layer in model.tn_layers()}) == in_layers


def test_a_network_edited_after_validation_is_validated_again():
    from tn_peft import load_graph

    network = load_graph("lora")
    network.nodes[0].options["no_such_option"] = 1
    with pytest.raises(SpecError, match="has no option 'no_such_option'"):
        network.validate()
    with pytest.raises(SpecError, match="has no option 'no_such_option'"):
        network.build(4, 4)
