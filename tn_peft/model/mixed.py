"""Mixed-adapter batches (PEFT's ``adapter_names=``): row i of a batch runs adapter ``adapter_names[i]``,
or none for ``"__base__"``, in one forward.

``y[rows_a] = base(x)[rows_a] + x[rows_a] dW_a^T`` for each adapter ``a`` named in the batch: rows are
grouped by adapter once per forward (:func:`row_groups`), each layer runs each group's rows through
that adapter's plan (:meth:`~tn_peft.model.layers.TnLayer.adapter_output`) and adds them in place of those
rows, and the nodes of every named adapter are evaluated together beforehand (same-shape circuits of
all adapters and layers in one batched call, :mod:`tn_peft.adapter.batching`), so a batch over many tiny
Quantum-PEFT adapters costs one circuit evaluation per shape plus two small products per group.

As in PEFT, mixed batches are for inference: the model must be in eval mode, with nothing merged.
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
    unknown = sorted({name for name in adapter_names if name != BASE and name not in known})
    if unknown:
        raise UsageError(f"adapter_names holds {unknown[0]!r}, which is not a loaded adapter"
                        + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                        fix=f"use loaded adapters ({', '.join(known)}) or {BASE!r} for rows without one")
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


__all__ = ["BASE", "RowGroups", "check_batch", "row_groups"]
