"""Quantization-aware adapters in a model: training through the quantizers, packed checkpoints that load
back the exact trained dW, the refusals, and reading them without a base model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import tn_peft
from tn_peft.io import checkpoint as ckpt
from tn_peft.convert.tn_io import load_tn_adapter
from tn_peft.errors import CheckpointError

PREFIX = "base_model.model."


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 32))


def _config(angle_bits=2, diagonal_bits=4, **extra):
    return tn_peft.AdapterConfig(graph="quantum_peft", target_modules=["0", "2"],
                                 graph_args={"angle_bits": angle_bits, "diagonal_bits": diagonal_bits, **extra})


def _trained(config, steps=6):
    model = tn_peft.get_model(_net(), config)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.2)
    x = torch.randn(16, 32)
    for _ in range(steps):
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _delta(model, name="0"):
    return dict(model.tn_layers())[name].tn_adapters["default"].delta_weight().detach()


def test_training_moves_the_quantized_adapter():
    model = _trained(_config())
    node = dict(model.tn_layers())["0"].tn_adapters["default"].nodes["U"]
    assert not torch.equal(node.initial, node.quantized("initial"))   # full-precision latent, quantized use
    assert _delta(model).abs().max() > 0


@pytest.mark.parametrize("angle_bits,diagonal_bits", [(1, 1), (2, 0), (4, 8), (8, 3)])
def test_save_load_restores_the_exact_dw(tmp_path, angle_bits, diagonal_bits):
    model = _trained(_config(angle_bits, diagonal_bits))
    x = torch.randn(5, 32)
    want = model(x).detach()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / ckpt.WEIGHTS_NAME)
    u = f"{PREFIX}0.tn_U.weights"
    assert u not in tensors and tensors[ckpt.QUANTIZED_CODES].dtype == torch.uint8
    groups = {ckpt.QUANTIZED_CODES, ckpt.QUANTIZED_SCALES}
    assert not any(k.endswith((".codes", ".scale")) for k in set(tensors) - groups)   # two keys hold them all
    assert (f"{PREFIX}0.tn_s" in tensors) == (diagonal_bits == 0)
    loaded = tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    for name in ("0", "2"):
        assert torch.equal(_delta(loaded, name), _delta(model, name))
    assert torch.equal(loaded(x), want)


def test_packed_file_is_smaller_than_full_precision(tmp_path):
    _trained(_config(2, 2)).save_pretrained(tmp_path / "q")
    _trained(_config(0, 0)).save_pretrained(tmp_path / "f")
    payload = {k: sum(t.numel() * t.element_size() for t in load_file(tmp_path / k / ckpt.WEIGHTS_NAME).values())
               for k in ("q", "f")}
    assert payload["q"] < payload["f"] / 4


def test_bits_mismatch_is_named(tmp_path):
    _trained(_config(0, 0)).save_pretrained(tmp_path)
    config = ckpt.read_adapter_config(tmp_path)
    # the same full-precision tensors, but a graph that now says the angles are quantized
    for node in config["graph"]["nodes"]:
        if node["kind"] == "pauli":
            node["options"]["bits"] = 2
    ckpt.save_adapter_files(tmp_path, config, ckpt.read_adapter_tensors(tmp_path))
    with pytest.raises(CheckpointError, match=r"missing key '.*tn_quantized\.codes' \(the file holds the graph's "
                                              r"quantized tensors in full precision: saved without bits"):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    with pytest.raises(CheckpointError, match=r"missing key '.*tn_U\.initial\.codes' \(it holds the full-precision"):
        load_tn_adapter(tmp_path)


def test_quantized_checkpoint_into_a_full_precision_graph_is_named(tmp_path):
    _trained(_config(2, 0)).save_pretrained(tmp_path)
    config = ckpt.read_adapter_config(tmp_path)
    for node in config["graph"]["nodes"]:
        node["options"].pop("bits", None)
    ckpt.save_adapter_files(tmp_path, config, ckpt.read_adapter_tensors(tmp_path))
    with pytest.raises(CheckpointError, match=r"was saved quantized, and the graph does not quantize it"):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)


def test_corrupt_codes_are_named(tmp_path):
    _trained(_config(4, 4)).save_pretrained(tmp_path)
    path = tmp_path / ckpt.WEIGHTS_NAME
    tensors = load_file(path)
    key = ckpt.QUANTIZED_CODES
    tensors[key] = tensors[key][:-1].clone()
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"key '.*tn_quantized\.codes' has shape"):
        tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    with pytest.raises(CheckpointError, match=r"tn_quantized\.codes' holds .* quantized tensors need"):
        load_tn_adapter(tmp_path)


def test_read_without_base_model(tmp_path):
    model = _trained(_config(3, 5))
    model.save_pretrained(tmp_path)
    _, _, layers, extra = load_tn_adapter(tmp_path, dtype=torch.float32)
    assert not extra
    for name in ("0", "2"):
        assert torch.equal(layers[name].delta_weight().detach(), _delta(model, name))


def test_merge_uses_the_quantized_adapter():
    model = _trained(_config(2, 3))
    x = torch.randn(4, 32)
    want = model(x).detach()
    merged = model.merge_and_unload()
    assert torch.allclose(merged(x), want, atol=1e-5)


def _file_bytes(folder) -> int:
    return (folder / ckpt.WEIGHTS_NAME).stat().st_size


def test_the_packed_file_is_smaller_than_the_float_file_at_every_bit_width(tmp_path):
    """Two keys hold every quantized tensor, so the header of key names no longer outweighs the payload."""
    torch.manual_seed(0)
    _trained(_config(0, 0), steps=1).save_pretrained(tmp_path / "float")
    for bits in range(1, 9):
        _trained(_config(bits, bits), steps=1).save_pretrained(tmp_path / f"b{bits}")
        assert _file_bytes(tmp_path / f"b{bits}") < _file_bytes(tmp_path / "float"), bits


def test_files_saved_one_pair_per_key_still_load(tmp_path):
    """Folders saved before the two-key packing (``<key>.codes`` / ``<key>.scale`` per tensor) load the same dW."""
    from tn_peft.model import model_io

    model = _trained(_config(3, 2))
    model.save_pretrained(tmp_path)
    path = tmp_path / ckpt.WEIGHTS_NAME
    state = model_io.adapter_state_dict(model, "default")
    per_key = ckpt.unpack_quantized(path, load_file(path), model_io.adapter_quantizers(model, "default"),
                                    {k: tuple(v.shape) for k, v in state.items()})
    assert ckpt.QUANTIZED_CODES not in per_key and f"{PREFIX}0.tn_U.weights.codes" in per_key
    save_file(per_key, str(path))
    assert ckpt.is_packed_per_key(load_file(path))
    loaded = tn_peft.TnPeftModel.from_pretrained(_net(), tmp_path)
    _, _, layers, _ = load_tn_adapter(tmp_path, dtype=torch.float32)
    for name in ("0", "2"):
        assert torch.equal(_delta(loaded, name), _delta(model, name))
        assert torch.equal(layers[name].delta_weight().detach(), _delta(model, name))


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_the_peft_door_saves_packed_codes_and_loads_the_exact_adapter(tmp_path, bits):
    import peft

    from tn_peft import TnPeftConfig

    torch.manual_seed(0)
    config = TnPeftConfig(graph="quantum_peft", target_modules=["0", "2"],
                          graph_args={"angle_bits": bits, "diagonal_bits": bits})
    model = peft.get_peft_model(_net(), config)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.2)
    x = torch.randn(16, 32)
    for _ in range(4):
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(tmp_path / "q")
    peft.get_peft_model(_net(), TnPeftConfig(graph="quantum_peft", target_modules=["0", "2"])).save_pretrained(
        tmp_path / "f")
    tensors = load_file(tmp_path / "q" / ckpt.WEIGHTS_NAME)
    assert {ckpt.QUANTIZED_CODES, ckpt.QUANTIZED_SCALES} <= set(tensors)
    assert _file_bytes(tmp_path / "q") < _file_bytes(tmp_path / "f")
    loaded = peft.PeftModel.from_pretrained(_net(), tmp_path / "q")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
