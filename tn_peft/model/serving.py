"""Inference with node tensors computed once: how a :class:`~tn_peft.model.model.TnPeftModel` fills and reads its
:class:`~tn_peft.adapter.cache.NodeCache`.

When no gradient is needed (``torch.is_grad_enabled()`` is False: ``torch.no_grad``, ``inference_mode``,
``generate``), a forward takes each adapter's node tensors from the cache, evaluating only the adapters
it lacks (all their same-shape nodes in one batched call, :mod:`tn_peft.adapter.batching`; a bank's
members from their stacked tensors, :mod:`tn_peft.model.bank`). With gradients (training), nothing is
cached and nothing changes.

- :func:`single_forward`: the ordinary forward of the active adapters reads cached node tensors;
- :func:`mixed_forward`: a mixed batch (``adapter_names``): rows of two-factor adapters
  (``dW = scale U diag(d) V^T``) run as ``y_i = x_i A[slot_i] B[slot_i]`` from the factor slabs (two gathers
  and two batched matmuls per layer whatever the number of distinct adapters), others group by group
  from their cached node tensors (:class:`tn_peft.model.mixed.LayerServing`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..adapter.batching import evaluate_groups, group_nodes
from ..adapter.cache import Entry, factor_form, factors, tensor_bytes
from .mixed import LayerServing, RowGroups


@dataclass
class AdapterIndex:
    """One module adapter's layers ``(layer, adapter, two-factor form or None)`` and every tensor whose
    version the stamp sums."""

    layers: list
    tensors: list


def usable(model) -> bool:
    """True when this forward may use the cache: no gradients, not traced."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def sharded(model, names: Sequence[str]) -> bool:
    """True when the adapters ``names`` are FSDP2-sharded here (the cache steps aside, as batched evaluation does)."""
    from .distributed import is_sharded

    return any(is_sharded(t) for name in names for t in adapter_index(model, name).tensors[:1])


def _linear_output(layer: nn.Module) -> bool:
    """Layers whose adapter output is ``x dW^T`` (Linear, Conv1D): they can use the factor slabs."""
    from .layers import TnLayer

    return type(layer).output_with is TnLayer.output_with


def adapter_index(model, name: str) -> AdapterIndex:
    """The :class:`AdapterIndex` of module adapter ``name`` (built once per model structure)."""
    index = model._serve_index.get(name)
    if index is None:
        layers, tensors = [], []
        for _, layer in model.tn_layers():
            adapter = layer.tn_adapters[name] if name in layer.tn_adapters else None
            if adapter is None:
                continue
            form = factor_form(adapter.network) if _linear_output(layer) else None
            layers.append((layer, adapter, form))
            for node in adapter.node_modules().values():
                tensors += list(node.parameters()) + list(node.buffers())
            tensors += list(adapter.buffers(recurse=False))
        index = model._serve_index[name] = AdapterIndex(layers, tensors)
    return index


def _stamp(tensors: Sequence[torch.Tensor]) -> int:
    """The sum of the tensors' version counters: it grows with every in-place update of any of them."""
    return sum(t._version for t in tensors)


def _need(entry: Entry, layers: Sequence, mixed: bool) -> bool:
    """True when ``entry`` lacks something this forward reads (node tensors, or factors in a mixed batch)."""
    for layer, _, form in layers:
        key = id(layer)
        if mixed and form is not None:   # a mixed batch runs two-factor layers from the slabs
            if key not in entry.factor_layers and key not in entry.loop_layers:
                return True
        elif key not in entry.nodes:
            return True
    return False


def _store(cache, entry: Entry, layer_tensors: list, mixed: bool) -> None:
    """Put one adapter's freshly evaluated node tensors into ``entry``: factors into the slabs (mixed batch,
    two-factor layer), node tensors otherwise."""
    factor_layers, loop_layers = set(entry.factor_layers), set(entry.loop_layers)
    for (layer, adapter, form), tensors in layer_tensors:
        key = id(layer)
        if mixed and form is not None and key not in factor_layers:
            a, b = factors(form, tensors, adapter.scale)
            if cache.slabs.has(key, a):
                if not entry.slot:
                    entry.slot = cache.slabs.take()
                cache.slabs.put(key, entry.slot, a, b)
                factor_layers.add(key)
                continue
            loop_layers.add(key)
        if (not mixed or form is None or key in loop_layers) and key not in entry.nodes:
            entry.nodes[key] = [t.detach().clone() for t in tensors]   # its own storage: freed when evicted
            entry.nbytes += tensor_bytes(entry.nodes[key])
    entry.factor_layers, entry.loop_layers = frozenset(factor_layers), frozenset(loop_layers)


