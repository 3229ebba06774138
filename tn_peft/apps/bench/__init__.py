"""Benchmarks run by ``tn-peft bench NAME``; each prints side-by-side ratios and writes JSON."""

from __future__ import annotations

import argparse


def layer_shape(text: str) -> tuple[int, int]:
    """An argparse type for a layer ``OUTxIN`` (e.g. ``4096x4096``) -> ``(out, in)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a layer shape OUTxIN: write e.g. 4096x4096")
    return int(parts[0]), int(parts[1])


def model_bench_device(args: argparse.Namespace) -> str:
    """For the benchmarks on a real model: apply ``--threads``, stay offline, and return ``--device``
    (default: cuda when there is one)."""
    import torch

    from ..finetune.methods import stay_offline

    if args.threads:
        torch.set_num_threads(args.threads)
    stay_offline()
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")

