"""The speed and memory half of ``tn-peft bench gpu``: each measurement side by side in one process.

- :func:`kernel_rows`: each fused kernel against the torch program it replaces (forward + backward,
  interleaved; :func:`tn_peft.apps.bench.kernels._case` builds both), fp32 and bf16 autocast.
- :func:`floor_rows`: a layer's adapter term over its base GEMM (``x W^T``, bf16), against the
  physical floor of that term: ``max(FLOPs / peak FLOP/s, bytes / bandwidth)``, FLOPs those of the
  plan (forward + backward), bytes the least a separate pass must move (read x and dy, write y and
  dx, read the node tensors and write their gradients). Peaks come from :data:`PEAKS` by the card's
  name, else are measured (:func:`measured_peaks`: a big bf16 GEMM and a big copy).
- :func:`step_rows`: a training step (forward, backward, AdamW) of every catalog graph against peft's
  LoRA on bf16 models built from a config with random weights (MiniLM's shapes, and two Llama-7B
  layers), steps alternated; its time, its ratio to LoRA and its peak memory (CUDA: peak allocated).
- :func:`mixed_rows`: ``tn-peft bench mixed`` on a random MiniLM-shaped model saved to a temp folder.

Times are CUDA-synchronized wall clocks (``torch.cuda.synchronize`` around each timed call).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

#: name fragment -> (bf16 dense FLOP/s, bytes/s), vendor datasheet peaks (dense, no sparsity).
PEAKS: dict[str, tuple[float, float]] = {
    "H200": (989e12, 4.8e12),
    "H100 PCIe": (756e12, 2.0e12),
    "H100 NVL": (835e12, 3.9e12),
    "H100": (989e12, 3.35e12),   # SXM5, HBM3
}

MODELS: dict[str, dict[str, Any]] = {
    # all-MiniLM-L6-v2's shapes (BERT, 6 layers, 384 wide)
    "minilm": {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
               "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512,
               "targets": ["query", "value"], "batch": 32, "tokens": 64},
    # two Llama-7B layers (4096 wide, MLP 11008), a small vocabulary (the embedding does not matter here)
    "llama7b-2layers": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 2,
                        "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008,
                        "vocab_size": 4096, "max_position_embeddings": 4096,
                        "targets": ["q_proj", "v_proj"], "batch": 4, "tokens": 512},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peaks(device: torch.device) -> dict[str, Any]:
    """``{"name", "flops", "bandwidth", "source"}``: the table's peaks for a known card, else measured."""
    if device.type != "cuda":
        name = "cpu"
    else:
        name = torch.cuda.get_device_name(device)
        for fragment, (flops, bandwidth) in PEAKS.items():
            if fragment in name:
                return {"name": name, "flops": flops, "bandwidth": bandwidth, "source": f"datasheet ({fragment})"}
    flops, bandwidth = measured_peaks(device)
    return {"name": name, "flops": flops, "bandwidth": bandwidth, "source": "measured"}


