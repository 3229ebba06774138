"""The ``tn-peft`` command line.

Every subcommand's module exposes ``add_arguments(parser)`` and ``run(args)``: the library's commands
have theirs in this package (check, draw, plan, convert), the applications' in theirs
(:mod:`tn_peft.apps`); this file only wires them, and the library never imports this package. Errors tn_peft raises on purpose (bad graph files, shapes,
checkpoints, missing packages) print one message and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence

from ..errors import TnPeftError

#: subcommand -> (module, help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("tn_peft.cli.check", "validate a graph and print its nodes, legs, sizes, parameters, einsum"),
    "draw": ("tn_peft.cli.draw", "render a graph as a tensor-network diagram (PNG)"),
    "plan": ("tn_peft.cli.plan", "print the contraction plan, its decisions, costs and generated source"),
    "finetune": ("tn_peft.cli.finetune", "fine-tune a real model on real data: graph adapters beside peft methods"),
    "frontier": ("tn_peft.cli.frontier", "accuracy vs adapter parameters from finetune run folders and saved frontiers"),
    "convert": ("tn_peft.cli.convert:convert", "convert a PEFT LoRA checkpoint to a tn_peft adapter"),
    "export-lora": ("tn_peft.cli.convert:export_lora", "export a tn_peft adapter as a PEFT LoRA checkpoint"),
    "inspect": ("tn_peft.cli.convert:inspect", "describe an adapter folder: layers, parameters, dW norms"),
}

#: benchmark name -> (module, help), run by ``tn-peft bench NAME``.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "unitary": ("tn_peft.cli.bench:unitary", "unitary maps vs torch's orthogonal parametrization"),
    "planner": ("tn_peft.cli.bench:planner", "our plans vs opt_einsum greedy/optimal and torch.einsum"),
    "step": ("tn_peft.cli.bench:step", "train-step time of Quantum-PEFT vs peft's LoRA on MiniLM"),
    "fuzz": ("tn_peft.cli.bench:fuzz", "random graph specs, checkpoints and command lines: counts by outcome, crashes saved"),
    "kernels": ("tn_peft.cli.bench:kernels", "fused Triton kernels vs the torch programs they replace (CUDA; --check on CPU)"),
    "import": ("tn_peft.cli.bench:import", "import tn_peft and the command line's --help, beside import torch"),
    "mixed": ("tn_peft.cli.bench:mixed", "mixed-adapter batches (adapter_names=) vs one adapter at a time and peft's mixed LoRA"),
    "gpu": ("tn_peft.cli.bench:gpu", "every device check in one run: kernel and graph correctness, speed, memory (CUDA; --dry-run on CPU)"),
}


def _entry(target: str):
    """Import ``module[:prefix]`` and return (add_arguments, run) for it."""
    module_name, _, prefix = target.partition(":")
    module = importlib.import_module(module_name)
    add = getattr(module, f"add_{prefix}_arguments" if prefix else "add_arguments")
    run = getattr(module, f"run_{prefix}" if prefix else "run")
    return add, run


def _add_commands(subparsers, table: dict[str, tuple[str, str]], wanted: str | None) -> None:
    """One sub-parser per entry of ``table``; only ``wanted`` imports its module and gets its options."""
    for name, (target, text) in table.items():
        cmd = subparsers.add_parser(name, help=text, description=text)
        if name == wanted:
            add, run = _entry(target)
            add(cmd)
            if not any("--verbose" in a.option_strings for a in cmd._actions):
                cmd.add_argument("--verbose", action="store_true",
                                 help="also show the third-party warnings tn_peft filters out (tn_peft/cli/quiet.py)")
            cmd.set_defaults(handler=run)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` imports its module."""
    parser = argparse.ArgumentParser(prog="tn-peft", description="Tensor-network adapters for PEFT.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    rest = [a for a in argv if not a.startswith("-")]
    wanted = rest[0] if rest else None
    _add_commands(sub, COMMANDS, wanted)
    bench = sub.add_parser("bench", help="run a benchmark: " + ", ".join(BENCHMARKS),
                           description="Benchmarks print ratios measured side by side in one process.")
    bench_sub = bench.add_subparsers(dest="bench", metavar="NAME")
    _add_commands(bench_sub, BENCHMARKS, rest[1] if wanted == "bench" and len(rest) > 1 else None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 for a tn_peft error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any("\x00" in a for a in argv):  # no path or value can hold one; pathlib would raise deep inside
        print("tn-peft: error: an argument contains a NUL byte", file=sys.stderr)
        return 2
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 1
        # the command as typed, for run records (finetune's metrics.json "command")
        args.command_line = "tn-peft " + shlex.join(argv)
        from .quiet import quiet_third_party

        quiet_third_party(getattr(args, "verbose", False))
        result = handler(args)
        return result if isinstance(result, int) else 0
    except TnPeftError as err:
        print(f"tn-peft: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("tn-peft: interrupted", file=sys.stderr)
        return 130
