"""``tn-peft bench mixed``: a mixed-adapter batch (``adapter_names=``) on all-MiniLM-L6-v2.

For each count N of loaded adapters (default 1, 16, 256), a batch of ``--batch-size`` sequences where row i
uses adapter ``i mod N`` (so ``min(N, batch)`` distinct adapters in the batch), inference in eval mode:

- ``tn_peft mixed``: Quantum-PEFT adapters (the catalog's r4, L1), one forward with ``adapter_names`` (:mod:`tn_peft.model.mixed`);
- ``tn_peft one by one``: the same adapters, rows run adapter by adapter (``set_adapter``, forward on
  that adapter's rows), what one does without mixed batches;
- ``peft LoRA mixed``: peft's LoRA r4 with N adapters, one forward with peft's ``adapter_names``.

Rounds alternate the three (A B C C B A ...); the table gives median ms and the ratios of tn_peft's
mixed forward to the other two, and checks that the mixed rows equal the one-by-one rows.
Results go to ``bench-results/mixed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ...errors import require
from ...io.atomic import write_json
from . import model_bench_device
from .step import _load_base, _model_folder




def _tn_model(folder: str, count: int, targets: list[str], device: str):
    import tn_peft

    config = lambda: tn_peft.AdapterConfig(graph="quantum_peft", target_modules=list(targets))
    model = tn_peft.get_model(_load_base(folder, device), config(), "a0")
    for i in range(1, count):
        model.add_adapter(f"a{i}", config())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # s starts at zero; make every adapter's dW non-zero and its own
        for name, p in model.named_parameters():
            if name.endswith(".nodes.s.values"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


def _peft_model(folder: str, count: int, targets: list[str], device: str):
    peft = require("peft", purpose="bench mixed (the LoRA baseline)")
    config = lambda: peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(targets),
                                     init_lora_weights=False)
    model = peft.get_peft_model(_load_base(folder, device), config(), "a0")
    for i in range(1, count):
        model.add_adapter(f"a{i}", config())
    return model.eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_count(folder: str, count: int, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Median ms of the three ways for ``count`` loaded adapters, and the mixed-vs-one-by-one difference."""
    generator = torch.Generator().manual_seed(count)
    tn = _tn_model(folder, count, args.targets, device)
    lora = _peft_model(folder, count, args.targets, device)
    vocab = tn.base_model.config.vocab_size
    ids = torch.randint(1000, vocab, (args.batch_size, args.seq_len), generator=generator).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    names = [f"a{i % count}" for i in range(args.batch_size)]
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        rows.setdefault(name, []).append(i)

    def tn_mixed() -> torch.Tensor:
        return tn(**batch, adapter_names=names).last_hidden_state

    def tn_one_by_one() -> torch.Tensor:
        out = torch.empty(args.batch_size, args.seq_len, tn.base_model.config.hidden_size, device=device)
        for name, idx in rows.items():
            tn.set_adapter(name)
            index = torch.tensor(idx, device=device)
            out[index] = tn(**{k: v[index] for k, v in batch.items()}).last_hidden_state
        return out

    def lora_mixed() -> torch.Tensor:
        return lora(**batch, adapter_names=names).last_hidden_state

    ways: dict[str, Callable[[], torch.Tensor]] = {"tn_peft mixed": tn_mixed, "tn_peft one by one": tn_one_by_one,
                                                     "peft LoRA mixed": lora_mixed}
    times: dict[str, list[float]] = {name: [] for name in ways}
    with torch.no_grad():
        difference = float((tn_mixed() - tn_one_by_one()).abs().max())
        for fn in ways.values():  # warm-up
            fn()
        order = list(ways)
        for r in range(args.repeats):
            for name in (order if r % 2 == 0 else order[::-1]):
                _sync(device)
                start = time.perf_counter()
                ways[name]()
                _sync(device)
                times[name].append(1000 * (time.perf_counter() - start))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"adapters": count, "distinct_in_batch": len(rows), "median_ms": medians, "times_ms": times,
            "mixed_vs_one_by_one": medians["tn_peft mixed"] / medians["tn_peft one by one"],
            "mixed_vs_peft_lora": medians["tn_peft mixed"] / medians["peft LoRA mixed"],
            "max_abs_difference": difference}


def format_table(results: list[dict[str, Any]]) -> str:
    head = ("| adapters loaded | distinct in batch | tn_peft mixed ms | tn_peft one by one ms | peft LoRA mixed ms | "
            "mixed / one by one | mixed / peft LoRA mixed | max abs diff |")
    lines = [head, "|" + "---:|" * 8]
    for r in results:
        m = r["median_ms"]
        lines.append(f"| {r['adapters']} | {r['distinct_in_batch']} | {m['tn_peft mixed']:.1f} | "
                     f"{m['tn_peft one by one']:.1f} | {m['peft LoRA mixed']:.1f} | {r['mixed_vs_one_by_one']:.3f}x | "
                     f"{r['mixed_vs_peft_lora']:.3f}x | {r['max_abs_difference']:.1e} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    device = model_bench_device(args)
    folder = _model_folder(args.model)
    started = time.time()
    results = [measure_count(folder, count, args, device) for count in args.adapters]
    table = format_table(results)
    print(f"bench mixed: all-MiniLM-L6-v2, batch {args.batch_size} x {args.seq_len} tokens, row i uses adapter i mod N, "
          f"targets {args.targets}, Quantum-PEFT (r4, L1) vs peft LoRA r4, {args.repeats} alternated rounds, {device}, "
          f"{torch.get_num_threads()} threads")
    print(table)
    config = {k: v for k, v in vars(args).items() if k not in ("handler",) and not callable(v)}
    out = write_json(args.output, {"benchmark": "mixed", "config": config, "results": results, "table": table,
                                "environment": {"device": device, "torch": torch.__version__,
                                                "threads": torch.get_num_threads(),
                                                "seconds": round(time.time() - started, 1)}})
    print(f"wrote {out}")
    return 0
