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


def test_node_hooks_still_fire():
    """node_tensors skips nn.Module.__call__ only for nodes without hooks (FSDP-style pre-hooks must run)."""
    adapter = tn_peft.load_graph("lora").build(16, 8)
    calls = []
    handle = adapter.node("A").register_forward_pre_hook(lambda module, args: calls.append(module.name))
    adapter(torch.randn(3, 16))
    assert calls == ["A"]
    handle.remove()
    adapter(torch.randn(3, 16))
    assert calls == ["A"]
    with torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: calls.append("global")):
        adapter.node_tensors()
    assert calls.count("global") == 2
