"""One vocabulary for the command line: each option name has one meaning and one unit in every sub-command.

:data:`VOCABULARY` is the table (option -> meaning, unit); the README's is printed from it by
``python -m tn_peft.cli.vocabulary``, and a test walks every sub-command's parser and fails when an option
is missing from it or one name is given two destinations, types or defaults. The options several commands
share are added by the ``add_*`` helpers below, so that they cannot drift apart.

Renamed options keep their old spelling for a release (:data:`RENAMED`): it still works and prints one
line naming the new one. Lists are space-separated everywhere (``--targets query value``); an option
that takes a list may also be repeated.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """What an option means and the unit of its value."""

    meaning: str
    unit: str


#: option (its long spelling; ``-o`` is short for ``--output``) -> its one meaning and unit
VOCABULARY: dict[str, Term] = {
    "--output": Term("the file or folder the command writes (short: -o)", "path"),
    "--overwrite": Term("replace what an earlier run left in --output", "flag"),
    "--in-features": Term("a layer's input size", "features"),
    "--out-features": Term("a layer's output size", "features"),
    "--shapes": Term("layers to measure, OUTxIN each", "features x features (list)"),
    "--rows": Term("T, the rows of x a layer sees (batch x sequence)", "rows (a list in benches)"),
    "--seq-len": Term("tokens per sequence (texts are cut or padded to it)", "tokens"),
    "--batch-size": Term("sequences per batch (per step)", "sequences"),
    "--repeats": Term("most measured repetitions per case or method", "count"),
    "--min-repeats": Term("fewest measured repetitions per case", "count"),
    "--warmup": Term("unmeasured repetitions before --repeats", "count"),
    "--budget": Term("wall-clock time after which measuring stops", "seconds"),
    "--timeout": Term("time after which one case counts as a hang", "seconds"),
    "--slow": Term("a call slower than this is measured once", "seconds"),
    "--threads": Term("torch CPU threads (default: torch's own)", "threads"),
    "--device": Term("torch device to run (or plan) on (default: cuda when there is one, else cpu)",
                     "cpu, cuda or cuda:N"),
    "--dtype": Term("element type", "float32, float64, ..."),
    "--seed": Term("random seed(s)", "integer (finetune: one or several)"),
    "--split-seed": Term("seed of the train/validation/test split", "integer"),
    "--tune-seeds": Term("seeds the --tune grid is trained at", "integer (list)"),
    "--steps": Term("training (optimizer) steps per run", "steps"),
    "--fit-steps": Term("optimizer steps of convert's Pauli fit", "steps"),
    "--epochs": Term("passes over the train split (instead of --steps)", "epochs"),
    "--eval-every": Term("validation every N training steps", "steps"),
    "--rank": Term("adapter rank r", "rank"),
    "--ranks": Term("adapter ranks K to measure", "rank (list)"),
    "--lora-rank": Term("export-lora: cap on every LoRA layer's rank", "rank"),
    "--energy": Term("export-lora: keep the singular values holding this fraction of dW's squared norm",
                     "fraction in (0, 1]"),
    "--max-bond": Term("convert tt/ttd: cap on every TT bond", "bond dimension"),
    "--depth": Term("circuit depth L (layers of rotations and CZs of a Pauli circuit)", "circuit layers"),
    "--cores": Term("convert tt/ttd: number of TT cores", "count"),
    "--center": Term("convert ttd: the bond carrying the singular values", "bond index"),
    "--tolerance": Term("largest relative error allowed", "relative error"),
    "--min-fidelity": Term("convert: refuse a layer whose 1 - relative error of dW is below this", "fraction"),
    "--map": Term("Stiefel map of svd/ttd nodes", "map name"),
    "--maps": Term("Stiefel maps to measure", "map names (list)"),
    "--to": Term("convert: the form to convert to", "svd, pauli, tt or ttd"),
    "--sizes": Term("matrix sizes N to measure", "N (list)"),
    "--cases": Term("how many random cases per surface", "count"),
    "--kernels": Term("fused kernels to measure", "kernel names (list)"),
    "--sections": Term("sections of bench gpu to run", "section names (list)"),
    "--surface": Term("input surfaces to fuzz", "surface names (list)"),
    "--adapters": Term("numbers of loaded adapters to measure", "count (list)"),
    "--graph": Term("adapter graphs to train: catalog names or YAML files, NAME[:KEY=V1,V2...]", "specs (list)"),
    "--graphs": Term("catalog graphs to measure", "graph names (list)"),
    "--compare": Term("peft methods to train beside the graphs, METHOD[:KEY=V1,V2...]", "specs (list)"),
    "--set": Term("a graph parameter, KEY=VALUE", "KEY=VALUE (list)"),
    "--targets": Term("module names to adapt (PEFT matching rules)", "module names (list)"),
    "--model": Term("a local Hugging Face model folder", "path"),
    "--data": Term("a built-in data set or a data file", "name or path"),
    "--text-column": Term("a data file's text column", "column name"),
    "--label-column": Term("a data file's label column", "column name"),
    "--group-column": Term("a data file's column whose groups stay in one split", "column name"),
    "--train-size": Term("training examples", "examples"),
    "--validation-size": Term("validation examples", "examples"),
    "--test-size": Term("test examples", "examples"),
    "--lr": Term("learning rate of the graphs' tensors", "learning rate"),
    "--lr-diag": Term("learning rate of diagonal nodes", "learning rate"),
    "--lr-head": Term("learning rate of the linear head", "learning rate"),
    "--schedule": Term("learning rate after warmup", "linear, cosine or constant"),
    "--angle-decay": Term("weight of sum(1 - cos(theta - theta_0)) in the loss", "LAMBDA"),
    "--quantize-base": Term("load the base model's linear layers quantized (bitsandbytes)", "nf4 or int8"),
    "--tune": Term("choose each setting's learning rates on validation", "flag"),
    "--no-floor": Term("leave out the head-only row", "flag"),
    "--no-test": Term("never evaluate the test split", "flag"),
    "--no-save": Term("do not save the adapters", "flag"),
    "--no-progress": Term("no progress bars", "flag"),
    "--verbose": Term("also show third-party warnings tn_peft filters out", "flag"),
    "--title": Term("plot and table title", "text"),
    "--max-params": Term("largest adapter size in the frontier's budget table", "parameters"),
    "--overlay": Term("frontier: draw runs of different settings as separate series", "flag"),
    "--train": Term("plan a training step (node tensors need gradients)", "flag"),
    "--x-grad": Term("x needs a gradient too", "flag"),
    "--optimize": Term("how the contraction tree is chosen", "auto, greedy or optimal"),
    "--family": Term("also print the row ranges of each tree", "flag"),
    "--no-source": Term("do not print the generated source", "flag"),
    "--symbolic": Term("label legs with their size expressions", "flag"),
    "--expand": Term("also draw each circuit node's gates", "flag"),
    "--json": Term("print the report as JSON", "flag"),
    "--check": Term("small sizes, correctness only", "flag"),
    "--dry-run": Term("on a CPU: every section at small sizes, as on the bare GPU image", "flag"),
    "--full": Term("also time torch matrix_exp at N >= 4096", "flag"),
    "--taylor-order": Term("order P of the timed taylor map", "order"),
    "--taylor-orders": Term("orders for the Taylor error table", "order (list)"),
    "--markdown": Term("print Markdown tables", "flag"),
    "--no-peak": Term("skip the peak-memory runs", "flag"),
    "--no-unbatched": Term("skip the Quantum-PEFT row without batched node evaluation", "flag"),
}

#: old spelling -> its new spelling, per command ("*": every command that has it). They work for one more
#: release and print a one-line note.
RENAMED: dict[str, dict[str, str]] = {
    "--out": {"check": "--out-features", "draw": "--out-features", "plan": "--out-features", "*": "--output"},
    "--in": {"*": "--in-features"},
    "--tokens": {"plan": "--rows", "bench planner": "--rows", "bench kernels": "--rows", "*": "--seq-len"},
    "--max-length": {"*": "--seq-len"},
    "--batch": {"*": "--batch-size"},
    "--rounds": {"*": "--repeats"},
    "--repeat": {"*": "--repeats"},
    "--min-rounds": {"*": "--min-repeats"},
    "--layers": {"*": "--depth"},
    "--cases": {"bench kernels": "--kernels"},
    "--max-budget": {"*": "--max-params"},
    "--force": {"*": "--overwrite"},
    "--steps": {"convert": "--fit-steps"},
    "--rank": {"convert": "--max-bond", "export-lora": "--lora-rank or --energy"},
}


def renamed_note(old: str, new: str) -> None:
    """The one line an old spelling prints."""
    print(f"tn-peft: warning: {old} is spelled {new} now (the old spelling goes in a later release)",
          file=sys.stderr)


def _renamed(base: type[argparse.Action]) -> type[argparse.Action]:
    """``base`` that prints :func:`renamed_note` when given by one of its ``old`` spellings."""

    class Renamed(base):  # type: ignore[misc, valid-type]
        def __init__(self, option_strings, dest, old=(), **kwargs):
            super().__init__(option_strings, dest, **kwargs)
            self.old = tuple(old)

        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in self.old:
                renamed_note(option_string, next(s for s in self.option_strings if s.startswith("--")))
            super().__call__(parser, namespace, values, option_string)

    Renamed.__name__ = f"Renamed{base.__name__}"
    return Renamed


def add_option(parser, *flags: str, old: tuple[str, ...] = (), **kwargs) -> argparse.Action:
    """``parser.add_argument(*flags, **kwargs)``, also accepting the ``old`` spellings (with a note)."""
    if not old:
        return parser.add_argument(*flags, **kwargs)
    action = kwargs.pop("action", "store")
    base = parser._registry_get("action", action, action) if isinstance(action, str) else action
    return parser.add_argument(*flags, *old, action=_renamed(base), old=old, **kwargs)


class NameList(argparse.Action):
    """A space-separated list of names (``--targets query value``); a comma-separated one, the old form,
    is split with a note."""

    def __call__(self, parser, namespace, values, option_string=None):
        if any("," in v for v in values):
            print(f"tn-peft: warning: {option_string} takes space-separated names now "
                  f"({' '.join(values)!s} -> {' '.join(t for v in values for t in v.split(',') if t)})",
                  file=sys.stderr)
        setattr(namespace, self.dest, [t.strip() for v in values for t in v.split(",") if t.strip()])


# ------------------------------------------------------------------ the options several commands share
def add_output(parser, *, default: str | None, what: str, required: bool = False, old: tuple[str, ...] = ("--out",)):
    """``-o/--output``: the file or folder the command writes."""
    text = what + (f" (default: {default})" if default else "")
    return add_option(parser, "-o", "--output", old=old, default=default, required=required, metavar="PATH",
                      help=text)


def add_threads(parser):
    """``--threads``: torch CPU threads; default torch's own (OMP_NUM_THREADS, else the cores)."""
    return parser.add_argument("--threads", type=int, default=None, metavar="N",
                               help="torch CPU threads (default: torch's own, which honours OMP_NUM_THREADS)")


