"""Old import paths, kept working: ``tn_peft.spec`` is :mod:`tn_peft.graph.spec`, and so on.

The modules moved into sub-packages whose folders are the architecture. Importing an old path
gives the new module itself (the same object, not a copy) and warns once, with a
``DeprecationWarning`` naming the new path. ``tn_peft.model`` and ``tn_peft.io`` need no alias:
each became the package that re-exports the old module's names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module or package -> its new home (a package's submodules follow it: tn_peft.bench.step ->
#: tn_peft.apps.bench.step)
MOVED = {
    "tn_peft.expressions": "tn_peft.graph.expressions",
    "tn_peft.spec": "tn_peft.graph.spec",
    "tn_peft.network": "tn_peft.graph.network",
    "tn_peft.sizes": "tn_peft.graph.sizes",
    "tn_peft.draw": "tn_peft.graph.draw",
    "tn_peft.adapters": "tn_peft.adapter.adapter",
    "tn_peft.batching": "tn_peft.adapter.batching",
    "tn_peft.quantize": "tn_peft.nodes.quantize",
    "tn_peft.config": "tn_peft.model.config",
    "tn_peft.targets": "tn_peft.model.targets",
    "tn_peft.layers": "tn_peft.model.layers",
    "tn_peft.base_layers": "tn_peft.model.base_layers",
    "tn_peft.mixed": "tn_peft.model.mixed",
    "tn_peft.frames": "tn_peft.model.frames",
    "tn_peft.distributed": "tn_peft.model.distributed",
    "tn_peft.trainer": "tn_peft.model.trainer",
    "tn_peft.checkpoint": "tn_peft.io.checkpoint",
    "tn_peft.model_io": "tn_peft.model.model_io",
    "tn_peft.commands": "tn_peft.cli.graph_options",
    "tn_peft.planner.cli": "tn_peft.cli.plan",
    "tn_peft.convert.cli": "tn_peft.cli.convert",
    "tn_peft.finetune": "tn_peft.apps.finetune",
    "tn_peft.bench": "tn_peft.apps.bench",
    "tn_peft.fuzz": "tn_peft.apps.fuzz",
}

_warned: set[str] = set()


def new_name(old: str) -> str | None:
    """The module an old dotted name now lives at, or None when ``old`` did not move."""
    if old in MOVED:
        return MOVED[old]
    head, _, tail = old.rpartition(".")
    while head:
        if head in MOVED and MOVED[head].startswith("tn_peft.apps."):  # a moved package's submodule
            return MOVED[head] + "." + old[len(head) + 1:]
        head, _, _ = head.rpartition(".")
    return None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the new module (``sys.modules[old] is`` the new module)."""

    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname) if fullname.startswith("tn_peft.") else None
        return None if new is None else importlib.util.spec_from_loader(fullname, self, origin=new)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        old, new = module.__name__, module.__spec__.origin
        sys.modules[old] = importlib.import_module(new)  # the import system returns what sits here
        top = max((name for name in MOVED if old == name or old.startswith(name + ".")), key=len)
        if top not in _warned:
            _warned.add(top)
            from .errors import warn

            warn(f"{top} moved to {MOVED[top]}; import it from there (the old path will be removed)",
                 DeprecationWarning)


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
