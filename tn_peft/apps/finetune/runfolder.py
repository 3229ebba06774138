"""A finetune run folder's safety: an earlier run is never overwritten unasked, an unfinished run is marked.

A run refuses a folder that holds an earlier run (its ``metrics.json``, or the :data:`MARKER` of one that did
not finish) unless ``--overwrite`` is given. It writes the marker before its first step and removes it after
its last file, so a run stopped by Ctrl-C, a kill or an error leaves its folder marked incomplete, and
``tn-peft frontier`` skips such folders with a message. Every result file is written atomically
(:mod:`tn_peft.io`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ...errors import UsageError
from ...io.atomic import atomic_write_text

#: the file of a run that has not finished (running, or stopped before its end)
MARKER = "INCOMPLETE"
#: the file a finished run leaves
METRICS = "metrics.json"


def is_incomplete(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run that has not finished (its :data:`MARKER`)."""
    return (Path(folder) / MARKER).exists()


def check_free(folder: str | Path, overwrite: bool = False) -> None:
    """Refuse ``folder`` when it holds an earlier run (finished or not), unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder} is a file, not a folder. Fix: choose another --output")
    if overwrite:
        return
    if is_incomplete(folder):
        raise UsageError(f"--output {folder} holds a run that did not finish ({MARKER}). Fix: choose another --output, "
                        "or pass --overwrite to replace it")
    if (folder / METRICS).exists():
        raise UsageError(f"--output {folder} holds an earlier run ({METRICS}). Fix: choose another --output, or pass "
                        "--overwrite to replace its results")


def mark_started(folder: str | Path, command: str | None) -> Path:
    """Create ``folder`` and write its :data:`MARKER` (the command, the process, the start time)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "meaning": "this run has not finished: it is running, or it was stopped (Ctrl-C, kill, error)"}
    return atomic_write_text(folder / MARKER, json.dumps(record, indent=1) + "\n")


def mark_finished(folder: str | Path) -> None:
    """Remove the :data:`MARKER`: every file of the run is written."""
    (Path(folder) / MARKER).unlink(missing_ok=True)
