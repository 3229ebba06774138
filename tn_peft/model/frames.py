"""Data-aware frames for circuit nodes: start each circuit on the subspace that matters.

A node with the ``frame`` option (:mod:`tn_peft.nodes.frame`) computes ``Q = F C(theta)[:, :K]``;
this module chooses ``F`` so that ``F E_K`` is the top-K singular subspace of

- ``frame: weight``: the layer's frozen weight ``W = P S R^T`` (PiSSA's principal directions), set
  when the adapter is built on the layer (:func:`set_weight_frames`);
- ``frame: gradient``: the layer's first gradient ``G = dL/dW`` summed over a few batches
  (LoRA-GA's directions: with ``U = P_K``, ``V = R_K`` of ``G`` the first steps of ``s`` follow
  the best rank-K descent direction), set by :func:`initialize_frames` before training, as peft's
  ``initialize_lora_eva_weights`` is called for EVA.

The out-side node (rows = the layer's ``out`` legs) gets the left singular vectors, the in-side node
the right ones. Frames are buffers: they are saved with the adapter and never trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .base_layers import is_quantized
from ..errors import ShapeError, SpecError
from .layers import TnLayer, weight_matrix

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def framed_nodes(adapter: nn.Module, source: str) -> list[tuple[str, nn.Module, str]]:
    """``(node name, node, side)`` of the adapter's nodes framed from ``source``; side is ``out`` or ``in``."""
    network = adapter.network
    found = []
    for name, node in adapter.node_modules().items():
        if getattr(node, "frame", "none") != source:
            continue
        rows = tuple(node.row_legs)
        if rows == tuple(network.open["out"]):
            side = "out"
        elif rows == tuple(network.open["in"]):
            side = "in"
        else:
            raise SpecError(f"a framed node's rows must be the layer's out legs {list(network.open['out'])} "
                            f"or its in legs {list(network.open['in'])}, not {list(rows)}", node=name,
                            source=network.source, fix="frame only the U / V nodes of an SVD-form graph")
        found.append((name, node, side))
    return found


def set_frames(adapter: nn.Module, matrix: torch.Tensor, source: str) -> int:
    """Frame the adapter's ``source``-framed nodes on the top singular subspaces of ``matrix`` (out x in).

    Returns how many nodes were set.
    """
    nodes = framed_nodes(adapter, source)
    if not nodes:
        return 0
    if tuple(matrix.shape) != (adapter.out_features, adapter.in_features):
        raise ShapeError(f"a frame source of shape {tuple(matrix.shape)} does not fit the adapter's "
                         f"(out={adapter.out_features}, in={adapter.in_features})")
    left, _, right_t = torch.linalg.svd(matrix.detach().to(torch.float64), full_matrices=False)
    for _, node, side in nodes:
        k = node.cols
        node.set_frame((left[:, :k] if side == "out" else right_t[:k].T).to(node.frame_vectors.dtype))
    return len(nodes)


def set_weight_frames(adapter: nn.Module, module: nn.Module) -> int:
    """``frame: weight`` nodes of ``adapter`` on the top singular vectors of ``module``'s weight."""
    if not framed_nodes(adapter, "weight"):
        return 0
    return set_frames(adapter, weight_matrix(module), "weight")


def initialize_frames(model, batches: Iterable[Any], loss_fn: LossFn, *, adapter_name: str | None = None) -> int:
    """Set every ``frame: gradient`` node of ``model`` (a TnPeftModel, or a module holding one) from
    ``G = sum over batches of dL/dW`` of its layer; returns how many nodes were set.

    ``loss_fn(model, batch)`` returns the scalar loss of one batch. The base weights need gradients
    only inside this call (``torch.autograd.grad``: no ``.grad`` is written, ``requires_grad`` is
    restored); the adapters' own tensors are left as they are.
    """
    layers = [(name, layer) for name, layer in model.named_modules() if isinstance(layer, TnLayer)]
    todo = []
    for name, layer in layers:
        for adapter_key, adapter in layer.tn_adapters.items():
            if adapter_name is not None and adapter_key != adapter_name:
                continue
            if framed_nodes(adapter, "gradient"):
                todo.append((name, layer, adapter))
    if not todo:
        return 0
    quantized = next((name for name, layer, _ in todo if is_quantized(layer.base_layer)), None)
    if quantized is not None:
        raise ShapeError(f"layer {quantized!r} has a quantized base weight, which has no gradient dL/dW for "
                         f"frame: gradient; use frame: weight (its dequantized weight) or frame: none")
    weights = {id(layer): layer.base_layer.weight for _, layer, _ in todo}
    saved_flags = {key: w.requires_grad for key, w in weights.items()}
    sums = {key: torch.zeros_like(w, dtype=torch.float64) for key, w in weights.items()}
    count = 0
    try:
        for w in weights.values():
            w.requires_grad_(True)
        for batch in batches:
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
            for key, grad in zip(weights, grads):
                if grad is not None:
                    sums[key] += grad.detach().to(torch.float64)
            count += 1
    finally:
        for key, w in weights.items():
            w.requires_grad_(saved_flags[key])
    if not count:
        raise ShapeError("initialize_frames got no batches: pass at least one batch to take dL/dW from")
    total = 0
    for _, layer, adapter in todo:
        grad = layer.as_matrix(sums[id(layer)], adapter.out_features)
        total += set_frames(adapter, grad, "gradient")
    return total