def add_device(parser, *, what: str = "torch device"):
    """``--device``: default cuda when there is one, else cpu (:func:`device_or_default`)."""
    return parser.add_argument("--device", default=None, metavar="DEVICE",
                               help=f"{what}: cpu, cuda or cuda:N (default: cuda when there is one, else cpu)")


def device_or_default(device: str | None) -> str:
    """``--device``'s value, or its default: cuda when torch sees one, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_repeats(parser, *, default: int, what: str, old: tuple[str, ...]):
    return add_option(parser, "--repeats", old=old, type=int, default=default, metavar="N",
                      help=f"{what} (default: {default})")


def add_batch_size(parser, *, default: int, old: tuple[str, ...] = ()):
    return add_option(parser, "--batch-size", old=old, type=int, default=default, metavar="N",
                      help=f"sequences per batch (default: {default})")


def add_seq_len(parser, *, default: int, old: tuple[str, ...]):
    return add_option(parser, "--seq-len", old=old, type=int, default=default, metavar="TOKENS",
                      help=f"tokens per sequence (default: {default})")


def add_targets(parser, *, default: list[str] | None, text: str | None = None):
    return parser.add_argument("--targets", nargs="+", action=NameList, default=default, metavar="NAME",
                               help=text or f"module names to adapt, space-separated (default: {' '.join(default or [])})")


def add_rows(parser, default: list[int] | None, *, many: bool = True):
    """``--rows T [T ...]`` (one T unless ``many``): the rows of x (batch x sequence)."""
    shown = "none" if default is None else " ".join(map(str, default)) if many else str(default)
    return add_option(parser, "--rows", old=("--tokens",), type=int, nargs="+" if many else None, default=default,
                      metavar="T", help=f"T, the rows of x (batch x sequence){', space-separated' if many else ''} "
                                        f"(default: {shown})")


def add_depth(parser, what: str, *, default: int | None = 1):
    """``--depth L``: a Pauli circuit's depth (its layers of rotations and CZs)."""
    return add_option(parser, "--depth", old=("--layers",), type=int, default=default, metavar="L",
                      help=f"{what} (default 1)")


