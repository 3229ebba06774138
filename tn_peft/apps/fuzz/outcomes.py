"""Running fuzz cases: each outcome is accepted, a documented error (by type), a crash or a hang; and
each case either had no effect or tried one (:mod:`.effects`).

Documented errors are :class:`~tn_peft.errors.TnPeftError` subclasses (SpecError, CheckpointError,
ShapeError, DataError, MissingDependencyError) and, for the command line, argparse's usage exit (2).
Anything else escaping is a crash; a case running past its time limit is a hang (SIGALRM, so cases
run in the main thread). A case that tried an effect (a process, a new import, a write outside its
folder, foreign code run) is counted in the ``effects`` column whatever its outcome, and saved.
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
    """Counts by outcome, cases with effects by outcome, and the first example of each crash or effect
    class (saved under ``crash_dir``)."""

    surface: str
    counts: Counter = field(default_factory=Counter)
    effects: Counter = field(default_factory=Counter)  # outcome -> cases of it that tried an effect
    crashes: dict[str, str] = field(default_factory=dict)  # class -> saved file
    seconds: float = 0.0

    @property
    def crashed(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith(("crash", "hang")))

    @property
    def bad(self) -> int:
        """Cases that crashed, hung or tried an effect (each counted once)."""
        return self.crashed + sum(n for k, n in self.effects.items() if not k.startswith(("crash", "hang")))

    def format(self) -> str:
        lines = [(f"{self.surface}: {sum(self.counts.values())} cases in {self.seconds:.1f} s, "
                  f"{self.crashed} crashes or hangs, {sum(self.effects.values())} effects"),
                 f"  {'outcome':40s} {'cases':>6s} {'effect':>6s}"]
        for outcome, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {outcome:40s} {n:6d} {self.effects[outcome]:6d}")
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
              seconds: float = CASE_SECONDS, folder: str | Path | None = None) -> Report:
    """Run cases 0..count-1 of a surface; save the first input (and traceback) of each crash class.

    ``folder``: the surface's own working folder; given, each case runs under the effect watch
    (:class:`.effects.EffectWatch`), which allows writes there only, and cases that tried an effect
    are counted and saved too. A surface whose ``cases`` has a ``warm_up()`` attribute has it run first,
    unwatched, so that the modules known-good inputs load count as loaded.
    """
    from .effects import EffectWatch

    report = Report(surface)
    started = time.perf_counter()
    crash_dir = Path(crash_dir)
    watch = EffectWatch.get() if folder is not None else None
    warm_up = getattr(cases, "warm_up", None)
    if watch is not None and warm_up is not None:
        warm_up()  # known-good inputs first, unwatched: what they import is "already loaded" for the cases
    for i in range(count):
        case = cases(i)
        if watch is None:
            outcome, error = run_case(case, seconds)
            effects: list[str] = []
        else:
            with watch.case(folder):
                outcome, error = run_case(case, seconds)
            effects = list(watch.effects)
        report.counts[outcome] += 1
        if effects:
            report.effects[outcome] += 1
            _save(report, f"effect: {effects[0]}", surface, i, case, crash_dir, effects=effects, error=error)
        if outcome.startswith(("crash", "hang")):
            _save(report, crash_class(outcome, error), surface, i, case, crash_dir, error=error)
    report.seconds = time.perf_counter() - started
    return report


def _save(report: Report, klass: str, surface: str, index: int, case: Case, crash_dir: Path, *,
          error: BaseException | None, effects: list[str] | None = None) -> None:
    """Save the first input of a crash or effect class (its bytes, and a JSON note with the traceback)."""
    if klass in report.crashes:
        return
    stem = f"{surface}-{len(report.crashes):03d}"
    data_path = atomic_write_bytes(crash_dir / f"{stem}{case.suffix}", case.data)
    note = {"case": index, "label": case.label, "class": klass, "input": str(data_path),
            "traceback": "".join(traceback.format_exception(error)) if error is not None else None}
    if effects:
        note["effects"] = effects
    atomic_write_text(crash_dir / f"{stem}.json", json.dumps(note, indent=2) + "\n")
    report.crashes[klass] = str(data_path)
