"""``tn-peft bench unitary``: time to produce an N x K Stiefel node, ours against torch's orthogonal.

For every N (``--sizes``) and K (``--ranks``) each map builds its N x K orthonormal matrix and
backpropagates a fixed upstream gradient through it (forward + backward). The maps are measured
alternately in one process (round r runs every map once, in an order that alternates between rounds)
so machine noise hits all alike; a map slower than ``--slow`` seconds (torch's N x N maps at large N)
is measured once, on its first call. Maps: our ``pauli`` (L = ``--depth``), ``exp``, ``cayley``,
``taylor`` (order ``--taylor-order``), ``householder``, ``givens`` nodes, and
``torch.nn.utils.parametrizations.orthogonal`` with ``matrix_exp``, ``cayley`` and ``householder``
(its defaults otherwise: ``use_trivialization=True``) on an N x K weight.

Reported per map: trainable parameters, median forward+backward milliseconds, the ratio to the Pauli
map's time, and the orthonormality error ``max |Q^T Q - I|`` (computed in float64 from the output).
A second table gives the truncated Taylor map's error against its order. The claim checked: the
Pauli map is at least 10x faster than torch's orthogonal parametrization at N = 4096, K = 16.
torch's matrix_exp at N = 4096 (an N x N matrix exponential, minutes per step on 2 cores) is skipped
unless ``--full``. Results go to ``bench-results/unitary.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...io.atomic import write_json
from ...nodes.base import orthonormality_error

OURS = ("pauli", "exp", "cayley", "taylor", "householder", "givens")
TORCH = ("torch_matrix_exp", "torch_cayley", "torch_householder")
TARGET = {"N": 4096, "K": 16, "speedup": 10.0}




def _torch_orthogonal(n: int, k: int, which: str, dtype) -> nn.Module:
    from torch.nn.utils.parametrizations import orthogonal

    holder = nn.Module()
    holder.weight = nn.Parameter(torch.randn(n, k, dtype=dtype) / n ** 0.5)
    orthogonal(holder, "weight", orthogonal_map=which)
    return holder


def _build(name: str, n: int, k: int, args, dtype) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    from ...nodes import create_node

    if name.startswith("torch_"):
        holder = _torch_orthogonal(n, k, name[len("torch_"):], dtype)
        return holder, lambda: holder.weight
    options: dict[str, Any] = {}
    if name == "pauli":
        options["layers"] = args.depth
    if name == "taylor":
        options["order"] = args.taylor_order
    node = create_node(name, "Q", ["n", "k"], [n, k], options).to(dtype)
    return node, node.matrix


def _step(module: nn.Module, produce: Callable[[], torch.Tensor], upstream: torch.Tensor) -> float:
    for p in module.parameters():
        p.grad = None
    start = time.perf_counter()
    produce().backward(upstream)
    return time.perf_counter() - start


def _orthonormality(q: torch.Tensor) -> float:
    return orthonormality_error(q, torch.float64)


def measure(n: int, k: int, args, dtype, log=print) -> list[dict[str, Any]]:
    """Time every map on one (N, K), alternately; returns one record per map."""
    maps = [m for m in args.maps if not (m == "torch_matrix_exp" and n >= 4096 and not args.full)]
    skipped = [m for m in args.maps if m not in maps]
    built = {}
    for name in maps:
        if k > n:
            continue
        built[name] = _build(name, n, k, args, dtype)
    upstream = torch.randn(n, k, dtype=dtype, generator=torch.Generator().manual_seed(args.seed))
    times: dict[str, list[float]] = {name: [] for name in built}
    fast = []
    for name, parts in built.items():  # warm-up (plans, allocator); a map slower than --slow keeps it as its one sample
        first = _step(*parts, upstream)
        if first > args.slow:
            times[name].append(first)
        else:
            fast.append(name)
    spent = 0.0
    for rnd in range(args.repeats):
        begin = time.perf_counter()
        for name in (fast if rnd % 2 == 0 else fast[::-1]):
            times[name].append(_step(*built[name], upstream))
        spent += time.perf_counter() - begin
        if rnd + 1 >= args.min_repeats and spent > args.budget:
            break
    records = []
    for name in args.maps:
        if name in skipped:
            records.append({"N": n, "K": k, "map": name, "skipped": "N x N matrix_exp; run with --full"})
            continue
        if name not in built:
            continue
        module, produce = built[name]
        with torch.no_grad():
            q = produce()
        records.append({
            "N": n, "K": k, "map": name,
            "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
            "times_ms": [t * 1e3 for t in times[name]],
            "median_ms": statistics.median(times[name]) * 1e3,
            "orthonormality_error": _orthonormality(q),
            "construction": getattr(module, "construction", None),
        })
    pauli = next((r for r in records if r["map"] == "pauli" and "median_ms" in r), None)
    for r in records:
        if pauli is not None and "median_ms" in r:
            r["time_vs_pauli"] = r["median_ms"] / pauli["median_ms"]
    log(f"  N={n} K={k}: " + ", ".join(f"{r['map']} {r['median_ms']:.2f} ms" for r in records if "median_ms" in r))
    return records


def taylor_errors(n: int, k: int, orders, dtype, seed: int) -> list[dict[str, Any]]:
    """Unitarity error of the truncated Taylor map against its order, on the exp node's generator."""
    from ...nodes import ExpNode, lie_columns

    torch.manual_seed(seed)
    node = ExpNode("Q", ["n", "k"], [n, k]).to(dtype)
    with torch.no_grad():
        lower = node.lower()
        exact = node.matrix().double()
        norm = float(torch.linalg.matrix_norm(lower.double(), ord=2))
        out = []
        for order in orders:
            q = lie_columns(lower, k, "taylor", order)
            out.append({"N": n, "K": k, "order": order, "generator_norm": norm,
                        "orthonormality_error": _orthonormality(q),
                        "distance_to_exp": float((q.double() - exact).abs().max())})
    return out


