"""Wrapped layers (Linear, GPT-2 Conv1D, Conv2d), target matching, config options, shared nodes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import SVD_DENSE, batch_for, outputs, perturb, tiny_gpt2
from torch import nn

import tn_peft
from tn_peft.model.layers import ModulesToSave, TnConv1D, TnConv2d, TnLinear

LORA = {"graph": "lora", "graph_args": {"rank": 2}}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, kernel_size=3, padding=1)
        self.grouped = nn.Conv2d(6, 4, kernel_size=(1, 3), groups=2, padding=(0, 1))
        self.block = nn.ModuleDict({"fc": nn.Linear(4 * 5 * 5, 16), "emb": nn.Embedding(10, 4)})
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.grouped(F.relu(self.conv(x)))
        return self.head(F.relu(self.block["fc"](x.flatten(1))))


def _nonzero(model, seed=0):
    perturb(model, seed=seed, scale=0.2)


def test_linear_forward_is_base_plus_x_dw():
    base = nn.Linear(12, 8)
    model = tn_peft.get_model(nn.Sequential(base), tn_peft.AdapterConfig(target_modules=["0"], **LORA))
    _nonzero(model)
    layer = model.base_model[0]
    assert isinstance(layer, TnLinear)
    x = torch.randn(5, 3, 12)
    dw = layer.tn_adapters["default"].delta_weight()
    torch.testing.assert_close(model(x), base(x) + x @ dw.T)


def test_conv1d_forward_and_merge_use_transposed_storage():
    gpt2 = tiny_gpt2()
    batch = batch_for(gpt2)
    model = tn_peft.get_model(gpt2, tn_peft.AdapterConfig(target_modules=["c_attn"], **LORA))
    layer = model.base_model.transformer.h[0].attn.c_attn
    assert isinstance(layer, TnConv1D) and (layer.out_features, layer.in_features) == (192, 64)
    _nonzero(model)
    x = torch.randn(2, 64)
    dw = layer.tn_adapters["default"].delta_weight()
    torch.testing.assert_close(layer(x), layer.base_layer(x) + x @ dw.T)
    adapted = outputs(model, batch)
    model.merge_adapter()
    torch.testing.assert_close(outputs(model, batch), adapted, atol=1e-5, rtol=0)


def test_conv2d_is_adapted_as_a_matrix_over_in_channels_and_kernel():
    net = Net()
    x = torch.randn(2, 3, 5, 5)
    model = tn_peft.get_model(net, tn_peft.AdapterConfig(target_modules=["conv", "grouped"], **LORA))
    conv, grouped = model.base_model.conv, model.base_model.grouped
    assert isinstance(conv, TnConv2d) and (conv.out_features, conv.in_features) == (6, 27)
    assert (grouped.out_features, grouped.in_features) == (4, 3 * 1 * 3)
    _nonzero(model)
    dw = conv.tn_adapters["default"].delta_weight().reshape(conv.base_layer.weight.shape)
    expected = F.conv2d(x, conv.base_layer.weight + dw, conv.base_layer.bias, padding=1)
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)
    adapted = model(x)
    model.merge_adapter()
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)


def test_unsupported_layer_type_is_a_clear_error():
    with pytest.raises(tn_peft.SpecError, match=r"module 'block.emb' is a torch.nn.modules.sparse.Embedding"):
        tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=["emb"], **LORA))


def test_no_match_is_a_clear_error_listing_names():
    with pytest.raises(tn_peft.SpecError, match=r"matched no module.*block.fc"):
        tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=["nothing"], **LORA))


def test_matching_rules_are_pefts():
    # list: exact name or dotted suffix; string: regex over the whole name
    assert tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=["fc"], **LORA)).targeted_module_names == ["block.fc"]
    assert tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=["block.fc", "head"], **LORA)
                             ).targeted_module_names == ["block.fc", "head"]
    with pytest.raises(tn_peft.SpecError):  # a regex must match the whole name
        tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules="fc", **LORA))
    assert tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=r".*\.fc|head", **LORA)
                             ).targeted_module_names == ["block.fc", "head"]
    assert tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=r".*(fc|head)", exclude_modules=["head"],
                                                          **LORA)).targeted_module_names == ["block.fc"]


def test_all_linear_skips_the_output_head():
    model = tn_peft.get_model(tiny_gpt2(), tn_peft.AdapterConfig(target_modules="all-linear", **LORA))
    names = model.targeted_module_names
    assert "lm_head" not in names
    assert {n.rsplit(".", 1)[-1] for n in names} == {"c_attn", "c_proj", "c_fc"}
    assert len(names) == 2 * 4


def test_alpha_overrides_the_graph_parameter_and_errors_without_one():
    model = tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=["fc"], alpha=32, **LORA))
    assert model.base_model.block.fc.tn_adapters["default"].scale == pytest.approx(32 / 2)
    no_alpha = {**SVD_DENSE, "params": {"rank": 4}, "scale": 1}
    with pytest.raises(tn_peft.SpecError, match="has no 'alpha' parameter"):
        tn_peft.get_model(Net(), tn_peft.AdapterConfig(graph=no_alpha, target_modules=["fc"], alpha=4))


def test_dropout_applies_to_the_adapter_input_only():
    model = tn_peft.get_model(nn.Sequential(nn.Linear(16, 16)),
                              tn_peft.AdapterConfig(target_modules=["0"], dropout=0.5, **LORA))
    _nonzero(model)
    x = torch.randn(4, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    with model.disable_adapter():
        model.train()
        assert torch.equal(model(x), model(x))  # the base path has no dropout


def test_only_adapter_parameters_train_and_counts_print(capsys):
    model = tn_peft.get_model(Net(), tn_peft.AdapterConfig(target_modules=["fc"], **LORA))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"base_model.block.fc.tn_adapters.default.nodes.B.weight",
                         "base_model.block.fc.tn_adapters.default.nodes.A.weight"}
    model.print_trainable_parameters()
    n, total = model.get_nb_trainable_parameters()
    assert n == 2 * (100 + 16)
    assert capsys.readouterr().out.strip() == (f"trainable params: {n:,d} || all params: {total:,d} || "
                                               f"trainable%: {100 * n / total:.4f}")


def test_shared_nodes_are_created_once_per_shape_and_saved_once(tmp_path):
    base = nn.Sequential(*[nn.Linear(16, 16) for _ in range(3)], nn.Linear(16, 8))
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(graph="lotr", graph_args={"rank": 2},
                                                          target_modules=r"\d"))
    shapes = model.tn_shared["default"]
    assert set(shapes) == {"16x16", "8x16"}
    u = shapes["16x16"]["U"]
    assert all(model.base_model[i].tn_adapters["default"].node("U") is u for i in range(3))
    # U (16x2) + V (16x2) per shape, G (2x2) per layer
    assert model.get_nb_trainable_parameters()[0] == 2 * (16 * 2) + (8 * 2 + 16 * 2) + 4 * 4
    perturb(model)
    keys = set(model.adapter_state_dict())
    assert "base_model.model.tn_shared.16x16.U" in keys and "base_model.model.tn_shared.8x16.V" in keys
    assert not any(k.endswith("U") and "tn_shared" not in k for k in keys)
    x = torch.randn(3, 16)
    expected = model(x)
    model.save_pretrained(tmp_path)
    fresh = nn.Sequential(*[nn.Linear(16, 16) for _ in range(3)], nn.Linear(16, 8))
    fresh.load_state_dict(model.unload().state_dict())
    loaded = tn_peft.TnPeftModel.from_pretrained(fresh, tmp_path)
    torch.testing.assert_close(loaded(x), expected)


def test_delta_networks_save_theta0(tmp_path):
    base = nn.Sequential(nn.Linear(8, 8))
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(graph="quanta", graph_args={"axes": 3},
                                                          target_modules=["0"]))
    x = torch.randn(2, 8)
    assert torch.equal(model(x), base[0].base_layer(x))
    perturb(model)
    keys = set(model.adapter_state_dict())
    assert "base_model.model.0.tn_initial_g1_2" in keys and "base_model.model.0.tn_g1_2" in keys
    expected = model(x)
    model.save_pretrained(tmp_path)
    plain = model.unload()
    torch.testing.assert_close(tn_peft.TnPeftModel.from_pretrained(plain, tmp_path)(x), expected)


def test_modules_to_save_train_a_copy_and_save_it(tmp_path):
    net = Net()
    original = net.head.weight.detach().clone()
    model = tn_peft.get_model(net, tn_peft.AdapterConfig(target_modules=["fc"], modules_to_save=["head"], **LORA))
    assert isinstance(model.base_model.head, ModulesToSave)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "base_model.head.modules_to_save.default.weight" in trainable
    assert "base_model.head.original_module.weight" not in trainable
    with torch.no_grad():
        model.base_model.head.modules_to_save["default"].weight.add_(1.0)
    x = torch.randn(2, 3, 5, 5)
    expected = model(x)
    with model.disable_adapter():
        assert torch.equal(model.base_model.head.weight, original)
    state = model.adapter_state_dict()
    assert "base_model.model.head.weight" in state and "base_model.model.head.bias" in state
    model.save_pretrained(tmp_path)
    plain = model.unload()
    assert torch.equal(plain.head.weight, original)
    torch.testing.assert_close(tn_peft.TnPeftModel.from_pretrained(plain, tmp_path)(x), expected)


def test_delete_adapter_and_unload_restore_the_model():
    net = Net()
    x = torch.randn(2, 3, 5, 5)
    expected = net(x)
    model = tn_peft.get_model(net, tn_peft.AdapterConfig(target_modules=["fc", "conv"], **LORA))
    model.add_adapter("b", tn_peft.AdapterConfig(target_modules=["head"], **LORA))
    assert model.targeted_module_names == ["conv", "block.fc", "head"]
    with pytest.raises(tn_peft.UsageError, match="is active"):
        model.delete_adapter("default")
    model.delete_adapter("b")
    assert "b" not in model.base_model.head.tn_adapters
    perturb(model)
    model.merge_adapter()
    plain = model.unload()
    assert type(plain.block.fc) is nn.Linear and type(plain.conv) is nn.Conv2d
    torch.testing.assert_close(plain(x), expected, atol=1e-6, rtol=0)


def test_errors_building_leave_the_model_untouched():
    net = Net()
    with pytest.raises(tn_peft.SpecError, match="module 'head'"):
        # rank 8 > out=3: a Stiefel-free dense graph still builds, so use a factor split that cannot work
        tn_peft.get_model(net, tn_peft.AdapterConfig(graph="tt", graph_args={"cores": 3},
                                                     target_modules=["fc", "head"]))
    assert type(net.block.fc) is nn.Linear


def test_batched_node_evaluation_matches_per_layer_evaluation():
    from model_helpers import TARGETS, qpeft_config

    gpt2 = tiny_gpt2()
    batch = batch_for(gpt2, seed=9)
    batched = tn_peft.get_model(gpt2, qpeft_config(TARGETS["gpt2"]))
    perturb(batched)
    expected = batched(**batch, labels=batch["input_ids"])
    expected.loss.backward()
    grads = {n: p.grad.clone() for n, p in batched.named_parameters() if p.requires_grad}
    batched.zero_grad()
    batched.batch_nodes = False
    plain = batched(**batch, labels=batch["input_ids"])
    plain.loss.backward()
    torch.testing.assert_close(plain.logits, expected.logits, atol=1e-6, rtol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(dict(batched.named_parameters())[name].grad, grad, atol=1e-6, rtol=1e-5)


def test_a_deep_copy_evaluates_its_own_nodes():
    """The batched node cache planned on the original must not leak into a copy (its nodes are new objects)."""
    import copy

    from model_helpers import TARGETS, qpeft_config

    gpt2 = tiny_gpt2()
    batch = batch_for(gpt2, seed=3)
    model = tn_peft.get_model(gpt2, qpeft_config(TARGETS["gpt2"]))
    perturb(model)
    expected = model(**batch).logits  # plans the batched groups
    twin = copy.deepcopy(model)
    torch.testing.assert_close(twin(**batch).logits, expected)
    with torch.no_grad():
        for p in twin.parameters():
            if p.requires_grad:
                p.add_(0.01)
    assert not torch.allclose(twin(**batch).logits, expected)  # the copy runs its own (changed) nodes


def test_generate_uses_the_adapter():
    from model_helpers import TARGETS, qpeft_config

    gpt2 = tiny_gpt2()
    ids = batch_for(gpt2, seed=2)["input_ids"][:1]
    model = tn_peft.get_model(gpt2, qpeft_config(TARGETS["gpt2"]))
    perturb(model, scale=2.0)
    kwargs = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    adapted = model.generate(input_ids=ids, **kwargs)
    model.batch_nodes = False
    assert torch.equal(model.generate(input_ids=ids, **kwargs), adapted)
    merged = model.merge_and_unload()
    assert torch.equal(merged.generate(input_ids=ids, **kwargs), adapted)
