"""The done-means matrix on real MiniLM (query, value), tiny GPT-2 (Conv1D) and tiny Llama (GQA):
identity at init, save -> fresh-process load, merge/unmerge, two adapters + disabling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from model_helpers import TARGETS, batch_for, outputs, perturb, qpeft_config

import tn_peft

HERE = Path(__file__).parent


def _weights(model):
    return {n: layer.base_layer.weight.detach().clone() for n, layer in model.tn_layers()}


def test_identity_at_init(kind, base):
    batch = batch_for(base)
    expected = outputs(base, batch)
    model = tn_peft.get_model(base, qpeft_config(TARGETS[kind]))
    assert len(model.targeted_module_names) > 0
    assert torch.equal(outputs(model, batch), expected)


def test_save_then_load_in_fresh_process(kind, base, tmp_path):
    base_dir = tmp_path / "base"
    if kind != "minilm":
        base.save_pretrained(base_dir)
    batch = batch_for(base, seed=3)
    model = tn_peft.get_model(base, qpeft_config(TARGETS[kind]))
    perturb(model)
    expected = outputs(model, batch)
    model.save_pretrained(tmp_path / "adapter")
    torch.save(batch, tmp_path / "batch.pt")
    out = tmp_path / "out.pt"
    run = subprocess.run([sys.executable, str(HERE / "load_worker.py"), kind, str(base_dir),
                          str(tmp_path / "adapter"), str(tmp_path / "batch.pt"), str(out),
                          str(torch.get_num_threads())],  # bit-equal outputs need the same thread count
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert torch.equal(torch.load(out), expected)


def test_merge_and_unmerge(kind, base):
    batch = batch_for(base, seed=4)
    model = tn_peft.get_model(base, qpeft_config(TARGETS[kind]))
    perturb(model)
    before = _weights(model)
    unmerged = outputs(model, batch)
    model.merge_adapter()
    assert all(layer.merged for _, layer in model.tn_layers())
    torch.testing.assert_close(outputs(model, batch), unmerged, atol=1e-5, rtol=0)
    model.unmerge_adapter()
    for name, weight in _weights(model).items():
        torch.testing.assert_close(weight, before[name], atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs(model, batch), unmerged, atol=1e-5, rtol=0)


def test_merge_and_unload_gives_plain_model(kind, base):
    batch = batch_for(base, seed=5)
    model = tn_peft.get_model(base, qpeft_config(TARGETS[kind]))
    perturb(model)
    adapted = outputs(model, batch)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, tn_peft.model.layers.TnLayer) for m in plain.modules())
    torch.testing.assert_close(outputs(plain, batch), adapted, atol=1e-5, rtol=0)


def test_two_adapters_switch_and_disable(kind, base):
    batch = batch_for(base, seed=6)
    reference = outputs(base, batch)
    model = tn_peft.get_model(base, qpeft_config(TARGETS[kind]))
    perturb(model, "default", seed=1)
    first = outputs(model, batch)
    model.add_adapter("other", qpeft_config(TARGETS[kind]))
    perturb(model, "other", seed=2)
    assert torch.equal(outputs(model, batch), first), "adding an adapter must not change the active one"
    model.set_adapter("other")
    second = outputs(model, batch)
    assert (second - first).abs().max() > 1e-3
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".other." in n for n in trainable)
    with model.disable_adapter():
        torch.testing.assert_close(outputs(model, batch), reference, atol=1e-6, rtol=0)
    assert torch.equal(outputs(model, batch), second)
    model.set_adapter("default")
    assert torch.equal(outputs(model, batch), first)
    # merged + disabled: disabling unmerges, so the base comes back
    model.merge_adapter()
    with model.disable_adapter():
        torch.testing.assert_close(outputs(model, batch), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs(model, batch), first, atol=1e-5, rtol=0)
