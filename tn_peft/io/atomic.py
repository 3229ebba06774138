"""Atomic writes: write a temporary file (or folder) beside the target, then rename it into place.

Nothing the user owns is left half-written: a crash mid-write leaves the old file or folder (or none).
The one mechanism for every file tn_peft writes (:func:`atomic_write`) and every output folder
(:func:`atomic_write_folder`, LoRA conversion).
"""

from __future__ import annotations

import json
import os
import shutil
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
    tmp_path = _beside(path, ".tmp")
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def _beside(path: Path, suffix: str, *, folder: bool = False) -> Path:
    """A new hidden file (or folder) named after ``path`` in ``path``'s folder (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write_folder(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_folder)``, then move the finished folder onto ``path`` in one rename; an existing
    ``path`` is renamed aside first and deleted last (put back if the rename fails)."""
    path = Path(path)
    tmp, old = _beside(path, ".tmp", folder=True), None
    try:
        write(tmp)
        if path.exists():
            old = _beside(path, ".old", folder=True)
            old.rmdir()
            path.rename(old)
        tmp.rename(path)
    except BaseException:
        if old is not None and not path.exists():
            old.rename(path)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
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
