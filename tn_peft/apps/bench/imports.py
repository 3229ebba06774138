"""``tn-peft bench import``: what importing tn_peft and starting the command line cost, beside torch.

Each case is a fresh ``python -c`` process, timed from spawn to exit; round r runs every case once,
in an order that alternates between rounds, so machine load hits all alike. Cases:

- ``python``: the interpreter alone (the floor every process pays);
- ``import torch``;
- ``import tn_peft``: the package (lazy: its names import the engine on first use);
- ``engine``: ``from tn_peft import get_model, AdapterConfig, load_graph`` (torch, the model
  wrapper, the planner);
- ``tn-peft --help`` and ``tn-peft check --help`` (``tn_peft.cli.main``).

Reported: median seconds per case over ``--repeats``, and the two targets: ``--help`` and ``check
--help`` import no torch and take under ``HELP_TARGET_S``; the engine costs at most
``ENGINE_TARGET_S`` more than ``import torch``. Each ``--help`` case also checks, in its own process,
that ``torch`` is not in ``sys.modules``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from ...errors import TnPeftError

HELP_TARGET_S = 0.3
ENGINE_TARGET_S = 0.3


def _cli(argv: list[str]) -> str:
    """A case running ``tn_peft.cli.main(argv)`` (output swallowed), then checking torch stayed out."""
    return ("import contextlib, io, sys, tn_peft.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    tn_peft.cli.main({argv!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")


CASES: dict[str, str] = {
    "python": "pass",
    "import torch": "import torch",
    "import tn_peft": "import tn_peft",
    "engine": "from tn_peft import get_model, AdapterConfig, load_graph",
    "tn-peft --help": _cli(["--help"]),
    "tn-peft check --help": _cli(["check", "--help"]),
}




def _time(code: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise TnPeftError(f"bench import: the case {code.splitlines()[0]!r} failed: {result.stderr.strip()[-500:]}")
    return elapsed


def measure(rounds: int) -> dict[str, float]:
    """Median wall seconds per case (see module docstring), after one unmeasured warm-up round."""
    names = list(CASES)
    for name in names:  # warm the file cache
        _time(CASES[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(_time(CASES[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def report(medians: dict[str, float]) -> tuple[list[str], bool]:
    """The printed lines and whether both targets are met."""
    lines = [f"{'case':24s} {'median s':>9s}"]
    lines += [f"{name:24s} {seconds:9.3f}" for name, seconds in medians.items()]
    helps = max(medians["tn-peft --help"], medians["tn-peft check --help"])
    extra = medians["engine"] - medians["import torch"]
    ok_help = helps < HELP_TARGET_S
    ok_engine = extra <= ENGINE_TARGET_S
    lines.append(f"--help and check --help: {helps:.3f} s, no torch imported "
                 f"(target < {HELP_TARGET_S} s: {'met' if ok_help else 'MISSED'})")
    lines.append(f"engine - import torch: {extra:+.3f} s (target <= {ENGINE_TARGET_S} s: "
                 f"{'met' if ok_engine else 'MISSED'})")
    return lines, ok_help and ok_engine


def run(args: argparse.Namespace) -> int:
    lines, _ = report(measure(args.repeats))
    print("\n".join(lines))
    return 0
