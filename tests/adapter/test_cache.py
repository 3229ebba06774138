"""The cache's parts: which graphs are two-factor forms, their factors, and the factor slabs' slots."""

from __future__ import annotations

import torch

import tn_peft
from tn_peft.adapter.cache import FactorSlabs, NodeCache, factor_form, factors


def _adapter(graph):
    return tn_peft.load_graph(graph).build(16, 8)


def test_two_factor_forms_and_their_factors():
    torch.manual_seed(0)
    for graph in ("quantum_peft", "svd", "lora"):
        adapter = _adapter(graph)
        form = factor_form(adapter.network)
        assert form is not None, graph
        with torch.no_grad():
            for p in adapter.parameters():
                p.add_(torch.randn_like(p) * 0.3)
            tensors = adapter.node_tensors()
            a, b = factors(form, tensors, adapter.scale)
            x = torch.randn(5, 16)
            torch.testing.assert_close(x @ a @ b, adapter(x), rtol=1e-5, atol=1e-6)
    for graph in ("tt", "kron", "quanta"):
        assert factor_form(_adapter(graph).network) is None, graph


def test_slab_slots_zero_on_free_and_widen():
    slabs = FactorSlabs()
    one, two = slabs.take(), slabs.take()
    slabs.put(7, one, torch.ones(3, 2), torch.ones(2, 4))
    slabs.put(7, two, torch.ones(3, 4) * 2, torch.ones(4, 4))   # a wider rank: zero-padded
    assert slabs.a[7].shape[2] == 4 and torch.equal(slabs.a[7][one, :, 2:], torch.zeros(3, 2))
    assert torch.equal(slabs.a[7][0], torch.zeros(3, 4))        # row 0 stays zeros
    slabs.free(one)
    assert torch.equal(slabs.a[7][one], torch.zeros(3, 4)) and slabs.take() == one


def test_cache_stamps_and_trim():
    from tn_peft.adapter.cache import Entry

    cache = NodeCache(max_adapters=1)
    cache.put("a", Entry(stamp=1))
    assert cache.get("a", 1) is not None and cache.get("a", 2) is None   # a new stamp: stale, dropped
    assert "a" not in cache.entries
    cache.put("a", Entry(stamp=1))
    cache.put("b", Entry(stamp=1))
    cache.trim()
    assert list(cache.entries) == ["b"] and cache.info()["evictions"] == 1
