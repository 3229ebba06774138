"""Effects no input may cause: the audit hook behind the fuzz outcome table's ``effects`` column.

A graph file, an adapter folder or a command line is data: loading, checking, planning, building and
running it must not start a process, import a new module, write outside the run's folder or run code
other than tn_peft's own checked programs. :class:`EffectWatch` installs one ``sys.addaudithook`` (hooks
cannot be removed, so one hook serves every watch in the process) and, while a case runs inside
``watch.case(folder)``, records and blocks:

- ``os.system``, ``os.exec*``, ``os.posix_spawn``, ``os.spawn*``, ``os.fork``, ``subprocess.Popen``,
  ``pty.spawn``, ``ctypes.dlopen``;
- ``import`` of a module not loaded yet (the event fires only then), except tn_peft's own modules and
  the codecs of :mod:`encodings` (decoding a UTF-16 file loads one);
- ``open`` for writing (mode ``w``/``a``/``x``/``+``, or write flags) of a path outside the case's folder;
- ``exec`` of any code but a compiled plan program (file name :data:`~tn_peft.planner.emit.PROGRAM_FILENAME_PREFIX`)
  whose source passes :func:`~tn_peft.planner.verify.verify_source`, and ``compile`` of a program whose source
  fails it. (``compile`` to an AST, as :func:`ast.parse` does for the expression language, runs nothing.)

Each blocked event raises :class:`EffectBlocked` at its source, so a planted payload does nothing even
when the fuzzer finds it.
"""

from __future__ import annotations

import encodings
import linecache
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

#: audit events that start a process or load native code: always an effect
PROCESS_EVENTS = frozenset({"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                            "subprocess.Popen", "pty.spawn", "ctypes.dlopen"})
#: module name prefixes a case may import for the first time (our own lazy imports; codecs)
ALLOWED_IMPORTS = ("tn_peft.", "encodings.")
#: folders of the modules :data:`ALLOWED_IMPORTS` loads, whose module bodies an import executes
_MODULE_FOLDERS = tuple(os.path.realpath(os.path.dirname(module.__file__)) + os.sep  # the tn_peft package, wherever
                        for module in (sys.modules[__name__.partition(".")[0]], encodings))  # this module sits in it
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class EffectBlocked(RuntimeError):
    """Raised inside a fuzz case by the audit hook: the case tried an effect (the message says which)."""


class EffectWatch:
    """Records the effects of the case running inside :meth:`case` (one hook per process, see module doc)."""

    _installed: EffectWatch | None = None

    def __init__(self) -> None:
        self.effects: list[str] = []
        self._folder: str | None = None
        self._state = threading.local()

    @classmethod
    def get(cls) -> EffectWatch:
        """The process's watch, its hook installed on first use."""
        if cls._installed is None:
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        return cls._installed

    @contextmanager
    def case(self, folder: str | Path):
        """Watch one case whose own files live under ``folder``; ``self.effects`` lists what it tried."""
        self.effects = []
        self._folder = os.path.realpath(folder)
        try:
            yield self
        finally:
            self._folder = None

    # ------------------------------------------------------------------ hook
    def _hook(self, event: str, args: tuple) -> None:
        if self._folder is None or getattr(self._state, "busy", False):
            return
        self._state.busy = True  # the checks below may themselves compile or open (no recursion)
        try:
            why = self._judge(event, args)
        finally:
            self._state.busy = False
        if why is not None:
            self.effects.append(why)
            raise EffectBlocked(f"blocked effect: {why}")

    def _judge(self, event: str, args: tuple) -> str | None:
        if event in PROCESS_EVENTS:
            return f"{event}{_short(args)}"
        if event == "import":
            module = str(args[0])
            if not module.startswith(ALLOWED_IMPORTS):
                return f"import of {module!r}, a module not loaded before"
        elif event == "open":
            return self._judge_open(*args[:3])
        elif event == "compile":
            source, filename = args[0], args[1]
            from ...planner.emit import PROGRAM_FILENAME_PREFIX

            if str(filename).startswith(PROGRAM_FILENAME_PREFIX) and not _verified(source):
                return f"compile of a program that fails the AST check ({filename})"
        elif event == "exec":
            return self._judge_exec(args[0])
        return None

    def _judge_open(self, path, mode, flags) -> str | None:
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
        if not writes or isinstance(path, int):
            return None
        real = os.path.realpath(os.fsdecode(path))
        if real == self._folder or real.startswith(self._folder + os.sep) or real == os.devnull:
            return None
        return f"open for writing outside the run's folder: {real}"

    @staticmethod
    def _judge_exec(code) -> str | None:
        from ...planner.emit import PROGRAM_FILENAME_PREFIX

        filename = getattr(code, "co_filename", "")
        if getattr(code, "co_name", "") == "<module>" and os.path.realpath(filename).startswith(_MODULE_FOLDERS):
            return None  # the body of a module an allowed import loads
        if not filename.startswith(PROGRAM_FILENAME_PREFIX):
            return f"exec of code from {filename!r}"
        source = "".join(linecache.getlines(filename))
        if not _verified(source):
            return f"exec of a program that fails the AST check ({filename})"
        return None


def _verified(source) -> bool:
    from ...errors import UnsafeProgramError
    from ...planner.verify import verify_source

    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    if not isinstance(source, str):
        return False
    try:
        verify_source(source)
    except UnsafeProgramError:
        return False
    return True


def _short(args: tuple) -> str:
    text = repr(args)
    return text if len(text) <= 120 else text[:117] + "..."
