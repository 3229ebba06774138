"""Exact per-layer ranks in conversion: a LoRA with rank_pattern converts with each layer's own rank
(layer_graph_args, no padding) and exports back to a LoRA that peft loads with the same per-layer ranks."""

import copy
import json

import peft
import pytest
from convert_helpers import fast_map, make_lora, max_diff, outputs, token_batch

from tn_peft.convert import from_lora, to_lora
from tn_peft.model import TnPeftModel
from tn_peft.graph.spec import load_graph


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_minilm_rank_pattern_converts_to_exact_per_layer_ranks(minilm_base, tmp_path):
    lora = make_lora(minilm_base, tmp_path / "lora", r=8, lora_alpha=16, target_modules=["query", "value"],
                     rank_pattern={"value": 2})
    batch = token_batch(vocab=1000, length=9)
    expected = outputs(lora, batch)
    report = from_lora(tmp_path / "lora", tmp_path / "svd", "svd", map=fast_map(), base_model=minilm_base)
    assert report.exact and report.max_error < 1e-6
    saved = json.loads((tmp_path / "svd" / "adapter_config.json").read_text())
    assert saved["graph_args"]["rank"] in (8, 2) and len(saved["layer_graph_args"]) == 6

    tn = TnPeftModel.from_pretrained(copy.deepcopy(minilm_base), tmp_path / "svd")
    layers = dict(tn.tn_layers())
    assert len(layers) == 12
    total = 0
    for name, layer in layers.items():
        adapter = layer.tn_adapters["default"]
        k = 8 if name.endswith("query") else 2
        assert adapter.node("s").shape == (k,), name  # the layer's own rank: no padding
        own = count(load_graph("svd", rank=k, alpha=16, map=fast_map()).build(384, 384))
        assert count(adapter) == own, name
        total += own
    padded = 12 * count(load_graph("svd", rank=8, alpha=16, map=fast_map()).build(384, 384))
    assert tn.get_nb_trainable_parameters()[1] - sum(p.numel() for p in minilm_base.parameters()) == total < padded
    assert max_diff(outputs(tn, batch), expected) < 1e-5  # fp32: arithmetic in another order
    # in float64 the converted adapter gives the LoRA model's outputs to 1e-6 (the fp32-stored parameters' rounding)
    expected64 = outputs(copy.deepcopy(lora).double(), batch)
    assert max_diff(outputs(copy.deepcopy(tn).double(), batch), expected64) < 1e-6
    assert max_diff(outputs(minilm_base, batch), expected) > 1e-3  # the adapter really changes the outputs

    back = to_lora(tmp_path / "svd", tmp_path / "back")
    assert back.exact
    exported = json.loads((tmp_path / "back" / "adapter_config.json").read_text())
    assert exported["rank_pattern"] or exported["r"] == 2
    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(minilm_base), str(tmp_path / "back")).eval()
    ranks = {name.removeprefix("base_model.model."): module.r["default"]
             for name, module in peft_model.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)}
    original = {name.removeprefix("base_model.model."): module.r["default"]
                for name, module in lora.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)}
    assert ranks == original and sorted(set(ranks.values())) == [2, 8]
    for name, module in peft_model.named_modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            assert module.lora_A["default"].weight.shape[0] == module.r["default"]
    assert max_diff(outputs(peft_model, batch), expected) < 1e-5
    assert max_diff(outputs(copy.deepcopy(peft_model).double(), batch), expected64) < 1e-6


@pytest.mark.parametrize("tolerance", [None, 0.3])
@pytest.mark.parametrize("to", ["tt", "ttd"])
def test_tt_layers_keep_their_own_bond_ranks(gpt2_base, tmp_path, to, tolerance):
    from tn_peft.convert import tt
    from tn_peft.convert.linalg import relative_error
    from tn_peft.convert.lora_io import read_lora

    lora = make_lora(gpt2_base, tmp_path / "lora", r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"],
                     fan_in_fan_out=True, rank_pattern={"h.1.attn.c_proj": 1})
    batch = token_batch()
    expected = outputs(lora, batch)
    extra = {"map": fast_map(), "center": 2} if to == "ttd" else {}
    report = from_lora(tmp_path / "lora", tmp_path / to, to, base_model=gpt2_base, tolerance=tolerance, **extra)
    tn = TnPeftModel.from_pretrained(copy.deepcopy(gpt2_base), tmp_path / to)
    layers = read_lora(tmp_path / "lora").layers
    probe = load_graph(to, cores=3)
    bonds = {}
    for name, layer in tn.tn_layers():
        adapter = layer.tn_adapters["default"]
        bonds[name] = [adapter.sizes[f"r{t}"] for t in (1, 2)]
        sizes = probe.resolve(layer.in_features, layer.out_features)
        out_f, in_f = [sizes[leg] for leg in probe.open["out"]], [sizes[leg] for leg in probe.open["in"]]
        dW = layers[name].delta_weight()
        # exactly the bonds this layer's TT-SVD keeps: nothing padded to another layer's rank
        assert bonds[name] == tt.ranks_for_tolerance(dW, out_f, in_f, tolerance or 1e-12), name
        assert adapter.network.params["rank"] == max(bonds[name])
        error = relative_error(layer.delta_matrix("default").double(), dW)
        assert error <= (tolerance or 1e-5) + 1e-6, name
    assert len({tuple(b) for b in bonds.values()}) > 1  # layers really differ
    if tolerance is None:
        assert report.exact and max_diff(outputs(tn, batch), expected) < 1e-5
    else:
        assert not report.exact and all(r.relative_error <= tolerance + 1e-6 for r in report.layers)
