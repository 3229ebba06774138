"""Register tn_peft with peft whenever peft is imported -- before or after tn_peft -- without importing
peft (or torch) on ``import tn_peft``.

peft offers no entry point or plugin hook for methods defined outside it (0.21: methods register by
calling ``peft.utils.register_peft_method``), so :func:`install`, run by ``import tn_peft``, does it:

- peft already imported: :mod:`tn_peft.model.peft_method` is imported now, and registers;
- otherwise a one-shot finder on ``sys.meta_path`` waits for ``import peft``, lets peft's own loader run
  its ``__init__`` and then imports :mod:`tn_peft.model.peft_method`.

A registration that fails (peft's internals moved, see :func:`tn_peft.model.peft_method.add_peft_type`) must not
break ``import peft`` for code that never uses tn_peft: it becomes a warning with the reason, and
``from tn_peft import TnPeftConfig`` raises the error itself.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from .errors import warn


def register_now() -> None:
    """Import :mod:`tn_peft.model.peft_method` (which registers), turning a failure into a warning."""
    try:
        importlib.import_module("tn_peft.model.peft_method")
    except Exception as exc:  # noqa: BLE001 - whatever broke, `import peft` itself must go on
        warn(f"tn_peft could not register with peft, so peft cannot load or build TN_PEFT adapters: {exc}")


class _RegisteringLoader:
    """peft's own loader; after it has run peft's ``__init__``, tn_peft registers."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self._loader   # peft's module keeps its own loader
        self._loader.exec_module(module)
        register_now()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PeftFinder:
    """A one-shot ``sys.meta_path`` finder for the top-level ``peft`` package (see the module docstring)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "peft":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("peft")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    """Register with peft now if peft is imported, else when it is (idempotent)."""
    peft = sys.modules.get("peft")
    if peft is not None:
        if getattr(peft, "__spec__", None) is not None and hasattr(peft, "PeftModel"):  # fully imported
            register_now()
        return
    if not any(isinstance(finder, PeftFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, PeftFinder())


__all__ = ["PeftFinder", "install", "register_now"]
