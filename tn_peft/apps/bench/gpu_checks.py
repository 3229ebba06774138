"""The correctness half of ``tn-peft bench gpu``: fused kernels and catalog graphs against float64.

A check runs one subject forward and backward on the device in one precision mode, with a fixed
random upstream gradient, and runs the same subject in float64 on the CPU from the device's own
(rounded) values. Its error is ``max |a - b| / max |b|`` for the output and for every gradient (x,
every node tensor's parameters, circuit angles included); the worst must be within the mode's
tolerance. Subjects:

- kernels, called directly: ``lowrank`` (LoRA's and canonical SVD's chains), ``circuit_chain``
  (Quantum-PEFT's x -> V -> s -> U in one launch), ``circuit_rows`` (one circuit per launch, both
  ways: ``(x V) U^T`` as two launches) and ``kron_rows`` (per-wire maps), each against the float64
  planned program (or ``(x V) U^T``) on the CPU;
- graphs: every catalog graph's adapter through its planned program as users run it
  (``adapter(x)``: on CUDA the plan chooser swaps in a fused kernel where one applies).

Modes (:data:`MODES`, :class:`Mode`): fp32; bf16 and fp16 (the kernels' inputs in that dtype); bf16
and fp16 autocast (float32 adapter under ``torch.autocast``: how users train half-precision
models). Tolerances follow the dtype's unit roundoff.

On a CPU (``--dry-run``) the same checks run at small sizes with the kernels under the Triton
interpreter, the plans made for CUDA (:func:`plan_as_cuda`) so that the fused kernels are the ones
dispatched. Triton's interpreter multiplies bfloat16 ``tl.dot`` operands wrongly (:func:`interpreter_bf16_dot_error`);
there, bfloat16 checks of the dot kernel are skipped with that reason, never passed.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Mode:
    """A precision mode: the dtype the kernels compute in, how it is reached, and its tolerance.

    ``how``: "native" (float32 throughout); "inputs" (x and the tensors a kernel reads are cast to
    the dtype, the nodes stay float32: kernels only, since tn_peft keeps adapters in float32 whatever
    the base, :func:`tn_peft.model.layers.adapter_dtype`); "autocast" (float32 adapter under
    ``torch.autocast``: how users train half-precision models, for kernels and graphs alike).
    """

    name: str
    dtype: torch.dtype
    how: str
    tolerance: float


#: Tolerances: float32 ~1e-6 rounding, kept at 1e-4 as the fused-kernel check always was; bf16 (8
#: mantissa bits, 3.9e-3 unit roundoff) and fp16 (11 bits, 4.9e-4) allow the rounding of inputs and
#: intermediates that the program and the kernel round at different points.
MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("fp32", torch.float32, "native", 1e-4),
    Mode("bf16", torch.bfloat16, "inputs", 6e-2),
    Mode("fp16", torch.float16, "inputs", 1e-2),
    Mode("bf16 autocast", torch.bfloat16, "autocast", 6e-2),
    Mode("fp16 autocast", torch.float16, "autocast", 1e-2),
)}

KERNELS = ("lowrank:lora", "lowrank:svd", "circuit_chain", "circuit_rows", "kron_rows")


@dataclass(frozen=True)
class Case:
    """One check: a kernel (``KERNELS``) or a catalog graph, its layer (out x in), tokens, rank."""

    kind: str            # "kernel" | "graph"
    subject: str         # a KERNELS entry or a catalog graph name
    out_features: int
    in_features: int
    tokens: int
    rank: int | None = None  # None: the graph's default

    def label(self) -> str:
        rank = f" r{self.rank}" if self.rank is not None else ""
        return f"{self.subject}{rank} {self.out_features}x{self.in_features} T={self.tokens}"


def _graph(case: Case) -> str:
    return {"lowrank:lora": "lora", "lowrank:svd": "svd", "circuit_chain": "quantum_peft",
            "circuit_rows": "quantum_peft", "kron_rows": "kron"}.get(case.subject, case.subject)


def cases(kernel_shapes, graph_shapes, tokens, ranks, rank_shape, rank_tokens, graphs) -> list[Case]:
    """Every kernel at ``kernel_shapes`` x ``tokens``, every graph at ``graph_shapes`` x ``tokens``,
    and the rank-carrying ones (the kernels; lora, svd, quantum_peft, kron) at each of ``ranks`` on
    ``rank_shape`` (out, in) at ``rank_tokens`` tokens."""
    out = [Case("kernel", k, m, n, t) for k in KERNELS for (m, n) in kernel_shapes for t in tokens]
    out += [Case("graph", g, m, n, t) for g in graphs for (m, n) in graph_shapes for t in tokens]
    m, n = rank_shape
    out += [Case("kernel", k, m, n, rank_tokens, r) for k in KERNELS for r in ranks]
    out += [Case("graph", g, m, n, rank_tokens, r) for g in ("lora", "svd", "quantum_peft", "kron")
            if g in graphs for r in ranks]
    return out


def modes_for(case: Case, modes: list[Mode]) -> list[Mode]:
    """The modes a case runs in: graphs skip "inputs" (their adapters stay float32; see :class:`Mode`)."""
    return [m for m in modes if case.kind == "kernel" or m.how != "inputs"]


# ---------------------------------------------------------------------- the interpreter's limits
def interpreting() -> bool:
    """True when triton runs kernels through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.lru_cache(maxsize=1)