def measured_peaks(device: torch.device, size: int = 8192, copy_bytes: int = 1 << 30) -> tuple[float, float]:
    """bf16 GEMM FLOP/s (``size``^3) and copy bytes/s (``copy_bytes``), best of 5 (sizes /16 on a CPU)."""
    if device.type != "cuda":
        size, copy_bytes = size // 16, copy_bytes // 256
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    src = torch.empty(copy_bytes // 2, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    gemm, copy = [], []
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        a @ a
        sync(device)
        gemm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        copy.append(time.perf_counter() - t0)
    return 2 * size**3 / min(gemm), 2 * copy_bytes / min(copy)   # a copy reads and writes


def _budgeted(items: list, out_of_time: Callable[[], bool], measure: Callable[[Any], dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], int]:
    """``measure(item)`` for each item until ``out_of_time()``; a row that raises records its error."""
    rows = []
    for n, item in enumerate(items):
        if out_of_time():
            return rows, len(items) - n
        try:
            rows.append(measure(item))
        except Exception as err:  # noqa: BLE001 - one failed measurement must not end the device run
            rows.append({"item": str(item), "error": f"{type(err).__name__}: {err}"[:2000]})
    return rows, 0


# ---------------------------------------------------------------------- fused kernels vs torch
def kernel_rows(shapes, tokens, device: torch.device, out_of_time, *, repeat: int, budget_s: float):
    """Fused kernel vs the torch program it replaces, per case x layer x T x (fp32, bf16 autocast)."""
    from ...planner import measure
    from .kernels import CASES, _case

    items = [(name, m, n, t, mode) for mode in ("fp32", "bf16 autocast") for name in CASES
             for (m, n) in shapes for t in tokens]

    def one(item):
        name, m, n, t, mode = item
        fused, reference, args, _ = _case(name, m, n, t, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode != "fp32"):
            fused_s, torch_s = measure.time_forward_backward([fused, reference], [args, args], repeat=repeat,
                                                             budget_s=budget_s)
        return {"kernel": getattr(fused, "kernel", name), "graph": name, "out": m, "in": n, "tokens": t,
                "mode": mode, "fused_ms": fused_s * 1e3, "torch_ms": torch_s * 1e3, "ratio": fused_s / torch_s}

    return _budgeted(items, out_of_time, one)


# ---------------------------------------------------------------------- adapter term vs the floor
def floor_rows(graphs, shapes, tokens, device: torch.device, card: dict[str, Any], out_of_time, *,
               repeat: int, budget_s: float):
    """The adapter term's time over the base GEMM against its physical floor (module docstring)."""
    from ...planner import measure
    from ...graph.spec import load_graph

    items = [(g, m, n, t) for g in graphs for (m, n) in shapes for t in tokens]

    def one(item):
        graph, m, n, t = item
        adapter = load_graph(graph).build(n, m).to(device)
        with torch.no_grad():
            for p in adapter.parameters():
                p.normal_(0.0, 0.5)
        weight = torch.randn(m, n, device=device, dtype=torch.bfloat16) / n**0.5
        x = torch.randn(t, n, device=device, dtype=torch.bfloat16, requires_grad=True)

        def base(x_):
            return x_ @ weight.t()

        def layer(x_):   # as tn_peft's layers add it: the adapter (float32) under autocast, cast back
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return x_ @ weight.t() + adapter(x_).to(x_.dtype)

        base_s, layer_s = measure.time_forward_backward([base, layer], [[x], [x]], repeat=repeat, budget_s=budget_s)
        plan = adapter.plan(t, device=device)
        flops = plan.flops() + plan.backward_flops()
        params = sum(p.numel() for p in adapter.parameters())
        moved = 2 * (2 * t * n + 2 * t * m) + 4 * 2 * params   # bf16 x, dy read, y, dx written; fp32 nodes + grads
        floor = max(flops / card["flops"], moved / card["bandwidth"])
        extra = max(layer_s - base_s, 0.0)
        return {"graph": graph, "out": m, "in": n, "tokens": t, "base_ms": base_s * 1e3, "layer_ms": layer_s * 1e3,
                "adapter_ms": extra * 1e3, "adapter_over_base": extra / base_s, "floor_ms": floor * 1e3,
                "adapter_over_floor": extra / floor if floor > 0 else float("inf"), "flops": flops,
                "bytes": moved, "runs_as": plan.kernel or "torch program"}

    return _budgeted(items, out_of_time, one)


# ---------------------------------------------------------------------- training steps and memory
def random_model(name: str, device: torch.device, dtype: torch.dtype, *, scale_down: bool = False):
    """A base model of :data:`MODELS`' shapes with random weights, built from its config (no download)."""
    import transformers

    spec = {k: v for k, v in MODELS[name].items() if k not in ("targets", "batch", "tokens")}
    if scale_down:  # the dry run: same architecture, tiny
        spec.update(hidden_size=64, intermediate_size=128, num_hidden_layers=1, vocab_size=2048,
                    num_attention_heads=4, **({"num_key_value_heads": 4} if "num_key_value_heads" in spec else {}))
    model_type = spec.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **spec)
    with torch.device(device):
        model = transformers.AutoModel.from_config(config)
    return model.to(dtype).train()


