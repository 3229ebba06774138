"""Per-layer graph arguments (``layer_graph_args``, like PEFT's rank_pattern / alpha_pattern) and PEFT's
``layers_to_transform`` / ``layers_pattern``: which layers, which shapes, save/load, merge, errors."""

import copy
import json
import re
import warnings

import pytest
import torch
from model_helpers import minilm, outputs, perturb, token_batch
from torch import nn

import tn_peft
from tn_peft import AdapterConfig, SpecError, get_model
from tn_peft.model import TnPeftModel

Q0 = "encoder.layer.0.attention.self.query"


@pytest.fixture(scope="module")
def base():
    return minilm()


def ranks(model) -> dict[str, int]:
    return {name: layer.tn_adapters["default"].node("A").shape[0] for name, layer in model.tn_layers()}


def test_per_layer_rank_shapes_scale_and_count(base):
    config = AdapterConfig(graph="lora", graph_args={"rank": 4}, alpha=8, target_modules=["query", "value"],
                           layer_graph_args={Q0: {"rank": 2}, "value": {"rank": 6, "alpha": 12}})
    model = get_model(copy.deepcopy(base), config)
    expected = {}
    for name, layer in model.tn_layers():
        adapter = layer.tn_adapters["default"]
        rank = 2 if name == Q0 else 6 if name.endswith("value") else 4
        expected[name] = rank
        assert adapter.node("B").shape == (384, rank) and adapter.node("A").shape == (rank, 384), name
        # the override's alpha beats AdapterConfig.alpha; scale = alpha / rank per layer
        assert adapter.scale == pytest.approx((12 if name.endswith("value") else 8) / rank), name
    assert ranks(model) == expected and len(expected) == 12
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == sum(r * (384 + 384) for r in expected.values()) == (2 + 5 * 4 + 6 * 6) * 768


def test_pattern_keys_follow_peft_get_pattern_key(base):
    from peft.utils.other import get_pattern_key

    patterns = {r"layer\.[0-2]\.attention\.self\.query": {"rank": 1}, "query": {"rank": 3},
                "attention.self.value": {"rank": 5}}
    config = AdapterConfig(graph="lora", graph_args={"rank": 4}, target_modules=["query", "value"],
                           layer_graph_args=patterns)
    model = get_model(copy.deepcopy(base), config)
    for name, rank in ranks(model).items():
        key = get_pattern_key(list(patterns), name)  # peft returns the name itself when nothing matches
        assert config.layer_graph_key(name) == (key if key in patterns else None)
        assert rank == (patterns[key]["rank"] if key in patterns else 4), name
    assert ranks(model)[Q0] == 1 and ranks(model)["encoder.layer.4.attention.self.query"] == 3
    # first matching key wins (dict order), as in peft: "query" first shadows the regex
    swapped = AdapterConfig(graph="lora", target_modules=["query"],
                            layer_graph_args={"query": {"rank": 3}, r"layer\.0\..*query": {"rank": 1}})
    with pytest.warns(RuntimeWarning, match=re.escape(r"['layer\\.0\\..*query']")):
        assert set(ranks(get_model(copy.deepcopy(base), swapped)).values()) == {3}


def test_save_load_merge_round_trip(base, tmp_path):
    config = AdapterConfig(graph="lora", graph_args={"rank": 4}, target_modules=["query", "value"],
                           layer_graph_args={Q0: {"rank": 2}, "value": {"rank": 6}})
    model = get_model(copy.deepcopy(base), config)
    perturb(model, scale=0.05)
    batch = token_batch(vocab=1000, length=9)
    expected = outputs(model, batch)
    assert float((expected - outputs(base, batch)).abs().max()) > 1e-3
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["layer_graph_args"] == {Q0: {"rank": 2}, "value": {"rank": 6}}
    assert saved["targets"][Q0]["graph"]["params"]["rank"] == 2
    assert "graph" not in saved["targets"]["encoder.layer.1.attention.self.query"]  # base graph: not repeated

    loaded = TnPeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert ranks(loaded) == ranks(model)
    assert loaded.peft_config["default"].layer_graph_args == config.layer_graph_args
    assert AdapterConfig.from_pretrained(tmp_path).layer_graph_args == config.layer_graph_args
    torch.testing.assert_close(outputs(loaded, batch), expected, rtol=0, atol=1e-6)
    loaded.merge_adapter()
    torch.testing.assert_close(outputs(loaded, batch), expected, rtol=0, atol=1e-4)
    loaded.unmerge_adapter()
    torch.testing.assert_close(outputs(loaded, batch), expected, rtol=0, atol=1e-4)
    merged = loaded.merge_and_unload()
    torch.testing.assert_close(outputs(merged, batch), expected, rtol=0, atol=1e-4)

    other = get_model(copy.deepcopy(base), AdapterConfig(graph="lora", target_modules=["key"]))
    other.load_adapter(tmp_path, "per_layer")
    other.set_adapter("per_layer")
    assert {n: layer.tn_adapters["per_layer"].node("A").shape[0]
            for n, layer in other.tn_layers() if "per_layer" in layer.tn_adapters} == ranks(model)
    torch.testing.assert_close(outputs(other, batch), expected, rtol=0, atol=1e-6)