def entries(model, names: Sequence[str], *, mixed: bool) -> dict[str, Entry]:
    """The cache entries of adapters ``names`` (module adapters and bank members), evaluating what is missing or
    stale; ``mixed`` fills factor slabs (a mixed batch) rather than node tensors where it can."""
    cache = model._serve_cache
    out: dict[str, Entry] = {}
    todo: list[tuple[str, Entry, list]] = []
    bank_todo: dict[int, tuple] = {}
    bank_stamps: dict[int, int] = {}
    for name in names:
        bank = model._bank_of.get(name)
        if bank is not None:
            stamp = bank_stamps.get(id(bank))
            if stamp is None:
                stamp = bank_stamps[id(bank)] = ("bank", _stamp(bank.stamp_tensors()))
            layers = bank.layers()
        else:
            index = adapter_index(model, name)
            stamp, layers = _stamp(index.tensors), index.layers
        entry = cache.get(name, stamp)
        if entry is None:
            entry = Entry(stamp)
        elif not _need(entry, layers, mixed):
            out[name] = entry
            continue
        cache.put(name, entry)
        out[name] = entry
        if bank is not None:
            bank_todo.setdefault(id(bank), (bank, []))[1].append((name, entry))
        else:
            todo.append((name, entry, layers))
    if todo or bank_todo:
        if mixed:
            cache.slabs.reserve(len(todo) + sum(len(members) for _, members in bank_todo.values()))
        with torch.inference_mode(False), torch.no_grad():   # cached tensors must be usable outside inference_mode
            if todo:
                _evaluate_modules(model, cache, todo, mixed)
            for bank, members in bank_todo.values():
                for (name, entry), layer_tensors in zip(members, bank.evaluate([n for n, _ in members])):
                    _store(cache, entry, layer_tensors, mixed)
    return out


def _evaluate_modules(model, cache, todo: list, mixed: bool) -> None:
    """Evaluate the node modules of the module adapters in ``todo`` (batched by kind and shape when the model
    batches nodes) and store them."""
    modules = [[list(adapter.node_modules().values()) for _, adapter, _ in layers] for _, _, layers in todo]
    every = [node for per_adapter in modules for nodes in per_adapter for node in nodes]
    if model.batch_nodes:
        values = evaluate_groups(group_nodes(every))
    else:
        values = {id(node): node() for node in every}
    for (_, entry, layers), per_adapter in zip(todo, modules):
        _store(cache, entry, [(item, [values[id(n)] for n in nodes]) for item, nodes in zip(layers, per_adapter)],
               mixed)


@contextmanager
def single_forward(model, names: Sequence[str], layers: Sequence) -> Iterator[None]:
    """The active adapters' forward with cached node tensors (``layers``: the model's per-layer node lists)."""
    cache = model._serve_cache
    held = entries(model, names, mixed=False)
    try:
        for layer, adapters in layers:
            key = id(layer)
            layer.node_cache = {name: held[name].nodes[key] for name, _ in adapters if key in held[name].nodes}
        yield
    finally:
        for layer, _ in layers:
            layer.node_cache = None
        cache.trim()


@contextmanager
def mixed_forward(model, adapter_names: Sequence[str], groups: RowGroups, layers: Sequence) -> Iterator[None]:
    """A mixed batch with cached node tensors and factor slabs (``layers``: every wrapped layer)."""
    cache = model._serve_cache
    held = entries(model, groups.names, mixed=True)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    slot_of = {name: entry.slot for name, entry in held.items()}
    slots = torch.tensor([slot_of.get(name, 0) for name in adapter_names], dtype=torch.long, device=device)
    try:
        for layer in layers:
            key = id(layer)
            loop = []
            factored = False
            for name, rows in groups.groups:
                entry = held[name]
                if key in entry.factor_layers and key not in entry.loop_layers:
                    factored = True
                    continue
                tensors = entry.nodes.get(key)
                if tensors is None:
                    continue
                adapter = model._member_adapter(layer, name)
                loop.append((None if rows.numel() == groups.batch else rows, adapter, tensors))
            has_slab = factored and key in cache.slabs.a
            layer.serving = LayerServing(slots if has_slab else None,
                                         cache.slabs.a.get(key) if has_slab else None,
                                         cache.slabs.b.get(key) if has_slab else None, loop)
        yield
    finally:
        for layer in layers:
            layer.serving = None
        cache.trim()


__all__ = ["AdapterIndex", "adapter_index", "entries", "mixed_forward", "sharded", "single_forward", "usable"]
