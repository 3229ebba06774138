"""Fuzzing the command line: every sub-command with random, missing and garbage arguments.

Commands that train or benchmark (``finetune``, ``bench ...``) are parsed and their specs resolved
(``finetune``'s ``--graph`` / ``--compare`` grids), not run: a valid random command line would start
minutes of training. Every other command runs in full, inside the fuzz folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shlex
from pathlib import Path

from .mutate import ODD_SCALARS
from .outcomes import Case

#: values for arguments: catalog names, numbers, paths (existing or not), specs and garbage
VALUES = ("lora", "quantum_peft", "ttd", "svd", "tt", "quanta", "kron", "lotr", "none", "8", "0", "-3", "384",
          "2.5", "1e-3", "nan", "rank=2", "layers=0", "map=cayley", "x=", "=", "case.yaml", "missing-dir",
          "seed-lora", "seed-tn", "lora:r=1,2", "ia3:lr=", "head", "quantum_peft:layers=1,3", "--", "-", "")


#: one known-good (and one refused) command line per command, run before the watched cases
WARM_UP = (("check", "lora"), ("check", "case.yaml"), ("check", "missing-dir"), ("draw", "lora", "-o", "out.png"),
           ("plan", "quantum_peft", "--in-features", "8", "--out-features", "8", "--rows", "4", "--train"),
           ("convert", "seed-lora", "-o", "converted", "--to", "svd"), ("export-lora", "seed-tn", "-o", "exported"),
           ("inspect", "seed-tn"), ("inspect", "seed-lora"), ("frontier", "missing-dir"),
           ("finetune", "--graph", "quantum_peft:layers=1,3", "--compare", "lora:r=1,2"), ("bench", "fuzz"), ())


def _options(command: list[str]) -> list[str]:
    """The option strings of a sub-command's parser (built as ``tn-peft`` builds it)."""
    from ...cli import build_parser

    parser = build_parser(command)
    for action in parser._actions:  # the sub-command's parser
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices.get(command[0])
            if sub is not None and len(command) > 1:
                for inner in sub._actions:
                    if isinstance(inner, argparse._SubParsersAction) and command[1] in inner.choices:
                        sub = inner.choices[command[1]]
            if sub is not None:
                return [s for a in sub._actions for s in a.option_strings if s not in ("-h", "--help")]
    return []


def _run(argv: list[str], workdir: Path) -> int:
    from ...cli import build_parser, main

    here = os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if argv and argv[0] in ("finetune", "bench"):
                args = build_parser(argv).parse_args(argv)  # parse only
                if argv[0] == "finetune":
                    from ..finetune.run import rows_from_args

                    rows_from_args(args)
                return 0
            return main(argv)
    finally:
        os.chdir(here)


def make(workdir: str | Path):
    """The CLI surface: case i -> a random command line and the call that runs it."""
    from ...cli import BENCHMARKS, COMMANDS
    from .checkpoint_surface import _make_folders

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _make_folders(workdir)  # seed-tn and seed-lora, which VALUES name
    (workdir / "case.yaml").write_text("name: mine\nsizes: {r: 2}\nnodes:\n  - {name: B, kind: dense, legs: [out, r]}\n"
                                       "  - {name: A, kind: dense, legs: [r, in]}\n")
    commands = [[c] for c in COMMANDS] + [["bench", b] for b in BENCHMARKS] + [[]]
    options = {tuple(c): _options(c) if c else [] for c in commands}

    def case(i: int) -> Case:
        rng = random.Random(i)
        command = commands[i % len(commands)]
        argv = list(command)
        opts = options[tuple(command)]
        for _ in range(rng.randint(0, 6)):
            roll = rng.random()
            if roll < 0.45 and opts:
                argv.append(rng.choice(opts))
            elif roll < 0.9:
                argv.append(rng.choice(VALUES))
            else:
                argv.append(str(rng.choice(ODD_SCALARS)))
        if command and command[0] == "draw" and "-o" not in argv:
            argv += ["-o", "out.png"]
        text = shlex.join(argv)
        return Case(f"tn-peft {text}", text.encode(), lambda: _run(argv, workdir))

    def warm_up() -> None:
        for argv in WARM_UP:
            with contextlib.suppress(SystemExit):  # a usage error warms up too
                _run(list(argv), workdir)

    case.warm_up = warm_up
    return case