def interpreter_bf16_dot_error() -> float:
    """Relative error of a 16 x 16 bfloat16 ``tl.dot`` (fp32 accumulate) run here against float64.

    Triton 3.9's interpreter gives ~1e8 (it multiplies the raw bits); a GPU gives ~1e-7."""
    import triton
    import triton.language as tl

    @triton.jit
    def dot16(a_ptr, b_ptr, c_ptr):
        r = tl.arange(0, 16)
        a = tl.load(a_ptr + r[:, None] * 16 + r[None, :])
        b = tl.load(b_ptr + r[:, None] * 16 + r[None, :])
        tl.store(c_ptr + r[:, None] * 16 + r[None, :], tl.dot(a, b))

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(16, 16, generator=gen).to(torch.bfloat16) for _ in range(2))
    c = torch.empty(16, 16)
    dot16[(1,)](a, b, c)
    ref = a.double() @ b.double()
    return float((c.double() - ref).abs().max() / ref.abs().max())


def plan_as_cuda(adapter) -> None:
    """Plan ``adapter`` with the CUDA cost model whatever its device (the dry run on a CPU): the fused
    kernels are then dispatched as on a GPU, and run under the Triton interpreter."""
    from ...planner.cost import CostModel

    model = CostModel.for_device("cuda")
    adapter._cost_model = lambda tensor: model  # an instance attribute shadows the method


# ---------------------------------------------------------------------- subjects
def build_adapter(case: Case, seed: int):
    """The case's adapter in float32 on the CPU, every parameter random (s and B start at zero)."""
    from ...graph.spec import load_graph

    overrides = {"rank": case.rank} if case.rank is not None else {}
    adapter = load_graph(_graph(case), **overrides).build(case.in_features, case.out_features)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return adapter


