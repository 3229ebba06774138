"""``from_lora``: a PEFT LoRA checkpoint folder -> a tn_peft adapter folder that ``from_pretrained`` loads.

    dW = (alpha / r) B A  (alpha / sqrt(r) with rsLoRA)  =  U diag(s) V^T  =  TT cores ...

- ``svd``: exact (QR + SVD, QUANTUM_PEFT.md sec. 1); U, V set through the map's right inverse.
- ``pauli``: a fit (circuits reach only part of the Stiefel manifold); error reported per layer.
- ``tt`` / ``ttd``: TT-SVD of dW (dense cores / mixed-canonical cores with ``s`` on a bond); exact at
  full TT rank, a fit with a rank cap or a tolerance.

Graph parameters are one set per adapter, so layers of lower rank are padded (zero singular values,
orthonormal-complement columns; dW unchanged) up to the largest rank, capped per layer by
``min(rank, out, in)`` (svd) or the full TT rank of each bond (tt/ttd).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import checkpoint as ckpt
from ..errors import CheckpointError
from . import fill, tt
from .linalg import lora_to_svd, relative_error
from .lora_io import LoraCheckpoint, read_lora
from .report import ConversionReport, LayerReport
from .tn_io import adapter_tensors, check_output, write_folder

KINDS = ("svd", "pauli", "tt", "ttd")
GRAPHS = {"svd": "svd", "pauli": "quantum_peft", "tt": "tt", "ttd": "ttd"}
#: below this relative error a layer counts as exact (fp64 math, parameters stored in fp32)
EXACT = 1e-5


def from_lora(lora_dir: str | Path, out_dir: str | Path, to: str = "svd", *, map: str = "exp", layers: int = 1,
              rank: int | None = None, tolerance: float | None = None, cores: int = 3, center: int = 1,
              min_fidelity: float | None = None, steps: int = 100, force: bool = False, base_model=None,
              progress: bool = False) -> ConversionReport:
    """Convert the LoRA checkpoint in ``lora_dir`` into a tn_peft adapter written to ``out_dir``.

    Parameters
    ----------
    to : ``svd`` | ``pauli`` | ``tt`` | ``ttd``
    map : the Stiefel map of ``svd``/``ttd`` nodes (``exp``, ``cayley``, ``householder``, ...).
    layers : circuit layers L of ``pauli``.
    rank : ``tt``/``ttd``: cap on every TT bond (a fit when below the full TT rank).
    tolerance : ``tt``/``ttd``: TT-SVD to relative Frobenius error <= tolerance (default: exact).
    cores, center : number of TT cores; the bond carrying ``s`` in ``ttd``.
    min_fidelity : refuse (CheckpointError, nothing written) when a layer's 1 - relative error is lower.
    steps : optimizer steps of the Pauli fit.
    base_model : optional model to check every LoRA layer's shape against (CheckpointError on mismatch).

    Returns a :class:`ConversionReport`. Input files are only read; ``out_dir`` is written atomically.
    """
    from tqdm.auto import tqdm

    if to not in KINDS:
        raise CheckpointError(f"unknown conversion target {to!r}; use one of {', '.join(KINDS)}")
    check_output(out_dir, force=force, inputs=(lora_dir,))
    lora = read_lora(lora_dir)
    types = _check_base_model(lora, base_model)
    alpha = lora.config.get("lora_alpha", 8)
    names = list(lora.layers)
    bar = tqdm(names, desc=f"lora -> {to}", unit="layer", disable=not progress)
    if to in ("svd", "pauli"):
        factors = {name: lora_to_svd(lora.layers[name].B, lora.layers[name].A, lora.layers[name].scale)
                   for name in names}
        k = max(s.numel() for _, s, _ in factors.values())
        graph_args: dict[str, Any] = ({"rank": k, "alpha": alpha, "map": map} if to == "svd"
                                      else {"rank": k, "alpha": alpha, "layers": layers})
        network = _load(GRAPHS[to], graph_args)
        if any(min(layer.out_features, layer.in_features) < k for layer in lora.layers.values()):
            network.set_size("k", "min(rank, out, in)")
    else:
        trains, graph_args, network = _tt_trains(lora, to, rank, tolerance, cores, center, map, alpha)
    tensors: dict[str, torch.Tensor] = {}
    reports: list[LayerReport] = []
    for name in bar:
        layer = lora.layers[name]
        # circuits are fitted in float32 (the stored precision; their float64 path is much slower)
        dtype = torch.float32 if to == "pauli" else torch.float64
        adapter = network.build(layer.in_features, layer.out_features, dtype=dtype)
        if to == "svd":
            fill.fill_svd(adapter, *factors[name], layer=name)
        elif to == "pauli":
            from .pauli_fit import fit_pauli

            fit_pauli(adapter, layer.B, layer.A, layer.scale, *factors[name], steps=steps)
        elif to == "tt":
            fill.fill_tt(adapter, trains[name], layer=name)
        else:
            fill.fill_ttd(adapter, *trains[name], center, layer=name)
        layer_tensors = adapter_tensors(name, adapter, torch.float32)
        error = _stored_error(network, layer, layer_tensors, name)
        tensors.update(layer_tensors)
        reports.append(LayerReport(name, (layer.out_features, layer.in_features), layer.rank,
                                   layer.num_parameters(), adapter.num_parameters(), error,
                                   rank=_rank_of(adapter, to)))
    report = ConversionReport(str(lora_dir), str(out_dir), to, GRAPHS[to], graph_args,
                              exact=all(r.relative_error < EXACT for r in reports), layers=reports,
                              copied=sorted(lora.modules_to_save))
    if min_fidelity is not None:
        short = [r for r in reports if r.fidelity < min_fidelity]
        if short:
            worst = min(short, key=lambda r: r.fidelity)
            raise CheckpointError(
                f"{len(short)} of {len(reports)} layers fall short of --min-fidelity {min_fidelity}: worst "
                f"{worst.name!r} with fidelity {worst.fidelity:.4f} (relative error of dW {worst.relative_error:.3e}); "
                f"nothing was written. Raise the circuit layers / rank, or lower --min-fidelity")
    for name, tensor in lora.modules_to_save.items():
        tensors[f"{ckpt.PREFIX}{name}"] = tensor
    config = _tn_config(lora, network, graph_args, types)
    write_folder(out_dir, lambda tmp: ckpt.save_adapter_files(tmp, config, tensors), force=force, inputs=(lora_dir,))
    return report


def _load(graph: str, graph_args: dict[str, Any]):
    from ..spec import load_graph

    return load_graph(graph, **graph_args)


def _tt_trains(lora: LoraCheckpoint, to: str, rank, tolerance, cores: int, center: int, map: str, alpha):
    """TT-SVD of every layer's dW; returns (trains, graph_args, network) with bonds padded to one rank."""
    if tolerance is None and rank is None:
        tolerance = 1e-12  # exact up to float64 rounding: drops only numerically zero singular values
    if to == "ttd" and not 1 <= center < cores:
        raise CheckpointError(f"--center {center} must be a bond between cores, 1..{cores - 1}")
    probe = _load(to, {"cores": cores, "rank": 1, "alpha": alpha, **({"center": center, "map": map} if to == "ttd" else {})})
    trains, widest = {}, 1
    for name, layer in lora.layers.items():
        sizes = probe.resolve(layer.in_features, layer.out_features)
        out_f = [sizes[leg] for leg in probe.open["out"]]
        in_f = [sizes[leg] for leg in probe.open["in"]]
        dW = layer.delta_weight()
        bonds = tt.ranks_for_tolerance(dW, out_f, in_f, tolerance) if tolerance is not None else None
        if rank is not None:
            bonds = [min(b, rank) for b in bonds] if bonds is not None else rank
        train = tt.tt_svd(dW, out_f, in_f, bonds)
        widest = max([widest] + [c.shape[3] for c in train[:-1]])
        trains[name] = tt.mixed_canonical(train, center) if to == "ttd" else train
    graph_args = {"cores": cores, "rank": widest, "alpha": alpha}
    if to == "ttd":
        graph_args.update(center=center, map=map)
    network = _load(to, graph_args)
    folded = [f"m{t}*n{t}" for t in range(1, cores + 1)]
    for t in range(1, cores):  # cap each bond at its full TT rank so every core fits every layer
        network.set_size(f"r{t}", f"min(rank, {'*'.join(folded[:t])}, {'*'.join(folded[t:])})")
    return trains, graph_args, network


