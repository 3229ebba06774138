"""``tn-peft bench fuzz``: N random inputs per surface (graph specs, checkpoints, command line, data files), counted
by outcome: accepted, documented errors by type, crashes, hangs, and by effect (a case that started a
process, imported a new module, wrote outside its folder or ran foreign code: :mod:`tn_peft.apps.fuzz.effects`);
the first input of every crash and effect class is saved for reproduction. Exits 1 when anything
crashed, hung or had an effect."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

SURFACES = ("spec", "checkpoint", "cli", "data")




def run(args: argparse.Namespace) -> int:
    import importlib

    import torch

    from ..fuzz.outcomes import run_cases

    torch.set_num_threads(1)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="tn_peft_fuzz_") as work:
        for surface in args.surface or SURFACES:
            module = importlib.import_module(f"tn_peft.apps.fuzz.{surface}_surface")
            folder = Path(work) / surface
            cases = module.make(folder)
            report = run_cases(surface, cases, args.cases, Path(args.output), seconds=args.timeout, folder=folder)
            print(report.format(), flush=True)
            bad += report.bad
    print(f"total crashes, hangs or effects: {bad}" + (f" (first inputs in {args.output}/)" if bad else ""))
    return 1 if bad else 0
