"""tn_peft adapter folders for conversion: building per-layer adapters from a saved config, node
state <-> checkpoint keys (the format of :mod:`tn_peft.io.checkpoint`), and safe output folders.

Output folders are written whole into a hidden sibling folder and renamed into place, so a crash
never leaves a half-written OUT_DIR; an existing non-empty OUT_DIR is refused unless ``force``, and
an OUT_DIR that is (or contains) the input is refused always: input files are never modified.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import checkpoint as ckpt
from ..io.atomic import atomic_write_folder
from ..model.module_names import in_saved_module
from ..nodes.quantize import CODES, SCALE


# ------------------------------------------------------------------ output folders
def check_output(out_dir: str | Path, *, force: bool = False, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Refuse an OUT_DIR that is a file, is non-empty without ``force``, or would overwrite an input."""
    out = Path(out_dir)
    resolved = out.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if resolved == source or source.is_relative_to(resolved) or resolved.is_relative_to(source):
            raise CheckpointError(f"{out}: the output folder overlaps the input {given}; input files are never "
                                  f"modified, choose another OUT_DIR")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out}: exists and is not empty; pass --overwrite (force=True) to replace it")
    return out


def write_folder(out_dir: str | Path, write: Callable[[Path], None], *, force: bool = False,
                 inputs: tuple[str | Path, ...] = ()) -> Path:
    """:func:`check_output`, then ``write(tmp_folder)`` moved onto ``out_dir`` in one rename
    (:func:`tn_peft.io.atomic.atomic_write_folder`)."""
    return atomic_write_folder(check_output(out_dir, force=force, inputs=inputs), write)


# ------------------------------------------------------------------ node state <-> keys
def adapter_tensors(module_name: str, adapter, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """One layer's checkpoint tensors (``base_model.model.<module>.tn_<node>[.<param>]``), cast to ``dtype``."""
    out = {}
    for full, (_, tensor) in ckpt.layer_keys(module_name, adapter).items():
        tensor = tensor.detach()
        out[full] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


# ------------------------------------------------------------------ reading tn_peft folders
def network_from_config(config: Mapping[str, Any], path: Path):
    """The saved graph (``config['graph']``, parameters already applied) as a Network."""
    from ..errors import SpecError
    from ..graph.spec import network_from_spec

    try:
        return network_from_spec(config["graph"], source=str(path))
    except SpecError as exc:
        raise CheckpointError(f"{path}: key 'graph' is not a valid graph spec ({exc})") from None


def load_tn_adapter(directory: str | Path, dtype: torch.dtype = torch.float64):
    """Rebuild every adapted layer of a tn_peft folder without its base model.

    Returns ``(config, network, layers, extra)``: ``layers`` maps module name -> a built
    :class:`~tn_peft.adapter.adapter.Adapter` (parameters loaded, in ``dtype``; a target that carries its own
    ``graph`` -- ``layer_graph_args`` -- is built from it, the others from ``network``), ``extra`` holds the
    ``modules_to_save`` tensors under their checkpoint keys. CheckpointError names file and key.
    """
    directory = Path(directory)
    config, tensors = ckpt.load_adapter_files(directory)
    path = directory / ckpt.WEIGHTS_NAME
    network = network_from_config(config, directory / ckpt.CONFIG_NAME)
    shared_specs = [spec for spec in network.nodes if spec.shared]
    shared: dict[str, dict[str, Any]] = {}
    own_graphs: dict[str, Any] = {}  # a per-layer graph spec (as JSON) -> its Network
    layers: dict[str, Any] = {}
    used: set[str] = set()
    for name, target in sorted(ckpt.saved_targets(config, directory / ckpt.CONFIG_NAME).items()):
        out_features, in_features = target.shape
        shape_key = ckpt.shape_key(out_features, in_features)
        if shared_specs and shape_key not in shared:
            nodes = network.shared_nodes(in_features, out_features, dtype=dtype)
            quantizers = ckpt.shared_quantizers(shape_key, nodes)
            for full, live in ckpt.shared_keys(shape_key, nodes).items():
                used.update(_copy(path, full, tensors, live, quantizers.get(full)))
            shared[shape_key] = nodes
        layer_network = network
        if target.graph is not None:  # the layer's own graph (layer_graph_args), parsed once
            text = json.dumps(target.graph, sort_keys=True)
            if text not in own_graphs:
                own_graphs[text] = network_from_config({"graph": target.graph}, directory / ckpt.CONFIG_NAME)
            layer_network = own_graphs[text]
        adapter = layer_network.build(in_features, out_features, shared_nodes=shared.get(shape_key), dtype=dtype)
        quantizers = ckpt.layer_quantizers(name, adapter)
        for full, (_, live) in ckpt.layer_keys(name, adapter).items():
            used.update(_copy(path, full, tensors, live, quantizers.get(full)))
        layers[name] = adapter
    extra = {k: v for k, v in tensors.items() if k not in used}
    saved = list(config.get("modules_to_save") or [])
    for key in extra:
        module = key.removeprefix(ckpt.PREFIX)
        if not in_saved_module(module, saved):
            raise CheckpointError(f"{path}: unexpected key {key!r} (not a node of a saved target, not in modules_to_save)")
    return config, network, layers, extra


def _copy(path: Path, key: str, tensors: Mapping[str, torch.Tensor], live: torch.Tensor, quantizer=None) -> set[str]:
    """Copy checkpoint key ``key`` (decoded when ``quantizer``) into ``live``; the file keys it used."""
    if quantizer is not None:
        value = ckpt.decode_key(path, tensors, key, quantizer, live.shape)
        with torch.no_grad():
            live.copy_(value.to(live.dtype))
        return {key + CODES, key + SCALE}
    if key not in tensors:
        raise CheckpointError(f"{path}: missing key {key!r}; the checkpoint does not match its adapter_config.json graph")
    value = tensors[key]
    if tuple(value.shape) != tuple(live.shape):
        raise CheckpointError(f"{path}: key {key!r} has shape {tuple(value.shape)}, its graph needs {tuple(live.shape)}")
    with torch.no_grad():
        live.copy_(value.to(live.dtype))
    return {key}
