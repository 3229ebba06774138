"""Measure what a program really does: bytes autograd saves, forward+backward time, peak memory.

These check the cost model's predictions against torch itself (tests and ``tn-peft bench planner``).

- :func:`saved_bytes`: every tensor autograd packs for backward (``saved_tensors_hooks``), counted
  once per storage, leaving out the storages of the given inputs (node tensors are alive anyway).
- :func:`time_forward_backward`: median seconds of ``fn(*args)`` forward + ``backward()``.
- :func:`peak_bytes`: the peak of memory allocated during forward + backward beyond what was held
  before, from the profiler's allocation events (works on CPU, where there is no memory counter).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def _storage(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def saved_bytes(fn: Callable, args: Sequence, exclude: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of distinct storages autograd keeps while running ``fn(*args)`` (minus ``exclude``'s)."""
    skip = {_storage(t)[0] for t in exclude if isinstance(t, torch.Tensor)}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        ptr, nbytes = _storage(t)
        if ptr not in skip and nbytes > 0:
            seen[ptr] = max(seen.get(ptr, 0), nbytes)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    del out
    return sum(seen.values())


def _sync(args: Sequence) -> None:
    if any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
        torch.cuda.synchronize()


def forward_backward(fn: Callable, args: Sequence, grad_out: torch.Tensor | None = None) -> None:
    """One forward + backward of ``fn(*args)`` (gradients of the inputs that require them)."""
    out = fn(*args)
    if out.requires_grad:
        out.backward(grad_out if grad_out is not None else torch.ones_like(out))


def clear_grads(args: Sequence) -> None:
    for a in args:
        if isinstance(a, torch.Tensor):
            a.grad = None


def time_forward_backward(fns: Sequence[Callable], args_list: Sequence[Sequence], repeat: int = 5,
                          warmup: int = 1, budget_s: float | None = None, min_rounds: int = 5) -> list[float]:
    """Median seconds of forward + backward for each ``fns[i](*args_list[i])``, interleaved.

    Interleaving (a, b, c, then b, c, a, ...: each round starts one later) keeps the comparison fair
    on a machine whose load drifts. ``budget_s`` stops repeating once that much time was spent, but
    not before ``min(min_rounds, repeat)`` rounds.
    """
    times: list[list[float]] = [[] for _ in fns]
    for fn, args in zip(fns, args_list):
        for _ in range(warmup):
            forward_backward(fn, args)
            clear_grads(args)
    start = time.perf_counter()
    order = list(range(len(fns)))
    for r in range(repeat):
        for k in order[r % len(order):] + order[:r % len(order)]:
            fn, args = fns[k], args_list[k]
            _sync(args)
            t0 = time.perf_counter()
            forward_backward(fn, args)
            _sync(args)
            times[k].append(time.perf_counter() - t0)
            clear_grads(args)
        if budget_s is not None and r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return [statistics.median(t) for t in times]


def peak_bytes(fn: Callable, args: Sequence) -> int:
    """Peak bytes allocated by one forward + backward beyond the memory held at its start."""
    if any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        forward_backward(fn, args)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        clear_grads(args)
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(fn, args)
    # allocations show as ops' self memory, frees outside ops as "[memory]" events: replay in order
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:
        level += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, level)
    clear_grads(args)
    return int(peak)
