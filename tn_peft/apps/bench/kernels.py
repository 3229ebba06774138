"""``tn-peft bench kernels``: the fused Triton kernels against the torch programs they replace on CUDA.

The GPU check a session with a device runs in one command. For every case and layer (``--shapes``,
out x in) and row count T (``--rows``) it builds the adapter on the device, runs the fused kernel
and its torch counterpart on the same x and node tensors (which need gradients), and reports:

- the largest relative difference of the outputs and of every gradient (fp32; the kernels
  accumulate in fp32 too, so differences are rounding, ~1e-6);
- median forward + backward milliseconds of both, interleaved (:func:`~tn_peft.planner.measure.time_forward_backward`),
  and their ratio.

Kernels (``--kernels``):

- ``lora``, ``svd``: the low-rank kernel ``scale ((x V) * s) U^T`` against the planner's program;
- ``quantum_peft``: both Pauli circuits and ``s`` in one launch (``circuit_chain``) against the
  same circuits applied gate by gate with torch ops;
- ``kron``: the per-wire kernel against the planner's program.

``--check`` runs small sizes for correctness only; without CUDA it reruns itself with
``TRITON_INTERPRET=1`` (triton reads it when imported), so the same check runs on a CPU. The exit status is 1 when a difference exceeds
``--tolerance``. Results go to ``bench-results/kernels.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from typing import Any

import torch

from ...errors import ShapeError, require
from ...io.atomic import write_json

CASES = ("lora", "svd", "quantum_peft", "kron")
CHECK_SHAPES = ((40, 48), (63, 20))
CHECK_TOKENS = (1, 7)




def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / (b.double().abs().max() + 1e-30))


def _case(name: str, out_features: int, in_features: int, tokens: int, device: torch.device):
    """``(fused fn, torch fn, args, grad_inputs)`` for one case; fns take ``*args``."""
    from ...planner import CostModel, make_plan
    from ...planner.runtime.fused import fused_gated_program, fused_program
    from ...graph.spec import load_graph

    adapter = load_graph(name).build(in_features, out_features).to(device)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0.0, 0.5)  # a non-zero dW (s and LoRA's B start at zero)
    x = torch.randn(tokens, in_features, device=device, requires_grad=True)
    problem = adapter.problem.with_tokens(tokens)
    if name == "quantum_peft":
        gated = fused_gated_program(problem)
        if gated is None:
            raise ShapeError(f"graph {name!r} at {out_features}x{in_features} has no fused gate-by-gate kernel "
                             "(its circuits are not applied gate by gate at this shape); use --shapes such as "
                             "4096x4096 or 1536x384")
        fused, _ = gated
        u, v = adapter.node("U"), adapter.node("V")
        s = adapter.node("s")().detach().clone().requires_grad_(True)
        scale = problem.scale

        def by_gates(x_, u_, s_, v_):
            return u_.as_network().apply_transpose(v_.as_network().apply(x_) * (s_ * scale))

        return fused, by_gates, [x, u, s, v], [x, s, *u.parameters(), *v.parameters()]
    tensors = [t.detach().clone().requires_grad_(True) for t in adapter.node_tensors()]
    fused = fused_program(problem)
    if fused is None:
        raise ShapeError(f"graph {name!r} at {out_features}x{in_features} has no fused kernel; use --shapes such "
                         "as 4096x4096 or 1536x384")
    plan = make_plan(problem, CostModel.for_device(device.type))
    return fused, plan.program, [x, *tensors], [x, *tensors]


def _compare(fused, reference, args, grads) -> float:
    """Largest relative difference of the outputs and of each gradient."""
    from ...planner import measure

    results = []
    for fn in (fused, reference):
        measure.clear_grads(grads)
        out = fn(*args)
        upstream = torch.ones_like(out)
        out.backward(upstream)
        results.append([out.detach().clone()] + [t.grad.detach().clone() for t in grads])
    return max(_relative(a, b) for a, b in zip(*results))


def run(args: argparse.Namespace) -> int:
    cuda = torch.cuda.is_available()
    if not cuda and not args.check:
        print("tn-peft bench kernels times the fused Triton kernels on a CUDA device, and none is visible. "
              "Run `tn-peft bench kernels --check` for the correctness check (on a CPU it uses the Triton "
              "interpreter).")
        return 2
    if not cuda and os.environ.get("TRITON_INTERPRET") != "1":
        # triton reads TRITON_INTERPRET when it is imported, and torch may have imported it already
        argv = [sys.executable, "-m", "tn_peft.cli", "bench", "kernels", "--check", "--kernels", *args.kernels,
                "--tolerance", repr(args.tolerance), "--output", str(args.output)]
        return subprocess.run(argv, env=dict(os.environ, TRITON_INTERPRET="1"), check=False).returncode
    require("triton", "triton", "tn-peft bench kernels")
    from ...planner import measure

    device = torch.device("cuda" if cuda else "cpu")
    shapes = CHECK_SHAPES if args.check else args.shapes
    tokens = CHECK_TOKENS if args.check else args.rows
    rows: list[dict[str, Any]] = []
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name(0) if cuda else 'CPU (Triton interpreter)'}; "
          f"{'correctness only' if args.check else 'forward + backward, fp32'}")
    print("| kernel | layer | T | max rel. difference | fused ms | torch ms | fused / torch |")
    print("|---|---|---|---|---|---|---|")
    for name in args.kernels:
        for out_features, in_features in shapes:
            for t in tokens:
                fused, reference, fn_args, grads = _case(name, out_features, in_features, t, device)
                error = _compare(fused, reference, fn_args, grads)
                row: dict[str, Any] = {"case": name, "out": out_features, "in": in_features, "tokens": t,
                                       "max_relative_difference": error}
                if not args.check:
                    fused_s, torch_s = measure.time_forward_backward(
                        [fused, reference], [fn_args, fn_args], repeat=args.repeats, budget_s=args.budget)
                    row.update(fused_s=fused_s, torch_s=torch_s, ratio=fused_s / torch_s)
                rows.append(row)
                timing = (f"{row['fused_s'] * 1e3:.3g} | {row['torch_s'] * 1e3:.3g} | {row['ratio']:.2f}x"
                          if not args.check else "- | - | -")
                print(f"| {name} | {out_features}x{in_features} | {t} | {error:.1e} | {timing} |")
    worst = max(r["max_relative_difference"] for r in rows)
    ok = worst <= args.tolerance
    print(f"worst relative difference {worst:.1e} (tolerance {args.tolerance:g}): {'ok' if ok else 'FAILED'}")
    meta = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if cuda else "cpu (interpreter)",
            "machine": platform.machine(), "check": bool(args.check)}
    out = write_json(args.output, {"meta": meta, "rows": rows, "ok": ok})
    print(f"wrote {out}")
    return 0 if ok else 1
