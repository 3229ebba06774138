"""The reference contractions, independent of the planner's trees and generated programs.

- :func:`reference_delta_weight`: dW by a plain numpy einsum built from the leg lists (float64);
- :func:`reference_contraction`: a planner :class:`~tn_peft.planner.Problem` by one ``torch.einsum``
  (differentiable: gradients to compare a plan's with);
- :func:`reference_output`: an adapter's ``x @ dW^T`` by that einsum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def reference_delta_weight(net, tensors: dict[str, Any], in_features: int, out_features: int) -> np.ndarray:
    """dW by a plain numpy einsum built from the leg lists (an independent reference; no scale)."""
    letters: dict[str, str] = {}

    def letter(leg: str) -> str:
        if leg not in letters:
            letters[leg] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(letters)]
        return letters[leg]

    terms = ["".join(letter(leg) for leg in node.legs) for node in net.nodes]
    out = "".join(letter(leg) for leg in net.open["out"] + net.open["in"])
    arrays = [np.asarray(tensors[node.name], dtype=np.float64) for node in net.nodes]
    full = np.einsum(",".join(terms) + "->" + out, *arrays)
    return full.reshape(out_features, in_features)


def reference_delta(adapter) -> torch.Tensor:
    """The adapter's dW (scale and theta_0 included) by :func:`reference_delta_weight`, float64."""
    net = adapter.network
    with torch.no_grad():
        tensors = {name: t.detach().cpu().double().numpy() for name, t in zip(adapter.operands, adapter.node_tensors())}
        dw = reference_delta_weight(net, tensors, adapter.in_features, adapter.out_features)
        if net.delta:
            initial = {name: t.detach().cpu().double().numpy()
                       for name, t in zip(adapter.operands, adapter.initial_tensors())}
            dw = dw - reference_delta_weight(net, initial, adapter.in_features, adapter.out_features)
    return torch.from_numpy(adapter.scale * dw)


def reference_contraction(problem, x: torch.Tensor | None, tensors: Sequence[torch.Tensor],
                          initial: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``problem`` contracted by one ``torch.einsum``: ``scale * (T(theta) - T(theta_0))`` as
    ``(tokens, out)`` when the problem has x (``x``: ``(tokens, in)``), else as ``(out, in)``."""
    ops = list(tensors)
    if problem.has_x:
        sizes = problem.size_dict
        ops = [x.reshape(x.shape[0], *(sizes[leg] for leg in problem.in_legs))] + ops
    out = torch.einsum(problem.equation(), *ops) * problem.scale
    if initial is not None:
        init = ([ops[0]] if problem.has_x else []) + list(initial)
        out = out - torch.einsum(problem.equation(), *init) * problem.scale
    if problem.has_x:
        return out.reshape(x.shape[0], problem.out_features)
    return out.reshape(problem.out_features, problem.in_features)


def reference_output(adapter, x: torch.Tensor) -> torch.Tensor:
    """``x @ dW^T`` for x of shape ``(..., in)``: the adapter's nodes through :func:`reference_contraction`
    (differentiable in x and in the node tensors)."""
    initial = adapter.initial_tensors() if adapter.network.delta else None
    flat = x.reshape(-1, adapter.in_features)
    problem = adapter.problem.with_tokens(flat.shape[0])
    y = reference_contraction(problem, flat, adapter.node_tensors(), initial)
    return y.reshape(*x.shape[:-1], adapter.out_features)
