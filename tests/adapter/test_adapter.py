"""Adapter (tn_peft/adapter/adapter.py): a Network built for one layer shape."""

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


@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")  # no input needs a gradient here
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
    # a backward hook needs __call__ too (it wraps the node's output)
    handle = adapter.node("B").register_full_backward_pre_hook(lambda module, gout: calls.append("backward"))
    adapter(torch.randn(3, 16)).sum().backward()
    handle.remove()
    assert calls.count("backward") == 1


def test_delta_theta0_dense_is_cached_and_follows_the_buffers():
    """QuanTA: theta_0's dense dW is contracted once, recomputed when its buffers change (load, move)."""
    adapter = tn_peft.load_graph("quanta", axes=3).build(8, 8)
    assert torch.count_nonzero(adapter.delta_weight()) == 0  # theta = theta_0 at init
    first = adapter.initial_dense()
    assert adapter.initial_dense() is first  # cached
    name = adapter.operands[0]
    with torch.no_grad():
        adapter.node(name).get_parameter(next(n for n, _ in adapter.node(name).named_parameters())).add_(0.1)
    changed = adapter.delta_weight()
    reference = adapter.scale * (adapter.contract_dense(adapter.node_tensors())
                                 - adapter.contract_dense(adapter.initial_tensors()))
    torch.testing.assert_close(changed, reference)
    # loading theta_0 (in place, as load_state_dict does) invalidates the cache
    state = {k: v.clone() for k, v in adapter.state_dict().items()}
    state[f"initial_{name}"] = adapter.node(name)().detach().clone()
    adapter.load_state_dict(state)
    assert adapter.initial_dense() is not first
    torch.testing.assert_close(adapter.initial_dense(), adapter.contract_dense(adapter.initial_tensors()))
    # moving the adapter (new buffers) too
    adapter.double()
    assert adapter.initial_dense().dtype == torch.float64
    torch.testing.assert_close(adapter.delta_weight(), adapter.scale * (
        adapter.contract_dense(adapter.node_tensors()) - adapter.contract_dense(adapter.initial_tensors())))
