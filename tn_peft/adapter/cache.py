"""Node tensors computed once in inference: an LRU cache over adapters, and the factor slabs that mixed
batches gather from.

In inference an adapter's node tensors do not change between forwards, so a model
(:class:`~tn_peft.model.model.TnPeftModel`) evaluates them once and keeps them here, per adapter:

- ``nodes``: layer -> the node tensors its plan consumes (what the ordinary forward of the active
  adapter reads);
- a ``slot`` in the :class:`FactorSlabs`: for adapters whose graph is a two-factor form
  ``dW = scale * U diag(d) V^T`` (:func:`factor_form`: Quantum-PEFT, SVD, LoRA), each layer keeps
  ``A = V diag(d)`` (in x k) and ``B = scale * U^T`` (k x out) in row ``slot`` of two stacked tensors, so
  a mixed batch over any number of distinct adapters is two gathers and two batched matmuls per layer:
  ``y_i = x_i A[slot_i] B[slot_i]`` (``slot_i = 0``, all zeros, for rows without an adapter).

Each entry carries a *stamp* (the sum of its tensors' version counters, which grow on every in-place
update: an optimizer step, ``load_state_dict``, ``copy_``); a stale stamp recomputes the entry. Events
that change what an adapter computes without touching its tensors' versions (loading an adapter under
an old name, ``set_adapter``, merge / unmerge, dtype or device moves, and training: fused optimizers
such as transformers' default ``adamw_torch_fused`` update parameters without moving their version
counters, so ``model.train()`` and every forward with gradients drop the entries of the adapters it
runs) drop entries explicitly.

The bound: at most ``max_adapters`` entries are kept between forwards (least recently used dropped
first); a forward that names more holds them all for its duration. ``max_adapters = 0`` keeps nothing
(every forward computes afresh, by the same code path). :meth:`NodeCache.info` reports what is held.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

#: entries kept between forwards unless set otherwise (``TnPeftModel.configure_node_cache``)
DEFAULT_MAX_ADAPTERS = 256


def factor_form(network) -> tuple[int, tuple[int, ...], int, bool, bool] | None:
    """For a network ``dW = scale * U diag(d_1) ... diag(d_m) V^T`` (one node on the out leg and the bond,
    one on the in leg and the bond, the rest diagonal on the bond): ``(out node index, diagonal node
    indices, in node index, out node is (k, out), in node is (k, in))`` in operand order; None otherwise
    (delta networks, several open legs, cores, shared-bond trees)."""
    if network.delta or len(network.open["out"]) != 1 or len(network.open["in"]) != 1:
        return None
    out_leg, in_leg = network.open["out"][0], network.open["in"][0]
    names = list(network.node_names)
    legs = {spec.name: tuple(spec.legs) for spec in network.nodes}
    outs = [n for n in names if out_leg in legs[n]]
    ins = [n for n in names if in_leg in legs[n]]
    if len(outs) != 1 or len(ins) != 1 or outs == ins or len(legs[outs[0]]) != 2 or len(legs[ins[0]]) != 2:
        return None
    bond = next(leg for leg in legs[outs[0]] if leg != out_leg)
    if bond not in legs[ins[0]] or bond in (out_leg, in_leg):
        return None
    diagonals = [n for n in names if n not in (outs[0], ins[0])]
    if any(legs[n] != (bond,) for n in diagonals):
        return None
    return (names.index(outs[0]), tuple(names.index(n) for n in diagonals), names.index(ins[0]),
            legs[outs[0]][0] == bond, legs[ins[0]][0] == bond)


def factors(form: tuple, tensors: Sequence[torch.Tensor], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``x dW^T = x A B``: ``A = V diag(d)`` (in x k), ``B = scale * U^T`` (k x out)."""
    out_i, diag_i, in_i, out_t, in_t = form
    u = tensors[out_i].T if out_t else tensors[out_i]
    v = tensors[in_i].T if in_t else tensors[in_i]
    for i in diag_i:
        v = v * tensors[i]
    return v, (u * scale).T


@dataclass
class Entry:
    """One cached adapter: its stamp, node tensors by layer key, slab slot (0: none), the layers whose factors
    are in the slabs, and the bytes of its node tensors."""

    stamp: Hashable
    nodes: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    slot: int = 0
    factor_layers: frozenset = frozenset()
    loop_layers: frozenset = frozenset()   # two-factor layers whose factors the slabs could not take (dtype, device)
    nbytes: int = 0


