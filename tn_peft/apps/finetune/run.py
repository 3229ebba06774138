"""``tn-peft finetune``: fine-tune a pretrained encoder on real data with a graph adapter, beside LoRA.

With no arguments: all-MiniLM-L6-v2 + Rotten Tomatoes critic snippets (fresh vs rotten, split by
movie), a linear head on mean-pooled outputs, the ``quantum_peft`` adapter (L = 3). ``--compare``
trains peft methods beside it (``--compare lora:r=1,4 vera:r=256 ia3 ...``, see
:mod:`tn_peft.apps.finetune.grid`), with the same data, split, loop and seeds, plus the frozen encoder
with the head alone (the floor); ``--graph`` takes several graphs the same way. One rule decides what
every row adapts: its spec's own ``targets=``, else ``--targets`` (default ``query value``:
DEFAULT_TARGETS), for the default graph, a named graph and the peft methods alike. ``--tune`` picks
each setting's learning rates on validation (at ``--tune-seeds``) and trains the choice on every
seed. Before anything is read or loaded, :func:`check_before_work` checks the options, every
``--graph`` / ``--compare`` setting (built as a config) and the run folder. The run folder gets
``metrics.json``, ``curves.png``, ``table.txt``, ``frontier.png`` / ``frontier.md`` (accuracy vs
parameters) and each run's adapter (``save_pretrained``) with its head. The options are in
:mod:`tn_peft.cli.finetune`.

The default steps and learning rates were chosen on the validation split (held-out movies); see
docs/finetune.md for the experiments behind them.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import time
from pathlib import Path
from typing import Any

from ...errors import DataError, TnPeftError, UsageError
from ...io.atomic import atomic_write, atomic_write_text
from . import frontier, runfolder, userdata
from .data import Split, encode, load_dataset, model_path
from .grid import HEAD_LR, Row, compare_rows, graph_rows
from .methods import Method, build_classifier, check_method, hidden_size, load_encoder, stay_offline
from .report import (
    DEFAULT_TARGETS,
    format_summary_table,
    format_table,
    plot_curves,
    summarize_runs,
    write_metrics,
)
from .train import train

#: split sizes (train, validation, test) per data set; data files use fractions of their rows (userdata.FRACTIONS)
SPLIT_SIZES = {"rotten-tomatoes": (3200, 800, 2000), "bbc-news": (1200, 400, 600), "debates-2016": (600, 200, 322)}

#: optimizer steps per run (chosen on the Rotten Tomatoes validation split: docs/finetune.md, "experiment log")
DEFAULT_STEPS = 200
DEFAULT_GRAPH = "quantum_peft"
#: graph parameters a catalog graph gets unless --set or its spec says otherwise
DEFAULT_GRAPH_ARGS: dict[str, dict[str, Any]] = {"quantum_peft": {"layers": 3}}
def rows_from_args(args: argparse.Namespace) -> list[Row]:
    """The settings to train, in table order: the graphs, the peft methods, then the head-only floor
    (always a row when anything is compared). ``--lr`` / ``--lr-diag`` / ``--lr-head`` replace the
    defaults of rows whose spec gives no such key."""
    graphs = [DEFAULT_GRAPH] if args.graph is None else [g for g in args.graph if g != "none"]
    rows = graph_rows(graphs, dict(args.overrides), DEFAULT_GRAPH_ARGS)
    compared = [c for c in args.compare if c != "none"]
    rows += compare_rows(compared, tune=args.tune)
    if compared and not args.no_floor and not any(r.kind == "head" for r in rows):
        rows += compare_rows(["head"])
    if not rows:
        raise DataError("nothing to train: --graph none needs --compare METHOD ...")
    flags = {"lr": args.lr, "lr_diag": args.lr_diag, "lr_head": args.lr_head}
    for row in rows:
        for role, value in flags.items():
            if value is not None and role in row.lr_grid and role not in row.given:
                row.lr_grid[role] = [value]
    return rows


def targets_from_args(args: argparse.Namespace) -> list[str]:
    """What every row adapts whose spec names no ``targets=``: ``--targets``, else DEFAULT_TARGETS. This is
    the one rule: graph rows and peft rows, the default graph and a named one, alike."""
    if args.targets is None:
        return list(DEFAULT_TARGETS)
    if isinstance(args.targets, str):  # set by a caller of run() as the old comma-separated text
        return [t.strip() for t in args.targets.split(",") if t.strip()]
    return [str(t).strip() for t in args.targets if str(t).strip()]


def training_options(args: argparse.Namespace, train_size: int) -> dict[str, Any]:
    """What every row trains with, as :class:`Method` fields: ``steps``, ``schedule``, ``angle_decay``."""
    steps = args.steps if args.steps is not None else DEFAULT_STEPS
    if args.epochs is not None:
        steps = max(1, math.ceil(args.epochs * train_size / args.batch_size))
    return {"steps": steps, "schedule": args.schedule, "angle_decay": args.angle_decay}


def method_for(row: Row, lrs: dict[str, float], targets: list[str], training: dict[str, Any],
               name: str | None = None) -> Method:
    """The Method that trains ``row`` with learning rates ``lrs`` and :func:`training_options` ``training``
    on the row's own targets, else ``targets`` (the angle decay applies to graphs only)."""
    common = {"name": name or row.label, "family": row.family, "targets": list(row.targets or targets),
              "steps": training["steps"], "schedule": training["schedule"], "lr_head": lrs.get("lr_head", HEAD_LR)}
    if row.kind == "graph":
        return Method(kind="graph", graph=row.source, graph_args=dict(row.args), lr=lrs["lr"],
                      lr_diag=lrs.get("lr_diag"), angle_decay=training["angle_decay"], **common)
    if row.kind == "peft":
        return Method(kind="peft", peft_type=row.source, peft_args=dict(row.args), lr=lrs["lr"], **common)
    return Method(kind="head", lr=lrs.get("lr_head", HEAD_LR), **common)


