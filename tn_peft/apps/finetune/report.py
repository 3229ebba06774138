"""What a finetune run leaves behind: the results table, ``metrics.json`` and ``curves.png``."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import DataError, warn
from ...io.atomic import atomic_write, write_json

COLUMNS = ("method", "targets", "adapter params", "bits", "adapter bytes", "test acc", "mean step", "peak mem")


def _fmt_params(n: int) -> str:
    return f"{n:,}"


def _fmt_bytes(n: int | None) -> str:
    """Adapter file bytes (``-`` when not measured: runs from before the column, or the head row)."""
    return f"{n:,}" if n else "-"


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per method: name, the modules it adapts, trainable adapter parameters, their bits and file
    bytes, test accuracy, step time, peak memory."""
    rows = []
    for r in results:
        acc = r.get("test_accuracy")
        method = r["method"]
        targets = "-" if method.get("kind") == "head" else ",".join(method.get("targets") or DEFAULT_TARGETS)
        rows.append([method["name"], targets, _fmt_params(r["adapter_parameters"]), r.get("bits", "32"),
                     _fmt_bytes(r.get("adapter_bytes")),
                     "-" if acc is None else f"{100 * acc:.2f}%",
                     f"{1000 * r['mean_step_seconds']:.0f} ms",
                     f"{r['peak_memory_bytes'] / 2**20:,.0f} MiB"])
    return rows


def format_table(results: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The results table as aligned text (or a Markdown table)."""
    rows = [list(COLUMNS)] + table_rows(results)
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` atomically (see :func:`tn_peft.io.atomic.write_json`)."""
    return write_json(path, metrics)


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (window shrinks at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(results: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Two panels: train loss per step (raw, faint, and smoothed) and validation accuracy per method.

    Each method's test accuracy is marked at its last step.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(results):
        color = colors[i % len(colors)]
        label = f"{r['method']['name']} ({r['adapter_parameters']:,} params)"
        steps, loss = r["steps"], r["train_loss"]
        if steps:
            ax_loss.plot(steps, loss, color=color, alpha=0.2, linewidth=0.8)
            ax_loss.plot(steps, smooth(loss, max(1, len(loss) // 20)), color=color, label=label)
        if r["eval_steps"]:
            ax_acc.plot(r["eval_steps"], [100 * a for a in r["validation_accuracy"]], "o-", color=color,
                        label=f"{r['method']['name']} validation")
        if r.get("test_accuracy") is not None and steps:
            ax_acc.plot([steps[-1]], [100 * r["test_accuracy"]], marker="*", markersize=14, color=color,
                        linestyle="none", label=f"{r['method']['name']} test {100 * r['test_accuracy']:.1f}%")
    ax_loss.set(xlabel="step", ylabel="train cross-entropy", title="training loss (faint: per batch)")
    ax_acc.set(xlabel="step", ylabel="accuracy (%)", title="validation accuracy; star = final test")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


#: the main job's target modules: what a setting adapts unless told otherwise, and so what its name leaves unsaid
DEFAULT_TARGETS = ("query", "value")


def run_key(run: dict[str, Any]) -> tuple[str, tuple]:
    """Which runs are seeds of one setting: the method's name (with its targets when they are not
    query and value, its schedule when it is not linear, its angle decay when set) and its learning rates."""
    m = run["method"]
    targets = tuple(m.get("targets") or DEFAULT_TARGETS)
    on = f" on {','.join(targets)}"
    name = m["name"] if targets == DEFAULT_TARGETS or m["name"].endswith(on) else m["name"] + on
    if m.get("schedule", "linear") != "linear":
        name += f", {m['schedule']} schedule"
    if m.get("angle_decay"):
        name += f", angle decay {m['angle_decay']:g}"
    return name, tuple((k, m.get(k)) for k in ("lr", "lr_diag", "lr_head"))


def summarize_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting (:func:`run_key`), over its seeds: params, mean ± std of the test accuracy and of the
    final validation accuracy, mean step time, peak memory; plus the family and kind for the frontier."""
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        group = by_key.setdefault(run_key(r), [])
        if all(other["seed"] != r["seed"] for other in group):  # a seed run twice (deterministic) counts once
            group.append(r)
    rows = []
    for (name, lrs), group in by_key.items():
        test = [r["test_accuracy"] for r in group if r.get("test_accuracy") is not None]
        val = [r["validation_accuracy"][-1] for r in group if r["validation_accuracy"]]
        method = group[0]["method"]
        kind = method.get("kind", "graph")
        rows.append({"method": name, "family": method.get("family") or kind, "kind": kind,
                     "learning_rates": {k: v for k, v in lrs if v is not None and (kind != "head" or k == "lr_head")},
                     "runs": len(group), "seeds": sorted(r["seed"] for r in group),
                     "adapter_parameters": max(r["adapter_parameters"] for r in group),  # a budget's seeds may differ
                     "bits": group[0].get("bits", "32"), "adapter_bytes": group[0].get("adapter_bytes"),
                     "test": mean_std(test) if test else None, "validation": mean_std(val) if val else None,
                     "mean_step_seconds": statistics.fmean(r["mean_step_seconds"] for r in group),
                     "peak_memory_bytes": max(r["peak_memory_bytes"] for r in group)})
    return rows


def load_runs(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every run of several ``metrics.json`` files (or run folders holding one); a folder whose run has not
    finished (:func:`~tn_peft.apps.finetune.runfolder.is_incomplete`) is skipped with a warning."""
    from .runfolder import MARKER, is_incomplete

    runs = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            path = path / "metrics.json"
        if is_incomplete(path.parent):
            warn(f"skipping {path.parent}: its run has not finished ({MARKER}: still running, or stopped by "
                 "Ctrl-C, a kill or an error); rerun it with --overwrite")
            continue
        try:
            metrics = json.loads(path.read_text())
            runs += list(metrics["runs"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: not a finetune metrics.json ({err}). "
                            f"Fix: pass run folders written by tn-peft finetune") from None
    return runs


def summarize_folders(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """:func:`summarize_runs` over the runs of several ``metrics.json`` files."""
    return summarize_runs(load_runs(paths))


def format_summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`summarize_folders` rows (accuracies in %, mean ± std over seeds)."""
    lines = ["| method | adapter params | bits | adapter bytes | seeds | validation acc | test acc | mean step | peak mem |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        val, test = (f"{100 * v[0]:.2f} ± {100 * v[1]:.2f}" if v else "-" for v in (r["validation"], r["test"]))
        lines.append(f"| {r['method']} | {r['adapter_parameters']:,} | {r.get('bits', '32')} | "
                     f"{_fmt_bytes(r.get('adapter_bytes'))} | {','.join(map(str, r['seeds']))} | "
                     f"{val} | {test} | "
                     f"{1000 * r['mean_step_seconds']:.0f} ms | {r['peak_memory_bytes'] / 2**20:,.0f} MiB |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tn_peft.apps.finetune.report runs/*/metrics.json
    import sys

    print(format_summary_table(summarize_folders(sys.argv[1:])))
