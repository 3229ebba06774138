"""Assertions for adapters and adapted models: orthonormality, equivalence, merge and save/load round trips,
the planner against the reference contraction. Each raises ``AssertionError`` with the measured error.

Tolerances default by dtype (:func:`tolerance`): relative to the size of what is compared.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..nodes.base import orthonormality_error

#: default relative tolerance per dtype (float64 round-off, float32, and the 8-bit-mantissa half types)
TOLERANCES = {torch.float64: 1e-9, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def tolerance(dtype: torch.dtype) -> float:
    """The default relative tolerance for ``dtype`` (:data:`TOLERANCES`; 2e-5 for others)."""
    return TOLERANCES.get(dtype, 2e-5)


def _close(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shapes differ, {tuple(got.shape)} vs {tuple(want.shape)}")
    scale = max(float(want.abs().max()) if want.numel() else 0.0, 1.0)
    err = float((got - want).abs().max()) if got.numel() else 0.0
    if not err <= rtol * scale:
        raise AssertionError(f"{name}: max abs difference {err:.3g} > {rtol:g} x {scale:.3g}")


def assert_orthonormal(matrix: torch.Tensor, atol: float | None = None) -> None:
    """Assert ``Q^T Q = I`` (columns orthonormal); default tolerance by dtype (1e-10 fp64, 1e-5 fp32)."""
    if atol is None:
        atol = 1e-10 if matrix.dtype == torch.float64 else 1e-5
    err = orthonormality_error(matrix)
    assert err <= atol, f"columns are not orthonormal: max |Q^T Q - I| = {err:.3g} > {atol:g}"


def assert_same_delta(first, second, atol: float = 1e-6) -> None:
    """Assert two adapters (or tensors) give the same dW within ``atol``."""
    a = first.delta_weight() if hasattr(first, "delta_weight") else first
    b = second.delta_weight() if hasattr(second, "delta_weight") else second
    err = float((a.detach() - b.detach()).abs().max())
    assert err <= atol, f"dW differ: max abs difference {err:.3g} > {atol:g}"


def _as_adapter(obj, in_features: int | None, out_features: int | None, seed: int, dtype: torch.dtype):
    """An Adapter from an Adapter, a Network, a spec dict or a graph name/path (built with ``seed``)."""
    from ..adapter.adapter import Adapter
    from ..graph.network import Network
    from ..graph.spec import load_graph

    if isinstance(obj, Adapter):
        return obj
    if in_features is None or out_features is None:
        raise AssertionError("networks and specs need in_features= and out_features= to be built")
    net = obj if isinstance(obj, Network) else load_graph(obj)
    torch.manual_seed(seed)
    return net.build(in_features, out_features, dtype=dtype)


def assert_equivalent(first, second, *, in_features: int | None = None, out_features: int | None = None,
                      tokens: Sequence[int] = (1, 7), seed: int = 0, rtol: float | None = None,
                      dtype: torch.dtype = torch.float64) -> None:
    """Assert two adapters (or networks / specs, built at ``(out_features, in_features)`` from the same
    ``seed``) give the same dW and the same ``x @ dW^T`` for random x of each token count."""
    a = _as_adapter(first, in_features, out_features, seed, dtype)
    b = _as_adapter(second, in_features, out_features, seed, dtype)
    if (a.in_features, a.out_features) != (b.in_features, b.out_features):
        raise AssertionError(f"shapes differ: {(a.out_features, a.in_features)} vs {(b.out_features, b.in_features)}")
    dtype_a = next((t.dtype for t in a.node_tensors()), dtype)
    rtol = tolerance(dtype_a) if rtol is None else rtol
    with torch.no_grad():
        _close("dW", a.delta_weight(), b.delta_weight(), rtol)
        g = torch.Generator().manual_seed(seed)
        for t in tokens:
            x = torch.randn(t, a.in_features, generator=g, dtype=torch.float64).to(dtype_a)
            _close(f"x @ dW^T (T={t})", a(x), b(x.to(next((u.dtype for u in b.node_tensors()), dtype))), rtol)


def assert_planner_matches_reference(adapter, *, tokens: Sequence[int] = (1, 5, 64), seed: int = 0,
                                     rtol: float | None = None) -> None:
    """Assert the planner's dW and ``x @ dW^T`` (each token count's plan) equal the reference contraction
    (:func:`tn_peft.testing.reference.reference_delta`, a plain numpy einsum)."""
    from .reference import reference_delta

    dtype = adapter.node_tensors()[0].dtype
    rtol = tolerance(dtype) if rtol is None else rtol
    want = reference_delta(adapter)
    with torch.no_grad():
        _close("planner dW vs reference", adapter.delta_weight(), want, rtol)
        g = torch.Generator().manual_seed(seed)
        for t in tokens:
            x = torch.randn(t, adapter.in_features, generator=g, dtype=torch.float64)
            _close(f"planner x @ dW^T vs reference (T={t})", adapter(x.to(dtype)), x @ want.T, rtol)


def _layer_deltas(model) -> dict[str, torch.Tensor]:
    return {f"{name}/{adapter}": layer.get_delta_weight(adapter).detach().clone()
            for name, layer in model.tn_layers() for adapter in layer.active_adapters if adapter in layer.tn_adapters}


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {name: layer.base_layer.weight.detach().clone() for name, layer in model.tn_layers()}


def _outputs(model, inputs: Any) -> torch.Tensor | None:
    if inputs is None:
        return None
    with torch.no_grad():
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    out = getattr(out, "last_hidden_state", None) if not isinstance(out, torch.Tensor) else out
    if out is None:
        raise AssertionError("the model's output is neither a tensor nor has last_hidden_state; pass a tensor model")
    return out.detach().clone()


def assert_merge_roundtrip(model, inputs: Any = None, *, rtol: float | None = None) -> None:
    """Assert merging the active adapters gives ``W + dW`` in every layer (and the same outputs on
    ``inputs``, a tensor or a dict of keyword tensors), and unmerging restores ``W``. The model is left
    unmerged, as it was."""
    weights = _base_weights(model)
    rtol = tolerance(next(iter(weights.values())).dtype) if rtol is None and weights else (rtol or 2e-5)
    deltas = _layer_deltas(model)
    before = _outputs(model, inputs)
    model.merge_adapter()
    try:
        for name, layer in model.tn_layers():
            want = weights[name] + sum((d for key, d in deltas.items() if key.startswith(f"{name}/")),
                                       torch.zeros_like(weights[name]))
            _close(f"merged weight of {name}", layer.base_layer.weight, want, rtol)
        if before is not None:
            _close("outputs after merge_adapter", _outputs(model, inputs), before, rtol)
    finally:
        model.unmerge_adapter()
    for name, layer in model.tn_layers():
        _close(f"weight of {name} after unmerge_adapter", layer.base_layer.weight, weights[name], rtol)
    if before is not None:
        _close("outputs after unmerge_adapter", _outputs(model, inputs), before, rtol)


def assert_save_load_roundtrip(model, tmp_path: str | Path | None = None, inputs: Any = None, *,
                               rtol: float | None = None) -> None:
    """Assert ``save_pretrained`` then ``from_pretrained`` onto a fresh copy of the base model gives the
    same adapter tensors, the same dW in every layer (and the same outputs on ``inputs``)."""
    from ..model.model import TnPeftModel

    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="tn_peft_roundtrip_"))
    folder = folder / "adapter"
    model.save_pretrained(str(folder))
    base = copy.deepcopy(model).unload()
    loaded = TnPeftModel.from_pretrained(base, str(folder), adapter_name=model.active_adapter)
    weights = _base_weights(model)
    rtol = tolerance(next(iter(weights.values())).dtype) if rtol is None and weights else (rtol or 2e-5)
    saved, restored = model.adapter_state_dict(), loaded.adapter_state_dict()
    if set(saved) != set(restored):
        raise AssertionError(f"checkpoint keys differ: only saved {sorted(set(saved) - set(restored))[:5]}, "
                             f"only loaded {sorted(set(restored) - set(saved))[:5]}")
    for key in saved:
        if not torch.equal(saved[key].detach().cpu(), restored[key].detach().cpu()):
            raise AssertionError(f"tensor {key} changed in the round trip")
    want, got = _layer_deltas(model), _layer_deltas(loaded)
    for key in want:
        _close(f"dW of {key} after loading", got[key], want[key], rtol)
    if inputs is not None:
        _close("outputs after loading", _outputs(loaded, inputs), _outputs(model, inputs), rtol)


def assert_right_inverse_round_trips(node_class, q, *, fp64_atol: float = 1e-12, fp32_atol: float = 1e-5) -> None:
    """Assert a Stiefel node kind reaches ``q`` (an N x K numpy matrix) through its right inverse.

    Checks both precisions: ``set_matrix`` in fp64 (within ``fp64_atol``) and ``right_inverse`` in
    fp32 (within ``fp32_atol``), each on a fresh node with legs ``["o", "k"]``.
    """
    n, k = q.shape
    double = node_class("U", ["o", "k"], [n, k]).double()
    double.set_matrix(torch.from_numpy(q))
    err = np.abs(double.matrix().detach().numpy() - q).max()
    assert err < fp64_atol, f"fp64 right inverse misses q by {err:.3g}"
    single = node_class("U", ["o", "k"], [n, k])
    single.right_inverse(torch.from_numpy(q).float())
    err = np.abs(single.matrix().detach().numpy() - q).max()
    assert err < fp32_atol, f"fp32 right inverse misses q by {err:.3g}"
