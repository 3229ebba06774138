"""Adapter banks (:mod:`tn_peft.model.bank`): many folders in one call (a list or a glob), all or none with a corrupt
folder among good ones, mixed batches of any subset equal to each adapter loaded alone, in forward and in
``generate`` on a tiny causal LM built from a transformers config."""

from __future__ import annotations

import pytest
import torch
from model_helpers import perturb, tiny_llama, token_batch
from torch import nn

import tn_peft
from tn_peft.errors import CheckpointError, UsageError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))


def _save(root, count, make=_net, targets=("0", "2"), graph="quantum_peft"):
    """``count`` adapter folders ``root/f<i>`` with their own weights."""
    model = tn_peft.get_model(make(), tn_peft.AdapterConfig(graph=graph, target_modules=list(targets)))
    folders = []
    for i in range(count):
        perturb(model, "default", seed=100 + i, scale=0.3)
        folders.append(root / f"f{i}")
        model.save_pretrained(folders[-1])
    return folders


def _served(folders, make=_net, targets=("0", "2")):
    model = tn_peft.get_model(make(), tn_peft.AdapterConfig(graph="quantum_peft", target_modules=list(targets)), "own")
    perturb(model, "own", seed=7, scale=0.3)
    return model.eval()


def _alone(make, folder, x):
    model = tn_peft.from_pretrained(make(), folder)
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("graph", ["quantum_peft", "tt"])
def test_a_glob_loads_a_bank_and_mixed_rows_equal_each_adapter_alone(tmp_path, graph):
    folders = _save(tmp_path, 4, graph=graph)
    model = _served(folders)
    names = model.load_adapters(str(tmp_path / "f*"))
    assert names == ["f0", "f1", "f2", "f3"] and len(model.tn_banks) == 1
    assert sum(1 for _ in model.modules()) < 40            # no module per member
    x = torch.randn(6, 16)
    rows = ["f2", "own", "__base__", "f0", "f3", "f2"]
    with torch.no_grad():
        mixed = model(x, adapter_names=rows)
        with model.disable_adapter():
            base = model(x)
        own = model(x)
    for i, name in enumerate(rows):
        if name in ("__base__", "own"):
            want = base[i] if name == "__base__" else own[i]
        else:
            want = _alone(_net, folders[int(name[1:])], x)[i]
        torch.testing.assert_close(mixed[i], want, rtol=1e-5, atol=1e-6)
    memory = model.adapter_memory()
    assert memory["adapters"] == 5 and memory["cached_adapters"] == 4
    bank = next(iter(model.tn_banks.values())).memory()
    assert bank["members"] == 4 and bank["bytes_per_member"] < 4_000   # a few hundred bytes here


def test_a_list_with_names_and_the_refusals(tmp_path):
    folders = _save(tmp_path, 2)
    model = _served(folders)
    assert model.load_adapters(folders, names=["x", "y"]) == ["x", "y"]
    with pytest.raises(UsageError, match="already loaded"):
        model.load_adapters(folders[:1], names=["x"])
    with pytest.raises(UsageError, match="matches no folder"):
        model.load_adapters(str(tmp_path / "nothing*"))
    with pytest.raises(UsageError, match="2 names for 1 folders"):
        model.load_adapters(folders[:1], names=["p", "q"])
    with pytest.raises(UsageError, match="serve inference only"):
        model(torch.randn(2, 16), adapter_names=["x", "y"])    # gradients on
    with pytest.raises(UsageError, match="no adapter named 'x'"):
        model.set_adapter("x")


@pytest.mark.parametrize("fault", ["weights", "config", "missing"])
def test_a_corrupt_folder_among_good_ones_loads_none(tmp_path, fault):
    folders = _save(tmp_path, 3)
    bad = folders[1]
    if fault == "weights":
        (bad / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    elif fault == "config":
        (bad / "adapter_config.json").write_text("{ broken")
    else:
        (bad / "adapter_model.safetensors").unlink()
    model = _served(folders)
    x = torch.randn(2, 16)
    with torch.no_grad():
        before = model(x)
    with pytest.raises(CheckpointError, match=f"folder {bad} \\(adapter 'f1', 2 of 3\\).*nothing was loaded") as err:
        model.load_adapters(folders)
    assert str(bad) in str(err.value)
    assert len(model.tn_banks) == 0 and not model._bank_of          # all or none: none
    with pytest.raises(UsageError, match="not a loaded adapter"):
        model(x, adapter_names=["f0", "f2"])
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_a_folder_for_another_model_is_named(tmp_path):
    good = _save(tmp_path / "good", 1)
    wide = _save(tmp_path / "wide", 1, make=lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)))
    model = _served(good)
    with pytest.raises(CheckpointError, match=f"folder {wide[0]} .*target module '0' was"):
        model.load_adapters([good[0], wide[0]], names=["g", "w"])
    assert not model._bank_of


def test_generate_with_mixed_adapter_names_on_a_tiny_causal_lm(tmp_path):
    targets = ("q_proj", "v_proj")
    folders = _save(tmp_path, 3, make=tiny_llama, targets=targets)
    model = _served(folders, make=tiny_llama, targets=targets)
    model.load_adapters(folders)
    prompt = token_batch(batch=5, length=6)["input_ids"]
    rows = ["f1", "own", "__base__", "f0", "f1"]
    options = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    out = model.generate(input_ids=prompt, adapter_names=rows, **options)
    for i, name in enumerate(rows):
        one = prompt[i:i + 1]
        if name == "__base__":
            with model.disable_adapter():
                want = model.generate(input_ids=one, **options)
        elif name == "own":
            want = model.generate(input_ids=one, **options)
        else:
            alone = tn_peft.from_pretrained(tiny_llama(), folders[int(name[1:])])
            want = alone.generate(input_ids=one, **options)
        assert torch.equal(out[i:i + 1], want), name
    with torch.no_grad():   # the adapters differ, so the test can fail
        logits = model(input_ids=prompt[:3], adapter_names=["f0", "f1", "f2"]).logits
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[1], logits[2])
