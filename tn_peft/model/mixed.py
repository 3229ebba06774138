"""Mixed-adapter batches (PEFT's ``adapter_names=``): row i of a batch runs adapter ``adapter_names[i]``,
or none for ``"__base__"``, in one forward.

``y[rows_a] = base(x)[rows_a] + x[rows_a] dW_a^T`` for each adapter ``a`` named in the batch: rows are
grouped by adapter once per forward (:func:`row_groups`), each layer runs each group's rows through
that adapter's plan (:meth:`~tn_peft.model.layers.TnLayer.adapter_output`) and adds them in place of those
rows, and the nodes of every named adapter are evaluated together beforehand (same-shape circuits of
all adapters and layers in one batched call, :mod:`tn_peft.adapter.batching`), so a batch over many tiny
Quantum-PEFT adapters costs one circuit evaluation per shape plus two small products per group.

As in PEFT, mixed batches are for inference: the model must be in eval mode, with nothing merged.

Without gradients (``torch.no_grad``, ``generate``) the node tensors come from the model's inference cache
(:mod:`tn_peft.model.serving`) and each layer runs a :class:`LayerServing`: the rows of every two-factor
adapter (``dW = scale U diag(d) V^T``: Quantum-PEFT, SVD, LoRA graphs) at once, ``y_i = x_i A[s_i] B[s_i]``
with ``s_i`` row i's slot in the layer's factor slabs (:func:`factor_output`: two gathers and two batched
matmuls, whatever the number of distinct adapters), and the other adapters group by group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import ShapeError, UsageError

#: the name that means "this row uses no adapter" (PEFT's)
BASE = "__base__"


@dataclass(frozen=True)
class RowGroups:
    """The rows of one batch grouped by adapter: ``(adapter name, row indices)`` in first-seen order."""

    batch: int
    groups: tuple[tuple[str, torch.Tensor], ...]

    @property
    def names(self) -> list[str]:
        """The adapters the batch uses (``__base__`` left out)."""
        return [name for name, _ in self.groups]


def row_groups(adapter_names: Sequence[str], known: Sequence[str], *, training: bool = False,
               merged: bool = False, device: torch.device | str = "cpu") -> RowGroups:
    """Check ``adapter_names`` (one per row) and group the rows; UsageError naming what is wrong.

    >>> row_groups(["a", "__base__", "a", "b"], ["a", "b"]).groups[0]
    ('a', tensor([0, 2]))
    """
    if isinstance(adapter_names, str) or not isinstance(adapter_names, Sequence):
        raise UsageError(f"adapter_names must be a list with one adapter name per row, got {adapter_names!r}",
                        fix="pass e.g. adapter_names=['a', '__base__', 'b'] for a batch of three")
    if training:
        raise UsageError("adapter_names (a mixed-adapter batch) is for inference, and the model is in training mode",
                        fix="call model.eval() first, or train one adapter at a time with set_adapter")
    if merged:
        raise UsageError("adapter_names cannot be used while adapters are merged into the base weights",
                        fix="call model.unmerge_adapter() first")
    known_set = known if isinstance(known, (set, frozenset, dict)) else set(known)
    unknown = sorted({name for name in adapter_names if name != BASE and name not in known_set})
    if unknown:
        shown = sorted(known_set)
        listed = ", ".join(shown[:10]) + (f", ... ({len(shown)} in all)" if len(shown) > 10 else "")
        raise UsageError(f"adapter_names holds {unknown[0]!r}, which is not a loaded adapter"
                        + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                        fix=f"use loaded adapters ({listed}) or {BASE!r} for rows without one")
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(adapter_names):
        if name != BASE:
            rows.setdefault(name, []).append(i)
    return RowGroups(len(adapter_names), tuple((name, torch.tensor(idx, device=device)) for name, idx in rows.items()))


def check_batch(groups: RowGroups, x: torch.Tensor, layer_name: str = "?") -> None:
    """ShapeError when the layer's input does not have one row per adapter name."""
    if x.dim() < 2 or x.shape[0] != groups.batch:
        raise ShapeError(f"layer {layer_name!r}: adapter_names names {groups.batch} rows, but the layer's input has "
                         f"shape {tuple(x.shape)} (its first dimension must be the batch)")


def factor_output(x: torch.Tensor, slots: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``y_i = x_i A[slots_i] B[slots_i]`` for every row i of ``x`` (batch first, features last), in ``a``'s dtype.

    ``a``: (slots, in, k), ``b``: (slots, k, out); slot 0 is all zeros (rows without an adapter here)."""
    rows = x.shape[0]
    flat = x.reshape(rows, -1, x.shape[-1])
    if flat.dtype != a.dtype:
        flat = flat.to(a.dtype)
    y = torch.bmm(torch.bmm(flat, a.index_select(0, slots)), b.index_select(0, slots))
    return y.reshape(*x.shape[:-1], b.shape[-1])


def factor_add(result: torch.Tensor, x: torch.Tensor, slots: torch.Tensor, a: torch.Tensor, b: torch.Tensor
               ) -> torch.Tensor:
    """``result + factor_output(x, ...)`` with the add fused into the second batched matmul (``baddbmm``);
    ``result`` has ``a``'s dtype and ``x``'s shape but for its last dimension."""
    rows = x.shape[0]
    flat = x.reshape(rows, -1, x.shape[-1])
    if flat.dtype != a.dtype:
        flat = flat.to(a.dtype)
    h = torch.bmm(flat, a.index_select(0, slots))
    return torch.baddbmm(result.reshape(rows, -1, result.shape[-1]), h, b.index_select(0, slots)).reshape(result.shape)


@dataclass
class LayerServing:
    """What one layer runs in a cached mixed batch: the factor rows (``slots``, ``a``, ``b``; None when no
    adapter of the batch is a two-factor one here) and ``loop``: ``(rows or None for all, adapter, node
    tensors)`` for the others."""

    slots: torch.Tensor | None
    a: torch.Tensor | None
    b: torch.Tensor | None
    loop: list

    def output(self, layer, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """``result`` plus every row's adapter output (``layer``: the :class:`~tn_peft.model.layers.TnLayer`)."""
        if self.a is not None and result.dtype == self.a.dtype and result.shape[:-1] == x.shape[:-1]:
            result = factor_add(result, x, self.slots, self.a, self.b)
        elif self.a is not None:
            result = result + factor_output(x, self.slots, self.a, self.b).to(result.dtype)
        for rows, adapter, tensors in self.loop:
            if rows is None:
                result = result + layer.output_with(adapter, tensors, x).to(result.dtype)
            else:
                out = layer.output_with(adapter, tensors, x.index_select(0, rows))
                result = result.index_add(0, rows, out.to(result.dtype))
        return result


__all__ = ["BASE", "LayerServing", "RowGroups", "check_batch", "factor_add", "factor_output", "row_groups"]
