"""Measure a :class:`~tn_peft.planner.cost.CostModel` for this machine (a few seconds).

    model = calibrate()          # or calibrate("cuda")
    plan = make_plan(problem, model)

Each constant comes from a micro-benchmark timed as the minimum of several runs (robust to a busy
machine): a large matmul (``flop_rate``), a matmul with a small dimension (``half_dim``), a copy of
a cached buffer (``bandwidth``), the first touch of a fresh big tensor (``alloc_bandwidth``), and a
tiny op (``op_overhead``, forward + backward through autograd, per op).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .cost import CostModel


def _best(fn: Callable[[], object], repeat: int = 7, device: str = "cpu") -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate(device: str = "cpu", size: int = 1024) -> CostModel:
    """A cost model with constants measured on ``device`` (``"cpu"`` or ``"cuda"``)."""
    base = CostModel.for_device(device)
    dev = torch.device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    flop_rate = 2 * size**3 / _best(lambda: a @ b, device=device)
    small = 8
    tall = torch.randn(64 * size, size, device=dev)
    thin = torch.randn(size, small, device=dev)
    t_small = _best(lambda: tall @ thin, device=device)
    compute = 2 * tall.shape[0] * size * small / flop_rate
    # eff(d) = d / (d + h)  ->  h = d * (1 / eff - 1), eff = compute time / measured time
    eff = min(max(compute / t_small, 1e-3), 0.999)
    half_dim = small * (1 / eff - 1)
    buf = torch.randn(4 * 2**20, device=dev)   # 16 MiB
    out = torch.empty_like(buf)
    bandwidth = 2 * buf.numel() * 4 / _best(lambda: out.copy_(buf), device=device)
    big = 64 * 2**20 // 4
    t_fresh = _best(lambda: torch.empty(big, device=dev).fill_(1.0), repeat=3, device=device)
    t_cached = big * 4 / bandwidth
    alloc = big * 4 / max(t_fresh - t_cached, 1e-9)
    p = torch.randn(4, 4, device=dev, requires_grad=True)
    q = torch.randn(4, 4, device=dev)

    def tiny():
        (p @ q).sum().backward()

    overhead = _best(tiny, repeat=50, device=device) / 4  # matmul, sum, and their two backward ops
    return base.with_(flop_rate=flop_rate, half_dim=max(half_dim, 1.0), bandwidth=bandwidth,
                      alloc_bandwidth=alloc if alloc < 50 * bandwidth else float("inf"), op_overhead=overhead)
