"""``inspect``: describe an adapter folder, PEFT LoRA or tn_peft: type, layers, parameters, norms of
dW (Frobenius and spectral), and the orthonormality error ``max |Q^T Q - I|`` of every unitary node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..io import checkpoint as ckpt
from ..errors import CheckpointError
from .report import adapter_rank


def inspect_dir(directory: str | Path) -> dict[str, Any]:
    """A JSON-serializable description of the adapter in ``directory`` (see :func:`format_inspection`)."""
    directory = Path(directory)
    path = directory / ckpt.CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; not an adapter folder")
    try:
        peft_type = json.loads(path.read_text()).get("peft_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a JSON object ({exc})") from None
    if peft_type == "LORA":
        return _inspect_lora(directory)
    if peft_type == ckpt.PEFT_TYPE:
        return _inspect_tn(directory)
    raise CheckpointError(f"{path}: key 'peft_type' is {peft_type!r}; inspect reads LORA and {ckpt.PEFT_TYPE} folders")


def _norms(dW: torch.Tensor) -> dict[str, float]:
    s = torch.linalg.svdvals(dW.to(torch.float64))
    return {"fro": float(torch.linalg.norm(s)), "spectral": float(s[0]) if s.numel() else 0.0}


def _inspect_lora(directory: Path) -> dict[str, Any]:
    from .lora_io import read_lora

    lora = read_lora(directory)
    layers = []
    for name, layer in lora.layers.items():
        layers.append({"name": name, "shape": [layer.out_features, layer.in_features], "rank": layer.rank,
                       "alpha": layer.alpha, "scale": layer.scale, "parameters": layer.num_parameters(),
                       "dW": _norms(layer.delta_weight()), "unitary_nodes": {}})
    settings = {k: lora.config.get(k) for k in ("r", "lora_alpha", "use_rslora", "fan_in_fan_out")}
    settings.update({k: lora.config[k] for k in ("rank_pattern", "alpha_pattern") if lora.config.get(k)})
    return {"directory": str(directory), "type": "PEFT LoRA", "graph": "lora", "settings": settings,
            "base_model": lora.config.get("base_model_name_or_path"), "layers": layers,
            "modules_to_save": sorted(lora.modules_to_save),
            "parameters": sum(layer["parameters"] for layer in layers)}


def _inspect_tn(directory: Path) -> dict[str, Any]:
    from .tn_io import load_tn_adapter

    config, network, adapters, extra = load_tn_adapter(directory)
    layers, seen_shared = [], set()
    for name, adapter in adapters.items():
        unitary = {}
        for node_name, node in adapter.node_modules().items():
            if hasattr(node, "orthonormality_error"):
                unitary[node_name] = float(node.orthonormality_error())
        own = sum(n.num_parameters() for key, n in adapter.nodes.items())
        shared = {id(n): n.num_parameters() for n in adapter._shared.values()} if adapter._shared else {}
        with torch.no_grad():
            dW = adapter.delta_weight()
        layers.append({"name": name, "shape": [adapter.out_features, adapter.in_features],
                       "rank": adapter_rank(adapter), "scale": adapter.scale, "parameters": own,
                       "dW": _norms(dW), "unitary_nodes": unitary,
                       "kinds": {spec.name: spec.kind for spec in adapter.network.nodes}})
        for key, count in shared.items():
            seen_shared.add((key, count))
    shared_params = sum(count for _, count in seen_shared)
    return {"directory": str(directory), "type": f"tn_peft ({network.name})", "graph": network.name,
            "settings": dict(config.get("graph_args") or network.params),
            "base_model": config.get("base_model_name_or_path"), "layers": layers,
            "modules_to_save": sorted(k.removeprefix(ckpt.PREFIX) for k in extra),
            "parameters": sum(layer["parameters"] for layer in layers) + shared_params,
            "converted_from": config.get("converted_from")}


def format_inspection(info: dict[str, Any]) -> str:
    """The text ``tn-peft inspect`` prints."""
    settings = ", ".join(f"{k}={v}" for k, v in info["settings"].items())
    lines = [f"{info['directory']}: {info['type']}",
             f"  settings: {settings}",
             f"  base model: {info.get('base_model') or '(not recorded)'}"]
    if info.get("converted_from"):
        src = info["converted_from"]
        lines.append("  converted from: " + ", ".join(f"{k}={v}" for k, v in src.items() if v is not None))
    layers = info["layers"]
    width = max((len(layer["name"]) for layer in layers), default=5)
    lines.append(f"  {'layer':<{width}}  {'out x in':>11}  {'rank':>4}  {'params':>7}  {'|dW|_F':>9}  {'|dW|_2':>9}"
                 f"  orthonormality error of unitary nodes")
    worst = 0.0
    for layer in layers:
        unitary = layer["unitary_nodes"]
        worst = max([worst, *unitary.values()])
        ortho = ", ".join(f"{k}={v:.1e}" for k, v in unitary.items()) or "-"
        rank = layer["rank"] if layer["rank"] is not None else "-"
        lines.append(f"  {layer['name']:<{width}}  {layer['shape'][0]:>5} x {layer['shape'][1]:<5}  {rank:>4}  "
                     f"{layer['parameters']:>7}  {layer['dW']['fro']:>9.4f}  {layer['dW']['spectral']:>9.4f}  {ortho}")
    lines.append(f"  total: {len(layers)} layers, {info['parameters']:,} adapter parameters"
                 + (f", max orthonormality error {worst:.1e}" if any(l["unitary_nodes"] for l in layers) else ""))
    if info["modules_to_save"]:
        lines.append(f"  modules_to_save tensors: {', '.join(info['modules_to_save'])}")
    return "\n".join(lines)
