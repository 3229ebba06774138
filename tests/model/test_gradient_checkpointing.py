"""Gradient checkpointing (transformers' ``gradient_checkpointing_enable``), reentrant and not, through both
front doors (tn_peft.get_model, peft's get_peft_model), with the
model's batched node evaluation on and off: the adapter gradients equal those without checkpointing.

Non-reentrant checkpointing reruns each block during backward and requires the rerun to repeat the same
operations on the same inputs; the batched node tensors of the first forward are what the rerun reads
(tn_peft.model.layers.TnLayer.node_tensors)."""

from __future__ import annotations

import copy

import pytest
import torch
from model_helpers import TARGETS, batch_for, qpeft_config, tiny_gpt2, tiny_llama

import tn_peft

BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


def _adapter_grads(kind: str, *, checkpointing: bool, reentrant: bool = False, batch_nodes: bool = True,
                   peft_front_door: bool = False) -> dict[str, torch.Tensor]:
    base = BUILDERS[kind]()
    if peft_front_door:
        from peft import get_peft_model

        from tn_peft.model.peft_method import TnPeftConfig

        model = get_peft_model(base, TnPeftConfig(**qpeft_config(TARGETS[kind]).to_dict()))
        model.base_model.batch_nodes = batch_nodes
    else:
        model = tn_peft.get_model(base, qpeft_config(TARGETS[kind]), batch_nodes=batch_nodes)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.1)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    batch = batch_for(base)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    return grads


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("batch_nodes", [True, False], ids=["batched", "per-layer"])
@pytest.mark.parametrize("door", ["get_model", "get_peft_model"])
def test_checkpointed_gradients_equal_plain_ones(kind, batch_nodes, door):
    if door == "get_peft_model":
        pytest.importorskip("peft")
    peft_door = door == "get_peft_model"
    plain = _adapter_grads(kind, checkpointing=False, batch_nodes=batch_nodes, peft_front_door=peft_door)
    assert any(g.abs().max() > 0 for g in plain.values())
    for reentrant in (False, True):
        checkpointed = _adapter_grads(kind, checkpointing=True, reentrant=reentrant, batch_nodes=batch_nodes,
                                      peft_front_door=peft_door)
        assert checkpointed.keys() == plain.keys()
        for name, grad in plain.items():
            torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6,
                                       msg=f"{name} reentrant={reentrant}")


def test_a_model_copies_after_a_training_forward():
    """The node tensors kept for a checkpointed rerun live beside the layers, so deepcopy never meets them."""
    model = tn_peft.get_model(tiny_llama(), qpeft_config(TARGETS["llama"]))
    model.train()
    batch = batch_for(model.base_model)
    loss = model(**batch, labels=batch["input_ids"]).loss
    twin = copy.deepcopy(model)
    loss.backward()
    assert twin is not model
