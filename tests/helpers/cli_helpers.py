"""Running ``tn-peft`` as a user does: a child process, its output captured, never a raised exit code."""

from __future__ import annotations

import subprocess
import sys


def tn_peft(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m tn_peft.cli ARGS`` in a fresh interpreter; the completed process (returncode, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "tn_peft.cli", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=timeout)
