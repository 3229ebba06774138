"""Evaluate many node modules at once: same-kind, same-shape nodes across layers in one batched call.

Per-step cost for tiny nodes is dispatch overhead (see DESIGN.md): a Pauli node of 384 x 4 is dozens of
tiny torch ops, and a model has dozens of such nodes. A node kind opts in by defining two class-level
hooks (the default: each node is evaluated on its own):

- ``batch_key(node) -> hashable``: nodes with equal keys (and the same class) can be evaluated together;
- ``forward_many(nodes) -> list[Tensor]``: their tensors, in order, from one batched computation.

:func:`evaluate_nodes` groups the nodes it is given and calls those hooks; shared nodes (LoTR) given
several times are evaluated once.
"""

from __future__ import annotations

from typing import Hashable, Iterable

import torch
from torch import nn


def batch_key(node: nn.Module) -> Hashable | None:
    """The node's batching key, or None when its kind cannot be batched."""
    cls = type(node)
    if getattr(cls, "forward_many", None) is None:
        return None
    key_fn = getattr(cls, "batch_key", None)
    key = key_fn(node) if key_fn is not None else tuple(getattr(node, "shape", ()))
    return (cls, key)


def plan_groups(nodes: Iterable[nn.Module]) -> list[list[nn.Module]]:
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
        tensors = type(group[0]).forward_many(group)
        for node, tensor in zip(group, tensors):
            results[id(node)] = tensor
    return results


def evaluate_nodes(nodes: Iterable[nn.Module]) -> dict[int, torch.Tensor]:
    """``id(node) -> tensor`` for the given nodes, same-kind same-shape ones evaluated together."""
    return evaluate_groups(plan_groups(nodes))
