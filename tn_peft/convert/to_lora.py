"""``to_lora``: any tn_peft adapter folder -> a PEFT LoRA checkpoint that ``PeftModel.from_pretrained`` loads.

Per layer, the truncated SVD of the adapter's dW: ``dW ~ U_k diag(s_k) V_k^T = B A`` with
``B = U_k sqrt(s_k)``, ``A = sqrt(s_k) V_k^T`` and ``lora_alpha = r = k`` (LoRA scale 1). Ranks that
differ between layers go to ``rank_pattern`` / ``alpha_pattern``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from ..io import checkpoint as ckpt
from ..errors import CheckpointError
from .linalg import choose_rank, lora_to_svd, relative_error, svd, svd_to_lora
from .lora_io import lora_config, lora_tensors, write_lora
from .report import ConversionReport, LayerReport, adapter_rank
from .tn_io import load_tn_adapter, write_folder


def to_lora(tn_dir: str | Path, out_dir: str | Path, rank: float | None = None, *, force: bool = False,
            progress: bool = False) -> ConversionReport:
    """Export the tn_peft adapter in ``tn_dir`` as a PEFT LoRA checkpoint in ``out_dir``.

    ``rank``: None keeps each layer's numerical rank (exact); an int caps every layer at that rank;
    a float in (0, 1] keeps per layer the fewest singular values whose cumulative energy
    ``sum s_i^2 / ||dW||_F^2`` reaches it (relative error <= sqrt(1 - rank)), ranks going to ``rank_pattern``.
    """
    from tqdm.auto import tqdm

    tn_dir, out_dir = Path(tn_dir), Path(out_dir)
    from .tn_io import check_output

    check_output(out_dir, force=force, inputs=(tn_dir,))
    config, _, layers, extra = load_tn_adapter(tn_dir)
    types = {name: (info or {}).get("type", "linear") for name, info in config["targets"].items()}
    for name, kind in types.items():
        if kind not in ("linear", "conv1d"):
            raise CheckpointError(f"{tn_dir / ckpt.CONFIG_NAME}: target {name!r} is a {kind} layer; "
                                  f"export to LoRA supports linear and Conv1D layers")
    factors, ranks, reports = {}, {}, []
    for name in tqdm(list(layers), desc="tn -> lora", unit="layer", disable=not progress):
        adapter = layers[name]
        with torch.no_grad():
            dW = adapter.delta_weight()
            low_rank = _low_rank_factors(adapter)
            U, s, V = lora_to_svd(*low_rank) if low_rank is not None else svd(dW)
        k = choose_rank(s, tuple(dW.shape), rank)
        U, s, V = U[:, :k], s[:k], V[:, :k]
        if s.numel() < k:  # a rank-deficient factor pair: pad with zero directions
            from .linalg import truncate

            U, s, V = truncate(U, s, V, k)
        B, A = svd_to_lora(U, s, V, scale=1.0)
        B, A = B.to(torch.float32), A.to(torch.float32)
        factors[name] = (B, A)
        ranks[name] = (k, k)
        error = relative_error(B.double() @ A.double(), dW)
        reports.append(LayerReport(name, (adapter.out_features, adapter.in_features), adapter_rank(adapter),
                                   adapter.num_parameters(), B.numel() + A.numel(), error, rank=k))
    converted = config.get("converted_from") or {}
    lora = lora_config(ranks, base_model_name_or_path=config.get("base_model_name_or_path"),
                       fan_in_fan_out="conv1d" in Counter(types.values()),
                       modules_to_save=config.get("modules_to_save"), task_type=converted.get("task_type"))
    names = {key.removeprefix(ckpt.PREFIX): t for key, t in extra.items()}
    tensors = lora_tensors(factors, names)
    write_folder(out_dir, lambda tmp: write_lora(tmp, lora, tensors), force=force, inputs=(tn_dir,))
    return ConversionReport(str(tn_dir), str(out_dir), "export-lora", "lora",
                            {"rank": rank if rank is not None else "exact"},
                            exact=all(r.relative_error < 1e-5 for r in reports), layers=reports, copied=sorted(names))


def _low_rank_factors(adapter):
    """``(B, A)`` with ``dW = B A`` when the graph is an explicit two-factor form (svd-like U s V, LoRA B A),
    so the SVD costs O((out + in) k^2) instead of a dense one; None otherwise."""
    net = adapter.network
    if net.delta or len(net.open["out"]) != 1 or len(net.open["in"]) != 1:
        return None
    out_leg, in_leg = net.open["out"][0], net.open["in"][0]
    legs = {spec.name: spec.legs for spec in net.nodes}
    tensors = {name: adapter.node(name)().detach().to(torch.float64) for name in legs}
    if set(legs) == {"U", "s", "V"} and len(legs["s"]) == 1:
        k = legs["s"][0]
        if legs["U"] == (out_leg, k) and legs["V"] == (in_leg, k):
            return adapter.scale * tensors["U"] * tensors["s"], tensors["V"].T
    if (set(legs) == {"B", "A"} and len(legs["B"]) == 2 and len(legs["A"]) == 2
            and legs["B"][0] == out_leg and legs["A"][1] == in_leg and legs["B"][1] == legs["A"][0]):
        return adapter.scale * tensors["B"], tensors["A"]
    return None


