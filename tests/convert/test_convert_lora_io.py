"""Reading PEFT LoRA checkpoints made by the real peft library, and refusing what does not convert."""

import json
import shutil

import pytest
import torch
from convert_helpers import make_lora

from tn_peft.convert.lora_io import (
    lora_config,
    lora_tensors,
    pattern_key,
    read_lora,
    write_lora,
)
from tn_peft.errors import CheckpointError


def peft_delta(model, name):
    module = model.base_model.model.get_submodule(name)
    return module.get_delta_weight("default").double()


def test_reads_patterns_and_rslora_like_peft(llama_base, tmp_path):
    model = make_lora(llama_base, tmp_path / "lora", r=4, lora_alpha=8, use_rslora=True,
                      target_modules=["q_proj", "k_proj", "v_proj", "down_proj"],
                      rank_pattern={"layers.1.self_attn.k_proj": 2, "down_proj": 6},
                      alpha_pattern={"v_proj": 3})
    ckpt = read_lora(tmp_path / "lora")
    assert len(ckpt.layers) == 8 and ckpt.use_rslora
    assert ckpt.layers["model.layers.1.self_attn.k_proj"].rank == 2
    assert ckpt.layers["model.layers.0.self_attn.k_proj"].out_features == 32  # GQA: 2 kv heads of 16
    assert ckpt.layers["model.layers.0.self_attn.v_proj"].alpha == 3
    for name, layer in ckpt.layers.items():
        module = model.base_model.model.get_submodule(name)
        dw = module.get_delta_weight("default").double()
        assert torch.allclose(layer.delta_weight(), dw, atol=1e-6), name


def test_conv1d_factors_are_out_by_in(gpt2_base, tmp_path):
    model = make_lora(gpt2_base, tmp_path / "lora", r=3, lora_alpha=6, target_modules=["c_attn", "c_proj"],
                      fan_in_fan_out=True)
    ckpt = read_lora(tmp_path / "lora")
    assert ckpt.fan_in_fan_out
    layer = ckpt.layers["transformer.h.0.attn.c_attn"]
    assert (layer.out_features, layer.in_features) == (192, 64)
    # peft's delta weight is laid out like Conv1D's weight (in, out): the transpose of B A
    assert torch.allclose(layer.delta_weight().T, peft_delta(model, "transformer.h.0.attn.c_attn"), atol=1e-6)


def test_modules_to_save_are_copied_through(minilm_base, tmp_path):
    make_lora(minilm_base, tmp_path / "lora", r=2, target_modules=["query"], modules_to_save=["pooler.dense"])
    ckpt = read_lora(tmp_path / "lora")
    assert set(ckpt.modules_to_save) == {"pooler.dense.weight", "pooler.dense.bias"}
    assert len(ckpt.layers) == 6


def test_pattern_key_follows_peft():
    from peft.utils.other import get_pattern_key

    patterns = {"layers.1.q": 1, "q": 2, r"a\.b": 3}
    for name in ("model.layers.1.q", "model.layers.11.q", "x.q", "a.b", "z.a.b", "xa.b", "none"):
        ours = pattern_key(patterns, name)
        assert (ours or name) == get_pattern_key(list(patterns), name)


@pytest.fixture
def lora_dir(gpt2_base, tmp_path_factory):
    directory = tmp_path_factory.mktemp("lora")
    make_lora(gpt2_base, directory, r=2, target_modules=["c_attn"], fan_in_fan_out=True)
    return directory


@pytest.mark.parametrize("change, key", [
    ({"use_dora": True}, "use_dora"),
    ({"peft_type": "IA3"}, "peft_type"),
    ({"bias": "all"}, "bias"),
    ({"lora_bias": True}, "lora_bias"),
    ({"init_lora_weights": "pissa"}, "init_lora_weights"),
    ({"rank_pattern": {"h.0.attn.c_attn": 5}}, "rank_pattern"),
])
def test_refused_settings_name_the_file_and_key(lora_dir, tmp_path, change, key):
    bad = tmp_path / "bad"
    shutil.copytree(lora_dir, bad)
    config = json.loads((bad / "adapter_config.json").read_text())
    config.update(change)
    (bad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=key) as info:
        read_lora(bad)
    assert "adapter_config.json" in str(info.value)


def test_missing_and_corrupt_files(lora_dir, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        read_lora(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(lora_dir, bad)
    weights = bad / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])  # truncated
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        read_lora(bad)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        read_lora(bad)
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        read_lora(bad)
    (bad / "adapter_config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="adapter_config.json: not valid JSON"):
        read_lora(bad)
    (bad / "adapter_config.json").unlink()
    with pytest.raises(CheckpointError, match="adapter_config.json: missing"):
        read_lora(bad)


def test_mismatched_factors_name_the_key(lora_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(lora_dir, bad)
    tensors = load_file(bad / "adapter_model.safetensors")
    key = next(k for k in tensors if k.endswith("lora_B.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], 3)
    save_file(tensors, bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="rank 2 but .*lora_B"):
        read_lora(bad)
    del tensors[key]
    save_file(tensors, bad / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="no matching lora_B"):
        read_lora(bad)


def test_written_lora_loads_in_peft(gpt2_base, tmp_path):
    import peft

    factors = {"transformer.h.0.attn.c_attn": (torch.randn(192, 3), torch.randn(3, 64)),
               "transformer.h.1.attn.c_attn": (torch.randn(192, 2), torch.randn(2, 64))}
    config = lora_config({"transformer.h.0.attn.c_attn": (3, 3), "transformer.h.1.attn.c_attn": (2, 2)},
                         fan_in_fan_out=True)
    write_lora(tmp_path / "out", config, lora_tensors(factors))
    import copy
    model = peft.PeftModel.from_pretrained(copy.deepcopy(gpt2_base), str(tmp_path / "out"))
    for name, (B, A) in factors.items():
        dw = model.base_model.model.get_submodule(name).get_delta_weight("default")
        assert torch.allclose(dw.T, B @ A, atol=1e-5)
    assert read_lora(tmp_path / "out").layers["transformer.h.1.attn.c_attn"].rank == 2
