"""``tn-peft plan GRAPH --in-features N --out-features M --rows T [--train]``: print a plan.

Prints the decisions, the contraction tree (one line per step), the predicted FLOPs, bytes kept for
backward, peak and time, the same numbers for opt_einsum's FLOP-optimal tree, and the generated
source. ``--family`` also prints the token ranges where each tree is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from ..errors import UsageError
from .graph_options import add_graph_arguments, load_from_args
from .vocabulary import add_device, add_rows, device_or_default

DTYPES = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_graph_arguments(parser)
    add_rows(parser, None, many=False)
    parser.add_argument("--train", action="store_true",
                        help="plan a training step (node tensors need gradients); default: inference")
    parser.add_argument("--x-grad", action="store_true", help="x needs a gradient too (an adapter deeper in a model)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="element type (default float32)")
    add_device(parser, what="the device to plan for (its cost profile)")
    parser.add_argument("--optimize", choices=["auto", "greedy", "optimal"], default="auto",
                        help="auto: our cost model; greedy/optimal: opt_einsum's FLOP-only trees")
    parser.add_argument("--family", action="store_true", help="also print the row ranges of each tree")
    parser.add_argument("--no-source", action="store_true", help="do not print the generated source")


def _fmt_flops(x: float) -> str:
    for unit, size in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.3g} FLOP"


def _costs(plan) -> str:
    # imported here: the CLI loads torch only for the command it runs
    from ..planner.plan import _fmt_bytes

    return (f"forward {_fmt_flops(plan.flops())}, backward {_fmt_flops(plan.backward_flops())}, "
            f"saved for backward {_fmt_bytes(plan.saved_bytes())}, peak {_fmt_bytes(plan.peak_bytes())}, "
            f"largest tensor {_fmt_bytes(plan.size())}, predicted time {plan.predicted_time() * 1e3:.3g} ms")


def report(net, in_features: int, out_features: int, *, tokens: int | None, train: bool, x_grad: bool = False,
           itemsize: int = 4, device: str = "cpu", optimize: str = "auto", family: bool = False,
           source: bool = True) -> str:
    """The text ``tn-peft plan`` prints."""
    from ..planner.choose import make_plan
    from ..planner.cost import CostModel
    from ..planner.runtime.dispatch import PlanFamily, running_plan

    adapter = net.build(in_features, out_features)
    problem = dataclasses.replace(adapter.problem.with_grads(bool(train)), itemsize=itemsize)
    if tokens is not None:
        problem = problem.with_tokens(tokens, x_grad=x_grad)
    model = CostModel.for_device(device)
    start = time.perf_counter()
    plan = running_plan(problem, model, initial=net.delta, optimize=optimize)  # as it runs there (--device cuda)
    planning = time.perf_counter() - start
    mode = "training (node tensors need gradients)" if train else "inference (no gradients)"
    what = f"x @ dW^T with T={tokens}" if tokens is not None else "dW"
    lines = [(f"plan {net.name}: {what}, layer out={out_features} x in={in_features}, {mode}, "
              f"{itemsize}-byte elements, cost model {model.name}, planned in {planning * 1e3:.1f} ms"),
             "decisions:"]
    lines += [f"  - {d}" for d in plan.decisions]
    lines.append("tree (s<k> = step k):")
    lines.append(plan.tree())
    lines.append("predicted: " + _costs(plan))
    if optimize == "auto" and not net.delta and len(problem.operands) > 1:
        reference = make_plan(problem, model, optimize="optimal")
        lines.append("FLOP-optimal tree (opt_einsum): " + _costs(reference))
    if family and tokens is not None:
        fam = PlanFamily(problem, model, initial=net.delta, optimize=optimize)
        lines.append(f"token ranges ({fam.planned} plans searched):")
        lines += [f"  {line}" for line in fam.describe()]
    if source:
        lines.append("source:")
        lines.append(plan.source().rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    net = load_from_args(args)
    device = device_or_default(args.device).split(":")[0]
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device}: plans have cost profiles for cpu and cuda. Fix: --device cpu or cuda")
    print(report(net, args.in_features, args.out_features, tokens=args.rows, train=args.train,
                 x_grad=args.x_grad, itemsize=DTYPES[args.dtype], device=device, optimize=args.optimize,
                 family=args.family, source=not args.no_source))
    return 0
