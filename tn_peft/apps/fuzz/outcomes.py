"""Running fuzz cases: each outcome is accepted, a documented error (by type), a crash or a hang.

Documented errors are :class:`~tn_peft.errors.TnPeftError` subclasses (SpecError, CheckpointError,
ShapeError, DataError, MissingDependencyError) and, for the command line, argparse's usage exit (2).
Anything else escaping is a crash; a case running past its time limit is a hang (SIGALRM, so cases
run in the main thread).
"""

from __future__ import annotations

import json
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TnPeftError
from ...io.atomic import atomic_write_bytes, atomic_write_text

#: seconds one case may run before it counts as a hang
CASE_SECONDS = 10.0


class Hang(BaseException):
    """Raised by the alarm inside a case that ran past its limit (BaseException: no except Exception eats it)."""


@dataclass
class Case:
    """One input: its bytes (what is saved on a crash), a label, and the call that feeds it to tn_peft."""

    label: str
    data: bytes
    call: Callable[[], Any]
    suffix: str = ".txt"


@dataclass
class Report:
    """Counts by outcome and the first example of each crash class (saved under ``crash_dir``)."""

    surface: str
    counts: Counter = field(default_factory=Counter)
    crashes: dict[str, str] = field(default_factory=dict)  # class -> saved file
    seconds: float = 0.0

    @property
    def bad(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith(("crash", "hang")))

    def format(self) -> str:
        lines = [(f"{self.surface}: {sum(self.counts.values())} cases in {self.seconds:.1f} s, "
                  f"{self.bad} crashes or hangs")]
        for outcome, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {outcome:40s} {n:6d}")
        for klass, path in self.crashes.items():
            lines.append(f"  first {klass}: {path}")
        return "\n".join(lines)


def classify(exc: BaseException | None) -> str:
    """``accepted``, ``error: <Type>``, ``usage error (exit 2)``, ``hang`` or ``crash: <Type>``."""
    if exc is None:
        return "accepted"
    if isinstance(exc, Hang):
        return "hang"
    if isinstance(exc, TnPeftError):
        return f"error: {type(exc).__name__}"
    if isinstance(exc, SystemExit):
        return "usage error (exit 2)" if exc.code in (1, 2) else f"crash: SystemExit({exc.code})"
    return f"crash: {type(exc).__name__}"


def _alarm(signum, frame):  # pragma: no cover - fires only on a hang
    raise Hang()


def run_case(case: Case, seconds: float = CASE_SECONDS) -> tuple[str, BaseException | None]:
    """Run one case under a time limit; returns (outcome, the exception or None)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    result = None
    try:
        result = case.call()
        error = None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    outcome = classify(error)
    if error is None and isinstance(result, int) and not isinstance(result, bool) and result:
        outcome = f"exit {result} (a clean one-line error)" if result == 2 else f"exit {result}"
    return outcome, error


def crash_class(outcome: str, error: BaseException) -> str:
    """A crash's class: its type and the innermost tn_peft frame it escaped from."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "tn_peft" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{outcome} at {where}"


def run_cases(surface: str, cases: Callable[[int], Case], count: int, crash_dir: str | Path,
              seconds: float = CASE_SECONDS) -> Report:
    """Run cases 0..count-1 of a surface; save the first input (and traceback) of each crash class."""
    report = Report(surface)
    started = time.perf_counter()
    crash_dir = Path(crash_dir)
    for i in range(count):
        case = cases(i)
        outcome, error = run_case(case, seconds)
        report.counts[outcome] += 1
        if outcome.startswith(("crash", "hang")):
            klass = crash_class(outcome, error)
            if klass not in report.crashes:
                stem = f"{surface}-{len(report.crashes):03d}"
                data_path = atomic_write_bytes(crash_dir / f"{stem}{case.suffix}", case.data)
                text = "".join(traceback.format_exception(error))
                atomic_write_text(crash_dir / f"{stem}.json",
                                  json.dumps({"case": i, "label": case.label, "class": klass, "input": str(data_path),
                                              "traceback": text}, indent=2) + "\n")
                report.crashes[klass] = str(data_path)
    report.seconds = time.perf_counter() - started
    return report