def test_structural_override_round_trips(base, tmp_path):
    """An override that changes the graph's structure (TT cores) is saved with the layer's own spec."""
    config = AdapterConfig(graph="tt", graph_args={"cores": 3, "rank": 2}, target_modules=["value"],
                           layer_graph_args={"layer.5.attention.self.value": {"cores": 2, "rank": 3}})
    model = get_model(copy.deepcopy(base), config)
    nodes = {n: sorted(layer.tn_adapters["default"].node_modules()) for n, layer in model.tn_layers()}
    assert nodes["encoder.layer.5.attention.self.value"] == ["G1", "G2"]
    assert nodes["encoder.layer.0.attention.self.value"] == ["G1", "G2", "G3"]
    perturb(model, scale=0.05)
    batch = token_batch(vocab=1000, length=9)
    expected = outputs(model, batch)
    model.save_pretrained(tmp_path)
    loaded = TnPeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(outputs(loaded, batch), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layers, pattern", [([0, 3], None), (5, None), ([1], "layer"), ([2, 4], ["h", "layer"])])
def test_layers_to_transform_picks_layers_like_peft(base, layers, pattern):
    import peft

    config = AdapterConfig(graph="lora", target_modules=["query", "value"], layers_to_transform=layers,
                           layers_pattern=pattern)
    model = get_model(copy.deepcopy(base), config)
    wanted = [layers] if isinstance(layers, int) else layers
    assert model.targeted_module_names == [f"encoder.layer.{i}.attention.self.{m}" for i in wanted
                                           for m in ("query", "value")]
    lora = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        target_modules=["query", "value"], layers_to_transform=layers, layers_pattern=pattern))
    assert sorted(model.targeted_module_names) == sorted(lora.base_model.targeted_module_names)


def test_layers_to_transform_saved_and_combined_with_layer_graph_args(base, tmp_path):
    config = AdapterConfig(graph="lora", graph_args={"rank": 4}, target_modules=["query"], layers_to_transform=[0, 1],
                           layers_pattern="layer", layer_graph_args={Q0: {"rank": 1}})
    model = get_model(copy.deepcopy(base), config)
    assert ranks(model) == {Q0: 1, "encoder.layer.1.attention.self.query": 4}
    model.save_pretrained(tmp_path)
    loaded = AdapterConfig.from_pretrained(tmp_path)
    assert (loaded.layers_to_transform, loaded.layers_pattern) == ([0, 1], "layer")
    assert ranks(TnPeftModel.from_pretrained(copy.deepcopy(base), tmp_path)) == ranks(model)


def test_bad_override_key_is_a_spec_error(base):
    config = AdapterConfig(graph="lora", target_modules=["query", "value"], layer_graph_args={"value": {"rnak": 2}})
    with pytest.raises(SpecError, match=r"layer_graph_args\['value'\].*no parameter 'rnak'.*alpha, rank"):
        get_model(copy.deepcopy(base), config)
    # also for a key that matches no module: the spec is checked before matching
    config = AdapterConfig(graph="lora", target_modules=["query"], layer_graph_args={"nowhere": {"layers": 2}})
    with pytest.raises(SpecError, match=r"layer_graph_args\['nowhere'\].*no parameter 'layers'"):
        get_model(copy.deepcopy(base), config)
    with pytest.raises(SpecError, match=r"layer_graph_args\['value'\] must be a dict"):
        AdapterConfig(target_modules=["query"], layer_graph_args={"value": 2})
    with pytest.raises(SpecError, match="not a valid regex"):
        AdapterConfig(target_modules=["query"], layer_graph_args={"value(": {"rank": 2}})


