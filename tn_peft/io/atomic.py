"""Atomic file writes: write a temporary file beside the target, then rename over it.

Nothing the user owns is left half-written: a crash mid-write leaves the old file (or none).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename.

    >>> atomic_write_text("/tmp/tn_peft_doc.txt", "hello")  # doctest: +ELLIPSIS
    PosixPath('/tmp/tn_peft_doc.txt')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically, creating its folder.

    Values JSON cannot hold (paths, numpy scalars, ...) are written as ``str(value)``.
    """
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