def step_methods(name: str, graphs, device: torch.device, dtype: torch.dtype, *, scale_down: bool):
    """label -> model: peft's LoRA r4 (alpha 8) first, then each catalog graph on the same targets."""
    import peft

    import tn_peft

    targets = MODELS[name]["targets"]
    methods = {"peft lora r4": peft.get_peft_model(random_model(name, device, dtype, scale_down=scale_down),
                                                   peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                   target_modules=list(targets)))}
    for graph in graphs:
        config = tn_peft.AdapterConfig(graph=graph, target_modules=list(targets))
        methods[graph] = tn_peft.get_model(random_model(name, device, dtype, scale_down=scale_down), config)
    return methods


def step_rows(models, graphs, device: torch.device, out_of_time, *, rounds: int, scale_down: bool = False):
    """Per model: every method's median step ms, paired ratio to LoRA, peak memory, trainable params."""
    rows = []
    left = 0
    for name in models:
        if out_of_time():
            left += 1
            continue
        try:
            rows.extend(_steps_of(name, graphs, device, rounds, scale_down, out_of_time))
        except Exception as err:  # noqa: BLE001 - one model failing must not end the device run
            rows.append({"model": name, "error": f"{type(err).__name__}: {err}"[:2000]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows, left


def _steps_of(name, graphs, device, rounds, scale_down, out_of_time):
    from .step import make_step

    spec = MODELS[name]
    batch_size, tokens = (2, 16) if scale_down else (spec["batch"], spec["tokens"])
    methods = step_methods(name, graphs, device, torch.bfloat16, scale_down=scale_down)
    vocab = next(iter(methods.values())).config.vocab_size
    hidden = next(iter(methods.values())).config.hidden_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch_size, tokens), generator=gen).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    target = torch.randn(batch_size, hidden, generator=gen).to(device, torch.bfloat16)
    steps = {label: make_step(model, batch, target) for label, model in methods.items()}
    out: dict[str, dict[str, Any]] = {}
    for label, step in steps.items():   # warm-up (plans, kernels compiled), then one step for peak memory
        step()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        model = methods[label]
        out[label] = {"model": name, "method": label, "batch": batch_size, "tokens": tokens,
                      "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                      "peak_bytes": (torch.cuda.max_memory_allocated(device) - before) if device.type == "cuda" else None,
                      "step_ms": []}
    labels = list(steps)
    for r in range(rounds):
        if out_of_time() and r >= 2:
            break
        for label in (labels if r % 2 == 0 else labels[::-1]):
            sync(device)
            t0 = time.perf_counter()
            steps[label]()
            sync(device)
            out[label]["step_ms"].append((time.perf_counter() - t0) * 1e3)
    lora = out[labels[0]]
    for row in out.values():
        row["median_ms"] = statistics.median(row["step_ms"])
        row["time_vs_lora"] = statistics.median(a / b for a, b in zip(row["step_ms"], lora["step_ms"]))
        if row["peak_bytes"] is not None and lora["peak_bytes"]:
            row["peak_vs_lora"] = row["peak_bytes"] / lora["peak_bytes"]
    del methods, steps
    return list(out.values())


# ---------------------------------------------------------------------- mixed-adapter serving
def mixed_rows(counts, device: torch.device, out_of_time, *, rounds: int, scale_down: bool = False):
    """``tn-peft bench mixed``'s rows (:func:`tn_peft.apps.bench.mixed.measure_count`) on a random MiniLM-shaped
    bf16-free (float32, as that benchmark loads it) model saved to a temporary folder."""
    from .mixed import measure_count

    if out_of_time():
        return [], len(counts)
    with tempfile.TemporaryDirectory(prefix="tn-peft-gpu-") as folder:
        random_model("minilm", torch.device("cpu"), torch.float32, scale_down=scale_down).save_pretrained(folder)
        args = argparse.Namespace(batch_size=8 if scale_down else 64, seq_len=8 if scale_down else 32,
                                  targets=["query", "value"], repeats=rounds)
        return _budgeted(list(counts), out_of_time, lambda n: measure_count(folder, n, args, str(device)))