def add_overwrite(parser, *, what: str, old: tuple[str, ...] = ()):
    return add_option(parser, "--overwrite", old=old, action="store_true", help=what)


def markdown_table(commands: dict[str, list[str]]) -> str:
    """The README's table: one row per option, its meaning, unit and the commands that take it."""
    lines = ["| option | meaning | unit | commands |", "|---|---|---|---|"]
    for option, term in VOCABULARY.items():
        names = "-o/--output" if option == "--output" else option
        lines.append(f"| `{names}` | {term.meaning} | {term.unit} | {', '.join(commands.get(option, []))} |")
    return "\n".join(lines) + "\n"


def old_spellings_table() -> str:
    """The README's list of renamed options: old spelling, new spelling, the commands."""
    found: dict[tuple[str, str], list[str]] = {}
    for command, parser in parsers().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if is_old(flag, command):
                    where = RENAMED[flag]
                    found.setdefault((flag, where.get(command, where.get("*", ""))), []).append(command)
    lines = ["| old spelling | new spelling | commands |", "|---|---|---|"]
    for (old, new), commands in found.items():
        lines.append(f"| `{old}` | `{new}` | {', '.join(commands)} |")
    return "\n".join(lines) + "\n"


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser, built as ``tn-peft`` builds it: ``{"finetune": ..., "bench step": ...}``."""
    from . import BENCHMARKS, COMMANDS, build_parser

    out = {}
    for argv in [[c] for c in COMMANDS] + [["bench", b] for b in BENCHMARKS]:
        parser = build_parser(argv)
        for name in argv:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[name]
        out[" ".join(argv)] = parser
    return out


def is_old(flag: str, command: str) -> bool:
    """Whether ``flag`` is an old spelling in ``command`` (:data:`RENAMED`)."""
    where = RENAMED.get(flag, {})
    return command in where or "*" in where


def commands_by_option() -> dict[str, list[str]]:
    """option -> the commands whose parser takes it (old spellings and --help left out)."""
    found: dict[str, list[str]] = {}
    for command, parser in parsers().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and not is_old(flag, command):
                    found.setdefault(flag, []).append(command)
    return found


if __name__ == "__main__":  # pragma: no cover - prints the README's tables
    print(markdown_table(commands_by_option()))
    print(old_spellings_table())
