"""Mixed-adapter batches (``adapter_names=``): each row equals its adapter run alone, ``__base__`` rows equal
the base model, on plain modules and transformers models (forward and generate), and every refusal."""

from __future__ import annotations

import pytest
import torch
from model_helpers import mlp_with_adapters, perturb, tiny_gpt2, token_batch

import tn_peft
from tn_peft.errors import ShapeError, UsageError
from tn_peft.model.mixed import row_groups

GRAPHS = {"quantum_peft": {}, "lora": {"rank": 2}, "lotr": {"rank": 2}}


def _model(graph="quantum_peft", names=("default", "b", "c")):
    return mlp_with_adapters(graph, GRAPHS[graph], names, seeds=[len(name) for name in names])


def _alone(model, x, name):
    if name == "__base__":
        with model.disable_adapter():
            return model(x)
    model.set_adapter(name)
    return model(x)


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("batch_nodes", [True, False])
def test_each_row_equals_its_adapter_alone(graph, batch_nodes):
    model = _model(graph)
    model.batch_nodes = batch_nodes
    x = torch.randn(6, 3, 16)
    names = ["b", "__base__", "default", "c", "b", "__base__"]
    with torch.no_grad():
        mixed = model(x, adapter_names=names)
        for i, name in enumerate(names):
            torch.testing.assert_close(mixed[i:i + 1], _alone(model, x[i:i + 1], name), rtol=1e-5, atol=1e-6)
        assert torch.equal(model(x, adapter_names=names), mixed)  # the cached node groups give the same


def test_adapters_differ_so_the_test_can_fail():
    model = _model()
    x = torch.randn(1, 16)
    with torch.no_grad():
        outs = [_alone(model, x, n) for n in ("default", "b", "c", "__base__")]
    assert all(not torch.allclose(a, b) for i, a in enumerate(outs) for b in outs[i + 1:])


def test_transformers_forward_and_generate():
    base = tiny_gpt2()
    model = tn_peft.get_model(base, tn_peft.AdapterConfig(graph="quantum_peft", target_modules=["c_attn"]))
    model.add_adapter("b", tn_peft.AdapterConfig(graph="quantum_peft", target_modules=["c_attn"]))
    perturb(model, "default", seed=1, scale=0.5)
    perturb(model, "b", seed=2, scale=0.5)
    model.eval()
    batch = token_batch(batch=3)
    names = ["b", "default", "__base__"]
    with torch.no_grad():
        logits = model(**batch, adapter_names=names).logits
        for i, name in enumerate(names):
            one = {k: v[i:i + 1] for k, v in batch.items()}
            torch.testing.assert_close(logits[i:i + 1], _run(model, one, name), rtol=1e-4, atol=1e-5)
    out = model.generate(input_ids=batch["input_ids"], max_new_tokens=3, do_sample=False, adapter_names=names,
                         pad_token_id=0)
    for i, name in enumerate(names):
        def generate(row=i):
            return model.generate(input_ids=batch["input_ids"][row:row + 1], max_new_tokens=3, do_sample=False,
                                  pad_token_id=0)

        if name == "__base__":
            with model.disable_adapter():
                alone = generate()
        else:
            model.set_adapter(name)
            alone = generate()
        assert torch.equal(out[i:i + 1], alone)


def _run(model, batch, name):
    if name == "__base__":
        with model.disable_adapter():
            return model(**batch).logits
    model.set_adapter(name)
    return model(**batch).logits


def test_refusals_name_the_fault():
    model = _model()
    x = torch.randn(3, 16)
    with pytest.raises(UsageError, match="'zz', which is not a loaded adapter.*use loaded adapters"):
        model(x, adapter_names=["b", "zz", "c"])
    with pytest.raises(ShapeError, match="adapter_names names 2 rows, but the layer's input has shape \\(3, 16\\)"):
        model(x, adapter_names=["b", "c"])
    with pytest.raises(UsageError, match="one adapter name per row"):
        model(x, adapter_names="b")
    model.train()
    with pytest.raises(UsageError, match="for inference, and the model is in training mode"):
        model(x, adapter_names=["b", "c", "b"])
    model.eval()
    model.merge_adapter()
    with pytest.raises(UsageError, match="while adapters are merged"):
        model(x, adapter_names=["b", "c", "b"])


def test_row_groups_keep_first_seen_order():
    groups = row_groups(["c", "__base__", "a", "c"], ["a", "c"])
    assert groups.names == ["c", "a"] and groups.groups[0][1].tolist() == [0, 3] and groups.batch == 4
