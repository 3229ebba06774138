"""The training loop: AdamW with per-role learning rates, warmup then a schedule (linear decay by
default), periodic validation, test accuracy at the end, mean step time and peak memory. Progress bars come from tqdm.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import torch
from torch import nn
from tqdm.auto import tqdm

from ...errors import DataError
from ...model.budget import allocator_for
from .data import Encoded
from .methods import (
    Classifier,
    Method,
    adapter_bits,
    adapter_file_bytes,
    adapter_parameter_count,
    parameter_groups,
)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class PeakMemory:
    """Peak memory while the block runs: CUDA max allocated on GPU, else sampled process RSS."""

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval, self.peak = device, interval, 0
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())


@dataclass
class History:
    """What one method's run produced; ``to_dict`` is its entry in metrics.json."""

    method: dict[str, Any]
    adapter_parameters: int = 0
    bits: str = "32"
    adapter_bytes: int = 0
    adapter_payload_bytes: int = 0
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    validation_accuracy: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    test_accuracy: float | None = None
    test_loss: float | None = None
    mean_step_seconds: float = 0.0
    peak_memory_bytes: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    budget: dict[str, Any] | None = None  # a ``budget`` graph's pruning (tn_peft.model.budget.BudgetPruner.summary)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@torch.no_grad()
def evaluate(model: nn.Module, data: Encoded, *, batch_size: int = 128, device: torch.device,
             desc: str = "eval", progress: bool = True) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``data``."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    # shortest texts first: batches of similar length carry little padding (about 2x faster here)
    order = torch.argsort(data.attention_mask.sum(1), stable=True)
    for start in tqdm(range(0, len(data), batch_size), desc=desc, leave=False, disable=not progress,
                      unit="batch"):
        ids, mask, labels = (t.to(device) for t in data.batch(order[start:start + batch_size]))
        logits = model(ids, mask)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
    model.train(was_training)
    return correct / max(len(data), 1), loss_sum / max(len(data), 1)


#: learning-rate schedules after the warmup: ``linear`` decay to 0 (the default, as Hugging Face's
#: Trainer), ``cosine`` decay to 0, ``constant``
SCHEDULES = ("linear", "cosine", "constant")


