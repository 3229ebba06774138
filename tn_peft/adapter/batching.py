"""Evaluate many node modules at once: same-kind, same-shape nodes across layers in one batched call.

Per-step cost for tiny nodes is dispatch overhead (see DESIGN.md): a Pauli node of 384 x 4 is dozens of
tiny torch ops, and a model has dozens of such nodes. A node kind opts in by defining two class-level
hooks (the default: each node is evaluated on its own):

- ``batch_key(node) -> hashable``: nodes with equal keys (and the same class) can be evaluated together;
- ``forward_many(nodes) -> list[Tensor]``: their tensors, in order, from one batched computation.

The ``pauli`` kind defines them (its circuits take a leading batch of angle sets, so all Pauli
nodes of one circuit shape are one ``circuit_columns`` call). A kind you do not own can get them
from :data:`BATCHERS` (class -> the two functions) instead. :func:`group_nodes` groups the nodes it is given (shared nodes -- LoTR --
given several times once) and :func:`evaluate_groups` calls those hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

import torch
from torch import nn

#: node class -> (batch_key, forward_many) for kinds that do not define the hooks themselves (empty in
#: tn_peft: every built-in kind that batches defines them).
BATCHERS: dict[type, tuple[Callable[[nn.Module], Hashable | None], Callable[[Sequence[nn.Module]], list]]] = {}


def _hooks(cls: type) -> tuple[Callable | None, Callable | None]:
    many = getattr(cls, "forward_many", None)
    if many is not None:
        return getattr(cls, "batch_key", None), many
    for klass in cls.__mro__:
        if klass in BATCHERS:
            return BATCHERS[klass]
    return None, None


def batch_key(node: nn.Module) -> Hashable | None:
    """The node's batching key, or None when its kind cannot be batched."""
    key_fn, many = _hooks(type(node))
    if many is None:
        return None
    key = key_fn(node) if key_fn is not None else tuple(getattr(node, "shape", ()))
    return None if key is None else (type(node), key)


def group_nodes(nodes: Iterable[nn.Module]) -> list[list[nn.Module]]:
    """Unique nodes grouped for evaluation: one group per batching key, singletons for the rest."""
    seen: set[int] = set()
    groups: dict[Hashable, list[nn.Module]] = {}
    singles: list[list[nn.Module]] = []
    for node in nodes:
        if id(node) in seen:
            continue
        seen.add(id(node))
        key = batch_key(node)
        if key is None:
            singles.append([node])
        else:
            groups.setdefault(key, []).append(node)
    return list(groups.values()) + singles


def evaluate_groups(groups: list[list[nn.Module]]) -> dict[int, torch.Tensor]:
    """``id(node) -> node tensor`` for every node of the groups (batched where a group has several)."""
    results: dict[int, torch.Tensor] = {}
    for group in groups:
        if len(group) == 1:
            results[id(group[0])] = group[0]()
            continue
        tensors = _hooks(type(group[0]))[1](group)
        for node, tensor in zip(group, tensors):
            results[id(node)] = tensor
    return results