def _fmt_time(r: dict) -> str:
    return "skipped" if "skipped" in r else f"{r['median_ms']:.2f}"


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per (N, K, map)."""
    lines = ["| N | K | map | params | fwd+bwd ms (median) | time / pauli | max abs(Q^T Q - I) | rounds |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if "skipped" in r:
            lines.append(f"| {r['N']} | {r['K']} | {r['map']} | | skipped ({r['skipped']}) | | | |")
            continue
        ratio = f"{r['time_vs_pauli']:.1f}x" if "time_vs_pauli" in r else ""
        lines.append(f"| {r['N']} | {r['K']} | {r['map']} | {r['params']} | {r['median_ms']:.2f} | {ratio} | "
                     f"{r['orthonormality_error']:.1e} | {len(r['times_ms'])} |")
    return "\n".join(lines)


def taylor_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| N | K | order P | ||B||_2 | max abs(Q^T Q - I) | max abs(Q - Q_exp) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['N']} | {r['K']} | {r['order']} | {r['generator_norm']:.2f} | "
                     f"{r['orthonormality_error']:.1e} | {r['distance_to_exp']:.1e} |")
    return "\n".join(lines)


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Pauli's speed-up over each torch map at the target size, and whether it meets 10x."""
    at = {r["map"]: r for r in records if r["N"] == TARGET["N"] and r["K"] == TARGET["K"] and "median_ms" in r}
    if "pauli" not in at:
        return {}
    out = {"N": TARGET["N"], "K": TARGET["K"], "target": TARGET["speedup"]}
    for name in TORCH:
        if name in at:
            out[name] = at[name]["median_ms"] / at["pauli"]["median_ms"]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    records, taylor = [], []
    print(f"tn-peft bench unitary: sizes {args.sizes}, ranks {args.ranks}, {torch.get_num_threads()} threads, "
          f"{args.dtype}", flush=True)
    for n in args.sizes:
        for k in args.ranks:
            if k > n:
                continue
            records.extend(measure(n, k, args, dtype, log=lambda s: print(s, flush=True)))
            taylor.extend(taylor_errors(n, k, args.taylor_orders, dtype, args.seed))
    result = {
        "config": {key: value for key, value in vars(args).items() if key != "handler"},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "results": records, "taylor": taylor, "summary": summary(records),
    }
    print()
    print(table(records))
    print()
    print(taylor_table([r for r in taylor if r["K"] == args.ranks[0]]))
    s = result["summary"]
    if s:
        ratios = ", ".join(f"{name}: {s[name]:.0f}x" for name in TORCH if name in s)
        print(f"\nPauli vs torch orthogonal at N={s['N']}, K={s['K']} (target >= {s['target']:.0f}x): {ratios}")
    out = write_json(args.output, result)
    print(f"wrote {out}")
    return result

