"""Benchmarks run by ``tn-peft bench NAME``; each prints side-by-side ratios and writes JSON."""

from __future__ import annotations

import argparse


def model_bench_device(args: argparse.Namespace) -> str:
    """For the benchmarks on a real model: apply ``--threads``, stay offline, and return ``--device``
    (default: cuda when there is one)."""
    import torch

    from ..finetune.methods import stay_offline

    if args.threads:
        torch.set_num_threads(args.threads)
    stay_offline()
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")