def test_unmatched_key_warns_like_peft(base):
    config = AdapterConfig(graph="lora", target_modules=["query"], layer_graph_args={"value": {"rank": 2}})
    with pytest.warns(RuntimeWarning, match=r"layer_graph_args keys did not match any targeted module.*'value'"):
        model = get_model(copy.deepcopy(base), config)
    assert set(ranks(model).values()) == {4}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_model(copy.deepcopy(base), AdapterConfig(graph="lora", target_modules=["query"],
                                                     layer_graph_args={"query": {"rank": 2}}))


def test_layers_to_transform_without_an_index_is_an_error(base):
    sequential = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(SpecError, match=r"no layer index can be found in targeted module '0'"):
        get_model(sequential, AdapterConfig(target_modules=["0", "2"], layers_to_transform=[0]))
    # MiniLM's pooler.dense is matched by "dense" but sits in no layer
    with pytest.raises(SpecError, match=r"no layer index .* 'pooler.dense'"):
        get_model(copy.deepcopy(base), AdapterConfig(target_modules=["pooler.dense"], layers_to_transform=0))
    with pytest.raises(SpecError, match=r"no layer index .*layers_pattern='blocks'"):
        get_model(copy.deepcopy(base), AdapterConfig(target_modules=["query"], layers_to_transform=[0],
                                                     layers_pattern="blocks"))
    with pytest.raises(SpecError, match=r"matched no targeted module.*layer indices are \[0, 1, 2, 3, 4, 5\]"):
        get_model(copy.deepcopy(base), AdapterConfig(target_modules=["query"], layers_to_transform=[9]))
    with pytest.raises(SpecError, match="target_modules is a regex"):
        AdapterConfig(target_modules=".*query", layers_to_transform=[0])
    with pytest.raises(SpecError, match="layers_pattern was given without layers_to_transform"):
        AdapterConfig(target_modules=["query"], layers_pattern="layer")
    with pytest.raises(SpecError, match="must be an int or a list of ints"):
        AdapterConfig(target_modules=["query"], layers_to_transform=["0"])


def test_shared_nodes_refuse_overrides_that_change_them(base):
    config = AdapterConfig(graph="lotr", target_modules=["query"], layer_graph_args={Q0: {"rank": 2}})
    with pytest.raises(SpecError, match=re.escape(f"changes node 'U' of '{Q0}', but graph 'lotr' shares it between "
                                                  "layers of a shape ((384, 4) for every layer, (384, 2) here)")):
        get_model(copy.deepcopy(base), config)


def test_shared_nodes_take_overrides_that_leave_them_alone(base, tmp_path):
    config = AdapterConfig(graph="lotr", target_modules=["query"], layer_graph_args={Q0: {"alpha": 32}})
    model = get_model(copy.deepcopy(base), config)
    layers = dict(model.tn_layers())
    first, other = layers[Q0].tn_adapters["default"], layers[Q0.replace("layer.0", "layer.1")].tn_adapters["default"]
    assert (first.scale, other.scale) == (8.0, 2.0)  # alpha / rank, rank 4
    assert first.node("U") is other.node("U") and first.node("V") is other.node("V")
    perturb(model, scale=0.1)
    batch = token_batch(model.config.vocab_size, seed=3)
    expected = outputs(model, batch)
    model.save_pretrained(tmp_path)
    loaded = TnPeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(outputs(loaded, batch), expected)
    loaded_layers = dict(loaded.tn_layers())
    assert loaded_layers[Q0].tn_adapters["default"].scale == 8.0
    from tn_peft.convert.tn_io import load_tn_adapter

    _, _, read, _ = load_tn_adapter(tmp_path)  # the converters' reader, without the base model
    for name in (Q0, Q0.replace("layer.0", "layer.1")):
        torch.testing.assert_close(read[name].delta_weight().float(), layers[name].tn_adapters["default"].delta_weight())


def test_help_documents_new_fields():
    help_text = AdapterConfig(target_modules=["q"]).help()
    assert "rank_pattern" in help_text["layer_graph_args"]
    assert "layer index" in help_text["layers_to_transform"]
    assert "ModuleList" in help_text["layers_pattern"]
    assert tn_peft.AdapterConfig.from_dict(AdapterConfig(target_modules=["q"]).to_dict()).layer_graph_args == {}
