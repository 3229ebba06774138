"""CLI of conversion, wired into ``tn-peft`` by :mod:`tn_peft.cli`:

- ``tn-peft convert LORA_DIR OUT_DIR --to svd|pauli|tt|ttd``  (:func:`add_convert_arguments`, :func:`run_convert`)
- ``tn-peft export-lora TN_DIR OUT_DIR [--rank R]``           (:func:`add_export_lora_arguments`, :func:`run_export_lora`)
- ``tn-peft inspect DIR``                                      (:func:`add_inspect_arguments`, :func:`run_inspect`)
"""

from __future__ import annotations

import argparse
import json


def _rank(text: str) -> int | float:
    """``8`` -> 8 (a rank); ``0.99`` -> 0.99 (a cumulative energy threshold)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a rank (int) nor a threshold (float in (0, 1])") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a float --rank is a cumulative energy threshold in (0, 1], got {value}")
    return value


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lora_dir", metavar="LORA_DIR", help="a PEFT LoRA checkpoint folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="where to write the tn_peft adapter folder")
    parser.add_argument("--to", choices=("svd", "pauli", "tt", "ttd"), default="svd",
                        help="svd: exact canonical SVD; pauli: fit of Pauli circuits (Quantum-PEFT); "
                             "tt / ttd: TT-SVD of dW, dense / canonical cores (default: svd)")
    parser.add_argument("--map", default="exp", help="Stiefel map of svd/ttd nodes: exp, cayley, householder, ... (default exp)")
    parser.add_argument("--layers", type=int, default=1, help="pauli: circuit layers L (default 1)")
    parser.add_argument("--rank", type=int, default=None, help="tt/ttd: cap on every TT bond (a fit below the full TT rank)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="tt/ttd: TT-SVD to relative Frobenius error <= TOLERANCE (default: exact)")
    parser.add_argument("--cores", type=int, default=3, help="tt/ttd: number of cores (default 3)")
    parser.add_argument("--center", type=int, default=1, help="ttd: the bond carrying the singular values (default 1)")
    parser.add_argument("--min-fidelity", type=float, default=None,
                        help="fail (writing nothing) when a layer's 1 - relative error of dW is below this")
    parser.add_argument("--steps", type=int, default=100, help="pauli: optimizer steps of the fit (default 100)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_convert(args: argparse.Namespace) -> int:
    from ..convert.from_lora import from_lora

    report = from_lora(args.lora_dir, args.out_dir, args.to, map=args.map, layers=args.layers, rank=args.rank,
                       tolerance=args.tolerance, cores=args.cores, center=args.center,
                       min_fidelity=args.min_fidelity, steps=args.steps, force=args.force, progress=not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


def add_export_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tn_dir", metavar="TN_DIR", help="a tn_peft adapter folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="where to write the PEFT LoRA checkpoint")
    parser.add_argument("--rank", type=_rank, default=None,
                        help="an int caps every layer's rank; a float in (0, 1] keeps per layer the singular values "
                             "holding that fraction of ||dW||_F^2 (ranks go to rank_pattern); default: exact")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_export_lora(args: argparse.Namespace) -> int:
    from ..convert.to_lora import to_lora

    report = to_lora(args.tn_dir, args.out_dir, args.rank, force=args.force, progress=not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="a PEFT LoRA or tn_peft adapter folder")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")


def run_inspect(args: argparse.Namespace) -> int:
    from ..convert.inspect import format_inspection, inspect_dir

    info = inspect_dir(args.directory)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0
