"""Adapter (tn_peft/adapters.py): a Network built for one layer shape."""

import copy
import io

import pytest
import torch

import tn_peft
from tn_peft.errors import ShapeError


def test_adapter_pickles_after_planning():
    adapter = tn_peft.load_graph("quantum_peft").build(64, 32)
    x = torch.randn(3, 64)
    adapter.node("s").values.data.normal_()  # a non-zero dW
    expected = adapter(x)
    buffer = io.BytesIO()
    torch.save(adapter, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(again(x), expected)
    torch.testing.assert_close(copy.deepcopy(adapter)(x), expected)


def test_forward_rejects_wrong_width():
    adapter = tn_peft.load_graph("lora").build(16, 8)
    with pytest.raises(ShapeError, match="last dimension 16"):
        adapter(torch.randn(2, 15))
