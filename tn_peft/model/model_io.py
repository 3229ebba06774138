"""Between a :class:`~tn_peft.model.model.TnPeftModel` and the checkpoint format of :mod:`tn_peft.io.checkpoint`:
which live tensor each checkpoint key names, where an adapter's folder is, and loading into a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import checkpoint as ckpt
from .layers import layer_info


def adapter_state_dict(model, name: str) -> dict[str, torch.Tensor]:
    """Checkpoint key -> live tensor (parameter or buffer) of adapter ``name`` of a TnPeftModel."""
    state: dict[str, torch.Tensor] = {}

    def put(key: str, tensor: torch.Tensor) -> None:
        if key in state:
            raise CheckpointError(f"two tensors of adapter {name!r} map to checkpoint key {key!r}; "
                                  "rename the graph's nodes so that no name is another's 'initial_' form")
        state[key] = tensor

    for module_name, layer in model.tn_layers():
        if name in layer.tn_adapters:
            for full, (_, tensor) in ckpt.layer_keys(module_name, layer.tn_adapters[name]).items():
                put(full, tensor)
    for shape_key, nodes in (model.tn_shared[name].items() if name in model.tn_shared else ()):
        for full, tensor in ckpt.shared_keys(shape_key, nodes).items():
            put(full, tensor)
    for module_name, wrapper in model._saved_wrappers():
        if name in wrapper.modules_to_save:
            for key, tensor in wrapper.modules_to_save[name].state_dict(keep_vars=True).items():
                put(f"{ckpt.PREFIX}{module_name}.{key}", tensor)
    return state


def adapter_quantizers(model, name: str) -> dict[str, Any]:
    """Checkpoint key -> quantizer of adapter ``name``'s quantized parameters (:mod:`tn_peft.nodes.quantize`)."""
    quantizers: dict[str, Any] = {}
    for module_name, layer in model.tn_layers():
        if name in layer.tn_adapters:
            quantizers.update(ckpt.layer_quantizers(module_name, layer.tn_adapters[name]))
    for shape_key, nodes in (model.tn_shared[name].items() if name in model.tn_shared else ()):
        quantizers.update(ckpt.shared_quantizers(shape_key, nodes))
    return quantizers


def adapter_file_tensors(model, name: str, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """What ``adapter_model.safetensors`` holds for adapter ``name`` (``state``: its
    :func:`adapter_state_dict`, if already at hand): sharded tensors gathered, quantized ones packed."""
    from .distributed import full_tensor

    state = adapter_state_dict(model, name) if state is None else state
    return ckpt.encode_tensors({key: full_tensor(tensor) for key, tensor in state.items()},
                               adapter_quantizers(model, name))


def load_weights(model, directory: Path, adapter_name: str) -> None:
    """Copy the tensors of ``directory`` into adapter ``adapter_name`` (exact keys and shapes, else CheckpointError)."""
    live = adapter_state_dict(model, adapter_name)
    shapes = {k: tuple(t.shape) for k, t in live.items()}
    quantizers = adapter_quantizers(model, adapter_name)
    _, tensors = ckpt.load_adapter_files(directory)
    expected = ckpt.file_shapes(shapes, quantizers, per_key=ckpt.is_packed_per_key(tensors))
    ckpt.check_tensors(directory / ckpt.WEIGHTS_NAME, tensors, expected)
    tensors = ckpt.decode_tensors(directory / ckpt.WEIGHTS_NAME, tensors, quantizers, shapes)
    with torch.no_grad():
        for key, tensor in live.items():
            tensor.copy_(tensors[key].to(dtype=tensor.dtype, device=tensor.device))


def resolve_directory(model_id: str | Path, adapter_name: str) -> Path:
    """An adapter's folder: ``model_id/adapter_name`` when that holds a config (non-default adapters), else ``model_id``."""
    directory = Path(model_id)
    sub = ckpt.adapter_directory(directory, adapter_name)
    if adapter_name != "default" and (sub / ckpt.CONFIG_NAME).is_file():
        return sub
    return directory


def check_saved_targets(model: nn.Module, saved: dict[str, Any], directory: Path) -> list[str]:
    """The saved target module names, checked against ``model`` (CheckpointError naming the module or key)."""
    path = directory / ckpt.CONFIG_NAME
    names = dict(model.named_modules())
    for name, target in ckpt.saved_targets(saved, path).items():
        if name not in names:
            raise CheckpointError(f"{path}: target module {name!r} is not in the base model "
                                  f"({type(model).__name__}); load onto the model the adapter was trained on")
        _, out_features, in_features = layer_info(names[name], name)
        if target.shape != (out_features, in_features):
            raise CheckpointError(f"{path}: target module {name!r} was (out, in) = {list(target.shape)} when saved, "
                                  f"the base model's is {[out_features, in_features]}")
    return list(saved["targets"])


def saved_layer_specs(saved: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Module name -> graph spec for the saved targets that carry their own graph (``layer_graph_args``)."""
    return {name: target.graph for name, target in ckpt.saved_targets(saved, directory / ckpt.CONFIG_NAME).items()
            if target.graph is not None}
