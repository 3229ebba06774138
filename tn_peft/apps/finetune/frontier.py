"""The accuracy-vs-parameters frontier: ``frontier.png`` and ``frontier.md`` of a finetune run.

A point is one method setting (a row of :func:`tn_peft.apps.finetune.report.summarize_runs`): its
trainable adapter parameters (x, log axis) and its test accuracy, mean ± std over seeds (y). The
*upper frontier* holds the points no cheaper-or-equal point beats: sorted by parameters, each point
more accurate than every point at or below its size. :func:`budget_table` answers "at a budget of B
parameters, who is best?": for each budget (the sizes of the points), the tn_peft setting and the
peft setting with at most B parameters that score best on *validation*, their test accuracies, and
the difference.

``frontier.json`` keeps the rows (settings with their mean ± std over seeds) beside the plot, so a
later ``tn-peft frontier docs/frontier-x/frontier.json runs/new --out docs/frontier-x`` adds new
run folders to a frontier whose own run folders are gone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...io.atomic import atomic_write, atomic_write_text

#: marker per family (cycled for families not listed)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
#: the family kind whose points are tn_peft's own
OURS = "graph"


def points(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a test accuracy, sorted by parameters (the head-only floor has 0 parameters)."""
    return sorted((r for r in rows if r.get("test") and r["test"][0] == r["test"][0]),
                  key=lambda r: (r["adapter_parameters"], -r["test"][0]))


