"""The inference node cache (:mod:`tn_peft.model.serving`, :mod:`tn_peft.adapter.cache`): a cached forward equals an
uncached one bit for bit, and every event that changes an adapter (a parameter update, a load, set_adapter, merge and
unmerge, a dtype move) gives fresh results; the LRU bound and what the cache reports."""

from __future__ import annotations

import pytest
import torch
from model_helpers import mlp_with_adapters, perturb

from tn_peft.errors import UsageError

GRAPHS = {"quantum_peft": {}, "lora": {"rank": 2}, "tt": {}}


def _model(graph="quantum_peft", names=("a", "b")):
    return mlp_with_adapters(graph, GRAPHS[graph], names, seeds=range(1, len(names) + 1), scale=0.3)


def _fresh(model, x, **kwargs):
    """The same forward computed with nothing kept (max_adapters=0: every node evaluated afresh, same code path)."""
    keep = model.node_cache_info()["max_adapters"]
    model.configure_node_cache(0)
    try:
        with torch.no_grad():
            return model(x, **kwargs)
    finally:
        model.configure_node_cache(keep)


def _planned(model, x):
    """The active adapter's output through the training path (gradients on: no cache at all)."""
    with torch.enable_grad():
        return model(x).detach()


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_cached_forward_equals_uncached_bit_for_bit(graph):
    model = _model(graph)
    x = torch.randn(5, 3, 16)
    names = ["b", "a", "__base__", "b", "a"]
    with torch.no_grad():
        first, mixed = model(x), model(x, adapter_names=names)
        hits = model.node_cache_info()["hits"]
        again, mixed_again = model(x), model(x, adapter_names=names)
    assert model.node_cache_info()["hits"] > hits   # the second pair read the cache
    assert torch.equal(again, first) and torch.equal(mixed_again, mixed)
    assert torch.equal(_fresh(model, x), first)
    assert torch.equal(_fresh(model, x, adapter_names=names), mixed)
    torch.testing.assert_close(first, _planned(model, x), rtol=1e-5, atol=1e-6)


def test_a_parameter_update_recomputes():
    model = _model()
    x = torch.randn(4, 16)
    with torch.no_grad():
        before = model(x)
        mixed_before = model(x, adapter_names=["a", "b", "a", "b"])
        perturb(model, "a", seed=9, scale=0.3)      # in place: the version counters move
        after = model(x)
        mixed_after = model(x, adapter_names=["a", "b", "a", "b"])
    assert not torch.allclose(after, before)
    assert torch.equal(after, _fresh(model, x))
    assert torch.equal(mixed_after, _fresh(model, x, adapter_names=["a", "b", "a", "b"]))
    assert torch.equal(mixed_after[1::2], mixed_before[1::2])   # b did not change


@pytest.mark.parametrize("fused", [False, True])
def test_an_optimizer_step_recomputes(fused):
    """A fused optimizer updates parameters without moving their version counters: the training forward drops them."""
    model = _model()
    x = torch.randn(4, 16)
    with torch.no_grad():
        before = model(x)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.5, fused=True) if fused else torch.optim.SGD(params, lr=0.5)
    model(x).pow(2).sum().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(x)
    assert not torch.allclose(after, before)
    assert torch.equal(after, _fresh(model, x))


def test_load_set_adapter_merge_and_moves_give_fresh_results(tmp_path):
    model = _model()
    x = torch.randn(4, 16)
    other = _model(names=("a", "b"))
    perturb(other, "b", seed=42, scale=0.5)
    other.save_pretrained(tmp_path, selected_adapters=["b"])
    with torch.no_grad():
        model(x)
        model(x, adapter_names=["a", "b", "b", "a"])
        model.set_adapter("b")                      # set_adapter: b's output, recomputed
        assert "b" not in model.node_cache_info()["names"]
        b_out = model(x)
        assert torch.equal(b_out, _fresh(model, x))
        model.set_adapter("a")
        model.delete_adapter("b")                   # load under an old name: the loaded weights
        model.load_adapter(tmp_path, "b")
        model.set_adapter("b")
        loaded = model(x)
        assert not torch.allclose(loaded, b_out)
        other.set_adapter("b")
        torch.testing.assert_close(loaded, other(x), rtol=1e-5, atol=1e-6)
        model.merge_adapter()                       # merge / unmerge drop the cache
        assert model.node_cache_info()["adapters"] == 0
        torch.testing.assert_close(model(x), loaded, rtol=1e-5, atol=1e-5)
        model.unmerge_adapter()
        assert model.node_cache_info()["adapters"] == 0
        assert torch.equal(model(x), _fresh(model, x))
        model.double()                              # a dtype move drops it too
        assert model.node_cache_info()["adapters"] == 0
        wide = model(x.double())
        assert wide.dtype == torch.float64 and torch.equal(wide, _fresh(model, x.double()))
        torch.testing.assert_close(wide.float(), loaded, rtol=1e-5, atol=1e-5)


def test_the_lru_bound_and_the_report():
    model = _model(names=("a", "b", "c"))
    x = torch.randn(3, 16)
    model.configure_node_cache(max_adapters=2)
    with torch.no_grad():
        model(x, adapter_names=["a", "b", "c"])     # one forward holds all three, then keeps two
        info = model.node_cache_info()
        assert info["adapters"] == 2 and info["names"] == ["b", "c"] and info["evictions"] == 1
        assert info["bytes"] > 0 and info["max_adapters"] == 2
        model(x, adapter_names=["a", "a", "a"])     # a back: the least recently used (b) goes
        assert model.node_cache_info()["names"] == ["c", "a"]
    model.configure_node_cache(0)
    assert model.node_cache_info()["adapters"] == 0 and model.node_cache_info()["bytes"] == 0
    memory = model.adapter_memory()
    assert memory["adapters"] == 3 and memory["at_rest_bytes_per_adapter"] > 0
    with pytest.raises(UsageError, match="max_adapters must be an int >= 0"):
        model.configure_node_cache(-1)


def test_training_is_unchanged():
    model = _model()
    model.train()
    x = torch.randn(4, 16)
    model(x).sum().backward()
    assert model.node_cache_info()["adapters"] == 0
    assert any(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_inference_mode_then_no_grad():
    model = _model()
    x = torch.randn(4, 16)
    with torch.inference_mode():
        first = model(x, adapter_names=["a", "b", "a", "b"])
    perturb(model, "b", seed=3)                     # cached tensors are ordinary ones: updating works after
    with torch.no_grad():
        again = model(x, adapter_names=["a", "b", "a", "b"])
    assert torch.equal(again[0::2], first[0::2]) and not torch.allclose(again[1::2], first[1::2])
