"""The exceptions tn_peft raises: one type per layer, each message naming what is at fault and the fix.

- :class:`SpecError`: a graph spec, Network or adapter config is malformed (file, line, node, leg, field).
- :class:`UsageError`: a call the library cannot serve in the state it is in (a mixed batch in training
  mode, deleting the active adapter, sharding without torch.distributed); nothing is wrong with the spec.
- :class:`ShapeError`: tensors passed at run time do not fit the built adapter.
- :class:`CheckpointError`: a saved adapter or LoRA checkpoint cannot be read or converted.
- :class:`DataError`: training data cannot be used as given (names the file, line or column).
- :class:`MissingDependencyError`: an optional package is not installed (the message has the pip command).
- :class:`UnsafeProgramError`: an internal error, never the user's: generated source failed the check it
  must pass before it runs (:mod:`tn_peft.planner.verify`), so nothing ran.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

#: the package's own folder: a warning points at the first caller outside it
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` pointing at the user's line: the first frame outside tn_peft (and the import
    machinery, for a module that warns on import), however deep the call that warns (a fixed ``stacklevel`` breaks whenever a call is added between them)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2: warn's caller
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:  # warnings itself skips these without counting them
            frame = frame.f_back
        elif os.path.abspath(name).startswith(_PACKAGE):
            level, frame = level + 1, frame.f_back
        else:
            break
    warnings.warn(message, category, stacklevel=level)


class TnPeftError(Exception):
    """Base class of every error tn_peft raises on purpose."""


class SpecError(TnPeftError, ValueError):
    """A graph spec or Network is invalid.

    The message starts with where the fault is (``file:line``, node, leg) and ends with a fix.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 node: str | None = None, leg: str | None = None, fix: str | None = None):
        self.source, self.line, self.node, self.leg, self.fix = source, line, node, leg, fix
        where = []
        if source:
            where.append(f"{source}:{line}" if line else str(source))
        if node:
            where.append(f"node {node!r}")
        if leg:
            where.append(f"leg {leg!r}")
        text = (", ".join(where) + ": " if where else "") + message
        if fix:
            text += f" Fix: {fix}"
        self.bare_message = message
        super().__init__(text)


@contextmanager
def spec_source(source: str):
    """Give a SpecError raised inside the block the file it came from, when it names none (a graph spec
    embedded in an ``adapter_config.json`` is a mapping without a path of its own)."""
    try:
        yield
    except SpecError as exc:
        if exc.source:
            raise
        raise SpecError(exc.bare_message, source=source, line=exc.line, node=exc.node, leg=exc.leg,
                        fix=exc.fix) from None


class UsageError(TnPeftError, ValueError):
    """The library was called in a way it cannot serve now: the arguments or the state are at fault, not a spec.

    A ``ValueError`` (and a :class:`TnPeftError`), as the ``SpecError`` these cases raised before was: code
    that caught ``ValueError`` or ``TnPeftError`` still does; code that caught ``SpecError`` for them now
    sees the error instead of hiding it.
    """

    def __init__(self, message: str, *, fix: str | None = None):
        self.fix, self.bare_message = fix, message
        super().__init__(message + (f" Fix: {fix}" if fix else ""))


class ShapeError(TnPeftError, ValueError):
    """A tensor given at run time has a shape the adapter cannot take."""


class RightInverseError(TnPeftError, ValueError):
    """A node's map does not reach the matrix asked of its right inverse (not orthonormal, an eigenvalue
    -1 for Cayley, determinant -1 for exp, beyond the intrinsic rank). The message says how to fix it."""


class CheckpointError(TnPeftError, ValueError):
    """A checkpoint file is missing, corrupt, or not of the expected kind. Names the file and key."""


class DataError(TnPeftError, ValueError):
    """Training data cannot be used as given (a data file outside the contract of
    :mod:`tn_peft.apps.finetune.userdata`, an unknown data set name)."""


class MissingDependencyError(TnPeftError, ImportError):
    """An optional package is missing; the message carries the exact install command."""


class UnsafeProgramError(RuntimeError):
    """Generated source is outside the grammar the emitter writes (:mod:`tn_peft.planner.verify`); it was
    neither compiled nor run. A bug in tn_peft, not in the user's input: deliberately not a
    :class:`TnPeftError`, so the fuzzers count it as a crash."""


def require(module: str, pip_name: str | None = None, purpose: str = ""):
    """Import ``module`` or raise :class:`MissingDependencyError` with the pip command to fix it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised by tests with monkeypatched imports
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"the optional package {module!r} is not installed{what}. "
            f"Install it with: pip install {pip_name or module}"
        ) from exc
