"""Several active adapters at once (PEFT's ``set_adapter([...])``): outputs add up, only the active ones
train, merge/unmerge/disable handle all of them, the batched node cache holds every active adapter."""

from __future__ import annotations

import pytest
import torch
from model_helpers import TARGETS, batch_for, outputs, perturb, qpeft_config, tiny_gpt2
from torch import nn

import tn_peft
from tn_peft.errors import UsageError

LORA = {"graph": "lora", "graph_args": {"rank": 2}}


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def _three(base, targets, *, batch_nodes=True):
    """Adapters "default" (LoRA), "b" (Quantum-PEFT) and "c" (LoRA), all with dW != 0; "default" active."""
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(target_modules=targets, **LORA), batch_nodes=batch_nodes)
    model.add_adapter("b", qpeft_config(targets))
    model.add_adapter("c", tn_peft.AdapterConfig(target_modules=targets, **LORA))
    for seed, name in enumerate(["default", "b", "c"], start=1):
        perturb(model, name, seed=seed, scale=0.2)
    return model


def _adapter_params(model, name):
    return {n: p for n, p in model.named_parameters() if f".{name}." in n}


def test_output_is_base_plus_each_active_delta():
    """The adapted layer is the last one, so the model output is linear in the adapters' outputs."""
    model = _three(_net(), ["2"])
    x = torch.randn(5, 8)
    with torch.no_grad(), model.disable_adapter():
        base = model(x)
    singles = {}
    with torch.no_grad():
        for name in ("default", "b"):
            model.set_adapter(name)
            singles[name] = model(x)
        model.set_adapter(["default", "b"])
        both = model(x)
    assert (singles["default"] - base).abs().max() > 1e-3 and (singles["b"] - base).abs().max() > 1e-3
    torch.testing.assert_close(both, base + (singles["default"] - base) + (singles["b"] - base),
                               atol=1e-6, rtol=1e-5)
    assert model.active_adapters == ["default", "b"] and model.active_adapter == "default"
    model.set_adapter(["b", "default"])
    assert model.active_adapters == ["b", "default"] and model.active_adapter == "b"
    with torch.no_grad():
        torch.testing.assert_close(model(x), both, atol=1e-6, rtol=1e-5)
    model.set_adapter("c")
    assert model.active_adapters == ["c"] and model.active_adapter == "c"