class FactorSlabs:
    """Per layer key, ``A`` (slots, in, k) and ``B`` (slots, k, out) stacked over cached adapters; row 0 is zeros.

    Slots are handed out by :meth:`take` and given back by :meth:`free` (their rows zeroed); the
    stacks grow by doubling (and widen when an adapter of larger rank arrives, zero-padded, which
    leaves every product unchanged)."""

    def __init__(self) -> None:
        self.a: dict[int, torch.Tensor] = {}
        self.b: dict[int, torch.Tensor] = {}
        self._free: list[int] = []
        self._next = 1
        self._want = 0

    def reserve(self, count: int) -> None:
        """Size the stacks for ``count`` more slots at their next growth (one allocation, not doublings)."""
        self._want = max(self._want, self._next + max(count - len(self._free), 0))

    def take(self) -> int:
        if self._free:
            return self._free.pop()
        slot, self._next = self._next, self._next + 1
        return slot

    def free(self, slot: int) -> None:
        if slot <= 0:
            return
        for stack in (*self.a.values(), *self.b.values()):
            if slot < stack.shape[0]:
                stack[slot].zero_()
        self._free.append(slot)

    def put(self, layer: int, slot: int, a: torch.Tensor, b: torch.Tensor) -> None:
        """Write one adapter's factors of one layer into row ``slot`` (growing the stacks as needed)."""
        stack_a, stack_b = self.a.get(layer), self.b.get(layer)
        rows = max(slot + 1, self._next)
        k = a.shape[1]
        if stack_a is None or stack_a.shape[0] <= slot or stack_a.shape[2] < k or stack_a.dtype != a.dtype \
                or stack_a.device != a.device:
            size = max(rows, self._want, 2 * stack_a.shape[0] if stack_a is not None and stack_a.shape[0] <= slot
                       else 0)
            width = max(k, stack_a.shape[2] if stack_a is not None else 0)
            new_a = a.new_zeros(size, a.shape[0], width)
            new_b = b.new_zeros(size, width, b.shape[1])
            if stack_a is not None and stack_a.dtype == a.dtype and stack_a.device == a.device:
                n, w = stack_a.shape[0], stack_a.shape[2]
                new_a[:n, :, :w] = stack_a
                new_b[:n, :w, :] = stack_b
            stack_a, stack_b = self.a[layer], self.b[layer] = new_a, new_b
        stack_a[slot].zero_()
        stack_b[slot].zero_()
        stack_a[slot, :, :k] = a
        stack_b[slot, :k, :] = b

    def has(self, layer: int, a: torch.Tensor) -> bool:
        """True when layer ``layer``'s stack can hold factors like ``a`` (same dtype and device)."""
        stack = self.a.get(layer)
        return stack is None or (stack.dtype == a.dtype and stack.device == a.device)

    def per_slot_bytes(self) -> int:
        """Bytes of one slot over every layer's stacks."""
        return sum(s[0].numel() * s.element_size() for s in (*self.a.values(), *self.b.values()))

    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in (*self.a.values(), *self.b.values()))

    def clear(self) -> None:
        self.a.clear()
        self.b.clear()
        self._free.clear()
        self._next = 1
        self._want = 0


class NodeCache:
    """LRU over adapters: name -> :class:`Entry`; at most ``max_adapters`` kept between forwards."""

    def __init__(self, max_adapters: int = DEFAULT_MAX_ADAPTERS) -> None:
        self.max_adapters = int(max_adapters)
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.slabs = FactorSlabs()
        self.hits = self.misses = self.evictions = 0

    def get(self, name: str, stamp: Hashable) -> Entry | None:
        """The entry of ``name`` if its stamp is ``stamp`` (then most recently used), else None (a stale one
        is dropped)."""
        entry = self.entries.get(name)
        if entry is not None and entry.stamp == stamp:
            self.entries.move_to_end(name)
            self.hits += 1
            return entry
        if entry is not None:
            self.drop([name])
        self.misses += 1
        return None

    def put(self, name: str, entry: Entry) -> None:
        self.entries[name] = entry
        self.entries.move_to_end(name)

    def drop(self, names: Sequence[str] | None = None) -> None:
        """Forget ``names`` (None: everything)."""
        if names is None:
            self.entries.clear()
            self.slabs.clear()
            return
        for name in names:
            entry = self.entries.pop(name, None)
            if entry is not None:
                self.slabs.free(entry.slot)

    def trim(self) -> None:
        """Drop least recently used entries beyond ``max_adapters``."""
        while len(self.entries) > max(self.max_adapters, 0):
            name = next(iter(self.entries))
            self.drop([name])
            self.evictions += 1
        if not self.entries:
            self.slabs.clear()

    def info(self) -> dict[str, Any]:
        """What the cache holds: adapters, bytes (node tensors + factor slabs), the bound, hits and misses."""
        node_bytes = sum(e.nbytes for e in self.entries.values())
        slab_bytes = self.slabs.nbytes()
        return {"adapters": len(self.entries), "max_adapters": self.max_adapters, "node_bytes": node_bytes,
                "slab_bytes": slab_bytes, "bytes": node_bytes + slab_bytes,
                "bytes_per_adapter": (node_bytes + slab_bytes) / len(self.entries) if self.entries else 0.0,
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "names": list(self.entries)}


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


__all__ = ["DEFAULT_MAX_ADAPTERS", "Entry", "FactorSlabs", "NodeCache", "factor_form", "factors", "tensor_bytes"]