def _fused_call(case: Case, adapter, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Run the case's fused kernel directly on ``adapter``'s tensors, cast to x's dtype (a circuit
    kernel reads its gates in float32 whatever x's dtype): ``(y, kernel name)``."""
    from ...planner.runtime import triton_kernels as tk
    from ...planner.runtime.fused import fused_gated_program, fused_program

    problem = adapter.problem.with_tokens(x.shape[0])
    tensors = [t.to(x.dtype) for t in adapter.node_tensors()]
    if case.subject == "circuit_rows":   # x V (rows N -> k), then z U^T (k -> M): both directions
        z = tk.circuit_rows(x, adapter.node("V"), transpose=True)
        return tk.circuit_rows(z, adapter.node("U"), transpose=False), "circuit_rows"
    if case.subject == "circuit_chain":
        gated = fused_gated_program(problem)
        if gated is None:
            raise ValueError(f"{case.label()}: the circuits are not applied gate by gate at this size")
        program, nodes = gated
        for i in nodes:
            tensors[i] = adapter.node(adapter.operands[i])
        return program(x, *tensors), program.kernel
    program = fused_program(problem)
    if program is None:
        raise ValueError(f"{case.label()}: no fused kernel applies")
    return program(x, *tensors), program.kernel


def _reference_call(case: Case, adapter, x: torch.Tensor) -> torch.Tensor:
    """The float64 CPU value the device must match: ``(x V) U^T`` for circuit_rows, else the planned program."""
    if case.subject == "circuit_rows":
        return (x @ adapter.node("V")()) @ adapter.node("U")().T
    return adapter(x)


def _device_call(case: Case, adapter, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``(y, what ran)`` on the device: the kernel itself, or the graph's planned program as users run it."""
    if case.kind == "kernel":
        return _fused_call(case, adapter, x)
    y = adapter(x)
    plan = adapter.plan(x.shape[0], device="cuda")
    return y, plan.kernel or "torch program"


def relative_error(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    """``max |a - b| / max |b|`` in float64 (0 when both are zero; inf when a is missing or not finite)."""
    if b is None:
        return 0.0 if a is None else float(a.abs().max() > 0) * float("inf")
    if a is None:
        return 0.0 if not bool(b.any()) else float("inf")
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    scale = float(b.abs().max())
    diff = float((a - b).abs().max())
    return diff / scale if scale > 0 else diff


def _grads(adapter, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    out = {"x": x.grad}
    out.update({name: p.grad for name, p in adapter.named_parameters()})
    return out


def run_check(case: Case, mode: Mode, device: torch.device, *, dry_run: bool, seed: int = 0) -> dict[str, Any]:
    """One check (module docstring): the row for the summary and the JSON."""
    from ...errors import SpecError

    row: dict[str, Any] = {"kind": case.kind, "subject": case.subject, "out": case.out_features,
                           "in": case.in_features, "tokens": case.tokens, "rank": case.rank, "mode": mode.name,
                           "tolerance": mode.tolerance}
    try:
        base = build_adapter(case, seed)
    except SpecError as err:   # e.g. a train of 3 cores cannot fold 259 = 7 x 37: no device runs it
        row.update(skipped=f"the graph does not build at this size: {err}")
        return row
    dev = copy.deepcopy(base).to(device=device)
    ref = copy.deepcopy(base).to(dtype=torch.float64)
    if dry_run:
        plan_as_cuda(dev)
    gen = torch.Generator().manual_seed(seed + 1)
    x64 = torch.randn(case.tokens, case.in_features, generator=gen, dtype=torch.float64)
    x = x64.to(device=device, dtype=mode.dtype if mode.how == "inputs" else torch.float32).requires_grad_(True)
    x_ref = x.detach().to("cpu", torch.float64).requires_grad_(True)

    with torch.autocast(device.type, dtype=mode.dtype, enabled=mode.how == "autocast"):
        y, ran = _device_call(case, dev, x)
    row["runs_as"] = ran
    dot_in_bf16 = ran == "lowrank" and mode.dtype == torch.bfloat16
    if dry_run and dot_in_bf16 and interpreter_bf16_dot_error() > 1e-2:
        row.update(skipped=f"the Triton interpreter's bfloat16 tl.dot is wrong here, so this runs on the GPU only: "
                           f"a 16x16 probe's relative error is {interpreter_bf16_dot_error():.1e}")
        return row
    upstream64 = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y.backward(upstream64.to(device=device, dtype=y.dtype))
    y_ref = _reference_call(case, ref, x_ref)
    y_ref.backward(upstream64)
    errors = {"output": relative_error(y, y_ref)}
    ref_grads = _grads(ref, x_ref)
    for name, grad in _grads(dev, x).items():
        if case.subject == "circuit_rows" and name.startswith("nodes.s."):   # no s in (x V) U^T
            continue
        errors[f"grad {name}"] = relative_error(grad, ref_grads[name])
    worst_name = max(errors, key=errors.get)
    row.update(errors=errors, worst=errors[worst_name], worst_of=worst_name,
               ok=bool(errors[worst_name] <= mode.tolerance))
    return row


def run_checks(case_list: list[Case], modes: list[Mode], device: torch.device, *, dry_run: bool,
               out_of_time: Callable[[], bool]) -> tuple[list[dict[str, Any]], int]:
    """Every case in every mode until ``out_of_time()``; ``(rows, cases left unrun)``."""
    rows: list[dict[str, Any]] = []
    # mode by mode (fp32 first), so that a run out of time has checked every case in the first modes
    todo = [(case, mode) for mode in modes for case in case_list if mode in modes_for(case, modes)]
    for n, (case, mode) in enumerate(todo):
        if out_of_time():
            return rows, len(todo) - n
        try:
            rows.append(run_check(case, mode, device, dry_run=dry_run))
        except Exception as err:  # noqa: BLE001 - a check that crashes is a failed check, reported with its error
            rows.append({"kind": case.kind, "subject": case.subject, "out": case.out_features,
                         "in": case.in_features, "tokens": case.tokens, "rank": case.rank, "mode": mode.name,
                         "tolerance": mode.tolerance, "ok": False, "worst": float("inf"),
                         "error": f"{type(err).__name__}: {err}"[:2000]})
    return rows, 0
