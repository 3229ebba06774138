"""CLI of conversion, wired into ``tn-peft`` by :mod:`tn_peft.cli`:

- ``tn-peft convert LORA_DIR -o OUT_DIR --to svd|pauli|tt|ttd``  (:func:`add_convert_arguments`, :func:`run_convert`)
- ``tn-peft export-lora TN_DIR -o OUT_DIR [--lora-rank R | --energy F]`` (:func:`add_export_lora_arguments`, ...)
- ``tn-peft inspect DIR``                                         (:func:`add_inspect_arguments`, :func:`run_inspect`)

``OUT_DIR`` as a second positional argument is the old spelling of ``-o/--output`` (a note says so).
``convert`` refuses the options that do not apply to its ``--to`` (a bond cap with ``--to svd``, say):
they would be ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ..errors import UsageError
from .vocabulary import add_depth, add_option, add_output, add_overwrite, renamed_note

#: convert's options that shape one form only -> the --to values they apply to (default: the value used)
APPLIES: dict[str, tuple[tuple[str, ...], object]] = {
    "map": (("svd", "ttd"), "exp"),
    "depth": (("pauli",), 1),
    "fit_steps": (("pauli",), 100),
    "max_bond": (("tt", "ttd"), None),
    "tolerance": (("tt", "ttd"), None),
    "cores": (("tt", "ttd"), 3),
    "center": (("ttd",), 1),
}


def _energy(text: str) -> float:
    """``--energy``: a cumulative energy fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in (0, 1]") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--energy is a cumulative energy fraction in (0, 1], got {value}")
    return value


class _OldRank(argparse.Action):
    """export-lora's old ``--rank R|F``: an int is ``--lora-rank``, a fraction ``--energy`` (with a note)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, "lora_rank", int(values))
            renamed_note(option_string, "--lora-rank")
        except ValueError:
            try:
                setattr(namespace, "energy", _energy(values))
            except argparse.ArgumentTypeError as err:
                parser.error(f"argument {option_string}: {err}")
            renamed_note(option_string, "--energy")


def _add_output_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", nargs="?", default=None,
                        help="old spelling of -o/--output (a second positional argument)")
    add_output(parser, default=None, what=what, old=())


def _output(args: argparse.Namespace) -> str:
    """-o/--output, or the old positional OUT_DIR (with a note); one of the two, not both."""
    if args.out_dir is not None and args.output is not None:
        raise UsageError(f"two output folders: OUT_DIR {args.out_dir!r} and -o {args.output!r}. Fix: give -o only")
    if args.out_dir is not None:
        renamed_note("OUT_DIR (a second positional argument)", "-o/--output")
        return args.out_dir
    if args.output is None:
        raise UsageError("no output folder. Fix: add -o OUT_DIR (where to write the converted adapter)")
    return args.output


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lora_dir", metavar="LORA_DIR", help="a PEFT LoRA checkpoint folder (adapter_config.json + adapter_model.safetensors)")
    _add_output_dir(parser, "the tn_peft adapter folder to write")
    parser.add_argument("--to", choices=("svd", "pauli", "tt", "ttd"), default="svd",
                        help="svd: exact canonical SVD; pauli: fit of Pauli circuits (Quantum-PEFT); "
                             "tt / ttd: TT-SVD of dW, dense / canonical cores (default: svd)")
    parser.add_argument("--map", default=None, help="svd/ttd: Stiefel map of the nodes: exp, cayley, householder, ... "
                        "(default exp)")
    add_depth(parser, "pauli: circuit depth L", default=None)
    add_option(parser, "--max-bond", old=("--rank",), type=int, default=None, metavar="R",
               help="tt/ttd: cap on every TT bond (a fit below the full TT rank)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="tt/ttd: TT-SVD to relative Frobenius error <= TOLERANCE (default: exact)")
    parser.add_argument("--cores", type=int, default=None, help="tt/ttd: number of TT cores (default 3)")
    parser.add_argument("--center", type=int, default=None, help="ttd: the bond carrying the singular values (default 1)")
    parser.add_argument("--min-fidelity", type=float, default=None,
                        help="fail (writing nothing) when a layer's 1 - relative error of dW is below this")
    add_option(parser, "--fit-steps", old=("--steps",), type=int, default=None, metavar="N",
               help="pauli: optimizer steps of the fit (default 100)")
    add_overwrite(parser, what="replace a non-empty output folder", old=("--force",))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def convert_options(args: argparse.Namespace) -> dict[str, object]:
    """The form options of ``args`` for :func:`~tn_peft.convert.from_lora.from_lora`; a UsageError names the
    first one given that does not apply to ``--to`` (it would be ignored)."""
    for name, (kinds, _) in APPLIES.items():
        if getattr(args, name) is not None and args.to not in kinds:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} does not apply to --to {args.to} (only to --to {' / '.join(kinds)}), and would be "
                             f"ignored. Fix: drop {flag}, or convert --to {kinds[0]}")
    values = {name: default if getattr(args, name) is None else getattr(args, name)
              for name, (_, default) in APPLIES.items()}
    return {"map": values["map"], "layers": values["depth"], "steps": values["fit_steps"], "rank": values["max_bond"],
            "tolerance": values["tolerance"], "cores": values["cores"], "center": values["center"]}


def run_convert(args: argparse.Namespace) -> int:
    options = convert_options(args)
    output = _output(args)
    from ..convert.from_lora import from_lora

    with warnings.catch_warnings():  # the report prints its warnings itself
        warnings.simplefilter("ignore", UserWarning)
        report = from_lora(args.lora_dir, output, args.to, **options, min_fidelity=args.min_fidelity,
                           force=args.overwrite, progress=not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    for text in report.warnings if args.json else ():
        print(f"tn-peft: warning: {text}", file=sys.stderr)
    return 0


def add_export_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tn_dir", metavar="TN_DIR", help="a tn_peft adapter folder")
    _add_output_dir(parser, "the PEFT LoRA checkpoint folder to write")
    ranks = parser.add_mutually_exclusive_group()
    ranks.add_argument("--lora-rank", type=int, default=None, metavar="R",
                       help="cap every layer's LoRA rank at R (default: each layer's exact rank)")
    ranks.add_argument("--energy", type=_energy, default=None, metavar="F",
                       help="keep per layer the singular values holding this fraction of ||dW||_F^2, in (0, 1] "
                            "(ranks go to rank_pattern)")
    ranks.add_argument("--rank", dest="old_rank", action=_OldRank, metavar="R|F", help=argparse.SUPPRESS)
    add_overwrite(parser, what="replace a non-empty output folder", old=("--force",))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_export_lora(args: argparse.Namespace) -> int:
    output = _output(args)
    from ..convert.to_lora import to_lora

    rank = args.lora_rank if args.lora_rank is not None else args.energy
    report = to_lora(args.tn_dir, output, rank, force=args.overwrite, progress=not args.json)
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
