"""Node kinds: each file holds one kind (the Pauli circuits: the :mod:`.circuit` package), which
registers itself when its module is first imported (:func:`tn_peft.nodes.base.node_kind` imports a
built-in kind's module on first use). :mod:`.kinds` is what a graph spec may say about each kind, without
torch. :mod:`.quantize` holds the quantizers a node trains its parameters with (the ``bits`` option) and
their packed checkpoint form.

See :mod:`tn_peft.nodes.base` for the interface and how to add a kind of your own.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it; loaded on first use, so that :mod:`.kinds` (what a spec
#: may say about each kind) is importable without torch
_WHERE = {
    "REGISTRY": ".base", "MatrixNode": ".base", "Node": ".base", "StiefelNode": ".base",
    "create_node": ".base", "node_kind": ".base",
    "CircuitNetwork": ".circuit", "CircuitOp": ".circuit", "PauliNode": ".circuit",
    "circuit_apply": ".circuit", "circuit_columns": ".circuit", "pauli_unitary": ".circuit",
    "Dense": ".dense", "Diagonal": ".diagonal", "GivensNode": ".givens", "givens_columns": ".givens",
    "HouseholderNode": ".householder", "householder_columns": ".householder",
    "CayleyNode": ".lie", "ExpNode": ".lie", "TaylorNode": ".lie", "lie_columns": ".lie",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'tn_peft.nodes' has no attribute {name!r}")
    if name == "REGISTRY":  # the full registry: every built-in kind registered
        return importlib.import_module(".base", __name__).load_builtin_kinds()
    return getattr(importlib.import_module(where, __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
           "REGISTRY",
           "CayleyNode",
           "CircuitNetwork",
           "CircuitOp",
           "Dense",
           "Diagonal",
           "ExpNode",
           "GivensNode",
           "HouseholderNode",
           "MatrixNode",
           "Node",
           "PauliNode",
           "StiefelNode",
           "TaylorNode",
           "circuit_apply",
           "circuit_columns",
           "create_node",
           "givens_columns",
           "householder_columns",
           "lie_columns",
           "node_kind",
           "pauli_unitary",
]
