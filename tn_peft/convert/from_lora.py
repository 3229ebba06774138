"""``from_lora``: a PEFT LoRA checkpoint folder -> a tn_peft adapter folder that ``from_pretrained`` loads.

    dW = (alpha / r) B A  (alpha / sqrt(r) with rsLoRA)  =  U diag(s) V^T  =  TT cores ...

- ``svd``: exact (QR + SVD, QUANTUM_PEFT.md sec. 1); U, V set through the map's right inverse.
- ``pauli``: a fit (circuits reach only part of the Stiefel manifold); error reported per layer.
- ``tt`` / ``ttd``: TT-SVD of dW (dense cores / mixed-canonical cores with ``s`` on a bond); exact at
  full TT rank, a fit with a rank cap or a tolerance.

Every layer gets its exact rank, nothing is padded: the most common rank becomes ``graph_args`` and
every other layer gets its own through ``layer_graph_args`` (PEFT's ``rank_pattern``), keyed by its
escaped full module name. ``svd`` / ``pauli``: ``rank`` = k = min(r, out, in) of that layer's LoRA
(so a LoRA with ``rank_pattern`` converts with the same per-layer ranks). ``tt`` / ``ttd``: the graph
gains one parameter per bond, ``rank1`` .. ``rank{cores-1}`` (``sizes: r{t}: rank{t}``), set per
layer to the bond ranks its TT-SVD kept (full TT rank when exact, fewer with ``rank`` / ``tolerance``),
and ``rank`` to the layer's largest bond.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ..io import checkpoint as ckpt
from ..errors import CheckpointError, UsageError
from . import fill, tt
from .linalg import lora_to_svd, relative_error
from .lora_io import LoraCheckpoint, read_lora
from .report import ConversionReport, LayerReport, adapter_rank
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
    ignored = [name for name, value in (("rank", rank), ("tolerance", tolerance)) if value is not None]
    if to in ("svd", "pauli") and ignored:
        raise UsageError(f"from_lora(to={to!r}) takes no {' or '.join(ignored)}: they shape tt/ttd bonds, and the "
                         f"{to} form keeps the LoRA's own rank. Fix: drop {', '.join(ignored)}, or convert to tt/ttd")
    check_output(out_dir, force=force, inputs=(lora_dir,))
    lora = read_lora(lora_dir)
    types = _check_base_model(lora, base_model)
    alpha = lora.config.get("lora_alpha", 8)
    names = list(lora.layers)
    bar = tqdm(names, desc=f"lora -> {to}", unit="layer", disable=not progress)
    if to in ("svd", "pauli"):
        factors = {name: lora_to_svd(lora.layers[name].B, lora.layers[name].A, lora.layers[name].scale)
                   for name in names}
        layer_args = {name: {"rank": int(s.numel())} for name, (_, s, _) in factors.items()}
        base = {"alpha": alpha, "map": map} if to == "svd" else {"alpha": alpha, "layers": layers}
        network = _load(GRAPHS[to], {**base, **_most_common(layer_args)})
    else:
        trains, layer_args, network = _tt_trains(lora, to, rank, tolerance, cores, center, map, alpha)
    config = _adapter_config(lora, network, layer_args)
    graph_args = dict(config.graph_args)
    from ..model.targets import ConfigNetworks  # torch and the model package, only when converting

    networks = ConfigNetworks(config).layer_networks(names)  # as the model will rebuild them
    tensors: dict[str, torch.Tensor] = {}
    reports: list[LayerReport] = []
    for name in bar:
        layer = lora.layers[name]
        # circuits are fitted in float32 (the stored precision; their float64 path is much slower)
        dtype = torch.float32 if to == "pauli" else torch.float64
        adapter = networks[name].build(layer.in_features, layer.out_features, dtype=dtype)
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
        error = _stored_error(networks[name], layer, layer_tensors, name)
        tensors.update(layer_tensors)
        reports.append(LayerReport(name, (layer.out_features, layer.in_features), layer.rank,
                                   layer.num_parameters(), adapter.num_parameters(), error,
                                   rank=adapter_rank(adapter)))
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
    config = _tn_config(lora, config, network, networks, types)
    write_folder(out_dir, lambda tmp: ckpt.save_adapter_files(tmp, config, tensors), force=force, inputs=(lora_dir,))
    for text in report.warnings:  # also in report.format() and to_dict()["warnings"]
        warnings.warn(text, UserWarning, stacklevel=2)
    return report


def _load(graph: str, graph_args: dict[str, Any]):
    from ..graph.spec import load_graph

    return load_graph(graph, **graph_args)


def _tt_trains(lora: LoraCheckpoint, to: str, rank, tolerance, cores: int, center: int, map: str, alpha):
    """TT-SVD of every layer's dW; returns (trains, per-layer graph args, network).

    The network has one parameter per bond (``rank{t}``, sized ``r{t}``) so that every layer keeps its exact
    bond ranks; ``rank`` (the scale's denominator) is the layer's largest bond.
    """
    if tolerance is None and rank is None:
        tolerance = 1e-12  # exact up to float64 rounding: drops only numerically zero singular values
    if to == "ttd" and not 1 <= center < cores:
        raise CheckpointError(f"--center {center} must be a bond between cores, 1..{cores - 1}")
    probe = _load(to, {"cores": cores, "rank": 1, "alpha": alpha, **({"center": center, "map": map} if to == "ttd" else {})})
    trains, layer_args = {}, {}
    for name, layer in lora.layers.items():
        sizes = probe.resolve(layer.in_features, layer.out_features)
        out_f = [sizes[leg] for leg in probe.open["out"]]
        in_f = [sizes[leg] for leg in probe.open["in"]]
        dW = layer.delta_weight()
        if tolerance is None:
            train = tt.tt_svd(dW, out_f, in_f, rank)
        else:  # one sweep picks the tolerance's ranks and keeps its cores
            train = tt.tt_svd_tolerance(dW, out_f, in_f, tolerance)
            bonds = [int(c.shape[3]) for c in train[:-1]]
            if rank is not None and max(bonds, default=0) > rank:  # --rank caps some bond: truncate again
                train = tt.tt_svd(dW, out_f, in_f, [min(b, rank) for b in bonds])
        kept = [int(c.shape[3]) for c in train[:-1]]
        layer_args[name] = {"rank": max(kept, default=1), **{f"rank{t}": b for t, b in enumerate(kept, start=1)}}
        trains[name] = tt.mixed_canonical(train, center) if to == "ttd" else train
    common = _most_common(layer_args)
    graph_args = {"cores": cores, "alpha": alpha, "rank": common["rank"]}
    if to == "ttd":
        graph_args.update(center=center, map=map)
    network = _load(to, graph_args)
    for t in range(1, cores):  # one parameter per bond: layers differ in each bond's rank
        network.params[f"rank{t}"] = common[f"rank{t}"]
        network.set_size(f"r{t}", f"rank{t}")
    return trains, layer_args, network


def _most_common(layer_args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The per-layer args shared by most layers (ties: the first layer's)."""
    counts = Counter(tuple(sorted(args.items())) for args in layer_args.values())
    return dict(counts.most_common(1)[0][0]) if counts else {}


def _adapter_config(lora: LoraCheckpoint, network, layer_args: dict[str, dict[str, Any]]):
    """The AdapterConfig of the converted adapter: ``network``'s parameters as graph_args, every layer whose
    args differ in ``layer_graph_args`` under its escaped full module name (PEFT rank_pattern style)."""
    from ..model.config import AdapterConfig

    common = _most_common(layer_args)
    graph_args = {k: common.get(k, v) for k, v in network.params.items()
                  if k in common or k in ("cores", "center", "map", "layers", "alpha")}
    overrides = {re.escape(name): {k: v for k, v in args.items() if common.get(k) != v}
                 for name, args in layer_args.items() if args != common}
    return AdapterConfig(graph=network, graph_args=graph_args, target_modules=sorted(lora.layers),
                         layer_graph_args=overrides, modules_to_save=lora.config.get("modules_to_save") or None,
                         base_model_name_or_path=lora.config.get("base_model_name_or_path"), inference_mode=True)


def _stored_error(network, layer, tensors: dict[str, torch.Tensor], name: str) -> float:
    """Relative error of dW as it will load: fp32 parameters read back into a fresh fp64 adapter."""
    from ..io import checkpoint as ckpt

    fresh = network.build(layer.in_features, layer.out_features, dtype=torch.float64)
    with torch.no_grad():
        for full, (_, live) in ckpt.layer_keys(name, fresh).items():
            live.copy_(tensors[full].to(live.dtype))
        return relative_error(fresh.delta_weight(), layer.delta_weight())


def _check_base_model(lora: LoraCheckpoint, base_model) -> dict[str, str]:
    """Layer types (linear/conv1d) and, with a base model, a CheckpointError for any layer that does not fit."""
    default = "conv1d" if lora.fan_in_fan_out else "linear"
    if base_model is None:
        return {name: default for name in lora.layers}
    from ..model.layers import layer_info

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


def _tn_config(lora: LoraCheckpoint, config, network, networks: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    targets = {}
    for name, layer in lora.layers.items():
        targets[name] = {"type": types[name], "shape": [layer.out_features, layer.in_features]}
        if networks[name] is not network:  # the layer's own graph, as TnPeftModel saves it
            targets[name]["graph"] = networks[name].to_spec()
    data = ckpt.make_config(config.to_dict(), network.to_spec(), targets)
    data["converted_from"] = {"peft_type": "LORA", "r": lora.config.get("r"), "lora_alpha": lora.config.get("lora_alpha"),
                              "rank_pattern": lora.config.get("rank_pattern") or {},
                              "alpha_pattern": lora.config.get("alpha_pattern") or {},
                              "use_rslora": lora.use_rslora, "fan_in_fan_out": lora.fan_in_fan_out,
                              "task_type": lora.config.get("task_type")}
    return data
