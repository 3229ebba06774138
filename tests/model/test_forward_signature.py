"""``model.forward`` shows the base model's forward signature, computed once per instance."""

import inspect

import torch
from torch import nn

from tn_peft import AdapterConfig
from tn_peft.model import get_model


class _Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, input_ids, labels=None):
        return self.proj(input_ids)


def test_forward_signature_is_the_base_models_and_cached():
    model = get_model(_Named(), AdapterConfig(target_modules=["proj"]))
    assert list(inspect.signature(model.forward).parameters) == ["input_ids", "labels"]
    cached = model.__dict__["_forward_signature"]
    assert list(inspect.signature(model.forward).parameters) == ["input_ids", "labels"]
    assert model.__dict__["_forward_signature"] is cached  # not recomputed
    assert model.forward(torch.ones(2, 4)).shape == (2, 4)


def test_forward_signature_follows_a_new_base_model():
    model = get_model(_Named(), AdapterConfig(target_modules=["proj"]))
    inspect.signature(model.forward)
    model.base_model = nn.Linear(4, 4)
    assert list(inspect.signature(model.forward).parameters) == ["input"]