def test_gpt2_layers_sum_and_the_batched_cache_holds_every_active_adapter():
    model = _three(tiny_gpt2(), TARGETS["gpt2"])
    batch = batch_for(model, seed=3)
    model.set_adapter(["default", "b"])
    seen = []
    handles = [layer.register_forward_pre_hook(lambda mod, args: seen.append(set(mod.node_cache or {})))
               for _, layer in model.tn_layers()]
    batched = outputs(model, batch)
    for handle in handles:
        handle.remove()
    assert seen and all(keys == {"default", "b"} for keys in seen)
    model.batch_nodes = False  # each layer evaluates its own nodes: the same outputs
    torch.testing.assert_close(outputs(model, batch), batched, atol=1e-5, rtol=1e-5)
    model.batch_nodes = True
    # each (Conv1D) layer on a fixed input: base + the two adapters' outputs
    _, layer = next(iter(model.tn_layers()))
    x = torch.randn(2, 5, layer.in_features)
    with torch.no_grad():
        base = layer.base_layer(x)
        singles = {}
        for adapter in ("default", "b"):
            model.set_adapter(adapter)
            singles[adapter] = layer(x)
        model.set_adapter(["default", "b"])
        torch.testing.assert_close(layer(x), singles["default"] + singles["b"] - base, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_active_adapter_and_no_inactive_one():
    model = _three(tiny_gpt2(), TARGETS["gpt2"])
    model.set_adapter(["default", "b"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(_adapter_params(model, "default")) | {n for n, p in _adapter_params(model, "b").items()
                                                                     if p.requires_grad}
    assert not any(p.requires_grad for p in _adapter_params(model, "c").values())
    counted, _ = model.get_nb_trainable_parameters()
    assert counted == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert counted > sum(p.numel() for p in _adapter_params(model, "default").values())
    model(**batch_for(model, seed=4)).logits.pow(2).mean().backward()
    for name in ("default", "b"):
        grads = [p.grad for p in _adapter_params(model, name).values() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert any(g.abs().max() > 0 for g in grads), name
    assert all(p.grad is None for p in _adapter_params(model, "c").values())
    assert all(p.grad is None for n, p in model.named_parameters() if "tn_" not in n)
    model.set_adapter("c")  # switching back to one adapter: only it trains
    assert {n for n, p in model.named_parameters() if p.requires_grad} <= set(_adapter_params(model, "c"))


def test_merge_unmerge_and_disable_with_two_active():
    model = _three(tiny_gpt2(), TARGETS["gpt2"])
    batch = batch_for(model, seed=5)
    with model.disable_adapter():
        reference = outputs(model, batch)
    weights = {n: layer.base_layer.weight.detach().clone() for n, layer in model.tn_layers()}
    model.set_adapter(["default", "b"])
    both = outputs(model, batch)
    model.merge_adapter()
    assert all(sorted(layer.merged_adapters) == ["b", "default"] for _, layer in model.tn_layers())
    torch.testing.assert_close(outputs(model, batch), both, atol=1e-4, rtol=1e-4)
    model.unmerge_adapter()
    for n, layer in model.tn_layers():
        torch.testing.assert_close(layer.base_layer.weight, weights[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs(model, batch), both, atol=1e-6, rtol=1e-6)
    with model.disable_adapter():
        torch.testing.assert_close(outputs(model, batch), reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs(model, batch), both, atol=1e-6, rtol=1e-6)
    model.merge_adapter()
    with model.disable_adapter():  # disabling unmerges both
        torch.testing.assert_close(outputs(model, batch), reference, atol=1e-5, rtol=0)
    plain = model.merge_and_unload()
    torch.testing.assert_close(outputs(plain, batch), both, atol=1e-4, rtol=1e-4)


def test_set_adapter_refusals_leave_the_model_unchanged():
    model = _three(_net(), ["0", "2"])
    model.set_adapter(["default", "b"])
    with pytest.raises(UsageError, match=r"no adapter named 'nope'.*default, b, c"):
        model.set_adapter(["default", "nope"])
    with pytest.raises(UsageError, match=r"no adapters named 'x', 'y'"):
        model.set_adapter(["x", "y"])
    with pytest.raises(UsageError, match="no adapter named 'nope'"):
        model.set_adapter("nope")
    with pytest.raises(UsageError, match="empty list"):
        model.set_adapter([])
    with pytest.raises(UsageError, match="twice"):
        model.set_adapter(["b", "b"])
    assert model.active_adapters == ["default", "b"]
    assert all(layer.active_adapters == ["default", "b"] for _, layer in model.tn_layers())
    with pytest.raises(UsageError, match="'b' is active"):
        model.delete_adapter("b")
    model.delete_adapter("c")
    assert list(model.peft_config) == ["default", "b"]


def test_modules_to_save_with_several_active():
    model = tn_peft.get_model(_net(), tn_peft.AdapterConfig(target_modules=["0"], modules_to_save=["2"], **LORA))
    model.add_adapter("plain", tn_peft.AdapterConfig(target_modules=["0"], **LORA))
    model.add_adapter("head", tn_peft.AdapterConfig(target_modules=["0"], modules_to_save=["2"], **LORA))
    wrapper = model.base_model[2]
    model.set_adapter(["plain", "default"])  # one copy of "2" among the active adapters: that one, trainable
    assert wrapper.active_module() is wrapper.modules_to_save["default"]
    assert all(p.requires_grad for p in wrapper.modules_to_save["default"].parameters())
    assert not any(p.requires_grad for p in wrapper.modules_to_save["head"].parameters())
    model.set_adapter(["plain"])
    assert wrapper.active_module() is wrapper.original_module
    with pytest.raises(UsageError, match=r"adapters \['default', 'head'\] each have their own copy of '2'"):
        model.set_adapter(["default", "head"])
    assert model.active_adapters == ["plain"]


def test_save_and_load_with_two_active(tmp_path):
    model = _three(_net(), ["0", "2"])
    model.set_adapter(["default", "b"])
    x = torch.randn(3, 8)
    with torch.no_grad():
        both = model(x)
    model.save_pretrained(tmp_path)  # every adapter, active or not
    assert (tmp_path / "adapter_config.json").is_file()
    assert all((tmp_path / n / "adapter_model.safetensors").is_file() for n in ("b", "c"))
    loaded = tn_peft.from_pretrained(_net(), tmp_path)
    loaded.load_adapter(tmp_path, "b")
    loaded.set_adapter(["default", "b"])
    assert not any(p.requires_grad for p in loaded.parameters())  # loaded for inference: frozen even when active
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), both)


def test_set_adapter_inference_mode_freezes_or_unfreezes_the_activated_adapters(tmp_path):
    model = _three(_net(), ["0", "2"])
    model.set_adapter(["default", "b"], inference_mode=True)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.peft_config["default"].inference_mode and model.peft_config["b"].inference_mode
    model.set_adapter("c")  # c keeps its own (trainable) mode
    assert any(p.requires_grad for p in _adapter_params(model, "c").values())
    model.save_pretrained(tmp_path)
    loaded = tn_peft.from_pretrained(_net(), tmp_path)  # loaded for inference: frozen
    loaded.load_adapter(tmp_path, "c")
    loaded.set_adapter("c")
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.set_adapter("c", inference_mode=False)  # PEFT's way to train a loaded adapter further
    assert any(p.requires_grad for p in _adapter_params(loaded, "c").values())
    assert not any(p.requires_grad for p in _adapter_params(loaded, "default").values())


def test_set_adapter_inference_mode_leaves_a_shared_config_alone():
    config = tn_peft.AdapterConfig(target_modules=["0", "2"], **LORA)
    model = tn_peft.get_model(_net(), config)
    model.add_adapter("b", config)  # one config object for two adapters, as PEFT users often do
    model.set_adapter("b", inference_mode=True)
    assert model.peft_config["b"].inference_mode
    assert not config.inference_mode and not model.peft_config["default"].inference_mode
    model.set_adapter("default")
    assert any(p.requires_grad for p in _adapter_params(model, "default").values())