def _stored_error(network, layer, tensors: dict[str, torch.Tensor], name: str) -> float:
    """Relative error of dW as it will load: fp32 parameters read back into a fresh fp64 adapter."""
    from .tn_io import adapter_keys

    fresh = network.build(layer.in_features, layer.out_features, dtype=torch.float64)
    with torch.no_grad():
        for full, (_, live) in adapter_keys(name, fresh).items():
            live.copy_(tensors[full].to(live.dtype))
        return relative_error(fresh.delta_weight(), layer.delta_weight())


def _rank_of(adapter, to: str) -> int | None:
    if to in ("svd", "pauli"):
        return adapter.node("s").shape[0]
    return max(adapter.sizes.get(f"r{t}", 1) for t in range(1, len(adapter.operands) + 1))


def _check_base_model(lora: LoraCheckpoint, base_model) -> dict[str, str]:
    """Layer types (linear/conv1d) and, with a base model, a CheckpointError for any layer that does not fit."""
    default = "conv1d" if lora.fan_in_fan_out else "linear"
    if base_model is None:
        return {name: default for name in lora.layers}
    from ..targets import layer_info

    modules = dict(base_model.named_modules())
    path = lora.directory / "adapter_model.safetensors"
    types = {}
    for name, layer in lora.layers.items():
        key = f"base_model.model.{name}.lora_A.weight"
        if name not in modules:
            raise CheckpointError(f"{path}: key {key!r}: module {name!r} is not in the base model "
                                  f"({type(base_model).__name__})")
        kind, out_features, in_features = layer_info(modules[name], name)
        if (out_features, in_features) != (layer.out_features, layer.in_features):
            raise CheckpointError(f"{path}: key {key!r}: the LoRA factors are (out, in) = "
                                  f"{(layer.out_features, layer.in_features)}, the base model's {name!r} is "
                                  f"{(out_features, in_features)}")
        types[name] = kind
    return types


def _tn_config(lora: LoraCheckpoint, network, graph_args: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    from ..config import AdapterConfig

    config = AdapterConfig(graph=network.name, graph_args=dict(graph_args), target_modules=sorted(lora.layers),
                           modules_to_save=lora.config.get("modules_to_save") or None,
                           base_model_name_or_path=lora.config.get("base_model_name_or_path"),
                           inference_mode=True)
    targets = {name: {"type": types[name], "shape": [layer.out_features, layer.in_features]}
               for name, layer in lora.layers.items()}
    data = ckpt.make_config(config.to_dict(), network.to_spec(), targets)
    data["converted_from"] = {"peft_type": "LORA", "r": lora.config.get("r"), "lora_alpha": lora.config.get("lora_alpha"),
                              "use_rslora": lora.use_rslora, "fan_in_fan_out": lora.fan_in_fan_out,
                              "task_type": lora.config.get("task_type")}
    return data