def upper_frontier(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points more accurate (mean test) than every point with at most their parameters."""
    best, out = float("-inf"), []
    for r in points(rows):
        if r["test"][0] > best:
            out.append(r)
            best = r["test"][0]
    return out


def _best_within(rows: Sequence[dict[str, Any]], budget: int) -> dict[str, Any] | None:
    """The setting with at most ``budget`` parameters and the best mean *validation* accuracy (the test
    accuracy is what is then reported: choosing on test would overstate either side)."""
    within = [r for r in rows if r["adapter_parameters"] <= budget]
    return max(within, key=lambda r: (r["validation"] or r["test"])[0]) if within else None


def budget_table(rows: Sequence[dict[str, Any]], max_budget: int | None = None) -> list[dict[str, Any]]:
    """Per budget B (every point's size, up to ``max_budget``): the best tn_peft and the best peft
    setting with at most B adapter parameters (the head-only floor counts for neither)."""
    pts = [r for r in points(rows) if r["kind"] != "head"]
    ours = [r for r in pts if r["kind"] == OURS]
    theirs = [r for r in pts if r["kind"] != OURS]
    budgets = sorted({r["adapter_parameters"] for r in pts
                      if max_budget is None or r["adapter_parameters"] <= max_budget})
    table = []
    for b in budgets:
        a, p = _best_within(ours, b), _best_within(theirs, b)
        table.append({"budget": b, "ours": a, "peft": p,
                      "margin": (a["test"][0] - p["test"][0]) if a and p else None})
    return table


def _pct(ms: tuple[float, float] | None) -> str:
    return "-" if not ms else f"{100 * ms[0]:.2f} ± {100 * ms[1]:.2f}"


def markdown(rows: Sequence[dict[str, Any]], title: str = "", max_budget: int | None = 10_000) -> str:
    """``frontier.md``: every point (frontier ones in bold), then who is best at each budget."""
    front = {id(r) for r in upper_frontier(rows)}
    lines = [f"# {title}" if title else "# Accuracy vs adapter parameters", "",
             ("Test accuracy, mean ± std over seeds; validation is the final validation accuracy (what "
              "settings were chosen on). **Bold**: on the upper frontier."), "",
             "| method | family | adapter params | seeds | validation | test | learning rates |",
             "|---|---|---:|---|---:|---:|---|"]
    for r in points(rows):
        name = f"**{r['method']}**" if id(r) in front else r["method"]
        lrs = ", ".join(f"{k} {v:g}" for k, v in r.get("learning_rates", {}).items())
        lines.append(f"| {name} | {r['family']} | {r['adapter_parameters']:,} | {','.join(map(str, r['seeds']))} | "
                     f"{_pct(r.get('validation'))} | {_pct(r['test'])} | {lrs} |")
    table = budget_table(rows, max_budget)
    if table:
        limit = "any B" if max_budget is None else f"B up to {max_budget:,}"
        lines += ["", (f"Best setting with at most B adapter parameters ({limit}; best = highest mean "
                       "validation accuracy, its test accuracy shown), tn_peft vs peft:"), "",
                  "| budget B | best tn_peft | test | best peft | test | tn_peft - peft |",
                  "|---:|---|---:|---|---:|---:|"]
        for t in table:
            a, p = t["ours"], t["peft"]
            margin = "-" if t["margin"] is None else f"{100 * t['margin']:+.2f}"
            lines.append(f"| {t['budget']:,} | {a['method'] if a else '-'} | {_pct(a['test']) if a else '-'} | "
                         f"{p['method'] if p else '-'} | {_pct(p['test']) if p else '-'} | {margin} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """``frontier.png``: test accuracy (mean ± std) against adapter parameters (log x), one marker per
    family, tn_peft filled and peft hollow, the upper frontier as a step line, the head floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(rows)
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    placed: list[tuple[float, float]] = []
    families = list(dict.fromkeys((r["family"], r["kind"] == OURS) for r in pts if r["kind"] != "head"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (family, ours) in enumerate(families):
        group = [r for r in pts if r["family"] == family and (r["kind"] == OURS) == ours]
        color = colors[i % len(colors)]
        ax.errorbar([r["adapter_parameters"] for r in group], [100 * r["test"][0] for r in group],
                    yerr=[100 * r["test"][1] for r in group], fmt=MARKERS[i % len(MARKERS)], color=color,
                    markersize=8 if ours else 7, markerfacecolor=color if ours else "none", capsize=3,
                    label=f"{family} ({'tn_peft' if ours else 'peft'})")
        for r in group:
            x, y = r["adapter_parameters"], 100 * r["test"][0]
            ax.annotate(r["method"].removeprefix(family).strip() or family, (x, y), textcoords="offset points",
                        xytext=_label_offset(placed, x, y), fontsize=6.5, color=color)
    for r in pts:
        if r["kind"] == "head":
            ax.axhline(100 * r["test"][0], color="grey", linestyle="--", linewidth=1,
                       label=f"head only (frozen encoder): {100 * r['test'][0]:.2f}")
    front = [r for r in upper_frontier(rows) if r["adapter_parameters"] > 0]
    if front:
        xs = [r["adapter_parameters"] for r in front]
        ys = [100 * r["test"][0] for r in front]
        ax.step(xs + [max(r["adapter_parameters"] for r in pts) * 1.3], ys + ys[-1:], where="post",
                color="black", alpha=0.45, linewidth=1.2, label="upper frontier")
    ax.set_xscale("log")
    ax.set(xlabel="trainable adapter parameters (log scale)", ylabel="test accuracy (%), mean ± std over seeds",
           title=title or "accuracy vs adapter parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


#: the name of the saved rows in a frontier folder, and the fields every saved row has
ROWS_FILE = "frontier.json"
ROW_FIELDS = ("method", "family", "kind", "adapter_parameters", "seeds", "test", "validation")


#: labels whose points are closer than this (decades of parameters, accuracy points) step down a line
LABEL_NEAR = (0.15, 0.45)


def _label_offset(placed: list[tuple[float, float]], x: float, y: float) -> tuple[int, int]:
    """Offset (points) of a point's label: above right, or a line lower for each earlier label whose
    point is near (:data:`LABEL_NEAR`), so that labels of near points do not overprint; records it."""
    near = sum(abs(math.log10(max(x, 1)) - math.log10(max(px, 1))) < LABEL_NEAR[0] and abs(y - py) < LABEL_NEAR[1]
               for px, py in placed)
    placed.append((x, y))
    return 5, 4 - 9 * near


def write(rows: Sequence[dict[str, Any]], folder: str | Path, title: str = "",
          max_budget: int | None = 10_000) -> tuple[Path, Path]:
    """Write ``frontier.png``, ``frontier.md`` and the rows (``frontier.json``) into ``folder``."""
    folder = Path(folder)
    png = plot(rows, folder / "frontier.png", title)
    md = atomic_write_text(folder / "frontier.md", markdown(rows, title, max_budget))
    atomic_write_text(folder / ROWS_FILE, json.dumps({"title": title, "rows": list(rows)}, indent=1) + "\n")
    return png, md


def _is_rows(path: Path) -> bool:
    """A saved frontier (``frontier.json``, or a folder holding one and no ``metrics.json``), not in the folder
    of an unfinished run (which :func:`~tn_peft.apps.finetune.report.load_runs` skips)."""
    from .runfolder import is_incomplete

    if path.is_dir():
        return (path / ROWS_FILE).is_file() and not (path / "metrics.json").is_file() and not is_incomplete(path)
    return path.name == ROWS_FILE and not is_incomplete(path.parent)


def load_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The rows of several inputs: run folders or ``metrics.json`` files (their runs pooled into settings
    by :func:`~tn_peft.apps.finetune.report.summarize_runs`) and saved frontiers (their rows as they are).
    A setting (method and learning rates) found in two inputs is an error naming both."""
    from ...errors import DataError
    from .report import load_runs, summarize_runs

    saved, runs, origin = [], [], {}
    for path in map(Path, paths):
        if not _is_rows(path):
            runs_here = load_runs([path])
            runs += runs_here
            for row in summarize_runs(runs_here):
                origin.setdefault(_setting(row), path)
            continue
        file = path / ROWS_FILE if path.is_dir() else path
        fix = f"Fix: pass a {ROWS_FILE} written by tn-peft frontier or tn-peft finetune"
        try:
            rows = json.loads(file.read_text())["rows"]
            missing = sorted({f for row in rows for f in ROW_FIELDS if f not in row})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{file}: not a saved frontier ({type(err).__name__}: {err}). {fix}") from None
        if missing:
            raise DataError(f"{file}: not a saved frontier (rows without {', '.join(missing)}). {fix}")
        for row in rows:
            row["test"] = tuple(row["test"]) if row["test"] else None
            row["validation"] = tuple(row["validation"]) if row["validation"] else None
        for row in rows:
            key = _setting(row)
            if key in origin:
                raise DataError(f"setting {row['method']!r} ({_lrs(row)}) is in both {origin[key]} and {file}. "
                                f"Fix: pass it once (drop one of the two inputs)")
            origin[key] = file
        saved += rows
    return saved + summarize_runs(runs)


def _setting(row: dict[str, Any]) -> tuple:
    return row["method"], tuple(sorted(row.get("learning_rates", {}).items()))


def _lrs(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in row.get("learning_rates", {}).items()) or "no learning rates"


def run(args) -> int:
    """Merge the runs (seeds of one setting pooled by name and learning rates) and saved rows, write the
    frontier, print it."""
    from ...errors import DataError

    rows = load_rows(args.runs)
    if not points(rows):
        raise DataError("no run with a test accuracy in these folders (runs with --no-test have none)")
    png, md = write(rows, args.out, args.title, args.max_budget)
    print(md.read_text())
    print(f"wrote {png} and {md}")
    return 0