def methods_from_args(args: argparse.Namespace, train_size: int, rows: list[Row] | None = None) -> list[Method]:
    """Without --tune: one Method per row and learning-rate setting (a row with several is named by them)."""
    targets = targets_from_args(args)
    training = training_options(args, train_size)
    methods = []
    for row in rows if rows is not None else rows_from_args(args):
        settings = row.settings()
        for lrs in settings:
            varying = {k: v for k, v in lrs.items() if len(row.lr_grid[k]) > 1}
            name = row.label + "".join(f" {k}={v:g}" for k, v in varying.items()) if len(settings) > 1 else None
            methods.append(method_for(row, lrs, targets, training, name))
    return methods


def _save(out: Path, name: str, wrapped: Any, classifier: Any) -> str:
    from safetensors.torch import save_file

    folder = out / name
    if hasattr(wrapped, "save_pretrained"):
        wrapped.save_pretrained(str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    head = {k: v.detach().cpu().contiguous() for k, v in classifier.head.state_dict().items()}
    atomic_write(folder / "head.safetensors", lambda tmp: save_file(head, str(tmp)))
    return str(folder)


def _folder_name(method: Method, seed: int, tag: str = "") -> str:
    slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_", method.name).strip("_")
    return f"adapter-{slug}{tag}-seed{seed}"


class Trainer:
    """Trains methods on one run's data: one call per (method, seed), each from a fresh copy of the encoder."""

    def __init__(self, args: argparse.Namespace, encoder: Any, encoded: dict, num_labels: int, out: Path) -> None:
        self.args, self.encoder, self.encoded, self.num_labels, self.out = args, encoder, encoded, num_labels, out

    def __call__(self, method: Method, seed: int, tag: str = "") -> dict[str, Any]:
        import torch

        args = self.args
        torch.manual_seed(seed)
        classifier, wrapped = build_classifier(method, copy.deepcopy(self.encoder), self.num_labels)
        if not args.no_progress and hasattr(wrapped, "print_trainable_parameters"):
            print(f"[{method.name}, seed {seed}] ", end="")
            wrapped.print_trainable_parameters()
        history = train(classifier, method, self.encoded["train"], self.encoded["validation"],
                        None if args.no_test else self.encoded["test"], batch_size=args.batch_size,
                        eval_every=args.eval_every, seed=seed, device=args.device, progress=not args.no_progress)
        result = history.to_dict()
        result["seed"] = seed
        if not args.no_save:
            t0 = time.perf_counter()
            result["saved_to"] = _save(self.out, _folder_name(method, seed, tag), wrapped, classifier)
            result["save_seconds"] = time.perf_counter() - t0
        return result


def final_validation(runs: list[dict[str, Any]]) -> float:
    """Mean final validation accuracy of ``runs`` (what --tune maximizes)."""
    values = [r["validation_accuracy"][-1] for r in runs if r["validation_accuracy"]]
    if not values:
        raise DataError("--tune needs a validation split: set --validation-size > 0")
    return sum(values) / len(values)


def _lr_tag(row: Row, lrs: dict[str, float]) -> str:
    """The folder-name tag of a setting's tuned learning rates (``-lr0.01``; empty when nothing was tuned)."""
    return "".join(f"-{k}{v:g}" for k, v in lrs.items() if len(row.lr_grid[k]) > 1)


def tune_and_train(rows: list[Row], trainer: Trainer, targets: list[str], training: dict[str, Any],
                   seeds: list[int], tune_seeds: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For each row: train every learning-rate setting at ``tune_seeds``, choose the best mean final
    validation accuracy (first wins ties), then train the choice at the other ``seeds``.
    Returns (the chosen settings' runs on ``seeds``, the tuning record with every setting's runs)."""
    results, record = [], []
    for row in rows:
        settings = row.settings()
        tried = []
        for lrs in settings:
            method = method_for(row, lrs, targets, training)
            runs = [trainer(method, seed, _lr_tag(row, lrs)) for seed in tune_seeds]
            tried.append({"learning_rates": lrs, "validation": final_validation(runs), "runs": runs})
        best = max(range(len(tried)), key=lambda i: (tried[i]["validation"], -i))
        chosen = tried[best]
        record.append({"method": row.label, "chosen": chosen["learning_rates"],
                       "settings": [{"learning_rates": t["learning_rates"], "validation": t["validation"],
                                     "runs": [{"seed": r["seed"], "validation_accuracy": r["validation_accuracy"],
                                               "test_accuracy": r.get("test_accuracy")} for r in t["runs"]]}
                                    for t in tried]})
        method = method_for(row, chosen["learning_rates"], targets, training)
        kept = [r for r in chosen["runs"] if r["seed"] in seeds]
        tag = _lr_tag(row, chosen["learning_rates"])
        results += kept + [trainer(method, seed, tag) for seed in seeds if seed not in tune_seeds]
    return results, record


def _cpu_seconds() -> float | None:
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    except (ImportError, OSError):  # pragma: no cover - not on POSIX
        return None


#: options that must be positive integers when given
POSITIVE = ("steps", "batch_size", "seq_len", "eval_every", "threads")
#: options that must be non-negative integers when given
NON_NEGATIVE = ("train_size", "validation_size", "test_size")


def check_options(args: argparse.Namespace) -> None:
    """Option values and combinations; a UsageError naming the first problem."""
    for name in POSITIVE + NON_NEGATIVE:
        value = getattr(args, name, None)
        if value is not None and (value < 1 if name in POSITIVE else value < 0):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value}: must be {'at least 1' if name in POSITIVE else '0 or more'}. "
                             f"Fix: give {flag} a {'positive' if name in POSITIVE else 'non-negative'} integer")
    if args.epochs is not None and args.steps is not None:
        raise UsageError("--epochs and --steps both given: --epochs sets the steps. Fix: give one of the two")
    if args.epochs is not None and not args.epochs > 0:
        raise UsageError(f"--epochs {args.epochs}: must be above 0. Fix: e.g. --epochs 1")
    if args.tune_seeds is not None and not args.tune:
        raise UsageError("--tune-seeds without --tune: the seeds would not be used. Fix: add --tune, or drop --tune-seeds")
    if args.no_floor and not [c for c in args.compare if c != "none"]:
        raise UsageError("--no-floor without --compare: there is no head-only row to leave out. Fix: drop --no-floor")
    if args.tune and args.validation_size == 0:
        raise UsageError("--tune chooses on the validation split, and --validation-size is 0. "
                         "Fix: give --validation-size a positive size, or drop --tune")
    if args.model is not None:
        folder = Path(args.model)
        if not (folder / "config.json").is_file():
            raise UsageError(f"--model {folder}: not a Hugging Face model folder (no config.json). Fix: pass the folder "
                             "that holds config.json and the weights (nothing is downloaded)")


def check_methods(methods: list[Method], hidden: int | None = None) -> None:
    """Build every row's adapter config without a model (peft's config class, with field types checked;
    tn_peft's graph, built for a ``hidden`` x ``hidden`` layer): a bad ``--compare`` / ``--graph`` setting
    fails here, before anything is trained, with one error naming the setting."""
    for method in methods:
        check_method(method, hidden)


def check_before_work(args: argparse.Namespace, out: Path) -> list[Row]:
    """What a run can get wrong before it reads anything: options and their combinations, every ``--graph``
    / ``--compare`` setting (each built as a config), the run folder. Returns the rows to train. (The data
    file is read, and checked, next; the model loads after both.)"""
    check_options(args)
    rows = rows_from_args(args)
    try:
        folder = Path(args.model) if args.model else model_path()
    except TnPeftError:  # the default model is not installed: said when it is loaded
        folder = None
    check_methods(methods_from_args(args, 1, rows), hidden_size(folder) if folder else None)
    runfolder.check_free(out, args.overwrite)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``tn-peft finetune`` with parsed ``args``; returns the metrics dict also written to metrics.json."""
    import torch

    started = time.perf_counter()
    stay_offline()  # before the specs import peft
    out = Path(args.output) if args.output else Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")
    rows = check_before_work(args, out)  # every spec, option, path and folder before any loading
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data, report = load_dataset(args.data, text_column=args.text_column, label_column=args.label_column,
                                group_column=args.group_column)
    sizes = userdata.split_sizes(len(data), args.train_size, args.validation_size, args.test_size,
                                 SPLIT_SIZES.get(args.data))
    split: Split = userdata.checked_split(data, sizes, seed=args.split_seed, test_needed=not args.no_test,
                                          source=report.path if report else None)
    data_summary = userdata.summarize(data, split, report)
    folder = Path(args.model) if args.model else model_path()
    encoder, tokenizer = load_encoder(folder, args.quantize_base, args.device)
    encoded = {part: encode(getattr(split, part), tokenizer, args.seq_len)
               for part in ("train", "validation", "test")}
    texts = [t for part in ("train", "validation", "test") for t in getattr(split, part).texts]
    data_summary["longer_than_max_length"] = {"texts": userdata.count_longer(texts, tokenizer, args.seq_len),
                                              "of": len(texts), "max_length": args.seq_len}
    print(userdata.format_summary(data_summary), flush=True)
    runfolder.mark_started(out, getattr(args, "command_line", None))
    seeds = list(args.seed)
    trainer = Trainer(args, encoder, encoded, data.num_labels, out)
    targets = targets_from_args(args)
    tuning = None
    if args.tune:
        results, tuning = tune_and_train(rows, trainer, targets, training_options(args, len(split.train)), seeds,
                                         list(args.tune_seeds or seeds[:1]))
    else:
        results = [trainer(method, seed) for method in methods_from_args(args, len(split.train)) for seed in seeds]
    table_results = [r for r in results if r["seed"] == seeds[0]]
    table = format_table(table_results)
    summary = summarize_runs(results)
    metrics = {
        "command": getattr(args, "command_line", None),
        "data": {"name": data.name, "labels": data.label_names, "split": split.sizes(),
                 "split_seed": args.split_seed, "grouped_by": "movie" if data.name == "rotten-tomatoes" else "group",
                 "max_length": args.seq_len, "summary": data_summary},
        "model": str(folder),
        "threads": torch.get_num_threads(), "device": args.device, "batch_size": args.batch_size,
        "seeds": seeds, "runs": results, "summary": summary, "table": table,
    }
    metrics["settings"] = frontier.run_settings(metrics)  # what a frontier pools on (frontier.SETTINGS)
    if tuning is not None:
        metrics["tuning"] = tuning
        write_metrics(out / "tuning.json", {"tune_seeds": list(args.tune_seeds or seeds[:1]), "rows": tuning})
    names = list(dict.fromkeys(r["method"]["name"] for r in table_results))
    plot_title = f"{data.name}: {', '.join(names)} (seed {seeds[0]})"
    metrics["plot"] = str(plot_curves(table_results, out / "curves.png", title=plot_title))
    if not args.no_test and len(summary) > 1:
        frontier.write(summary, out, title=f"{data.name}: accuracy vs adapter parameters, seeds {seeds}",
                       settings=metrics["settings"])
    metrics["total_seconds"] = time.perf_counter() - started
    # CPU time of this process: on a shared machine it says more about the cost than wall time does
    metrics["cpu_seconds"] = _cpu_seconds()
    text = table + ("\n\n" + format_summary_table(summary) if len(seeds) > 1 else "")
    atomic_write_text(out / "table.txt", text + "\n")
    write_metrics(out / runfolder.METRICS, metrics)
    runfolder.mark_finished(out)
    print()
    print(text)
    print(f"\nrun folder: {out}  (metrics.json, curves.png, frontier.png, adapters)   total "
          f"{metrics['total_seconds']:.0f} s wall, {metrics['cpu_seconds'] or 0:.0f} s CPU")
    return metrics