def lr_factor(step: int, total: int, schedule: str = "linear", warmup_fraction: float = 0.06) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of ``total``: linear warmup over the first
    ``warmup_fraction`` of steps, then, for progress ``p = (step - warmup) / (total - warmup)``,
    ``linear``: ``1 - p``; ``cosine``: ``(1 + cos(pi p)) / 2``; ``constant``: 1.

    >>> [round(lr_factor(s, 100, "cosine"), 3) for s in (0, 5, 6, 53, 99)]
    [0.167, 1.0, 1.0, 0.5, 0.0]
    """
    if schedule not in SCHEDULES:
        raise DataError(f"schedule {schedule!r} is not known. Fix: use one of {', '.join(SCHEDULES)}")
    warmup = max(1, round(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, (total - step) / max(1, total - warmup))


def length_grouped_batches(data: Encoded, batch_size: int, generator: torch.Generator,
                           megabatch: int = 50) -> list[torch.Tensor]:
    """One epoch of random batches whose texts have similar lengths (less padding, ~2x faster here).

    As Hugging Face's ``group_by_length``: shuffle, cut into megabatches of ``megabatch`` batches,
    sort each by length, cut into batches, shuffle the batches. Partial last batches are dropped.
    """
    lengths = data.attention_mask.sum(1)
    order = torch.randperm(len(data), generator=generator)
    size = batch_size * megabatch
    batches = []
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    if not batches:  # fewer examples than one batch
        batches = [order]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class CircularDecay:
    """Weight decay for periodic parameters: ``lambda * sum(1 - cos(theta - theta_0))`` over every
    circuit angle (``pauli`` nodes), pulling each angle back to its start along the circle (AdamW's
    decay pulls to 0, a point the period makes arbitrary; the loop's AdamW has none). Its gradient,
    ``lambda sin(theta - theta_0)``, vanishes at the start and a full turn away."""

    def __init__(self, model: nn.Module, strength: float):
        from ...nodes.base import Node

        self.strength = float(strength)
        self.angles = [p for m in model.modules() if isinstance(m, Node) and m.kind == "pauli"
                       for p in m.parameters() if p.requires_grad]
        self.anchors = [p.detach().clone() for p in self.angles]

    def __call__(self) -> torch.Tensor | float:
        if not self.strength or not self.angles:
            return 0.0
        return self.strength * sum((1 - torch.cos(p - a)).sum() for p, a in zip(self.angles, self.anchors))


#: batches of dL/dW that ``frame: gradient`` nodes are set from before training (LoRA-GA uses ~64 examples)
FRAME_BATCHES = 4
#: the frame batches come from their own shuffle, so a framed run trains on the same batches as any other
FRAME_SEED_OFFSET = 10_007


def initialize_gradient_frames(model: Classifier, train_data: Encoded, batch_size: int, seed: int,
                               device: torch.device) -> int:
    """Set the model's ``frame: gradient`` nodes from ``FRAME_BATCHES`` training batches (0 if it has none)."""
    from ...model.frames import initialize_frames

    generator = torch.Generator().manual_seed(seed + FRAME_SEED_OFFSET)
    picked = length_grouped_batches(train_data, batch_size, generator)[:FRAME_BATCHES]

    def loss_fn(module: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        ids, mask, labels = (t.to(device) for t in train_data.batch(idx))
        return nn.functional.cross_entropy(module(ids, mask), labels, reduction="sum")

    return initialize_frames(model, picked, loss_fn)


def train(model: Classifier, method: Method, train_data: Encoded, validation: Encoded | None,
          test: Encoded | None, *, batch_size: int = 32, eval_every: int = 50, seed: int = 0,
          device: torch.device | str = "cpu", progress: bool = True) -> History:
    """Train ``model`` for ``method.steps`` steps of ``batch_size`` and evaluate it.

    Validation accuracy is measured every ``eval_every`` steps (and at the end); test accuracy only
    once, at the end. The train loss curve holds the mean loss of each step's batch.
    """
    device = torch.device(device)
    model.to(device)
    history = History(method=method.to_dict(), adapter_parameters=adapter_parameter_count(model),
                      bits=adapter_bits(method))
    initialize_gradient_frames(model, train_data, batch_size, seed, device)
    optimizer = torch.optim.AdamW(parameter_groups(model, method), weight_decay=0.0)
    decay = CircularDecay(model, method.angle_decay)
    pruner = allocator_for(model.encoder, method.steps) if method.kind == "graph" else None
    if pruner is not None and method.angle_decay:
        raise DataError(f"{method.name}: a graph budget prunes the circuits it would pull back; "
                        "Fix: drop --angle-decay or the budget")
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    generator = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    step_times, eval_time = [], 0.0
    model.train()
    bar = tqdm(range(method.steps), desc=f"train {method.name}", disable=not progress, unit="step")
    with PeakMemory(device) as memory:
        for step in bar:
            if not batches:
                batches = length_grouped_batches(train_data, batch_size, generator)
            idx = batches.pop()
            ids, mask, labels = (t.to(device) for t in train_data.batch(idx))
            factor = lr_factor(step, method.steps, method.schedule)
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr * factor
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(model(ids, mask), labels)
            optimizer.zero_grad(set_to_none=True)
            (loss + decay()).backward()
            if pruner is not None:
                pruner.observe()
            optimizer.step()
            if pruner is not None:
                pruner.step(step + 1, optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_times.append(time.perf_counter() - start)
            value = loss.detach().item()
            if not math.isfinite(value):
                raise DataError(f"{method.name}: the loss became {value} at step {step} (training diverged). "
                                f"Fix: lower the learning rates (now lr={method.lr}, lr_diag={method.lr_diag}, "
                                f"lr_head={method.lr_head}) with --lr, --lr-diag or --lora-lr")
            history.steps.append(step + 1)
            history.train_loss.append(value)
            bar.set_postfix(loss=f"{value:.3f}")
            last = step + 1 == method.steps
            if validation is not None and len(validation) and ((step + 1) % eval_every == 0 or last):
                t0 = time.perf_counter()
                acc, val_loss = evaluate(model, validation, device=device, desc="validation", progress=progress)
                eval_time += time.perf_counter() - t0
                history.eval_steps.append(step + 1)
                history.validation_accuracy.append(acc)
                history.validation_loss.append(val_loss)
                bar.set_postfix(loss=f"{value:.3f}", val_acc=f"{acc:.3f}")
    if pruner is not None:  # the saved adapter is the pruned one: count it
        pruner.finish(optimizer)
        pruner.close()
        history.adapter_parameters, history.budget = adapter_parameter_count(model), pruner.summary()
    # the first steps pay one-time costs (allocator growth, lazy init); leave them out of the mean
    timed = step_times[2:] if len(step_times) > 4 else step_times
    history.mean_step_seconds = sum(timed) / max(len(timed), 1)
    history.train_seconds = sum(step_times)
    history.peak_memory_bytes = int(memory.peak)
    history.adapter_bytes, history.adapter_payload_bytes = adapter_file_bytes(model.encoder)
    if test is not None and len(test):
        t0 = time.perf_counter()
        history.test_accuracy, history.test_loss = evaluate(model, test, device=device, desc="test",
                                                            progress=progress)
        eval_time += time.perf_counter() - t0
    history.eval_seconds = eval_time
    return history
