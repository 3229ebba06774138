"""The reference contraction: dW by a plain numpy einsum over the leg lists, independent of the planner."""

from __future__ import annotations

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
