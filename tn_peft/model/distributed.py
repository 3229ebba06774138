"""Sharded training with FSDP2 (``torch.distributed.fsdp.fully_shard``): one call to shard an adapted model,
and the full adapter state gathered for saving.

:func:`shard` applies ``fully_shard`` to each transformer block (frozen base weights and the block's
trainable adapter nodes in one FSDP unit, as QLoRA + FSDP setups do), then to the whole
:class:`~tn_peft.model.model.TnPeftModel`, whose own unit holds what the blocks do not: shared nodes
(LoTR's ``tn_shared``), the head, embeddings. FSDP2 gathers a block's parameters only around that
block's forward, so nodes cannot be evaluated for all layers at once there: a sharded model
evaluates each layer's nodes inside its block (:attr:`TnPeftModel.batch_nodes` is turned off; the
model also notices sharded nodes by itself, e.g. under ``accelerate launch`` with an FSDP2 config).

Saving: :meth:`TnPeftModel.save_pretrained` gathers every sharded adapter tensor (``full_tensor()``,
a collective) and only rank 0 writes, so under FSDP it must be called on **every** rank (as
accelerate's ``get_state_dict``). Loading: load the adapter (``from_pretrained`` / ``load_adapter``)
before sharding.

Launch (GPUs, one process per GPU)::

    torchrun --nproc_per_node 8 train.py            # train.py calls tn_peft.model.distributed.shard(model)
    accelerate launch --config_file fsdp2.yaml train.py   # fsdp_version: 2, fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def is_sharded(tensor: torch.Tensor) -> bool:
    """True for a DTensor (an FSDP2-sharded parameter outside its unit's forward)."""
    return hasattr(tensor, "full_tensor") and hasattr(tensor, "placements")


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a sharded one (a collective: every rank must call it), else the tensor itself."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks to shard one by one: modules whose class transformers lists in ``_no_split_modules``
    (e.g. ``BertLayer``, ``GPT2Block``) that hold adapted layers; else the items of the ModuleLists that do."""
    from .layers import TnLayer

    def holds_adapters(module: nn.Module) -> bool:
        return any(isinstance(m, TnLayer) for m in module.modules())

    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names and holds_adapters(m)]
    if not blocks:
        for module in model.modules():
            if isinstance(module, nn.ModuleList):
                blocks += [m for m in module if holds_adapters(m) and not isinstance(m, TnLayer)]
    # outermost only: a block inside another block is sharded with it
    return [b for b in blocks if not any(b is not o and any(b is m for m in o.modules()) for o in blocks)]


def shard(model: nn.Module, blocks: Sequence[nn.Module] | None = None, **fsdp_kwargs: Any) -> nn.Module:
    """``fully_shard`` each block (default: :func:`transformer_blocks`), then the model itself.

    ``fsdp_kwargs`` go to every ``fully_shard`` call (``mesh``, ``mp_policy``, ``reshard_after_forward``,
    ...). Needs ``torch.distributed`` initialized. Returns ``model`` (now FSDP-managed).
    """
    from torch.distributed.fsdp import fully_shard

    from ..errors import UsageError

    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise UsageError("tn_peft.model.distributed.shard needs torch.distributed initialized",
                        fix="launch with torchrun (or accelerate launch) and call "
                            "torch.distributed.init_process_group first")
    for block in (transformer_blocks(model) if blocks is None else blocks):
        fully_shard(block, **fsdp_kwargs)
    fully_shard(model, **fsdp_kwargs)
    if hasattr(model, "batch_nodes"):
        model.batch_nodes = False
    return model


def is_main_process() -> bool:
    """Rank 0, or no process group at all."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


__all__ = ["barrier", "full_tensor", "is_main_process", "is_sharded", "shard", "transformer_blocks"]
